"""The embedding cache: every item embedded once per encoder version, kept as one matrix on disk.

Layout under the project's model directory::

    embeddings/<encoder>@<version>/matrix.json          names the three files of the current matrix
    embeddings/<encoder>@<version>/matrix-*.npy         its ids (int64), vectors (float16), failed ids
    embeddings/<encoder>@<version>/chunk-*.npz          chunks written since the last consolidation

Each file is written to a temporary name and renamed into place, so a worker killed at any moment
leaves either the old file or the new one, never half of one; the next run embeds only what no file
holds yet. Vectors are stored and loaded as float16 (half the disk and memory; float16 rounding
changes nothing that matters for a linear head) and converted to float32 a batch at a time.

This module imports numpy only; the encoders (torch) are loaded by the functions that embed.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightbulb_site.atomic import atomic_write
from projects.encoders import EncoderSpec, spec_for
from projects.models import Item, ItemKind, ItemStatus, Project

logger = logging.getLogger(__name__)

MATRIX = "matrix.json"  # names the consolidated files below; replaced atomically to switch to new ones


def store_path(project: Project, spec: EncoderSpec) -> Path:
    return project.model_path / "embeddings" / f"{spec.name}@{spec.version}"


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    # allow_pickle=True is savez's default, named so the stubs do not match a key of `arrays` to it.
    atomic_write(path, lambda fh: np.savez(fh, allow_pickle=True, **arrays))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


@dataclass
class Embeddings:
    ids: np.ndarray  # int64, sorted ascending
    vectors: np.ndarray  # float16 as stored (possibly memory-mapped); `take` hands out float32
    failed: np.ndarray  # int64 ids that could not be embedded

    def rows_for(self, item_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found mask) of `item_ids` in this matrix."""
        wanted = np.asarray(list(item_ids), dtype=np.int64)
        if len(self.ids) == 0:
            return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
        pos = np.searchsorted(self.ids, wanted)
        pos = np.clip(pos, 0, len(self.ids) - 1)
        found = self.ids[pos] == wanted
        return pos, found

    def take(self, item_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """float32 vectors of the given ids that are present, and those ids (in the order given)."""
        wanted = np.asarray(list(item_ids), dtype=np.int64)
        pos, found = self.rows_for(wanted)
        return np.asarray(self.vectors[pos[found]], dtype=np.float32), wanted[found]


class EmbeddingStore:
    """The consolidated matrix is three .npy files named by `matrix.json` (vectors are loaded
    memory-mapped, so even 100k x 1280 opens at once); chunks written since are .npz files."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim

    def _chunks(self) -> list[Path]:
        return sorted(self.path.glob("chunk-*.npz")) if self.path.exists() else []

    def _read_chunk(self, file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        try:
            with np.load(file) as data:
                return data["ids"].astype(np.int64), data["vectors"].astype(np.float16), data["failed"].astype(np.int64)
        except (OSError, ValueError, KeyError) as exc:
            # Only a file renamed into place is ever read, so this is damage from outside (disk, a
            # person); the items in it are simply embedded again.
            logger.warning("ignoring unreadable embedding file %s: %s", file, exc)
            return None

    def _read_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        manifest = self.path / MATRIX
        if not manifest.exists():
            return None
        try:
            names = json.loads(manifest.read_text(encoding="utf-8"))
            ids = np.load(self.path / names["ids"], allow_pickle=False)
            vectors = np.load(self.path / names["vectors"], mmap_mode="r", allow_pickle=False)
            failed = np.load(self.path / names["failed"], allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable embedding matrix in %s: %s", self.path, exc)
            return None
        if vectors.shape != (len(ids), self.dim):
            logger.warning("ignoring embedding matrix in %s: shape %s for %d ids", self.path, vectors.shape, len(ids))
            return None
        return ids.astype(np.int64), vectors, failed.astype(np.int64)

    def load(self) -> Embeddings:
        parts = [p for p in [self._read_matrix(), *(self._read_chunk(c) for c in self._chunks())] if p is not None]
        if not parts:
            return Embeddings(np.zeros(0, np.int64), np.zeros((0, self.dim), np.float16), np.zeros(0, np.int64))
        if len(parts) == 1:
            ids, vectors, failed = parts[0]  # the usual case: the matrix alone, memory-mapped as it is
            return Embeddings(ids, vectors, np.setdiff1d(failed, ids))
        all_ids = np.concatenate([p[0] for p in parts])
        all_vectors = np.concatenate([p[1] for p in parts])
        # A chunk may repeat an id (two workers racing on the same item); either copy will do.
        order = np.argsort(all_ids, kind="stable")
        all_ids, all_vectors = all_ids[order], all_vectors[order]
        keep = np.ones(len(all_ids), dtype=bool)
        keep[:-1] = all_ids[1:] != all_ids[:-1]
        all_failed = np.setdiff1d(np.unique(np.concatenate([p[2] for p in parts])), all_ids[keep])
        return Embeddings(all_ids[keep], all_vectors[keep], all_failed)

    def append(self, ids: np.ndarray, vectors: np.ndarray, failed: Iterable[int] = ()) -> Path:
        name = f"chunk-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        target = self.path / name
        atomic_save_npz(
            target,
            ids=np.asarray(ids, dtype=np.int64),
            vectors=np.asarray(vectors, dtype=np.float16).reshape(-1, self.dim),
            failed=np.asarray(list(failed), dtype=np.int64),
        )
        return target

    def consolidate(self) -> Embeddings:
        """Fold the chunks into a new matrix (new files, then the manifest switched atomically), then
        remove the folded chunks and the files of the previous matrix."""
        chunks = self._chunks()
        if not chunks and (self.path / MATRIX).exists():
            return self.load()
        embeddings = self.load()
        tag = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        names = {"ids": f"matrix-{tag}.ids.npy", "vectors": f"matrix-{tag}.vectors.npy",
                 "failed": f"matrix-{tag}.failed.npy"}
        atomic_save_npy(self.path / names["ids"], np.asarray(embeddings.ids, dtype=np.int64))
        atomic_save_npy(self.path / names["vectors"], np.asarray(embeddings.vectors, dtype=np.float16))
        atomic_save_npy(self.path / names["failed"], np.asarray(embeddings.failed, dtype=np.int64))
        atomic_write(self.path / MATRIX, lambda fh: fh.write(json.dumps(names)), text=True)
        for chunk in chunks:
            chunk.unlink(missing_ok=True)
        current = set(names.values())
        for old in self.path.glob("matrix-*.npy"):
            if old.name not in current:
                old.unlink(missing_ok=True)
        # Temporary files of writers killed mid-write; an hour is far beyond any live write.
        for tmp in self.path.glob(".*.tmp"):
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink(missing_ok=True)
        return self.load()

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file()) if self.path.exists() else 0


@dataclass(frozen=True)
class ProjectEncoder:
    """The encoder a project's model reads: a catalogued one, or its fine-tuned copy (the same name, its own
    version, so its vectors get their own cache) with the folder of its weights."""

    spec: EncoderSpec
    finetuned: Path | None = None

    def load(self, **kwargs):
        from .encoders import load_encoder

        return load_encoder(self.spec.name, finetuned=str(self.finetuned) if self.finetuned else None, **kwargs)


def project_encoder(project: Project) -> ProjectEncoder:
    from dataclasses import replace

    from modeling.models import ModelState

    base = spec_for(project.encoder_name, data_type=project.data_type)
    adopted = (ModelState.objects.filter(project_id=project.pk, finetune__isnull=False)
               .values_list("finetune__encoder", "finetune__base_version", "finetune__encoder_version",
                            "finetune__folder").first())
    if adopted is None or (adopted[0], adopted[1]) != (base.name, base.version):
        # None adopted, the owner switched encoders since, or the catalogue now has another version of it (its
        # fine-tuned copy started from weights this code no longer has): the pretrained encoder, retrained on.
        return ProjectEncoder(base)
    spec = replace(base, version=adopted[2], description=f"{base.description}; fine-tuned on this project's labels")
    return ProjectEncoder(spec, finetuned=project.model_path / adopted[3])


def store_for(project: Project) -> tuple[EncoderSpec, EmbeddingStore]:
    spec = project_encoder(project).spec
    return spec, EmbeddingStore(store_path(project, spec), spec.dim)


def embeddable_items(project: Project):
    """Every item a model could learn from or score: rejected files are left out."""
    return Item.objects.filter(project=project).exclude(status=ItemStatus.REJECTED)


def text_of(item: Item) -> str:
    """What the text encoder reads for an item: its text, or a json item's fields as `key: value` lines."""
    if item.kind == ItemKind.JSON:
        return json_text(item.data)
    return item.text


