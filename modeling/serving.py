"""Scoring new inputs with a project's current model: /score, /predict and the classify page.

Torch-free, like the rest of the web process. Here the inputs are read and checked (URLs fetched
through the SSRF guard, images verified, texts bounded); the inference worker
(`modeling/inference/`) runs the encoder and the head. One bad input gets its own error and the
others are still scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from django.conf import settings

from lightbulb_site.errors import DomainError
from projects.ingest import verify_image
from projects.models import DataType, LabelType, Project

from .fetch import FetchError, fetch_url
from .inference.client import InferenceClient
from .inference.protocol import InferenceFailed, InferenceUnavailable, derive_key, parse_address
from .ml.embeddings import json_text
from .models import ModelVersion
from .services import current_version, fetch_limits, finetuned_folder

TEXT_TYPES = ("text", "json", "sequence")
FETCH_THREADS = 8


class ScoreRequestError(DomainError, ValueError):
    """The request itself is malformed (400): nothing is scored."""


class ScoreRequestTooLarge(ScoreRequestError):
    """More inputs or bytes than the limits allow (413)."""

    status_code = 413


class ScoringUnavailable(DomainError):
    """The inference worker is not running or failed the whole request (503)."""

    status_code = 503


class ScoreError(TypedDict):
    """Why one input was not scored."""

    index: int  # its position in the request
    input: str  # ScoreInput.source
    detail: str


class NothingScored(DomainError):
    """Every input failed its checks (422); `errors` says why for each."""

    status_code = 422

    def __init__(self, message: str, errors: list[ScoreError]) -> None:
        super().__init__(message)
        self.errors = errors

    def payload(self) -> dict:
        return {**super().payload(), "errors": self.errors}


@dataclass
class ScoreInput:
    source: str  # what the caller sent, shortened: a URL, a file name or the start of a text
    payload: bytes | str | None = None
    error: str = ""


class ScoresPayload(TypedDict):
    """/score's answer."""

    labels: list[str]
    scores: list[list[float] | None]  # per input, in class order; None where it failed
    model_version: int
    errors: list[ScoreError]
    # Sequence tagging: per input its spans ({"start", "end", "label", "text"}); None where it failed.
    spans: NotRequired[list[list[dict] | None]]
    # Object detection: per input its boxes ({"xmin", "ymin", "xmax", "ymax", "label", "score"}, pixels, best
    # first) scoring at least `min_score`; None where it failed.
    boxes: NotRequired[list[list[dict] | None]]
    min_score: NotRequired[float]


class PredictionsPayload(TypedDict):
    """/predict's answer."""

    # Per input: the most likely class (sequence tagging: its spans; detection: its boxes); None where it failed.
    predictions: list[str | None] | list[list[dict] | None]
    confidences: list[float | None]
    labels: list[str]
    model_version: int
    errors: list[ScoreError]


@dataclass
class ScoreOutcome:
    classes: list[str]
    scores: list[list[float] | None]
    errors: list[ScoreError]
    model_version: int
    batch_inputs: int = 0
    extra: dict = field(default_factory=dict)
    spans: list[list[dict] | None] | None = None  # sequence tagging
    boxes: list[list[dict] | None] | None = None  # object detection, at or above min_score
    min_score: float | None = None

    def as_scores(self) -> ScoresPayload:
        """Light Bulb's response, plus the version and the per-input errors."""
        payload: ScoresPayload = {"labels": self.classes, "scores": self.scores, "model_version": self.model_version,
                                  "errors": self.errors}
        if self.spans is not None:
            payload["spans"] = self.spans
        if self.boxes is not None:
            payload["boxes"] = self.boxes
            payload["min_score"] = float(self.min_score or 0.0)
        return payload

    def as_predictions(self) -> PredictionsPayload:
        if self.spans is not None:
            return {"predictions": self.spans, "confidences": [None] * len(self.spans), "labels": self.classes,
                    "model_version": self.model_version, "errors": self.errors}
        if self.boxes is not None:
            return {"predictions": self.boxes, "confidences": [None] * len(self.boxes), "labels": self.classes,
                    "model_version": self.model_version, "errors": self.errors}
        predictions: list[str | None] = []
        confidences: list[float | None] = []
        for row in self.scores:
            if row is None:
                predictions.append(None)
                confidences.append(None)
            else:
                best = max(range(len(row)), key=row.__getitem__)
                predictions.append(self.classes[best])
                confidences.append(row[best])
        return {"predictions": predictions, "confidences": confidences, "labels": self.classes,
                "model_version": self.model_version, "errors": self.errors}




