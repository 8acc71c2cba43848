"""Exports from the page and the API: the CLI's formats (Light Bulb CSV, provenance JSONL), streamed,
filtered by source and stage (`judgement_lines`).

Who may export: reviewers and owners. An export carries every label, other people's TEST labels too,
which the blind TEST stage hides from annotators and viewers (labeling.blind); they read their own
labels through the judgements API instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.http import StreamingHttpResponse
from django.utils import timezone

from labeling.models import JudgementSource, Stage
from projects.models import Project

from .judgements_file import EXPORT_FORMATS, NO_HISTORY_FORMATS, InterchangeError, export_chunks

CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8",
                 "conll": "text/plain; charset=utf-8", "coco": "application/json", "voc": "application/zip",
                 "yolo": "application/zip"}
SUFFIXES = {"coco": "coco.json", "voc": "voc.zip", "yolo": "yolo.zip"}


@dataclass(frozen=True)
class ExportRequest:
    fmt: str = "csv"
    history: bool = False
    sources: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()


def parse_export(
    *, fmt: str | None, history: str | None, sources: Iterable[str], stages: Iterable[str],
    formats: tuple[str, ...] = EXPORT_FORMATS,
) -> ExportRequest:
    """What an export was asked for, from a query string: InterchangeError (400) naming what is wrong.
    `formats`: the project's (`export_formats`), the first the default."""
    fmt = (fmt or formats[0]).strip().lower()
    if fmt not in formats:
        raise InterchangeError(f"unknown export format {fmt!r} for this project: {' or '.join(formats)}")
    wants_history = (history or "").lower() in {"1", "true", "yes", "on"}
    if wants_history and fmt in NO_HISTORY_FORMATS:
        raise InterchangeError(f"{fmt.upper()} holds one file per image, so it cannot hold an image's history: "
                               "export the history as COCO or CSV")
    picked_sources = tuple(s for s in (v.strip() for v in sources) if s)
    unknown = [s for s in picked_sources if s not in JudgementSource.values]
    if unknown:
        raise InterchangeError(f"unknown source {unknown[0]!r}: one of {', '.join(JudgementSource.values)}")
    picked_stages = tuple(s for s in (v.strip().upper() for v in stages) if s)
    unknown = [s for s in picked_stages if s not in Stage.values]
    if unknown:
        raise InterchangeError(f"unknown stage {unknown[0]!r}: one of {', '.join(Stage.values)}")
    return ExportRequest(fmt=fmt, history=wants_history,
                         sources=picked_sources, stages=picked_stages)


def export_response(project: Project, request: ExportRequest) -> StreamingHttpResponse:
    """The export as a download, streamed line by line from the database."""
    chunks: Iterator[bytes] = export_chunks(project, fmt=request.fmt, history=request.history,
                                            sources=request.sources, stages=request.stages)
    response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[request.fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    suffix = "-history" if request.history else ""
    name = f"{project.slug}-labels{suffix}-{stamp}.{SUFFIXES.get(request.fmt, request.fmt)}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response