def json_text(data: object) -> str:
    """A json record as the text encoder reads it (items and /score inputs alike): `key: value` lines."""
    if isinstance(data, dict):
        return "\n".join(
            f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in data.items()
        )
    return json.dumps(data, ensure_ascii=False)


class UnreadableItem(Exception):
    pass


def raw_input(project: Project, item: Item) -> bytes | str:
    if item.kind == ItemKind.FILE:
        path = project.item_file_path(item)
        if path is None:  # only items that are not files have no path; a FILE item always has one
            raise UnreadableItem(f"{item.key}: no file for this item")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise UnreadableItem(f"{item.key}: {exc.strerror or exc}") from None
    return text_of(item)


def embed_items(
    project: Project,
    items: list[Item],
    *,
    store: EmbeddingStore,
    encoder,
    batch_size: int | None = None,  # None: the encoder's own best size
) -> tuple[int, int]:
    """Embed `items` and append them to the store as one chunk; (embedded, failed)."""
    ids, inputs, failed = [], [], []
    for item in items:
        try:
            inputs.append(raw_input(project, item))
            ids.append(item.pk)
        except UnreadableItem as exc:
            logger.warning("cannot embed %s", exc)
            failed.append(item.pk)
    vectors = np.zeros((0, store.dim), np.float32)
    if inputs:
        try:
            vectors = encoder.embed(inputs, batch_size=batch_size)
        except Exception:  # noqa: BLE001 - one bad file must not stop the rest; find it item by item
            vectors, ids, failed = _embed_one_by_one(encoder, ids, inputs, failed, store.dim)
    store.append(np.asarray(ids, np.int64), vectors, failed)
    return len(ids), len(failed)


