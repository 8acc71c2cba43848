"""The Light Bulb judgements file (CSV: path,label,labelled_by,stage,time_taken) and provenance JSONL.

Rows import as judgements (`do_import_judgement_rows`); `write_judgements` exports them; the file a
config names is kept in sync with the database, which is the source of truth.

Exports add a `source` column (Light Bulb ignores columns it does not know): `auto` marks an auto-label,
which nobody saw (stage AUTO). The synced judgements file holds people's labels only, and an import
never takes an auto-label as a judgement: it would then train the model that made it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from django.contrib.auth.models import User
from django.utils import timezone

from labeling.models import Judgement, JudgementSource
from lightbulb_site.atomic import atomic_write
from projects.ingest import decode_text
from projects.label_kinds import kind_for
from projects.models import ItemStatus, Project

from .box_formats import BOX_EXPORT_FORMATS, box_csv_lines, box_export_chunks, coco_lines
from .common import InterchangeError, stage_and_source, store_imported
from .span_formats import (
    SEQUENCE_EXPORT_FORMATS,
    SEQUENCE_FILE_FORMATS,
    conll_lines,
    span_csv_lines,
    span_jsonl_lines,
)

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

EXPORT_CSV_COLUMNS = ["path", "label", "labelled_by", "stage", "time_taken", "source"]
EXPORT_FORMATS = ("csv", "jsonl")


def read_judgement_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text, _ = decode_text(path.read_bytes())
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "path" not in fields or "label" not in fields:
        raise InterchangeError(f"judgements file {path} needs 'path' and 'label' columns, found {fields}")
    return [{(k or "").strip(): (v or "") for k, v in row.items()} | {"_line": reader.line_num} for row in reader]


def _key_for_path(raw: str, *, keys: set[str], dataset_root: Path, config_dir: Path) -> str | None:
    raw = raw.strip()
    if raw in keys:
        return raw
    p = Path(raw)
    candidates = [p] if p.is_absolute() else [config_dir / p, Path.cwd() / p, dataset_root / p]
    for candidate in candidates:
        try:
            rel = Path(os.path.normpath(candidate)).relative_to(dataset_root).as_posix()
        except ValueError:
            continue
        if rel in keys:
            return rel
    return None


def do_import_judgement_rows(project: Project, *, rows: list[dict], config_dir: Path) -> tuple[int, list[str]]:
    """Import Light Bulb CSV rows as judgements. Returns (imported, problems).

    Only items with no judgement in the database yet take a row: the database is the source of
    truth, so a stale file can never overwrite newer labels, and re-running imports nothing twice.
    Rows for one path import in file order, the last one becoming the current judgement.
    """
    dataset_root = Path(os.path.normpath(project.dataset_root))
    items = {key: pk for key, pk in project.items.exclude(status=ItemStatus.REJECTED).values_list("key", "id")}
    keys = set(items)
    already = set(Judgement.objects.filter(project=project).values_list("item_id", flat=True).distinct())
    by_lower = {c.lower(): c for c in project.classes}
    usernames = {u.username: u for u in User.objects.filter(username__in={r.get("labelled_by", "") for r in rows})}

    problems: list[str] = []
    per_item: dict[int, list[Judgement]] = {}
    for row in rows:
        line = row.get("_line")
        key = _key_for_path(row.get("path", ""), keys=keys, dataset_root=dataset_root, config_dir=config_dir)
        if key is None:
            problems.append(f"line {line}: unknown path {row.get('path')!r}")
            continue
        label = row.get("label", "").strip()
        label = label if label in project.classes else by_lower.get(label.lower(), "")
        if not label:
            problems.append(
                f"line {line}: label {row.get('label')!r} is not a class (allowed: {', '.join(project.classes)})"
            )
            continue
        picked = stage_and_source(row.get("stage") or "", row.get("source") or "")
        if isinstance(picked, str):
            problems.append(f"line {line}: {picked}")
            continue
        stage, source = picked
        item_id = items[key]
        if item_id in already:
            continue
        try:
            time_taken = float(row["time_taken"]) if row.get("time_taken", "").strip() else None
        except ValueError:
            time_taken = None
        who = (row.get("labelled_by") or "").strip()
        per_item.setdefault(item_id, []).append(
            Judgement(
                project=project,
                item_id=item_id,
                label=label,
                user=usernames.get(who),
                labelled_by=who,
                stage=stage,
                source=source,
                time_taken=time_taken,
                is_current=False,
            )
        )
    return store_imported(project, per_item), problems


def current_judgements(
    project: Project, *, history: bool = False, include_auto: bool = True, sources: Sequence[str] = (),
    stages: Sequence[str] = (),
):
    """The judgements an export writes, oldest first: the current ones (with `history`, every one, votes and
    undone rows too), optionally only of some sources and stages."""
    qs = Judgement.objects.filter(project=project).select_related("item", "auto_run")
    if not history:
        qs = qs.filter(is_current=True)
    if not include_auto:
        qs = qs.exclude(source=JudgementSource.AUTO)
    if sources:
        qs = qs.filter(source__in=list(sources))
    if stages:
        qs = qs.filter(stage__in=list(stages))
    return qs.order_by("created_at", "id")


def judgement_lines(
    project: Project, *, fmt: str, history: bool = False, include_auto: bool = True, sources: Sequence[str] = (),
    stages: Sequence[str] = (),
) -> Iterator[str]:
    """An export line by line (CSV with its header, or JSONL), read from the database in chunks, so that a
    100,000-label project streams instead of being built in memory. InterchangeError for an unknown format.

    Auto-labels are marked (source `auto`, stage AUTO, the model version) or, with include_auto=False,
    left out, so that what is written is only what people labelled or looked at."""
    kind = kind_for(project)
    # A sequence project's judgements file may be CSV (with a spans column); downloads offer JSONL and CoNLL.
    # A detection project's text formats are COCO and CSV (VOC and YOLO are zips: `export_chunks`).
    formats = (("coco", "csv") if kind.name == "object_detection"
               else export_formats(project) + (("csv",) if kind.structured else ()))
    if fmt not in formats:
        raise InterchangeError(f"unknown export format {fmt!r} for this project ({' or '.join(formats)})")
    chosen = current_judgements(project, history=history, include_auto=include_auto, sources=sources, stages=stages)
    if kind.name == "object_detection":
        return coco_lines(project, chosen) if fmt == "coco" else box_csv_lines(chosen)
    if kind.structured:
        return {"conll": conll_lines, "csv": span_csv_lines}.get(fmt, span_jsonl_lines)(chosen)
    return _csv_lines(chosen) if fmt == "csv" else _jsonl_lines(project, chosen)


# Formats that hold one file per image: one image twice (its history) would be two files of one name.
NO_HISTORY_FORMATS = ("voc", "yolo")


def export_chunks(
    project: Project, *, fmt: str, history: bool = False, include_auto: bool = True, sources: Sequence[str] = (),
    stages: Sequence[str] = (),
) -> Iterator[bytes]:
    """Any of `export_formats(project)` as bytes, streamed (`judgement_lines` for the text formats; a detection
    project's VOC and YOLO are zip archives). InterchangeError for a format or request the project cannot have."""
    if fmt not in export_formats(project):
        formats = " or ".join(export_formats(project))
        raise InterchangeError(f"unknown export format {fmt!r} for this project ({formats})")
    if history and fmt in NO_HISTORY_FORMATS:
        raise InterchangeError(f"{fmt.upper()} holds one file per image, so it cannot hold an image's history: "
                               "export the history as COCO or CSV")
    if kind_for(project).name == "object_detection":
        chosen = current_judgements(project, history=history, include_auto=include_auto, sources=sources,
                                    stages=stages)
        return box_export_chunks(project, chosen, fmt=fmt)
    lines = judgement_lines(project, fmt=fmt, history=history, include_auto=include_auto, sources=sources,
                            stages=stages)
    return (line.encode("utf-8") for line in lines)


def export_formats(project: Project) -> tuple[str, ...]:
    """What the web process streams: Light Bulb CSV and provenance JSONL, a sequence project's JSONL and CoNLL, or
    a detection project's COCO, VOC, YOLO and CSV. The first is the default."""
    kind = kind_for(project)
    if kind.name == "object_detection":
        return BOX_EXPORT_FORMATS
    return SEQUENCE_EXPORT_FORMATS if kind.structured else EXPORT_FORMATS


def _csv_lines(chosen) -> Iterator[str]:
    line = _Line()
    writer = csv.writer(line, lineterminator="\n")
    writer.writerow(EXPORT_CSV_COLUMNS)
    yield line.take()
    for j in chosen.iterator(chunk_size=2000):
        writer.writerow([j.item.key, j.label, j.labelled_by, j.stage, "" if j.time_taken is None else j.time_taken,
                         j.source])
        yield line.take()


def _jsonl_lines(project: Project, chosen) -> Iterator[str]:
    for j in chosen.iterator(chunk_size=2000):
        yield json.dumps(
            {
                "path": j.item.key,
                "label": j.label,
                "labelled_by": j.labelled_by,
                "user_id": j.user_id,
                "stage": j.stage,
                "source": j.source,
                "seen_by_a_person": j.source != JudgementSource.AUTO,
                "model_version": j.auto_run.version if j.auto_run is not None else None,
                "confidence": j.confidence,
                "time_taken": j.time_taken,
                "created_at": j.created_at.isoformat(),
                "is_current": j.is_current,
                # Provenance a history needs: an overlap vote, an undone label, a reviewer's reason.
                "is_vote": j.is_vote,
                "undone_at": j.undone_at.isoformat() if j.undone_at else None,
                "reason": j.reason,
                "picked_by": j.picked_by,
                "judgement_id": j.pk,
                "item_id": j.item_id,
                "content_hash": j.item.content_hash,
                "project": project.slug,
            },
            ensure_ascii=False,
        ) + "\n"


class _Line:
    """A file-like buffer for csv.writer that hands back what was written since the last take()."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def take(self) -> str:
        text, self.parts = "".join(self.parts), []
        return text


def write_judgements(
    project: Project, *, fmt: str, out: SupportsWrite[str], history: bool = False, include_auto: bool = True
) -> int:
    """Write judgements in one of `export_formats(project)` (`judgement_lines`). Returns the number of rows."""
    rows = 0
    for n, line in enumerate(judgement_lines(project, fmt=fmt, history=history, include_auto=include_auto)):
        out.write(line)
        rows += 0 if fmt == "csv" and n == 0 else 1
    if fmt == "coco":  # lines are JSON pieces, not judgements
        return current_judgements(project, history=history, include_auto=include_auto).count()
    return rows


def atomic_write_text(path: Path, writer) -> int:
    """Write a text file through a temporary sibling and os.replace, so readers never see half a file."""
    return atomic_write(path, writer, text=True)


def sync_judgements_file(project: Project) -> int | None:
    """Rewrite the config's judgements_file from the database (the source of truth)."""
    if not project.judgements_file:
        return None
    path = Path(project.judgements_file)
    # A sequence project's file keeps its own format (its extension: .jsonl, or .conll/.bio/.iob); a detection
    # project's is CSV or COCO (.json).
    kind = kind_for(project)
    if kind.name == "object_detection":
        fmt = "coco" if path.suffix.lower() == ".json" else "csv"
    else:
        fmt = SEQUENCE_FILE_FORMATS.get(path.suffix.lower(), "jsonl") if kind.structured else "csv"
    return atomic_write_text(
        path, lambda fh: write_judgements(project, fmt=fmt, out=fh, include_auto=False),  # see the module docstring
    )


def backup(path: Path) -> Path | None:
    if not path.exists():
        return None
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    backup.write_bytes(path.read_bytes())
    return backup
