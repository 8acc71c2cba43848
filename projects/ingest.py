"""Read a dataset directory into item records. Pure: no database, no Django models written.

Every reader is defensive: an unreadable file becomes a *rejected* record carrying the reason (images),
or a warning (rows without text), never an exception that aborts the import.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import hashlib
import io
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"})
TEXT_FILE_EXTENSIONS = frozenset({".txt"})
TABULAR_EXTENSIONS = frozenset({".csv", ".tsv", ".jsonl"})
JSON_EXTENSIONS = frozenset({".json", ".jsonl"})

# Column names tried, in order, when a config does not name the text / id column.
TEXT_COLUMN_GUESSES = ("text", "content", "body", "message", "sentence", "review", "tweet", "document", "doc")
ID_COLUMN_GUESSES = ("id", "key", "uid", "doc_id", "row_id")

csv.field_size_limit(64 * 1024 * 1024)


@dataclass
class ItemRecord:
    key: str
    kind: str  # ItemKind value
    source: str
    content_hash: str
    text: str = ""
    data: object = None
    rejection_reason: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class IngestReport:
    warnings: list[str] = field(default_factory=list)
    files_seen: int = 0
    skipped_existing: int = 0

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_text(raw: bytes) -> tuple[str, str]:
    """Decode bytes of unknown encoding; never raises. Returns (text, encoding used).

    BOMs are honoured first; then strict UTF-8; then Windows-1252, which covers most legacy Western text;
    Latin-1 maps every byte, so it is the last resort that always succeeds.
    """
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if raw.startswith(bom):
            try:
                return _clean(raw.decode(encoding)), encoding
            except UnicodeDecodeError:
                break
    for encoding in ("utf-8", "cp1252"):
        try:
            return _clean(raw.decode(encoding)), encoding
        except UnicodeDecodeError:
            continue
    return _clean(raw.decode("latin-1")), "latin-1"


def _clean(text: str) -> str:
    # NUL cannot be stored in PostgreSQL text columns and is never meaningful in labelable text.
    return text.replace("\x00", "")


def verify_image(raw: bytes, *, max_pixels: int) -> tuple[dict, str]:
    """Return (meta, rejection_reason). An empty reason means the image decodes fully."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as im:
                width, height = im.size
                fmt = im.format or ""
                if width * height > max_pixels:
                    return {"width": width, "height": height}, (
                        f"image too large: {width}x{height} = {width * height:,} pixels exceeds the "
                        f"{max_pixels:,} limit (possible decompression bomb)"
                    )
                im.verify()
            # verify() checks structure only; a full decode catches truncated pixel data.
            with Image.open(io.BytesIO(raw)) as im:
                im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return {}, f"decompression bomb refused: {exc}"
    except Image.UnidentifiedImageError:
        return {}, "not a recognisable image file"
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # Pillow reports corrupt data through several exception types depending on the codec.
        return {}, f"corrupt image: {exc}"
    return {"width": width, "height": height, "format": fmt}, ""


def iter_files(root: Path, extensions: frozenset[str]) -> Iterator[Path]:
    """Files under root (recursive, sorted for determinism), skipping hidden files and folders."""
    if root.is_file():
        if root.suffix.lower() in extensions:
            yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in extensions:
                yield path


def _relative(root: Path, path: Path) -> str:
    base = root.parent if root.is_file() else root
    return path.relative_to(base).as_posix()


def _json_text(obj: object) -> str:
    """A readable flattening of a JSON object, for search and text encoders."""
    if isinstance(obj, dict):
        return "\n".join(f"{k}: {_json_text(v)}" for k, v in obj.items())
    if isinstance(obj, list):
        return ", ".join(_json_text(v) for v in obj)
    return "" if obj is None else str(obj)