def _embed_one_by_one(encoder, ids, inputs, failed, dim):
    good_ids, rows = [], []
    for item_id, raw in zip(ids, inputs, strict=True):
        try:
            rows.append(encoder.embed([raw], batch_size=1)[0])
            good_ids.append(item_id)
        except Exception as exc:  # noqa: BLE001 - recorded as failed with the reason logged
            logger.warning("cannot embed item %s: %s", item_id, exc)
            failed.append(item_id)
    return (np.stack(rows) if rows else np.zeros((0, dim), np.float32)), good_ids, failed


def embeddable_ids(project: Project, *, only: Iterable[int] | None = None) -> np.ndarray:
    """Sorted ids of the embeddable items (of `only`, when given)."""
    qs = embeddable_items(project)
    if only is not None:
        qs = qs.filter(pk__in=list(only))
    return np.fromiter(qs.values_list("id", flat=True).order_by("id"), dtype=np.int64)


def pending_item_ids(embeddings: Embeddings, candidate_ids: np.ndarray) -> list[int]:
    """Those of `candidate_ids` the store does not hold yet (and that have not failed)."""
    done = np.union1d(embeddings.ids, embeddings.failed)
    return np.setdiff1d(candidate_ids, done).tolist()


# Adaptive chunks (embed_pending): the first of a run, and the smallest.
FIRST_CHUNK = 32
MIN_CHUNK = 16
_RATES: dict[str, float] = {}


def embed_pending(
    project: Project,
    *,
    store: EmbeddingStore,
    encoder_loader: Callable[[], object],
    item_ids: list[int],
    chunk_size: int = 256,
    batch_size: int | None = None,  # None: the encoder's own best size
    deadline: float | None = None,
    chunk_seconds: float | None = None,
    should_yield: Callable[[], bool] | None = None,
    on_chunk: Callable[[int, int, float], None] | None = None,
    rate_key: str | None = None,
) -> tuple[int, int]:
    """Embed `item_ids` in chunks, one file per chunk, stopping early at `deadline` (time.monotonic) or when
    `should_yield()` says so (another task waits, a stop was asked); at least one chunk is always done.

    With `chunk_seconds`, chunks are sized from the speed measured so far to take about that long (the first
    is small), so the deadline holds inside what would have been one big chunk on a slow or busy machine: a
    chunk that would end past the deadline waits for the next run."""
    embedded = failed = 0
    encoder = None
    # Items per second, measured: by an earlier run of this process for the same encoder (`rate_key`), so that
    # a run after a yield starts at full size, or by this run's first (small) chunk.
    rate: float | None = _RATES.get(rate_key) if rate_key else None
    size = chunk_size
    if chunk_seconds:
        size = min(chunk_size, max(MIN_CHUNK, int(rate * chunk_seconds))) if rate else min(chunk_size, FIRST_CHUNK)
    start = 0
    while start < len(item_ids):
        if start > 0:
            if should_yield is not None and should_yield():
                break
            if deadline is not None:
                expected = size / rate if rate else 0.0
                if time.monotonic() + expected > deadline:
                    break
        chunk_ids = item_ids[start : start + size]
        start += len(chunk_ids)
        items = list(Item.objects.filter(pk__in=chunk_ids).exclude(status=ItemStatus.REJECTED).order_by("id"))
        if not items:
            continue
        encoder = encoder or encoder_loader()
        t0 = time.perf_counter()
        e, f = embed_items(project, items, store=store, encoder=encoder, batch_size=batch_size)
        seconds = time.perf_counter() - t0
        embedded, failed = embedded + e, failed + f
        if on_chunk is not None:
            on_chunk(e, f, seconds)
        if chunk_seconds and seconds > 0:
            # The first chunk of a process includes loading the encoder; later ones measure the encoder alone.
            rate = len(items) / seconds
            if rate_key:
                _RATES[rate_key] = rate
            size = min(chunk_size, max(MIN_CHUNK, int(rate * chunk_seconds)))
    return embedded, failed
