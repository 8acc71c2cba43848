"""Torch-free side of the model loop: requests for background work, claims, status, and read models.

The web process calls these; the heavy work happens in `modeling.tasks` on a django-q2 worker.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, NotRequired, TypedDict, TypeVar

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from labeling.models import Judgement, Stage
from lightbulb_site.errors import DomainError
from projects.encoders import EncoderSpec
from projects.label_kinds import item_text, kind_for
from projects.models import Item, ItemStatus, Project

from .ml.embeddings import project_encoder
from .models import EmbeddingJob, ItemPrediction, LabelCheck, ModelState, ModelVersion


def loop_enabled() -> bool:
    return settings.LIGHTBULB_MODEL_IN_THE_LOOP


# --------------------------------------------------------------------------------------------------
# Requests for background work (called on commit; each task is idempotent and coalesces repeats)
# --------------------------------------------------------------------------------------------------


def _enqueue(func: str, project_id: int, group: str, *, cluster: str | None = None) -> None:
    from django_q.tasks import async_task

    async_task(func, project_id, group=group, **({"cluster": cluster} if cluster else {}))


def request_embedding(project_id: int) -> None:
    """Embed the project's items that the cache does not hold yet."""
    if loop_enabled():
        _enqueue("modeling.tasks.embed_project", project_id, f"embed-{project_id}")


def untokenized_items(project: Project) -> QuerySet[Item]:
    """A sequence project's items the tokenizer has still to read (rejected files are never offered)."""
    return Item.objects.filter(project=project, tokens__isnull=True).exclude(status=ItemStatus.REJECTED)


def request_tokenizing(project_id: int) -> None:
    """Tokenize a sequence project's texts that have no tokens yet (the queue offers them once they do)."""
    if loop_enabled():
        _enqueue("modeling.tasks.tokenize_project", project_id, f"tokenize-{project_id}")


def request_training(project_id: int, *, force: bool = False) -> None:
    """Judgements changed: record the wish for a model that reflects them and enqueue a training task.

    Many requests in a row enqueue many tasks; the first does the work and the rest find the model
    already up to date, so requests coalesce and a newer request supersedes any older one. `force`
    (the admin's "train now") makes a new version even when no judgement changed.
    """
    if not loop_enabled():
        return
    if force:
        ModelState.objects.filter(project_id=project_id).update(trained_revision=0)
    revision = Project.objects.filter(pk=project_id).values_list("judgement_revision", flat=True).first()
    if revision is None:
        return
    ModelState.objects.get_or_create(project_id=project_id)
    ModelState.objects.filter(project_id=project_id, requested_revision__lt=revision).update(
        requested_revision=revision, requested_at=timezone.now()
    )
    if claim_enqueue(ModelState.objects.filter(project_id=project_id), "train_queued_at") or force:
        project = Project.objects.filter(pk=project_id).only("label_type").first()
        # A structured kind's head trains for minutes (spaCy's NER): on the deep worker, never ahead of the
        # quick classification fits of other projects.
        deep = project is not None and kind_for(project).trains_deep
        _enqueue("modeling.tasks.train_project", project_id, f"train-{project_id}",
                 **({"cluster": settings.LIGHTBULB_DEEP_CLUSTER} if deep else {}))


def request_proposals(project_id: int) -> None:
    """Recompute thresholds and proposals for the current version (the target precision changed)."""
    if loop_enabled():
        project = Project.objects.filter(pk=project_id).only("label_type").first()
        deep = project is not None and kind_for(project).trains_deep  # it re-tags every text with spaCy
        _enqueue("modeling.tasks.propose_project", project_id, f"propose-{project_id}",
                 **({"cluster": settings.LIGHTBULB_DEEP_CLUSTER} if deep else {}))


def request_ranking(project_id: int) -> None:
    if loop_enabled():
        project = Project.objects.filter(pk=project_id).only("label_type").first()
        deep = project is not None and kind_for(project).trains_deep  # spaCy tags every text: the deep worker's
        _enqueue("modeling.tasks.rank_project", project_id, f"rank-{project_id}",
                 **({"cluster": settings.LIGHTBULB_DEEP_CLUSTER} if deep else {}))