def _short(value: str, n: int = 80) -> str:
    return value if len(value) <= n else value[: n - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Parsing and checking inputs
# --------------------------------------------------------------------------------------------------


def parse_inputs(project: Project, data: Mapping, files: Sequence) -> list[ScoreInput]:
    """Turn a request body (JSON or form) and uploaded `images` into checked inputs.

    Raises ScoreRequestError for a malformed request (wrong type for the project, missing lists,
    too many inputs); a single input that cannot be used gets `error` instead.
    """
    max_items = settings.LIGHTBULB_SCORE_MAX_ITEMS
    kind = data.get("type")
    if files:
        if project.data_type != DataType.IMAGES:
            raise ScoreRequestError(f"this project scores {project.data_type}, not uploaded images")
        if kind not in (None, "", "images"):
            raise ScoreRequestError(f"uploaded files are images; type {kind!r} does not fit")
        if len(files) > max_items:
            raise ScoreRequestTooLarge(f"at most {max_items} inputs per request (got {len(files)})")
        return [_check_upload(f) for f in files]
    if project.data_type == DataType.IMAGES:
        if kind != "images":
            raise ScoreRequestError(
                'this project scores images: send {"type": "images", "urls": [...]} '
                'or upload files in the field "images"'
            )
        urls = data.get("urls")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ScoreRequestError('"urls" must be a list of strings')
        _check_count(len(urls), max_items)
        return fetch_images(urls)
    if kind not in TEXT_TYPES:
        raise ScoreRequestError(
            f'this project scores {project.data_type}: send '
            f'{{"type": "{"json" if project.data_type == DataType.JSON else "text"}", '
            '"texts": [...]}'
        )
    texts = data.get("texts")
    if not isinstance(texts, list):
        raise ScoreRequestError('"texts" must be a list')
    _check_count(len(texts), max_items)
    if project.label_type == LabelType.SEQUENCE:
        return [_check_span_text(t) for t in texts]
    return [_check_text(t, as_json=kind == "json") for t in texts]


def _check_span_text(value: object) -> ScoreInput:
    """A text to tag as it stands (offsets in the answer are into it); an object gives its "text" field."""
    if isinstance(value, Mapping):
        value = value.get("text")
        if not isinstance(value, str):
            return ScoreInput(source="(object)", error='an object to tag needs a "text" string')
    if not isinstance(value, str):
        raise ScoreRequestError('every entry of "texts" must be a string (or an object with a "text" string)')
    limit = settings.LIGHTBULB_SCORE_MAX_TEXT_CHARS
    if len(value) > limit:
        return ScoreInput(source=_short(value), error=f"longer than {limit:,} characters")
    if not value.strip():
        return ScoreInput(source="(empty)", error="an empty text has nothing to tag")
    return ScoreInput(source=_short(value), payload=value)


def _check_count(n: int, max_items: int) -> None:
    if n == 0:
        raise ScoreRequestError("nothing to score: the list is empty")
    if n > max_items:
        raise ScoreRequestTooLarge(f"at most {max_items} inputs per request (got {n})")


def _check_text(value: object, *, as_json: bool) -> ScoreInput:
    """A text as the encoder reads it; json records (objects, or strings holding one) as `key: value` lines."""
    import json

    if as_json:
        if isinstance(value, str):
            raw = value
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                return ScoreInput(source=_short(raw), error=f"not valid JSON: {exc.msg} (line {exc.lineno})")
        text = json_text(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ScoreRequestError('every entry of "texts" must be a string (use type "json" for objects)')
    text = text.replace("\x00", "")
    limit = settings.LIGHTBULB_SCORE_MAX_TEXT_CHARS
    if len(text) > limit:
        return ScoreInput(source=_short(text), error=f"longer than {limit:,} characters")
    return ScoreInput(source=_short(text), payload=text)


def check_image(raw: bytes, source: str) -> ScoreInput:
    """The same checks as imported images: recognisable, fully decodable, pixels under the cap."""
    if not raw:
        return ScoreInput(source=source, error="empty file")
    max_bytes = settings.LIGHTBULB_FETCH_MAX_BYTES
    if len(raw) > max_bytes:
        return ScoreInput(source=source, error=f"larger than {max_bytes:,} bytes")
    _meta, reason = verify_image(raw, max_pixels=settings.LIGHTBULB_SCORE_MAX_IMAGE_PIXELS)
    if reason:
        return ScoreInput(source=source, error=reason)
    return ScoreInput(source=source, payload=raw)


def _check_upload(upload) -> ScoreInput:
    name = _short(getattr(upload, "name", "") or "upload")
    max_bytes = settings.LIGHTBULB_FETCH_MAX_BYTES
    if upload.size > max_bytes:  # checked before reading it into memory
        return ScoreInput(source=name, error=f"larger than {max_bytes:,} bytes")
    return check_image(upload.read(), name)


def fetch_images(urls: Sequence[str]) -> list[ScoreInput]:
    """Fetch every URL through the SSRF guard (a few at a time), then check it as an image."""
    limits = fetch_limits()

    def one(url: str) -> ScoreInput:
        try:
            raw = fetch_url(url, limits=limits)
        except FetchError as exc:
            return ScoreInput(source=_short(url), error=str(exc))
        return check_image(raw, _short(url))

    if len(urls) == 1:
        return [one(urls[0])]
    with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(urls)), thread_name_prefix="score-fetch") as pool:
        return list(pool.map(one, urls))


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


