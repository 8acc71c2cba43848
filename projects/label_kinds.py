"""The one seam between a project's label type and everything that does not care what a label is.

Leases, stages, history, undo, skip, audits and membership work on `Judgement` rows whatever they hold;
what differs per label type lives here (docs/design/label-types.md): the judgement's value, its check,
the summary lists and the admin show, and which labelling screen it uses. Plain data,
no ML: the web process imports it. The model side (head, uncertainty, proposals) hangs off the same `LabelKind.name` in
`modeling`, and the formats in `interchange`.

Classification (and binary) keep `Judgement.label` as the class and no value. A structured kind keeps
its answer in `Judgement.value` and a short summary in `label` ("2 spans", "none").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from .models import Item, Project

# A tweet has a handful of entities and a long document a few hundred; more than this in one answer
# is a client gone wrong, not a person's work.
MAX_SPANS = 1000
# Dense scenes (a tree canopy, a crowd) hold a few hundred objects; more is a client gone wrong.
MAX_BOXES = 1000
# A box under a pixel is a click that slipped, not an object.
MIN_BOX_PIXELS = 1.0
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


class InvalidAnswer(ValueError):
    """A judgement value that does not fit the project; the message names the problem (a 400)."""


@dataclass(frozen=True)
class LabelKind:
    """Classification (and binary): the answer is one class, in Judgement.label; no value."""

    name: str
    # Whether the answer is a structure in Judgement.value (spans, boxes) rather than one class.
    structured: bool
    # The labelling screen: templates/labeling/screens/<screen>.html, plus static/js/<screen>.js for a
    # structured kind (label.js runs the queue, undo and skip around it).
    screen: str = "classes"
    # Keys the screen keeps for itself: no type and no command takes them (`x` removes a span).
    reserved_keys: frozenset[str] = frozenset()
    # Whether items are offered only once the model loop has tokenized them (spans snap to tokens).
    tokenized: bool = False
    # The model the loop trains: "classifier" (a head on cached encoder vectors), "ner" (spaCy) or
    # "detector" (torchvision Faster R-CNN).
    head: str = "classifier"
    # What the answer looks like, for the error that asks for one.
    value_shape: str = ""

    @property
    def trains_deep(self) -> bool:
        """A head that trains for minutes (spaCy's NER, a detector): the deep worker's queue, never ahead of the
        quick classification fits of other projects."""
        return self.head not in ("classifier", "")

    def validate(self, project: Project, item: Item, value: Any) -> dict | None:
        """The value normalised (sorted, canonical keys), or InvalidAnswer naming what is wrong."""
        return None

    def summary(self, value: Mapping | None) -> str:
        return ""

    def part_labels(self, value: Mapping | None) -> list[str]:
        """The type of each part of a structured answer (a span's, a box's), for per-type counts."""
        return []


@dataclass(frozen=True)
class SequenceKind(LabelKind):
    """Spans of a text: `{"spans": [{"start", "end", "label"}]}`, character offsets, `end` exclusive.

    Spans lie on the item's token boundaries (`Item.tokens`, the project model's own tokenizer, written
    by the model loop before the item is offered), do not overlap, and carry one of the project's entity
    types. An empty list is an answer: "this text has no entities".
    """

    def validate(self, project: Project, item: Item, value: Any) -> dict:
        raw = value.get("spans") if isinstance(value, Mapping) else value
        if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
            raise InvalidAnswer('spans must be a list of {"start", "end", "label"} objects')
        if len(raw) > MAX_SPANS:
            raise InvalidAnswer(f"at most {MAX_SPANS} spans in one text, not {len(raw)}")
        text = item_text(item)
        types = list(project.classes)
        starts, ends = token_boundaries(item)
        spans: list[dict[str, Any]] = []
        for n, span in enumerate(raw, start=1):
            if not isinstance(span, Mapping):
                raise InvalidAnswer(f'span {n} must be an object with "start", "end" and "label"')
            start, end, label = span.get("start"), span.get("end"), span.get("label")
            if not _is_int(start) or not _is_int(end):
                raise InvalidAnswer(f"span {n}: start and end must be whole character offsets")
            if not 0 <= start < end <= len(text):
                raise InvalidAnswer(
                    f"span {n}: offsets {start}–{end} are outside the text (0–{len(text)}) or empty"
                )
            if not isinstance(label, str) or label not in types:
                raise InvalidAnswer(
                    f"span {n}: {str(label)[:60]!r} is not an entity type of this project "
                    f"(types: {', '.join(types)})"
                )
            if starts is not None and ends is not None and (start not in starts or end not in ends):
                raise InvalidAnswer(
                    f"span {n} ({text[start:end][:40]!r}) does not start and end on token boundaries"
                )
            spans.append({"start": start, "end": end, "label": label})
        spans.sort(key=lambda s: (s["start"], s["end"]))
        for before, after in zip(spans, spans[1:], strict=False):
            if after["start"] < before["end"]:
                raise InvalidAnswer(
                    f"spans overlap: {text[before['start']:before['end']][:40]!r} and "
                    f"{text[after['start']:after['end']][:40]!r}"
                )
        return {"spans": spans}

    def summary(self, value: Mapping | None) -> str:
        n = len((value or {}).get("spans") or [])
        return "none" if n == 0 else f"{n} span{'s' if n != 1 else ''}"

    def part_labels(self, value: Mapping | None) -> list[str]:
        return [str(s.get("label", "")) for s in (value or {}).get("spans") or [] if isinstance(s, Mapping)]


@dataclass(frozen=True)
class DetectionKind(LabelKind):
    """Boxes on an image: `{"boxes": [{"xmin", "ymin", "xmax", "ymax", "label"}]}`, in pixels of the original
    image (x to the right, y down, from its top-left corner; `xmax`/`ymax` are where the box ends).

    A box lies inside the image (`Item.meta` width and height, read at ingest), is at least a pixel wide and
    high, and carries one of the project's classes. Boxes may overlap (crowns, crowds). An empty list is an
    answer: "no objects here". Coordinates are kept to 1/100 pixel, whole numbers as integers.
    """

    def validate(self, project: Project, item: Item, value: Any) -> dict:
        raw = value.get("boxes") if isinstance(value, Mapping) else value
        if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
            raise InvalidAnswer('boxes must be a list of {"xmin", "ymin", "xmax", "ymax", "label"} objects')
        if len(raw) > MAX_BOXES:
            raise InvalidAnswer(f"at most {MAX_BOXES} boxes in one image, not {len(raw)}")
        classes = list(project.classes)
        width, height = image_size(item)
        boxes: list[dict[str, Any]] = []
        for n, box in enumerate(raw, start=1):
            if not isinstance(box, Mapping):
                raise InvalidAnswer(f'box {n} must be an object with "xmin", "ymin", "xmax", "ymax" and "label"')
            coords = [box.get(k) for k in BOX_KEYS]
            if not all(_is_number(c) for c in coords):
                raise InvalidAnswer(f"box {n}: xmin, ymin, xmax and ymax must be numbers (pixels)")
            xmin, ymin, xmax, ymax = (pixel(float(c)) for c in coords)  # type: ignore[arg-type]
            label = box.get("label")
            if not isinstance(label, str) or label not in classes:
                raise InvalidAnswer(
                    f"box {n}: {str(label)[:60]!r} is not a class of this project (classes: {', '.join(classes)})"
                )
            if xmax - xmin < MIN_BOX_PIXELS or ymax - ymin < MIN_BOX_PIXELS:
                raise InvalidAnswer(
                    f"box {n}: {xmin},{ymin} to {xmax},{ymax} is not a box: it must be at least "
                    f"{MIN_BOX_PIXELS:g} pixel wide and high (xmax > xmin, ymax > ymin)"
                )
            if xmin < 0 or ymin < 0 or (width is not None and xmax > width) or (height is not None and ymax > height):
                size = f"{width}×{height}" if width is not None and height is not None else "its size unknown"
                raise InvalidAnswer(f"box {n}: {xmin},{ymin} to {xmax},{ymax} is outside the image ({size} pixels)")
            boxes.append({"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax, "label": label})
        boxes.sort(key=lambda b: (b["xmin"], b["ymin"], b["xmax"], b["ymax"], b["label"]))
        return {"boxes": boxes}

    def summary(self, value: Mapping | None) -> str:
        n = len((value or {}).get("boxes") or [])
        return "none" if n == 0 else f"{n} box{'es' if n != 1 else ''}"

    def part_labels(self, value: Mapping | None) -> list[str]:
        return [str(b.get("label", "")) for b in (value or {}).get("boxes") or [] if isinstance(b, Mapping)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pixel(value: float) -> int | float:
    """A coordinate as stored: to 1/100 pixel, and an int when it is whole (so 12 and 12.0 are one value)."""
    rounded = round(float(value), 2)
    return int(rounded) if rounded.is_integer() else rounded


def image_size(item: Item) -> tuple[int | None, int | None]:
    """The image's width and height in pixels, as ingest read them (None when unknown)."""
    meta = item.meta if isinstance(item.meta, Mapping) else {}
    width, height = meta.get("width"), meta.get("height")
    return (width if _is_int(width) else None, height if _is_int(height) else None)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def item_text(item: Item) -> str:
    """The text a sequence project tags: a text item's text, or a JSON item's "text" field."""
    if item.text:
        return item.text
    data = item.data
    if isinstance(data, Mapping) and isinstance(data.get("text"), str):
        return data["text"]
    return ""