def resume_pending_work() -> list[str]:
    """Enqueue whatever a stopped or crashed worker left undone (called when the worker starts)."""
    from django_q.tasks import async_task

    enqueued = []
    if loop_enabled():
        async_task("modeling.tasks.warm_up", group="warm-up")  # first, so the first label trains at once
    # A queue that lost its tasks (the worker was killed, Redis flushed) would leave "a training task is
    # queued" set: clear it, and re-request below what the database says is due.
    ModelState.objects.exclude(train_queued_at=None).update(train_queued_at=None)
    for project in Project.objects.all():
        if kind_for(project).tokenized and untokenized_items(project).exists():
            request_tokenizing(project.pk)
            enqueued.append(f"tokenize {project.slug}")
        state = ModelState.objects.filter(project=project).first()
        if not project.modelled:
            if kind_for(project).trains_deep and state is not None:
                # The NER head and the detector: no embeddings or proposals; their ranking follows each version.
                if state.requested_revision > state.trained_revision:
                    request_training(project.pk)
                    enqueued.append(f"train {project.slug}")
                elif (kind_for(project).head in ("ner", "detector") and state.current_version is not None
                      and state.ranked_version != state.current_version.number):
                    request_ranking(project.pk)
                    enqueued.append(f"rank {project.slug}")
            continue
        job = current_embedding_job(project)
        if job is None or not job.complete:
            request_embedding(project.pk)
            enqueued.append(f"embed {project.slug}")
        if state is not None and state.requested_revision > state.trained_revision:
            request_training(project.pk)
            enqueued.append(f"train {project.slug}")
        elif state is not None and state.current_version is not None:
            if state.ranked_version != state.current_version.number:
                request_ranking(project.pk)  # proposes when it finishes
                enqueued.append(f"rank {project.slug}")
            elif state.proposed_version != state.current_version.number:
                request_proposals(project.pk)
                enqueued.append(f"propose {project.slug}")
    return enqueued


# --------------------------------------------------------------------------------------------------
# Claims: one worker at a time per job; a dead worker's claim is taken over
# --------------------------------------------------------------------------------------------------


def needs_training(project: Project, state: ModelState) -> bool:
    """Judgements changed since the last run, or the project now reads another encoder (the owner named
    another one, or a fine-tuned copy was adopted)."""
    if state.trained_revision < project.judgement_revision:
        return True
    current = state.current_version
    if current is None or kind_for(project).head != "classifier":
        return False  # a structured kind's head reads the text itself: no encoder to follow
    spec = project_encoder(project).spec
    return (current.encoder, current.encoder_version) != (spec.name, spec.version)


def claim_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(token: str) -> bool:
    """True when the claim belongs to a process on this machine that no longer exists."""
    try:
        host, pid, _ = token.rsplit(":", 2)
        pid_int = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid_int, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def stale_after() -> timedelta:
    return timedelta(seconds=settings.LIGHTBULB_CLAIM_STALE_SECONDS)


def claim_enqueue(rows: QuerySet, field: str) -> bool:
    """One queued task per burst of requests: a conditional UPDATE of `field` (a "queued at" time, cleared by
    the task when it starts) claims the right to enqueue it; a mark older than the claim timeout is a task
    that was lost (a broker restart), so it is claimed again."""
    now = timezone.now()
    unclaimed = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now - stale_after()})
    return bool(rows.filter(unclaimed).update(**{field: now}))


# The models that carry a claim (`claimed_by`, `heartbeat_at`).
Claimable = TypeVar("Claimable", EmbeddingJob, ModelState, LabelCheck)