class DatasetReader:
    """Walks a dataset and yields ItemRecords for keys not already known."""

    def __init__(
        self,
        *,
        root: Path,
        data_type: str,
        options: dict,
        existing_keys: set[str],
        exclude: set[Path],
        max_image_pixels: int,
        max_text_bytes: int,
    ) -> None:
        self.root = root
        self.data_type = data_type
        self.options = options or {}
        self.existing_keys = existing_keys
        self.exclude = {p.resolve() for p in exclude}
        self.max_image_pixels = max_image_pixels
        self.max_text_bytes = max_text_bytes
        self.report = IngestReport()
        self._seen_keys: set[str] = set()

    def candidate_files(self) -> list[Path]:
        if self.data_type == "images":
            exts = IMAGE_EXTENSIONS
        elif self.data_type == "text":
            exts = TEXT_FILE_EXTENSIONS | TABULAR_EXTENSIONS
        else:
            exts = JSON_EXTENSIONS
        patterns = [str(p) for p in self.options.get("exclude") or []]
        inside = (self.root.parent if self.root.is_file() else self.root).resolve()
        files = []
        for p in iter_files(self.root, exts):
            resolved = p.resolve()
            if resolved in self.exclude or any(fnmatch.fnmatch(_relative(self.root, p), pat) for pat in patterns):
                continue
            # A symlink may lead anywhere on the server; only what stays inside the dataset folder is data.
            if not resolved.is_relative_to(inside):
                self.report.warn(f"{_relative(self.root, p)}: links outside the dataset folder; not imported")
                continue
            files.append(p)
        return files

    def records(self, files: list[Path]) -> Iterator[ItemRecord]:
        for path in files:
            self.report.files_seen += 1
            suffix = path.suffix.lower()
            if self.data_type == "images":
                yield from self._image(path)
            elif suffix == ".txt":
                yield from self._text_file(path)
            elif suffix in {".csv", ".tsv"}:
                yield from self._tabular_csv(path)
            elif suffix == ".jsonl":
                yield from self._jsonl(path)
            elif suffix == ".json":
                yield from self._json_file(path)

    # -- helpers ---------------------------------------------------------------------------------
    def _new_key(self, key: str, source: str) -> bool:
        """True if this key should be emitted; counts existing ones, warns on duplicates in the data."""
        if key in self.existing_keys:
            self.report.skipped_existing += 1
            return False
        if key in self._seen_keys:
            self.report.warn(f"{source}: duplicate id {key!r}; kept the first occurrence")
            return False
        self._seen_keys.add(key)
        return True

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError as exc:
            self.report.warn(f"{_relative(self.root, path)}: cannot read file: {exc.strerror or exc}")
            return None

    # -- readers ---------------------------------------------------------------------------------
    def _image(self, path: Path) -> Iterator[ItemRecord]:
        key = _relative(self.root, path)
        if not self._new_key(key, key):
            return
        raw = self._read(path)
        if raw is None:
            yield ItemRecord(key=key, kind="file", source=key, content_hash="", rejection_reason="cannot read file")
            return
        meta, reason = verify_image(raw, max_pixels=self.max_image_pixels)
        meta["bytes"] = len(raw)
        yield ItemRecord(
            key=key, kind="file", source=key, content_hash=sha256_bytes(raw), rejection_reason=reason, meta=meta
        )

    def _text_file(self, path: Path) -> Iterator[ItemRecord]:
        key = _relative(self.root, path)
        if not self._new_key(key, key):
            return
        raw = self._read(path)
        if raw is None:
            return
        if len(raw) > self.max_text_bytes:
            self.report.warn(f"{key}: {len(raw):,} bytes exceeds the {self.max_text_bytes:,}-byte text limit; skipped")
            return
        text, encoding = decode_text(raw)
        if not text.strip():
            self.report.warn(f"{key}: empty text; skipped")
            return
        yield ItemRecord(
            key=key, kind="text", source=key, content_hash=sha256_bytes(raw), text=text, meta={"encoding": encoding}
        )

    def _pick_column(self, columns: list[str], option: str, guesses: tuple[str, ...]) -> str | None:
        configured = self.options.get(option)
        if configured:
            return configured if configured in columns else None
        lowered = {c.lower().strip(): c for c in columns if c}
        for guess in guesses:
            if guess in lowered:
                return lowered[guess]
        return None

    def _rows_to_records(
        self, source: str, rows: Iterator[tuple[int, dict]], columns: list[str]
    ) -> Iterator[ItemRecord]:
        text_col = self._pick_column(columns, "text_column", TEXT_COLUMN_GUESSES)
        if text_col is None:
            wanted = self.options.get("text_column") or " / ".join(TEXT_COLUMN_GUESSES[:4])
            self.report.warn(f"{source}: no text column ({wanted}) among {columns}; file skipped")
            return
        id_col = self._pick_column(columns, "id_column", ID_COLUMN_GUESSES)
        for line_no, row in rows:
            value = row.get(text_col)
            text = _clean("" if value is None else str(value))
            raw_id = row.get(id_col) if id_col else None
            key = str(raw_id).strip() if raw_id not in (None, "") else f"{source}:{line_no}"
            if not text.strip():
                self.report.warn(f"{source}:{line_no}: empty text; skipped")
                continue
            if len(text.encode("utf-8")) > self.max_text_bytes:
                self.report.warn(f"{source}:{line_no}: the text exceeds the {self.max_text_bytes:,}-byte text limit; "
                                 "skipped")
                continue
            if not self._new_key(key, source):
                continue
            yield ItemRecord(
                key=key,
                kind="text",
                source=source,
                content_hash=sha256_bytes(text.encode("utf-8")),
                text=text,
                meta={"line": line_no},
            )

    def _tabular_csv(self, path: Path) -> Iterator[ItemRecord]:
        source = _relative(self.root, path)
        raw = self._read(path)
        if raw is None:
            return
        content, encoding = decode_text(raw)
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
        try:
            columns = list(reader.fieldnames or [])
        except csv.Error as exc:
            self.report.warn(f"{source}: unreadable CSV header: {exc}; file skipped")
            return

        def rows() -> Iterator[tuple[int, dict]]:
            try:
                for row in reader:
                    yield reader.line_num, row
            except csv.Error as exc:
                self.report.warn(f"{source}:{reader.line_num}: CSV error: {exc}; rest of file skipped")

        yield from self._rows_to_records(source, rows(), columns)

    def _jsonl(self, path: Path) -> Iterator[ItemRecord]:
        source = _relative(self.root, path)
        raw = self._read(path)
        if raw is None:
            return
        content, _ = decode_text(raw)
        parsed: list[tuple[int, dict]] = []
        for line_no, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                self.report.warn(f"{source}:{line_no}: invalid JSON ({exc.msg}); line skipped")
                continue
            if not isinstance(obj, dict):
                self.report.warn(f"{source}:{line_no}: not a JSON object; line skipped")
                continue
            parsed.append((line_no, obj))
        if self.data_type == "text":
            columns = sorted({k for _, obj in parsed for k in obj})
            yield from self._rows_to_records(source, iter(parsed), columns)
            return
        for line_no, obj in parsed:
            raw_id = obj.get(self.options.get("id_column") or "id")
            key = str(raw_id) if raw_id not in (None, "") else f"{source}:{line_no}"
            yield from self._json_record(key, source, obj, {"line": line_no})

    def _json_file(self, path: Path) -> Iterator[ItemRecord]:
        source = _relative(self.root, path)
        raw = self._read(path)
        if raw is None:
            return
        content, _ = decode_text(raw)
        try:
            obj = json.loads(content)
        except json.JSONDecodeError as exc:
            self.report.warn(f"{source}: invalid JSON ({exc.msg} at line {exc.lineno}); file skipped")
            return
        if isinstance(obj, dict):
            yield from self._json_record(source, source, obj, {})
        elif isinstance(obj, list):
            for index, entry in enumerate(obj):
                if not isinstance(entry, dict):
                    self.report.warn(f"{source}[{index}]: not a JSON object; skipped")
                    continue
                raw_id = entry.get(self.options.get("id_column") or "id")
                key = str(raw_id) if raw_id not in (None, "") else f"{source}#{index}"
                yield from self._json_record(key, source, entry, {"index": index})
        else:
            self.report.warn(f"{source}: top-level JSON must be an object or a list of objects; file skipped")

    def _json_record(self, key: str, source: str, obj: dict, meta: dict) -> Iterator[ItemRecord]:
        if not self._new_key(key, source):
            return
        canonical = json.dumps(obj, sort_keys=True, ensure_ascii=False)
        yield ItemRecord(
            key=key,
            kind="json",
            source=source,
            content_hash=sha256_bytes(canonical.encode("utf-8")),
            text=_clean(_json_text(obj)),
            data=obj,
            meta=meta,
        )