def token_boundaries(item: Item) -> tuple[set[int], set[int]] | tuple[None, None]:
    """The character offsets tokens start and end at; (None, None) when the item has no tokens yet."""
    tokens = item.tokens
    if not tokens:
        return None, None
    return {int(t[0]) for t in tokens}, {int(t[1]) for t in tokens}


CLASSIFICATION = LabelKind(name="classification", structured=False)
SEQUENCE = SequenceKind(
    name="sequence", structured=True, screen="spans", reserved_keys=frozenset({"x"}), tokenized=True, head="ner",
    value_shape='{"spans": [{"start", "end", "label"}]}',
)
# `x` removes a box; `a` accepts the model's box under the cursor; `f` fits the image to the screen.
DETECTION = DetectionKind(
    name="object_detection", structured=True, screen="boxes", reserved_keys=frozenset({"x", "a", "f"}),
    head="detector",
    value_shape='{"boxes": [{"xmin", "ymin", "xmax", "ymax", "label"}]}',
)

# Keyed by projects.models.LabelType's values (spelled out: models imports this module, not the reverse).
KINDS: dict[str, LabelKind] = {
    "classification": CLASSIFICATION,
    "binary": CLASSIFICATION,
    "sequence": SEQUENCE,
    "object_detection": DETECTION,
}


def kind_for(project: Project) -> LabelKind:
    return KINDS.get(project.label_type, CLASSIFICATION)