NO_INFERENCE_SECRET = ("the inference worker's key is not set: outside DEBUG it is never derived from the public "
                       "development SECRET_KEY; set SECRET_KEY (or LIGHTBULB_INFERENCE_SECRET) for the web "
                       "process and the inference worker alike")


def inference_key() -> bytes:
    """The key the web process and the inference worker share (settings.LIGHTBULB_INFERENCE_SECRET)."""
    if not settings.LIGHTBULB_INFERENCE_SECRET:
        raise InferenceUnavailable(NO_INFERENCE_SECRET)
    return derive_key(settings.LIGHTBULB_INFERENCE_SECRET)


def inference_client() -> InferenceClient:
    return InferenceClient(
        parse_address(settings.LIGHTBULB_INFERENCE_ADDRESS),
        key=inference_key(),
        timeout=settings.LIGHTBULB_INFERENCE_TIMEOUT,
    )


def score_request(project: Project, data: Mapping, files: Sequence = ()) -> ScoreOutcome:
    """The one service behind /score, /predict and the classify page: the model is checked first (no
    URL is fetched for a project that cannot score), then the inputs are read and scored."""
    version = current_version(project)
    min_score = parse_min_score(data, version) if project.label_type == LabelType.OBJECT_DETECTION else None
    return score_inputs(project, parse_inputs(project, data, files), version=version, min_score=min_score)


# Boxes returned when the version chose no threshold on TEST (its proposals cost more than drawing by hand).
DEFAULT_MIN_SCORE = 0.5


def default_min_score(version: ModelVersion) -> float:
    """The score above which the version's boxes saved a person time on TEST, as the labelling screen shows them."""
    chosen = (version.metrics.get("review") or {}).get("threshold")
    return float(chosen) if chosen is not None else DEFAULT_MIN_SCORE


def parse_min_score(data: Mapping, version: ModelVersion) -> float:
    """A detection request's `min_score` (0 to 1; default: the version's own threshold)."""
    raw = data.get("min_score")
    if raw is None or raw == "":
        return default_min_score(version)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ScoreRequestError('"min_score" must be a number from 0 to 1') from None
    if isinstance(raw, bool) or not 0.0 <= value <= 1.0:
        raise ScoreRequestError('"min_score" must be a number from 0 to 1')
    return value


def score_inputs(
    project: Project, inputs: list[ScoreInput], *, version: ModelVersion | None = None, min_score: float | None = None,
) -> ScoreOutcome:
    """Scores of the current model version for every usable input; errors for the others."""
    version = version or current_version(project)
    errors: list[ScoreError] = [
        {"index": i, "input": item.source, "detail": item.error} for i, item in enumerate(inputs) if item.error
    ]
    usable = [i for i, item in enumerate(inputs) if not item.error]
    if not usable:
        raise NothingScored(f"none of the {len(inputs)} input(s) could be scored", errors)
    payloads: list[bytes | str] = []
    for i in usable:
        payload = inputs[i].payload
        if payload is None:  # the checks above give every input either a payload or an error
            raise ValueError(f"input {i} ({inputs[i].source}) has neither a payload nor an error")
        payloads.append(payload)
    try:
        result = inference_client().score(
            encoder=version.encoder,
            encoder_version=version.encoder_version,
            head_path=project.model_path / version.file,
            inputs=payloads,
            finetuned=finetuned_folder(project, version),
        )
    except (InferenceUnavailable, InferenceFailed) as exc:
        raise ScoringUnavailable(str(exc)) from None
    scores: list[list[float] | None] = [None] * len(inputs)
    spans: list[list[dict] | None] | None = [None] * len(inputs) if result.spans is not None else None
    boxes: list[list[dict] | None] | None = [None] * len(inputs) if result.boxes is not None else None
    floor = default_min_score(version) if min_score is None else min_score
    for j, i in enumerate(usable):
        scores[i] = result.scores[j]
        if spans is not None and result.spans is not None:
            spans[i] = result.spans[j]
        if boxes is not None and result.boxes is not None:
            found = result.boxes[j]
            boxes[i] = None if found is None else [b for b in found if b["score"] >= floor]
        if j in result.errors:
            errors.append({"index": i, "input": inputs[i].source, "detail": result.errors[j]})
    errors.sort(key=lambda e: e["index"])
    answers = spans if spans is not None else boxes if boxes is not None else scores
    if all(row is None for row in answers):
        raise NothingScored(f"none of the {len(inputs)} input(s) could be scored", errors)
    return ScoreOutcome(
        classes=result.classes, scores=scores, errors=errors, model_version=version.number,
        batch_inputs=result.batch_inputs, spans=spans, boxes=boxes, min_score=floor if boxes is not None else None,
    )