def claim(model: type[Claimable], *, filters: dict, token: str) -> bool:
    """Conditional UPDATE: take the row if nobody holds it, or its holder stopped beating or died."""
    now = timezone.now()
    free = Q(claimed_by="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - stale_after())
    if model.objects.filter(free, **filters).update(claimed_by=token, heartbeat_at=now):
        return True
    holder = model.objects.filter(**filters).values_list("claimed_by", flat=True).first()
    if holder and _holder_is_dead(holder):
        return bool(model.objects.filter(claimed_by=holder, **filters).update(claimed_by=token, heartbeat_at=now))
    return False


def heartbeat(model: type[Claimable], *, filters: dict, token: str, **fields: Any) -> bool:
    return bool(model.objects.filter(claimed_by=token, **filters).update(heartbeat_at=timezone.now(), **fields))


def release(model: type[Claimable], *, filters: dict, token: str) -> None:
    model.objects.filter(claimed_by=token, **filters).update(claimed_by="", heartbeat_at=None)


# --------------------------------------------------------------------------------------------------
# Minimums, status and read models
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    train: list[tuple[int, str]]  # (item id, label)
    test: list[tuple[int, str]]


def training_data(project: Project) -> TrainingData:
    rows = (
        # Auto-labels (stage AUTO) are the model's own output: never trained on, never measured against.
        Judgement.objects.filter(
            project=project, is_current=True, label__in=project.classes, stage__in=[Stage.TRAIN, Stage.TEST]
        )
        .order_by("item_id")
        .values_list("item_id", "label", "stage")
    )
    data = TrainingData(train=[], test=[])
    for item_id, label, stage in rows:
        (data.test if stage == Stage.TEST else data.train).append((item_id, label))
    return data


@dataclass
class SpanRows:
    """A sequence project's labelled texts: (item id, text, spans) per stage."""

    train: list[tuple[int, str, list[dict]]]
    test: list[tuple[int, str, list[dict]]]


def span_training_rows(project: Project) -> SpanRows:
    """The current TRAIN and TEST answers of a sequence project (auto-labels, stage AUTO, never train)."""
    rows = (
        Judgement.objects.filter(project=project, is_current=True, stage__in=[Stage.TRAIN, Stage.TEST])
        .exclude(value=None).select_related("item").order_by("item_id")
    )
    types = set(project.classes)
    data = SpanRows(train=[], test=[])
    for j in rows:
        # A type the owner has since removed is not the model's to learn.
        spans = [s for s in (j.value or {}).get("spans") or [] if s.get("label") in types]
        (data.test if j.stage == Stage.TEST else data.train).append((j.item_id, item_text(j.item), spans))
    return data


@dataclass
class BoxRows:
    """A detection project's labelled images: (item id, image file, boxes) per stage."""

    train: list[tuple[int, Path, list[dict]]]
    test: list[tuple[int, Path, list[dict]]]


def box_training_rows(project: Project) -> BoxRows:
    """The current TRAIN and TEST answers of a detection project whose image file is still there (auto-labels,
    stage AUTO, never train; a class the owner has since removed is not the detector's to learn)."""
    rows = (
        Judgement.objects.filter(project=project, is_current=True, stage__in=[Stage.TRAIN, Stage.TEST])
        .exclude(value=None).select_related("item").order_by("item_id")
    )
    classes = set(project.classes)
    data = BoxRows(train=[], test=[])
    for j in rows:
        path = project.item_file_path(j.item)
        if path is None or not path.is_file():
            continue
        boxes = [b for b in (j.value or {}).get("boxes") or [] if b.get("label") in classes]
        (data.test if j.stage == Stage.TEST else data.train).append((j.item_id, path, boxes))
    return data


def box_minimums_unmet(project: Project, data: BoxRows) -> str:
    """Why there cannot be a detector yet ("" when there can)."""
    needs = _counts_unmet(project, test=len(data.test), train=len(data.train), noun="image")
    if not any(boxes for _, _, boxes in data.train):
        needs.append("a TRAIN image with at least one box")
    return "needs " + " and ".join(needs) if needs else ""


def _counts_unmet(project: Project, *, test: int, train: int, noun: str) -> list[str]:
    """Light Bulb's minimums, configurable per project: what TEST and TRAIN still lack."""
    needs = []
    if test < project.test_min_judgements:
        needs.append(f"{project.test_min_judgements - test} more TEST {noun}(s)")
    if train < project.min_train_judgements:
        needs.append(f"{project.min_train_judgements - train} more TRAIN {noun}(s)")
    return needs


def span_minimums_unmet(project: Project, data: SpanRows) -> str:
    """Why there cannot be a sequence model yet ("" when there can)."""
    needs = _counts_unmet(project, test=len(data.test), train=len(data.train), noun="text")
    if not any(spans for _, _, spans in data.train):
        needs.append("a TRAIN text with at least one span")
    return "needs " + " and ".join(needs) if needs else ""


def minimums_unmet(project: Project, data: TrainingData) -> str:
    """Why there cannot be a model yet ("" when there can): Light Bulb's minimums, configurable per project."""
    needs = _counts_unmet(project, test=len(data.test), train=len(data.train), noun="label")
    if len({label for _, label in data.train}) < 2:
        needs.append("TRAIN labels of at least two classes")
    return "needs " + " and ".join(needs) if needs else ""


def current_embedding_job(project: Project, spec: EncoderSpec | None = None) -> EmbeddingJob | None:
    spec = spec or project_encoder(project).spec
    return EmbeddingJob.objects.filter(project=project, encoder=spec.name, encoder_version=spec.version).first()


def loop_flags(state: ModelState | None) -> tuple[bool, bool]:
    """(in the loop, training right now): Light Bulb's "Training: yes" and the "updating" sign.

    In the loop once a version exists, or while a run that has met the minimums is going on.
    """
    if state is None:
        return False, False
    running = bool(state.claimed_by and state.heartbeat_at and state.heartbeat_at > timezone.now() - stale_after())
    return state.current_version_id is not None or (running and not state.waiting_for), running


class EncoderInfo(TypedDict):
    name: str
    version: str
    description: str
    dim: int


class EmbeddingProgress(TypedDict):
    total: int
    embedded: int
    failed: int
    percent: float
    complete: bool
    running: bool
    items_per_second: float | None
    last_error: str


class TrainingStatus(TypedDict):
    in_the_loop: bool
    running: bool
    waiting_for: str
    last_error: str
    ranked_version: int | None


class VersionPayload(TypedDict):
    """One model version in full (the current one in `model_summary`)."""

    number: int
    encoder: str
    encoder_version: str
    classes: list[str]
    train_count: int
    test_count: int
    labels: int
    accuracy: float | None
    loss: float | None
    per_class: dict[str, dict[str, Any]]  # class -> precision, recall, f1, support
    confusion: list[list[int]]  # rows: true class
    created_at: str  # ISO 8601
    training_seconds: float
    calibration: dict[str, Any]
    semi_supervised: dict[str, Any]
    thresholds: dict[str, dict[str, Any]]  # class -> modeling.ml.thresholds.ClassThreshold.as_dict()
    thresholds_target: float | None
    review_thresholds: dict[str, dict[str, Any]]  # class -> modeling.ml.review.ReviewThreshold.as_dict()
    proposal_note: str
    # Sequence tagging: entity-level {"overall": {precision, recall, f1, support, predicted}, "per_type": {...}}.
    entities: dict[str, Any] | None
    # Object detection: {"overall": {map50, map50_95, support, images}, "per_class": {class: {ap50, ap50_95, ...}}}.
    boxes: dict[str, Any] | None


class VersionRow(TypedDict):
    """One line of the version history in `model_summary`."""

    number: int
    train_count: int
    test_count: int
    accuracy: float | None
    loss: float | None
    created_at: str  # ISO 8601
    training_seconds: float
    labels: int


class ModelSummary(TypedDict):
    encoder: EncoderInfo
    embedding: EmbeddingProgress
    training: TrainingStatus
    current_version: VersionPayload | None
    versions: list[VersionRow]


class PredictionPayload(TypedDict):
    """The current model's prediction for one item (what the labeling queue shows beside it)."""

    label: str
    confidence: float
    entropy: float
    uncertainty: float
    scores: dict[str, float]  # class -> probability; empty when the classes changed since the version
    model_version: int
    spans: NotRequired[list[dict]]  # sequence tagging: the predicted spans
    boxes: NotRequired[list[dict]]  # object detection: the proposed boxes, each with its score


def model_summary(project: Project) -> ModelSummary:
    """Everything the project page, the admin and the API show about the model."""
    state = ModelState.objects.select_related("current_version").filter(project=project).first()
    spec = project_encoder(project).spec
    job = current_embedding_job(project, spec)
    versions = list(
        ModelVersion.objects.filter(project=project)
        .order_by("number")
        .values("number", "train_count", "test_count", "accuracy", "loss", "created_at", "training_seconds")
    )
    current = state.current_version if state else None
    in_the_loop, running = loop_flags(state)
    if kind_for(project).head == "ner":
        # The NER head reads the text through the spaCy pipeline's own features: no sentence encoder, no cache.
        encoder: EncoderInfo = {"name": f"spacy:{settings.LIGHTBULB_SPACY_PIPELINE}",
                   "version": current.encoder_version if current else "",
                   "description": "spaCy NER trained for the project's types on en_core_web_sm 3.8's pretrained "
                                  "token features", "dim": 0}
    elif kind_for(project).head == "detector":
        encoder = {"name": "torchvision:fasterrcnn_mobilenet_v2_fpn",
                   "version": current.encoder_version if current else "",
                   "description": "Faster R-CNN with a feature pyramid on the ImageNet MobileNetV2, trained on the "
                                  "project's boxes", "dim": 0}
    else:
        encoder = {"name": spec.name, "version": spec.version, "description": spec.description, "dim": spec.dim}
    return {
        "encoder": encoder,
        "embedding": {
            "total": job.total if job else 0,
            "embedded": job.embedded if job else 0,
            "failed": job.failed if job else 0,
            "percent": round(job.percent, 1) if job else 0.0,
            "complete": bool(job and job.complete),
            "running": bool(job and job.claimed_by),
            "items_per_second": job.items_per_second if job else None,
            "last_error": job.last_error if job else "",
        },
        "training": {
            "in_the_loop": in_the_loop,
            "running": running,
            "waiting_for": state.waiting_for if state else "",
            "last_error": state.last_error if state else "",
            "ranked_version": state.ranked_version if state else None,
        },
        "current_version": _version_payload(current) if current else None,
        "versions": [
            {**v, "labels": v["train_count"] + v["test_count"], "created_at": v["created_at"].isoformat()}
            for v in versions
        ],
    }


def _version_payload(version: ModelVersion) -> VersionPayload:
    return {
        "number": version.number,
        "encoder": version.encoder,
        "encoder_version": version.encoder_version,
        "classes": version.classes,
        "train_count": version.train_count,
        "test_count": version.test_count,
        "labels": version.labels_count,
        "accuracy": version.accuracy,
        "loss": version.loss,
        "per_class": version.metrics.get("per_class", {}),
        "confusion": version.metrics.get("confusion", []),
        "created_at": version.created_at.isoformat(),
        "training_seconds": version.training_seconds,
        "calibration": version.metrics.get("calibration", {}),
        "semi_supervised": version.metrics.get("semi_supervised", {}),
        "thresholds": version.thresholds,
        "thresholds_target": version.thresholds_target,
        "review_thresholds": version.review_thresholds,
        "proposal_note": version.proposal_note,
        "entities": ({"overall": version.metrics.get("overall", {}), "per_type": version.metrics.get("per_type", {})}
                     if version.metrics.get("kind") == "sequence" else None),
        "boxes": version.metrics.get("boxes") if version.metrics.get("kind") == "object_detection" else None,
    }


def predictions_for(project: Project, item_ids: list[int]) -> dict[int, PredictionPayload]:
    rows = ItemPrediction.objects.filter(project=project, item_id__in=item_ids)
    classes = list(project.classes)
    out: dict[int, PredictionPayload] = {}
    for row in rows:
        scores = dict(zip(classes, row.scores, strict=False)) if len(row.scores) == len(classes) else {}
        out[row.item_id] = {
            "label": row.label,
            "confidence": row.confidence,
            "entropy": row.entropy,
            "uncertainty": row.uncertainty,
            "scores": scores,
            "model_version": row.version,
        }
        if row.value is not None and (row.value.get("prefill") or row.value.get("review")):
            # The spans the screen shows pre-filled (apart from a person's), kept with Enter: only where fixing
            # them is expected to be quicker than labelling by hand (modeling.ml.ner.review_is_cheaper).
            # The same for a detection version's boxes (modeling.ml.detection.review_is_cheaper), with their scores.
            if "spans" in row.value:
                out[row.item_id]["spans"] = list(row.value.get("spans") or [])
            if "boxes" in row.value:
                out[row.item_id]["boxes"] = list(row.value.get("boxes") or [])
    return out


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def finetuned_folder(project: Project, version: ModelVersion) -> Path | None:
    """The folder of the fine-tuned weights a version was trained on (None: the catalogued pretrained encoder)."""
    if "+ft-" not in version.encoder_version:
        return None
    from .models import FineTuneRun

    folder = FineTuneRun.objects.filter(project=project, encoder_version=version.encoder_version).values_list(
        "folder", flat=True).first()
    return project.model_path / folder if folder else None


class NoModelYet(DomainError):
    """The project has no model version (to export or to score with): 409."""

    status_code = 409


def current_version(project: Project) -> ModelVersion:
    """The version the project's model answers with, or NoModelYet."""
    state = ModelState.objects.select_related("current_version").filter(project=project).first()
    if state is None or state.current_version is None:
        raise NoModelYet(
            f"project {project.slug} has no model version: there is no trained model yet, label more items first"
        )
    return state.current_version


def export_bundle(project: Project, *, out: IO[bytes], number: int | None = None) -> str:
    """Write a self-contained `.lbmodel` of a version (default: the current one) to `out` (a seekable binary
    file) and return its file name. NoModelYet before anything is written when there is no such version.

    Numpy and zipfile only: the web process serves the download without loading torch.
    """
    from django.utils import timezone as tz

    from .ml.bundle import write_bundle
    from .ml.head import Head

    if number is None:
        version = current_version(project)
    else:
        numbered = ModelVersion.objects.filter(project=project, number=number).first()
        if numbered is None:
            raise NoModelYet(f"project {project.slug} has no model version {number}")
        version = numbered
    if version.metrics.get("kind") == "sequence":
        from .ml.bundle import write_span_bundle

        write_span_bundle(out, folder=project.model_path / version.file, types=list(version.classes), meta={
            "project": {"slug": project.slug, "title": project.title, "data_type": project.data_type,
                        "label_type": project.label_type},
            "model_version": version.number, "encoder": version.encoder, "encoder_version": version.encoder_version,
            "trained_at": version.created_at.isoformat(), "exported_at": tz.now().isoformat(),
            "train_count": version.train_count, "test_count": version.test_count,
            "metrics": {k: version.metrics.get(k) for k in ("overall", "per_type", "epochs")},
        })
        return f"{project.slug}-v{version.number}.lbmodel"
    if version.metrics.get("kind") == "object_detection":
        from .ml.bundle import write_box_bundle

        review = version.metrics.get("review") or {}
        write_box_bundle(out, file=project.model_path / version.file, classes=list(version.classes), meta={
            "project": {"slug": project.slug, "title": project.title, "data_type": project.data_type,
                        "label_type": project.label_type},
            "model_version": version.number, "encoder": version.encoder, "encoder_version": version.encoder_version,
            "trained_at": version.created_at.isoformat(), "exported_at": tz.now().isoformat(),
            "train_count": version.train_count, "test_count": version.test_count,
            "metrics": {"boxes": version.metrics.get("boxes"), "iterations": version.metrics.get("iterations"),
                        "review": {k: review.get(k) for k in ("threshold", "review_seconds", "hand_seconds",
                                                              "images")}},
            "threshold": review.get("threshold"),
        })
        return f"{project.slug}-v{version.number}.lbmodel"
    head = Head.load(project.model_path / version.file)
    meta = {
        "project": {"slug": project.slug, "title": project.title, "data_type": project.data_type},
        "model_version": version.number,
        "trained_at": version.created_at.isoformat(),
        "exported_at": tz.now().isoformat(),
        "train_count": version.train_count,
        "test_count": version.test_count,
        "metrics": {
            "accuracy": version.accuracy,
            "loss": version.loss,
            "per_class": version.metrics.get("per_class", {}),
            "confusion": version.metrics.get("confusion", []),
            "calibration": version.metrics.get("calibration", {}),
            "semi_supervised": version.metrics.get("semi_supervised", {}),
            "l2": version.metrics.get("l2"),
        },
        "thresholds": {"auto_label_precision": version.thresholds_target, "per_class": version.thresholds},
    }
    finetuned = finetuned_folder(project, version)
    if finetuned is not None:
        meta["finetune"] = {"encoder_version": version.encoder_version}
    write_bundle(out, head=head, meta=meta, finetuned=finetuned)
    return f"{project.slug}-v{version.number}.lbmodel"


def fetch_limits():
    """The SSRF guard's limits from settings (modeling/fetch.py itself stays Django-free)."""
    from .fetch import FetchLimits

    return FetchLimits(
        max_bytes=settings.LIGHTBULB_FETCH_MAX_BYTES,
        timeout=settings.LIGHTBULB_FETCH_TIMEOUT,
        max_redirects=settings.LIGHTBULB_FETCH_MAX_REDIRECTS,
        allow_networks=tuple(settings.LIGHTBULB_FETCH_ALLOW_NETWORKS),
    )
