"""django-q2 tasks of the model loop: embed, train, rank. The only place (with management commands)
where torch is imported, always inside the functions, so importing this module stays light.

Every task takes a project id, tolerates a deleted project, claims its job with a conditional UPDATE
(a second copy finds it held and returns), and writes files atomically before the database points at
them. A worker killed at any moment leaves the last good state; the next run carries on from there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from projects.label_kinds import item_text, kind_for
from projects.models import Item, ItemStatus, Project

from . import stopping
from .ml.embeddings import embed_pending, embeddable_ids, pending_item_ids, project_encoder, store_for
from .ml.head import Head, lsh_buckets, normalised_entropy, uncertainty
from .ml.semisupervised import sample_rows
from .models import EmbeddingJob, ItemPrediction, LabelCheck, ModelState, ModelVersion
from .services import (
    TrainingData,
    box_minimums_unmet,
    box_training_rows,
    claim,
    claim_token,
    heartbeat,
    minimums_unmet,
    needs_training,
    release,
    request_embedding,
    request_ranking,
    request_tokenizing,
    request_training,
    span_minimums_unmet,
    span_training_rows,
    training_data,
    untokenized_items,
)

logger = logging.getLogger(__name__)

UPSERT_BATCH = 2000
STANDARDISE_SAMPLE = 20000




def _encoder_loader(project: Project, *, pending: int = 0):
    def load():
        encoder = project_encoder(project).load()
        threshold = settings.LIGHTBULB_COMPILE_MIN_ITEMS
        if threshold and pending >= threshold and hasattr(encoder, "compile"):
            encoder.compile()  # a one-off cost that pays for itself on backlogs this big
        return encoder

    return load


# Texts tokenized per database write; a chunk of tweets takes well under a second.
TOKENIZE_CHUNK = 500


def tokenize_project(project_id: int) -> str:
    """Write `Item.tokens` (the spaCy pipeline's own tokenizer) for a sequence project's texts lacking them.

    Idempotent: only items without tokens are read, and each chunk's UPDATE writes only rows still
    without them. Runs for at most LIGHTBULB_EMBED_TASK_SECONDS and then enqueues the rest, so a large
    import never holds the worker away from training.
    """
    from .ml.spans import tokenize

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return "project deleted"
    if not kind_for(project).tokenized:
        return "not a sequence project"
    budget = settings.LIGHTBULB_EMBED_TASK_SECONDS
    deadline = time.monotonic() + budget if budget > 0 else None
    pending = untokenized_items(project)
    done = 0
    while True:
        rows = list(pending.order_by("id").only("id", "text", "data", "kind")[:TOKENIZE_CHUNK])
        if not rows:
            if done and ModelState.objects.filter(project=project).exclude(current_version=None).exists():
                request_ranking(project_id)  # new texts: the current version tags them for the queue
            return f"tokenized {done} texts"
        for item, tokens in zip(rows, tokenize([item_text(item) for item in rows]), strict=True):
            Item.objects.filter(pk=item.pk, tokens__isnull=True).update(tokens=tokens)
        done += len(rows)
        if stopping.requested() or (deadline is not None and time.monotonic() > deadline):
            request_tokenizing(project_id)
            return f"tokenized {done} texts; the rest continues in the next task"


def warm_up() -> str:
    """Import torch in the worker before the first label needs it (a cold import measured ~20 s here)."""
    from .ml.encoders import configure_torch

    started = time.perf_counter()
    configure_torch()
    return f"torch ready in {time.perf_counter() - started:.1f} s"


# --------------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------------


def _should_yield() -> bool:
    """Embedding gives the worker up between chunks when a stop was asked or another task waits in the queue
    (it re-enqueues itself behind it): a label's training runs between two chunks, not after the backlog."""
    if stopping.requested():
        return True
    from django_q.brokers import get_broker

    try:
        return get_broker().queue_size() > 0
    except Exception as exc:  # noqa: BLE001 - a broker hiccup must not stop embedding; keep going
        logger.warning("cannot read the task queue's size: %s", exc)
        return False


def embed_project(project_id: int) -> str:
    """Embed the project's items the cache lacks, in chunks, for at most LIGHTBULB_EMBED_TASK_SECONDS.

    A run that stops at its time budget enqueues the next one, so training requests queued meanwhile
    get the (single) worker in between and labeling never waits for a 100k-item backlog.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return "project deleted"
    if not project.modelled:
        return "no model for this label type"
    spec, store = store_for(project)
    job, _ = EmbeddingJob.objects.get_or_create(project=project, encoder=spec.name, encoder_version=spec.version)
    token = claim_token()
    filters = {"pk": job.pk}
    if not claim(EmbeddingJob, filters=filters, token=token):
        return "another worker is embedding this project"
    more = False
    embedded_now = 0
    try:
        embeddings = store.load()
        valid = embeddable_ids(project)
        pending = pending_item_ids(embeddings, valid)
        done = int(np.isin(embeddings.ids, valid).sum())
        failed = int(np.isin(embeddings.failed, valid).sum())
        now = timezone.now()
        EmbeddingJob.objects.filter(pk=job.pk).update(
            total=len(valid), embedded=done, failed=failed, last_error="",
            started_at=job.started_at or now, finished_at=None if pending else (job.finished_at or now),
        )
        if not pending:
            store.consolidate()
            return "up to date"
        if stopping.requested():
            more = True  # the worker is stopping: the next start resumes (resume_model_work)
            return "stop requested before embedding; resumes at the next start"
        budget = settings.LIGHTBULB_EMBED_TASK_SECONDS
        deadline = time.monotonic() + budget if budget > 0 else None
        progress = {"embedded": done, "failed": failed}

        def on_chunk(n_ok: int, n_failed: int, seconds: float) -> None:
            progress["embedded"] += n_ok
            progress["failed"] += n_failed
            heartbeat(
                EmbeddingJob, filters=filters, token=token, embedded=progress["embedded"],
                failed=progress["failed"], items_per_second=(n_ok + n_failed) / seconds if seconds > 0 else None,
            )

        embedded, n_failed = embed_pending(
            project, store=store, encoder_loader=_encoder_loader(project, pending=len(pending)), item_ids=pending,
            chunk_size=settings.LIGHTBULB_EMBED_CHUNK, deadline=deadline,
            # Chunks of about a quarter of the budget: the budget holds inside them, and a task that waits
            # (a training request, an import) or a stop request gets the worker within seconds.
            chunk_seconds=budget / 4 if budget > 0 else None, should_yield=_should_yield, on_chunk=on_chunk,
            rate_key=f"{spec.name}:{spec.version}",
        )
        embedded_now = embedded
        more = embedded + n_failed < len(pending)
        if not more:
            store.consolidate()
            EmbeddingJob.objects.filter(pk=job.pk).update(finished_at=timezone.now())
            refresh_cold_start(project)
        return f"embedded {embedded}, failed {n_failed}, {'more to do' if more else 'done'}"
    except Exception as exc:
        EmbeddingJob.objects.filter(pk=job.pk).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        release(EmbeddingJob, filters=filters, token=token)
        if more:
            transaction.on_commit(lambda: request_embedding(project_id))
        elif embedded_now and ModelState.objects.filter(project_id=project_id, current_version__isnull=False).exists():
            # New items have vectors now: give them scores so the queue can rank them.
            transaction.on_commit(lambda: request_ranking(project_id))


def embed_until_done(project_id: int) -> str:
    """Run `embed_project` until nothing is left, in this process (benchmarks, tests, commands that want the
    whole pool embedded now); the worker instead re-enqueues a run that stopped at its budget."""
    while True:
        result = embed_project(project_id)
        if not result.endswith("more to do"):
            return result


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def train_project(project_id: int) -> str:
    """Train a new model version if judgements changed since the last one, then re-rank the pool.

    One training per project at a time (a claim on its ModelState row). Requests that arrive while it
    runs raise `requested_revision`; the loop below picks them up before letting go, so the newest
    request always ends in a model and older ones never train separately.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return "project deleted"
    structured = kind_for(project).trains_deep
    if not project.modelled and not structured:
        return "no model for this label type"
    state, _ = ModelState.objects.get_or_create(project=project)
    # From here on a new label enqueues a new task (services.request_training); until here it needed none.
    ModelState.objects.filter(pk=project.pk).update(train_queued_at=None)
    if not needs_training(project, state):
        return "up to date"
    debounce = settings.LIGHTBULB_TRAIN_DEBOUNCE_SECONDS
    if debounce > 0 and state.requested_at is not None:
        # Let a burst of labels land so one run covers them all.
        wait = debounce - (timezone.now() - state.requested_at).total_seconds()
        if wait > 0:
            time.sleep(min(wait, debounce))
    token = claim_token()
    filters = {"pk": project.pk}
    if not claim(ModelState, filters=filters, token=token):
        return "another worker is training this project"
    results = []
    try:
        for _round in range(10):
            project.refresh_from_db()
            revision = project.judgement_revision
            state = ModelState.objects.select_related("current_version").get(pk=project.pk)
            if not needs_training(project, state):
                break
            train_once = {"ner": _train_spans_once, "detector": _train_boxes_once}.get(kind_for(project).head,
                                                                                        _train_once)
            message, made_version = train_once(project, revision=revision, token=token)
            results.append(message)
            if not made_version:
                break
    except Exception as exc:
        ModelState.objects.filter(pk=project.pk).update(
            last_error=f"{type(exc).__name__}: {exc}"[:2000], last_error_at=timezone.now()
        )
        raise
    finally:
        release(ModelState, filters=filters, token=token)
    if results and any(r.startswith("v") for r in results) and not structured:
        from .deep import maybe_request_finetune

        started = maybe_request_finetune(project)
        if started is not None:
            results.append(f"fine-tune {started.number} requested ({started.train_count} TRAIN labels)")
    return "; ".join(results) or "up to date"


def _train_once(project: Project, *, revision: int, token: str) -> tuple[str, bool]:
    filters = {"pk": project.pk}
    data = training_data(project)
    unmet = minimums_unmet(project, data)
    if unmet:
        heartbeat(ModelState, filters=filters, token=token, waiting_for=unmet, trained_revision=revision)
        refresh_cold_start(project, data=data)
        return unmet, False
    spec, store = store_for(project)

    # Labelled items are embedded here if the pool-wide job has not reached them yet.
    embeddings = store.load()
    labelled_ids = [i for i, _ in data.train] + [i for i, _ in data.test]
    missing = pending_item_ids(embeddings, embeddable_ids(project, only=labelled_ids))
    if missing:
        embed_pending(project, store=store, encoder_loader=_encoder_loader(project), item_ids=missing)
        embeddings = store.load()
        heartbeat(ModelState, filters=filters, token=token)

    index = {name: i for i, name in enumerate(project.classes)}

    def arrays(rows):
        ids = [i for i, _ in rows]
        labels = dict(rows)
        vectors, present = embeddings.take(ids)
        return vectors, np.asarray([index[labels[i]] for i in present.tolist()], dtype=np.int64)

    x_train, y_train = arrays(data.train)
    x_test, y_test = arrays(data.test)
    if len(np.unique(y_train)) < 2:
        heartbeat(ModelState, filters=filters, token=token, waiting_for="TRAIN labels of at least two classes",
                  trained_revision=revision)
        refresh_cold_start(project, data=data)
        return "waiting: one class", False
    pool = sample_rows(embeddings.vectors, limit=STANDARDISE_SAMPLE)
    # Everything without a TRAIN label feeds label spreading; TEST items stay in as unlabelled nodes,
    # like the pool items they stand for (their labels never reach the head).
    train_ids = np.asarray([i for i, _ in data.train], dtype=np.int64)
    unlabelled = sample_rows(embeddings.vectors, keep=~np.isin(embeddings.ids, train_ids), lazy=True)

    from .ml.training import Validation, train_head

    # The last version's cross-validated choices hold while TRAIN has barely changed (same classes, same
    # encoder); validating again on every label was most of each training's time.
    previous = ModelVersion.objects.filter(project=project).order_by("-number").first()
    validation = None
    if (previous is not None and list(previous.classes) == list(project.classes)
            and (previous.encoder, previous.encoder_version) == (spec.name, spec.version)):
        validation = Validation.from_metrics(previous.metrics)
        if validation is not None and not validation.covers(len(y_train)):
            validation = None
    result = train_head(
        classes=list(project.classes), x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        pool=pool, encoder=spec.name, encoder_version=spec.version, unlabelled=unlabelled, validation=validation,
    )
    heartbeat(ModelState, filters=filters, token=token)

    number = _next_version_number(project)
    relative = f"versions/v{number:05d}.npz"
    # File first, row second: a crash between leaves an unreferenced file that the next run overwrites.
    result.head.save(project.model_path / relative)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            project=project, number=number, encoder=spec.name, encoder_version=spec.version,
            classes=list(project.classes), file=relative, judgement_revision=revision,
            train_count=len(y_train), test_count=len(y_test), accuracy=result.accuracy, loss=result.loss,
            metrics=result.metrics, training_seconds=result.seconds, temperature=result.head.temperature,
        )
        ModelState.objects.filter(pk=project.pk).update(
            current_version=version, trained_revision=revision, waiting_for="", last_error=""
        )
    rank_version(project, version=version, head=result.head, embeddings=embeddings)
    propose_version(project, version=version, head=result.head, embeddings=embeddings)
    accuracy = "–" if result.accuracy is None else f"{result.accuracy:.3f}"
    return f"v{number}: {len(y_train)} train, {len(y_test)} test, accuracy {accuracy}", True


def _next_version_number(project: Project) -> int:
    """The number the project's next model version gets (either kind's head)."""
    return (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1


def _train_spans_once(project: Project, *, revision: int, token: str) -> tuple[str, bool]:
    """A sequence project's version: spaCy's NER trained on the TRAIN texts, scored on TEST (modeling/ml/ner.py)."""
    filters = {"pk": project.pk}
    data = span_training_rows(project)
    unmet = span_minimums_unmet(project, data)
    if unmet:
        heartbeat(ModelState, filters=filters, token=token, waiting_for=unmet, trained_revision=revision)
        return unmet, False

    from .ml.ner import train_ner
    from .ml.spans import pipeline_name, pipeline_version

    number = _next_version_number(project)
    relative = f"versions/v{number:05d}.spacy"
    # Folder first, row second: a crash between leaves an unreferenced folder the next run overwrites.
    result = train_ner(
        types=list(project.classes), train=[(t, s) for _, t, s in data.train], test=[(t, s) for _, t, s in data.test],
        out_dir=project.model_path / relative, epochs=settings.LIGHTBULB_NER_EPOCHS,
        seconds=settings.LIGHTBULB_NER_TRAIN_SECONDS, seed=number,
        on_epoch=lambda _n: heartbeat(ModelState, filters=filters, token=token),
    )
    if data.test:
        # What reviewing costs at each confidence, on TEST (never trained on): the review rule reads it.
        from .ml.ner import load_head, review_bins, tag_with_confidence

        tagged = tag_with_confidence(load_head(project.model_path / relative), [t for _, t, _ in data.test],
                                     types=list(project.classes))
        result.metrics["review"] = {"bins": review_bins([t.confidence for t in tagged], [t.spans for t in tagged],
                                                        [s for _, _, s in data.test])}
    with transaction.atomic():
        version = ModelVersion.objects.create(
            project=project, number=number, encoder=f"spacy:{pipeline_name()}", encoder_version=pipeline_version(),
            classes=list(project.classes), file=relative, judgement_revision=revision,
            train_count=len(data.train), test_count=len(data.test), accuracy=None, loss=None,
            metrics=result.metrics, training_seconds=result.seconds,
        )
        ModelState.objects.filter(pk=project.pk).update(
            current_version=version, trained_revision=revision, waiting_for="", last_error=""
        )
    rank_spans_version(project, version=version, beat=lambda: heartbeat(ModelState, filters=filters, token=token))
    f1 = "–" if result.f1 is None else f"{result.f1:.3f}"
    return f"v{number}: {len(data.train)} train, {len(data.test)} test, entity F1 {f1}", True


def _train_boxes_once(project: Project, *, revision: int, token: str) -> tuple[str, bool]:
    """A detection project's version: Faster R-CNN trained on the TRAIN images, scored on TEST
    (modeling/ml/detection.py: mAP@0.5 and @0.5:0.95 per class)."""
    filters = {"pk": project.pk}
    data = box_training_rows(project)
    unmet = box_minimums_unmet(project, data)
    if unmet:
        heartbeat(ModelState, filters=filters, token=token, waiting_for=unmet, trained_revision=revision)
        return unmet, False

    import torchvision

    from .ml.detection import train_detector

    number = _next_version_number(project)
    relative = f"versions/v{number:05d}.detector.pt"
    # File first, row second: a crash between leaves an unreferenced file the next run overwrites.
    result = train_detector(
        classes=list(project.classes), train=[(p, b) for _, p, b in data.train], test=[(p, b) for _, p, b in data.test],
        out_path=project.model_path / relative, iterations=settings.LIGHTBULB_DETECTOR_ITERATIONS,
        seconds=settings.LIGHTBULB_DETECTOR_TRAIN_SECONDS, seed=number,
        on_step=lambda _n: heartbeat(ModelState, filters=filters, token=token),
    )
    with transaction.atomic():
        version = ModelVersion.objects.create(
            project=project, number=number, encoder="torchvision:fasterrcnn_mobilenet_v2_fpn",
            encoder_version=torchvision.__version__, classes=list(project.classes), file=relative,
            judgement_revision=revision, train_count=len(data.train), test_count=len(data.test), accuracy=None,
            loss=None, metrics=result.metrics, training_seconds=result.seconds,
        )
        ModelState.objects.filter(pk=project.pk).update(
            current_version=version, trained_revision=revision, waiting_for="", last_error=""
        )
    rank_boxes_version(project, version=version, beat=lambda: heartbeat(ModelState, filters=filters, token=token))
    score = "–" if result.map50 is None else f"{result.map50:.3f}"
    return f"v{number}: {len(data.train)} train, {len(data.test)} test, mAP@0.5 {score}", True


def _upsert_part_predictions(rows: list[ItemPrediction]) -> None:
    """One batch of a span or box version's rows (their `value` holds the spans or boxes), replacing older ones."""
    with transaction.atomic():
        ItemPrediction.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["item"],
            update_fields=["version", "label", "confidence", "entropy", "uncertainty", "scores", "value", "bucket"],
        )


def _point_queue_at(project: Project, *, version: ModelVersion) -> None:
    """Only the current version's ranking points the queue here and clears older rows: one made meanwhile ranks
    on its own."""
    with transaction.atomic():
        if ModelState.objects.filter(pk=project.pk, current_version=version).update(ranked_version=version.number):
            ItemPrediction.objects.filter(project=project).exclude(version=version.number).delete()


def rank_spans_version(project: Project, *, version: ModelVersion, beat: Callable[[], object] | None = None) -> int:
    """Tag every tokenized text with a sequence version and store its spans and uncertainty (modeling/ml/ner.py's
    `tag_with_confidence`: 1 - the least confident decision, or the mean entropy under the entropy rule), then
    point the queue at this version. Written in batches of upserts; older versions' rows go at the end."""
    from .ml.ner import goes_to_review, load_head, review_is_cheaper, tag_with_confidence

    kind = kind_for(project)
    bins = (version.metrics.get("review") or {}).get("bins") or []
    floor = project.review_precision_floor
    nlp = load_head(project.model_path / version.file)
    types = list(version.classes)
    items = Item.objects.filter(project=project, tokens__isnull=False).exclude(status=ItemStatus.REJECTED)
    written = 0
    ids = list(items.order_by("pk").values_list("pk", flat=True))
    current = ModelState.objects.filter(pk=project.pk, current_version=version)
    for start in range(0, len(ids), UPSERT_BATCH):
        if not current.exists():
            return written  # a newer version was made meanwhile: its own ranking writes the queue's rows
        chunk = list(Item.objects.filter(pk__in=ids[start:start + UPSERT_BATCH]).order_by("pk").only(
            "pk", "text", "data"))
        tagged = tag_with_confidence(nlp, [item_text(i) for i in chunk], types=types)
        if beat is not None:
            beat()  # tagging a large pool takes minutes inside the training claim
        # Items deleted while they were tagged (duplicates dropped) are not written back.
        alive = set(Item.objects.filter(pk__in=[i.pk for i in chunk]).values_list("pk", flat=True))
        rows = [
            ItemPrediction(
                item_id=item.pk, project=project, version=version.number, label=kind.summary({"spans": t.spans}),
                confidence=t.confidence, entropy=max(0.0, t.entropy),
                uncertainty=max(0.0, t.entropy if project.sampling == "entropy" else 1.0 - t.confidence),
                scores=[], value={"spans": t.spans, "review": goes_to_review(bins, t.confidence, floor=floor),
                                  "prefill": review_is_cheaper(bins, t.confidence)},
                bucket=0,
            )
            for item, t in zip(chunk, tagged, strict=True) if item.pk in alive
        ]
        _upsert_part_predictions(rows)
        written += len(rows)
    _point_queue_at(project, version=version)
    return written


# Images detected per database write (detection takes ~0.15 s a tile on these cores: a heartbeat in between).
DETECT_BATCH = 20


def rank_boxes_version(project: Project, *, version: ModelVersion, beat: Callable[[], object] | None = None) -> int:
    """Detect the boxes of every unlabelled image with a detection version and store them with the image's
    uncertainty (modeling/ml/detection.py's `image_confidence`: 1 - the least confident decision, or the mean
    binary entropy under the entropy rule), the proposals a person is shown (the detections at the threshold
    TEST chose) and whether the image goes to review (the cost rule at the project's floor), then point the queue
    at this version. Labelled images are not detected: nothing is proposed for them and the queue skips them."""
    from .ml.detection import detect, goes_to_review, image_confidence, load_detector, review_is_cheaper, shown

    kind = kind_for(project)
    review = version.metrics.get("review") or {}
    bins, threshold = review.get("bins") or [], review.get("threshold")
    floor = project.review_precision_floor
    model, meta = load_detector(project.model_path / version.file)
    classes = list(meta["classes"])
    ids = list(Item.objects.filter(project=project, status=ItemStatus.UNLABELLED).order_by("pk")
               .values_list("pk", flat=True))
    current = ModelState.objects.filter(pk=project.pk, current_version=version)
    written = 0
    for start in range(0, len(ids), DETECT_BATCH):
        if not current.exists():
            return written  # a newer version was made meanwhile: its own ranking writes the queue's rows
        chunk = list(Item.objects.filter(pk__in=ids[start:start + DETECT_BATCH]).order_by("pk"))
        files = [(i, project.item_file_path(i)) for i in chunk]
        on_disk = [(i, p) for i, p in files if p is not None and p.is_file()]  # a missing file is not guessed at
        readable = [i for i, _ in on_disk]
        found = detect(model, [p for _, p in on_disk], classes=classes)
        if beat is not None:
            beat()
        alive = set(Item.objects.filter(pk__in=[i.pk for i in readable]).values_list("pk", flat=True))
        rows = []
        for item, detection in zip(readable, found, strict=True):
            if item.pk not in alive:
                continue  # deleted while it was detected
            confidence, entropy = image_confidence(detection.boxes)
            proposals = shown(detection.boxes, threshold)
            rows.append(ItemPrediction(
                item_id=item.pk, project=project, version=version.number, label=kind.summary({"boxes": proposals}),
                confidence=confidence, entropy=entropy,
                uncertainty=max(0.0, entropy if project.sampling == "entropy" else 1.0 - confidence), scores=[],
                value={"boxes": proposals, "review": threshold is not None and goes_to_review(bins, confidence,
                                                                                               floor=floor),
                       "prefill": threshold is not None and review_is_cheaper(bins, confidence)},
                bucket=0,
            ))
        _upsert_part_predictions(rows)
        written += len(rows)
    _point_queue_at(project, version=version)
    return written


# --------------------------------------------------------------------------------------------------
# Before the first model: where TRAIN starts
# --------------------------------------------------------------------------------------------------

# Typical items kept beyond the TRAIN labels still needed, for annotators working at once.
COLD_START_SPARE = 5
# k-means runs on at most this many items (the labelled ones and a random sample of the rest).
COLD_START_SAMPLE = 20_000


def refresh_cold_start(project: Project, *, data: TrainingData | None = None) -> list[int]:
    """Store, in order, the typical items TRAIN picks start with until the first model (TypiClust,
    modeling/ml/coldstart.py), computed with the labels there are now: K = labelled + still needed.
    Nothing once a model exists (the margin queue takes over) or before items are embedded."""
    from .ml.coldstart import typical_picks
    from .ml.training import standardiser

    if ModelState.objects.filter(project=project, current_version__isnull=False).exists():
        return []
    embeddings = store_for(project)[1].load()
    valid = np.isin(embeddings.ids, embeddable_ids(project))
    if not valid.any():
        return []
    if data is None:  # the training task passes the labels it has just read
        data = training_data(project)
    labelled_ids = np.asarray([i for i, _ in data.train] + [i for i, _ in data.test], dtype=np.int64)
    rows = np.flatnonzero(valid)
    is_labelled = np.isin(embeddings.ids[rows], labelled_ids)
    if len(rows) > COLD_START_SAMPLE:
        rest = np.random.default_rng(0).choice(rows[~is_labelled], COLD_START_SAMPLE, replace=False)
        rows = np.sort(np.concatenate([rows[is_labelled], rest]))
        is_labelled = np.isin(embeddings.ids[rows], labelled_ids)
    vectors = np.asarray(embeddings.vectors[rows], dtype=np.float32)
    mean, scale = standardiser(vectors)
    wanted = max(project.min_train_judgements - len(data.train), 0) + COLD_START_SPARE
    picks = typical_picks((vectors - mean) / scale, np.flatnonzero(is_labelled), wanted)
    chosen = [int(embeddings.ids[rows[r]]) for r in picks]
    if not ModelState.objects.filter(project=project).update(cold_start=chosen):
        ModelState.objects.get_or_create(project=project, defaults={"cold_start": chosen})
    return chosen


# --------------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------------


def _current_model(project_id: int) -> tuple[Project, ModelState, ModelVersion] | str:
    """The project, its model state and current version, or why there is nothing to do."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return "project deleted"
    state = ModelState.objects.select_related("current_version").filter(project=project).first()
    if state is None or state.current_version is None:
        return "no model yet"
    return project, state, state.current_version


def reads_current_encoder(project: Project, head: Head) -> bool:
    """The head was trained on the encoder (name and version: a fine-tuned copy has its own) whose vectors the
    project's cache holds now; ranking, proposing and checking labels with any other head would mix features."""
    spec = store_for(project)[0]
    return (head.encoder, head.encoder_version) == (spec.name, spec.version)


def rank_project(project_id: int) -> str:
    """Score every embedded item with the current version (e.g. after new items were embedded)."""
    found = _current_model(project_id)
    if isinstance(found, str):
        return found
    project, _state, version = found
    if version.metrics.get("kind") == "sequence":
        return f"ranked {rank_spans_version(project, version=version)} texts with v{version.number}"
    if version.metrics.get("kind") == "object_detection":
        return f"ranked {rank_boxes_version(project, version=version)} images with v{version.number}"
    head = Head.load(project.model_path / version.file)
    _, store = store_for(project)
    embeddings = store.load()
    rank_version(project, version=version, head=head, embeddings=embeddings)
    propose_version(project, version=version, head=head, embeddings=embeddings)
    return f"ranked with v{version.number}"


def rank_version(project: Project, *, version: ModelVersion, head: Head, embeddings) -> int:
    """Store each item's prediction, entropy and uncertainty (the project's sampling rule), then point
    the queue at this version.

    Written in batches of upserts (short write transactions, so labeling is never blocked for long);
    rows of older versions are removed at the end.
    """
    if not reads_current_encoder(project, head):
        return 0  # the project reads another encoder now (switched, or a fine-tune adopted): not this head's vectors
    valid = embeddable_ids(project)
    pos, found = embeddings.rows_for(valid)
    ids = valid[found]
    vectors = embeddings.vectors[pos[found]]
    classes = head.classes
    written = 0
    buckets = lsh_buckets(vectors)
    for start in range(0, len(ids), UPSERT_BATCH):
        probs = head.predict_proba(vectors[start : start + UPSERT_BATCH])
        entropy = normalised_entropy(probs)
        ranking = uncertainty(probs, project.sampling)
        best = probs.argmax(axis=1)
        rows = [
            ItemPrediction(
                item_id=int(item_id), project=project, version=version.number, label=classes[int(b)],
                confidence=float(p[b]), entropy=float(max(0.0, h)), uncertainty=float(max(0.0, u)),
                scores=[round(float(x), 5) for x in p], bucket=int(bucket),
            )
            for item_id, p, b, h, u, bucket in zip(
                ids[start : start + UPSERT_BATCH], probs, best, entropy, ranking,
                buckets[start : start + UPSERT_BATCH], strict=True,
            )
        ]
        with transaction.atomic():
            ItemPrediction.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["item"],
                update_fields=["version", "label", "confidence", "entropy", "uncertainty", "scores", "bucket"],
            )
        written += len(rows)
    with transaction.atomic():
        ItemPrediction.objects.filter(project=project).exclude(version=version.number).delete()
        # Only point the queue here if no newer version was made meanwhile.
        ModelState.objects.filter(pk=project.pk, current_version=version).update(ranked_version=version.number)
    return written



# --------------------------------------------------------------------------------------------------
# Proposals
# --------------------------------------------------------------------------------------------------


def propose_project(project_id: int) -> str:
    """Recompute the current version's thresholds (e.g. the owner changed the target) and re-propose."""
    found = _current_model(project_id)
    if isinstance(found, str):
        return found
    project, state, version = found
    if version.metrics.get("kind") == "sequence":
        # A text goes to review by the floor and the cost rule: ranking decides it again for every text.
        return f"ranked {rank_spans_version(project, version=version)} texts with v{version.number}"
    if version.metrics.get("kind") == "object_detection":
        # An image's proposals and review follow from its detections: ranking decides them again for each image.
        return f"ranked {rank_boxes_version(project, version=version)} images with v{version.number}"
    if state.ranked_version != version.number:
        return "waiting for the ranking"  # rank_project proposes when it finishes
    head = Head.load(project.model_path / version.file)
    _, store = store_for(project)
    return propose_version(project, version=version, head=head, embeddings=store.load())


def propose_version(project: Project, *, version: ModelVersion, head: Head, embeddings) -> str:
    """Review batches by expected human time (modeling/ml/review.py), and the thresholds TEST proves.

    Batches: the current version's predictions of the unlabelled pool, each class taken most confident
    first while its expected precision (confidence corrected by what reviews measured) holds the
    project's review precision floor. Proven thresholds: TEST evidence for the project's target precision
    and guarantee (modeling/ml/thresholds.py), read fresh (every current TEST judgement, including ones
    added after the version was trained: they are just as unseen by its head), scored with the
    calibrated head. Numpy only.
    """
    from labeling.audits import measured_precision
    from labeling.proposals import do_sync_proposals

    from .ml.review import overconfidence, review_thresholds
    from .ml.thresholds import choose_thresholds

    if not reads_current_encoder(project, head) or list(head.classes) != list(project.classes):
        return "the project changed since this version: not proposing with it"
    classes = list(head.classes)
    data = training_data(project)
    index = {name: i for i, name in enumerate(classes)}
    labels = dict(data.test)
    vectors, present = embeddings.take([i for i, _ in data.test])
    y_test = np.asarray([index[labels[i]] for i in present.tolist()], dtype=np.int64)
    probs = head.predict_proba(vectors) if len(y_test) else np.zeros((0, len(classes)))
    target = float(project.auto_label_precision)
    proven, _ = choose_thresholds(classes, probs, y_test, target=target, guarantee=project.proposal_guarantee)

    from labeling.models import Proposal, ProposalOrigin, ProposalStatus

    rows = list(
        ItemPrediction.objects.filter(project=project, version=version.number, item__status=ItemStatus.UNLABELLED)
        .values_list("item_id", "label", "confidence")
    )
    # A pair a reviewer already rejected is never proposed again, so it must not hold up its class's
    # running mean either (it would make the batches look more precise than what they can offer).
    rejected = set(
        Proposal.objects.filter(
            project=project, origin=ProposalOrigin.MODEL, status=ProposalStatus.REJECTED,
            item__status=ItemStatus.UNLABELLED,
        ).values_list("item_id", "label")
    )
    rows = [row for row in rows if (row[0], row[1]) not in rejected]
    offsets = {
        label: overconfidence(seen=m.seen, confirmed=m.confirmed, expected=m.expected)
        for label, m in measured_precision(project).items()
    }
    floor = float(project.review_precision_floor)
    batches = review_thresholds(
        classes, np.asarray([index.get(label, -1) for _, label, _ in rows], dtype=np.int64),
        np.asarray([c for _, _, c in rows], dtype=np.float64), floor=floor, offsets=offsets,
    )
    reasons = sorted({t.reason for t in batches.values() if t.threshold is None and t.reason})
    note = "" if any(t.threshold is not None for t in batches.values()) else "; ".join(reasons)
    ModelVersion.objects.filter(pk=version.pk).update(
        thresholds={label: t.as_dict() for label, t in proven.items()}, thresholds_target=target,
        review_thresholds={label: t.as_dict() for label, t in batches.items()}, proposal_note=note[:300],
    )
    cut = {label: t.threshold for label, t in batches.items() if t.threshold is not None}
    desired: dict[int, tuple[str, float]] = {
        item_id: (label, confidence) for item_id, label, confidence in rows
        if label in cut and confidence >= cut[label]
    }
    desired.update(next_likeliest(project, version=version, classes=classes, thresholds=batches))
    result = do_sync_proposals(project, version=version.number, desired=desired)
    ModelState.objects.filter(pk=project.pk, current_version=version).update(proposed_version=version.number)
    ready = sorted(cut)
    return (
        f"v{version.number} proposals: {result.created} new, {result.kept} kept, {result.withdrawn} withdrawn"
        f" (classes with a threshold: {', '.join(ready) or 'none'})"
    )


def next_likeliest(
    project: Project, *, version: ModelVersion, classes: list[str], thresholds: dict
) -> dict[int, tuple[str, float]]:
    """Unlabelled items whose proposal a reviewer unticked without naming the right class: their likeliest
    class not yet rejected for them, where that class's threshold admits the item (item id -> (label,
    confidence)). The others stay first in line in the single-label queue."""
    from labeling.models import Proposal, ProposalOrigin, ProposalStatus

    rejected: dict[int, set[str]] = {}
    for item_id, label in Proposal.objects.filter(
        project=project, origin=ProposalOrigin.MODEL, status=ProposalStatus.REJECTED,
        item__status=ItemStatus.UNLABELLED,
    ).values_list("item_id", "label"):
        rejected.setdefault(item_id, set()).add(label)
    out: dict[int, tuple[str, float]] = {}
    rows = ItemPrediction.objects.filter(project=project, version=version.number, item_id__in=list(rejected))
    for item_id, scores in rows.values_list("item_id", "scores"):
        if len(scores) != len(classes):
            continue
        for k in sorted(range(len(classes)), key=lambda k: -scores[k]):
            if classes[k] in rejected[item_id]:
                continue
            threshold = thresholds[classes[k]].threshold if classes[k] in thresholds else None
            if threshold is not None and scores[k] >= threshold:
                out[item_id] = (classes[k], float(scores[k]))
            break  # only the likeliest class left: a less likely one would ask the reviewer to guess
    return out


# --------------------------------------------------------------------------------------------------
# Checking the labels (top losses, label-error candidates)
# --------------------------------------------------------------------------------------------------

TOP_LOSSES = 200
MAX_CANDIDATES = 2000


def check_labels(project_id: int) -> str:
    """Score every human label (TRAIN and TEST) out of fold with the current version's features and L2, and
    store the top losses and confident learning's label-error candidates (modeling/ml/label_errors.py).

    One check per project at a time (a claim on its LabelCheck row); the result replaces the last one whole.
    """
    from .ml.label_errors import label_error_candidates, out_of_fold_probs, per_class_thresholds, top_losses

    found = _current_model(project_id)
    if isinstance(found, str):
        LabelCheck.objects.filter(project_id=project_id).update(queued_at=None)
        return found
    project, _state, version = found
    check, _ = LabelCheck.objects.get_or_create(project=project)
    LabelCheck.objects.filter(pk=project.pk).update(queued_at=None)  # from here a request enqueues a new check
    token = claim_token()
    filters = {"pk": project.pk}
    if not claim(LabelCheck, filters=filters, token=token):
        return "another worker is checking this project's labels"
    try:
        started = time.perf_counter()
        revision = Project.objects.filter(pk=project.pk).values_list("judgement_revision", flat=True).first() or 0
        head = Head.load(project.model_path / version.file)
        if not reads_current_encoder(project, head):
            # The next version (trained on what the project reads now) asks for a check of its own.
            return f"v{version.number} reads another encoder than the project now does: checked with the next one"
        classes = list(head.classes)
        index = {name: i for i, name in enumerate(classes)}
        from labeling.models import Judgement, Stage

        rows = list(
            Judgement.objects.filter(project=project, is_current=True, stage__in=[Stage.TRAIN, Stage.TEST],
                                     label__in=classes)
            .exclude(item__status=ItemStatus.REJECTED).order_by("item_id")
            .values_list("pk", "item_id", "label", "stage")
        )
        _, store = store_for(project)
        vectors, present = store.load().take([item_id for _, item_id, _, _ in rows])
        kept_rows = {int(i) for i in present.tolist()}
        rows = [r for r in rows if r[1] in kept_rows]
        y = np.asarray([index[label] for _, _, label, _ in rows], dtype=np.int64)
        x = (vectors - head.mean) / head.scale
        l2 = float(head.info.get("l2", version.metrics.get("l2", 1e-2)))
        probs = out_of_fold_probs(x, y, len(classes), l2=l2)
        heartbeat(LabelCheck, filters=filters, token=token)

        def finding(f) -> dict:
            judgement_id, item_id, _label, stage = rows[f.row]
            return {"item": item_id, "judgement": judgement_id, "stage": stage, "given": classes[f.given],
                    "suggested": classes[f.suggested], "p_given": round(f.p_given, 5),
                    "p_suggested": round(f.p_suggested, 5), "loss": round(f.loss, 5)}

        candidates = label_error_candidates(probs, y, len(classes))
        thresholds = per_class_thresholds(probs, y, len(classes))
        LabelCheck.objects.filter(pk=project.pk).update(
            version=version.number, judgement_revision=revision, labels=len(rows),
            estimated_errors=len(candidates), candidates=[finding(f) for f in candidates[:MAX_CANDIDATES]],
            top_losses=[finding(f) for f in top_losses(probs, y, limit=TOP_LOSSES)],
            thresholds={classes[j]: (None if not np.isfinite(t) else round(float(t), 5))
                        for j, t in enumerate(thresholds)},
            seconds=time.perf_counter() - started, checked_at=timezone.now(), last_error="",
        )
        return f"checked {len(rows)} labels with v{version.number}: {len(candidates)} candidates"
    except Exception as exc:
        LabelCheck.objects.filter(pk=project.pk).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        release(LabelCheck, filters=filters, token=token)


# --------------------------------------------------------------------------------------------------
# The deep tier: fine-tuning (on its own queue, settings.LIGHTBULB_DEEP_CLUSTER)
# --------------------------------------------------------------------------------------------------

FINETUNE_HEARTBEAT_SECONDS = 5.0  # progress (and the cancel flag) is written and read at most this often


class LostRun(Exception):
    """The run is no longer this worker's (recovery marked it failed, or it was cancelled as silent)."""


def finetune_run(run_id: int) -> str:
    """Fine-tune the project's encoder on a snapshot of TRAIN, re-embed the pool with it into a cache of its own,
    and adopt it only if the model on it beats the current one on TEST (exact McNemar, one-sided, 5%).

    The run is claimed by a conditional UPDATE (queued -> running); every later write is conditional on this
    worker still holding it, so a run recovery took away (or a silent one an owner cancelled) can never come
    back and be adopted. The project's model is untouched until the very end: adopting is one UPDATE of
    ModelState.finetune followed by a forced training on the fast queue. A cancel, a stop or an error removes
    the run's files (never those of a run the project uses).
    """
    from .deep import discard_files, run_spec
    from .ml import finetune as ft
    from .ml.embeddings import EmbeddingStore, raw_input, store_path
    from .ml.encoders import load_encoder
    from .ml.training import train_head
    from .models import FineTuneRun, FineTuneState

    run = FineTuneRun.objects.select_related("project").filter(pk=run_id).first()
    if run is None:
        return "run deleted"
    project = run.project
    token = claim_token()
    now = timezone.now()
    if not FineTuneRun.objects.filter(pk=run.pk, state=FineTuneState.QUEUED, cancel_requested=False).update(
        state=FineTuneState.RUNNING, claimed_by=token, heartbeat_at=now, started_at=now, phase="starting"
    ):
        return "not queued (taken, cancelled or finished)"
    run.refresh_from_db()
    mine = {"pk": run.pk, "state": FineTuneState.RUNNING, "claimed_by": token}
    last_beat = [0.0]
    cancelled = [False]

    def beat(force: bool = False, **fields) -> None:
        if not force and time.monotonic() - last_beat[0] < FINETUNE_HEARTBEAT_SECONDS:
            return
        last_beat[0] = time.monotonic()
        if not FineTuneRun.objects.filter(**mine).update(heartbeat_at=timezone.now(), **fields):
            raise LostRun("the run is no longer this worker's")
        cancelled[0] = FineTuneRun.objects.filter(pk=run.pk, cancel_requested=True).exists()

    def should_stop() -> bool:
        beat()
        return cancelled[0] or stopping.requested()

    def on_progress(p: ft.Progress) -> None:
        beat(phase=p.phase[:80], epoch=p.epoch, epochs=p.epochs, loss=p.loss, progress=round(0.8 * p.fraction, 4),
             seconds_left=p.seconds_left)

    try:
        project.refresh_from_db()
        if project.encoder_name != run.encoder:
            raise ValueError(f"the project now reads {project.encoder_name}, not {run.encoder}")
        classes = list(project.classes)
        index = {name: i for i, name in enumerate(classes)}
        data = training_data(project)
        train = {i: index[label] for i, label in data.train if label in index}
        test = {i: index[label] for i, label in data.test if label in index}
        revision = project.judgement_revision
        inputs, labels = [], []
        for item in Item.objects.filter(pk__in=list(train)).exclude(status=ItemStatus.REJECTED).order_by("id"):
            try:
                raw = raw_input(project, item)
                if isinstance(raw, bytes):
                    ft.decode_rgb(raw)  # a file no decoder reads is left out here, as embedding leaves it out
            except Exception as exc:  # noqa: BLE001 - an unreadable item is left out; the rest trains
                logger.warning("fine-tune %s: leaving out %s: %s", run.pk, item.key, exc)
                continue
            inputs.append(raw)
            labels.append(train[item.pk])
            beat()
        if len(set(labels)) < 2:
            raise ValueError("TRAIN needs labels of at least two classes")
        beat(force=True, train_count=len(labels), test_count=len(test), judgement_revision=revision,
             phase="preparing the images" if project.data_type == "images" else "preparing the pairs")
        folder = project.model_path / run.folder
        started = time.perf_counter()
        y = np.asarray(labels, dtype=np.int64)
        result: ft.ImageResult | ft.TextResult
        if project.data_type == "images":
            images = [x for x in inputs if isinstance(x, bytes)]
            result = ft.finetune_images(run.encoder, images, y, len(classes), epochs=settings.LIGHTBULB_FINETUNE_EPOCHS,
                                        progress=on_progress, should_stop=should_stop)
        else:
            from .ml.provisioning import minilm_model_dir

            base_dir = minilm_model_dir()
            if base_dir is None:
                raise ValueError("all-MiniLM-L6-v2 is not installed")
            result = ft.finetune_text([str(x) for x in inputs], y, model_dir=base_dir, progress=on_progress,
                                      should_stop=should_stop)
        beat(force=True, phase="saving the weights")
        ft.save_encoder(result, folder)
        training_seconds = time.perf_counter() - started
        beat(force=True, phase="re-embedding the pool", progress=0.8, seconds_left=None)

        # The pool, re-embedded with the fine-tuned encoder into a cache of its own (named after the run's encoder).
        spec = run_spec(run)
        store = EmbeddingStore(store_path(project, spec), spec.dim)
        started = time.perf_counter()
        encoder = load_encoder(run.encoder, finetuned=str(folder))
        valid = embeddable_ids(project)
        while True:
            pending = pending_item_ids(store.load(), valid)
            if not pending:
                break
            total = len(valid)

            def on_chunk(n_ok: int, n_failed: int, seconds: float, total: int = total) -> None:
                done = total - len(pending_item_ids(store.load(), valid))
                beat(force=True, phase=f"re-embedding the pool ({done:,} of {total:,})",
                     progress=round(0.8 + 0.15 * done / max(total, 1), 4))

            embed_pending(project, store=store, encoder_loader=lambda: encoder, item_ids=pending,
                          should_yield=should_stop, on_chunk=on_chunk)
            if should_stop():
                raise ft.Cancelled("stopped")
        store.consolidate()
        embedding_seconds = time.perf_counter() - started
        beat(force=True, phase="comparing on TEST", progress=0.95)

        # The paired comparison: the same TRAIN snapshot fits a head on each encoder's features; the same TEST
        # items (those both caches hold) judge both.
        current_spec, current_store = store_for(project)  # what the model reads now (pretrained or adopted)
        current, candidate = current_store.load(), store.load()
        both = set(current.take(list(test))[1].tolist()) & set(candidate.take(list(test))[1].tolist())
        test_ids = [i for i in test if i in both]

        def right_on_test(embeddings, name: str, version: str) -> np.ndarray:
            x_train, ids_train = embeddings.take(list(train))
            y_train = np.asarray([train[i] for i in ids_train.tolist()], dtype=np.int64)
            x_test, _ = embeddings.take(test_ids)
            y_test = np.asarray([test[i] for i in test_ids], dtype=np.int64)
            pool = sample_rows(embeddings.vectors, limit=STANDARDISE_SAMPLE)
            fitted = train_head(classes=classes, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                                pool=pool, encoder=name, encoder_version=version)
            beat(force=True)
            return fitted.head.predict_proba(x_test).argmax(axis=1) == y_test if len(y_test) else np.zeros(0, bool)

        comparison = ft.compare(right_on_test(current, current_spec.name, current_spec.version),
                                right_on_test(candidate, spec.name, spec.version))
        if should_stop():
            raise ft.Cancelled("stopped")
        return settle_finetune(run, comparison, token=token,
                               training_seconds=training_seconds, embedding_seconds=embedding_seconds)
    except ft.Cancelled:
        if FineTuneRun.objects.filter(**mine).update(
            state=FineTuneState.CANCELLED, claimed_by="", finished_at=timezone.now(),
            reason="cancelled by an owner" if cancelled[0] else "stopped with the worker; the project kept its model",
        ):
            discard_files(project, run)
        return f"fine-tune {run.number} cancelled"
    except LostRun:
        return f"fine-tune {run.number}: no longer this worker's (recovered or cancelled meanwhile)"
    except BaseException as exc:
        # Whatever stopped it (an error, a SystemExit), nothing of the run stays in use. A kill that runs no
        # handler (django-q2's timeout terminates the process) is caught by recovery (modeling.deep).
        if FineTuneRun.objects.filter(**mine).update(
            state=FineTuneState.FAILED, claimed_by="", finished_at=timezone.now(),
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        ):
            discard_files(project, run)
        raise


def settle_finetune(run, comparison, *, token: str, training_seconds: float = 0.0,
                    embedding_seconds: float = 0.0) -> str:
    """The end of a fine-tune: adopt it (ModelState.finetune, then a forced training on the fast queue, which
    reads the fine-tuned cache) when the comparison on TEST says better, else keep it for the record and drop its
    weights and vectors. Only while this worker (`token`) still holds the run and nobody asked to cancel it."""
    from .deep import discard_files, drop_vectors
    from .models import FineTuneDecision, FineTuneRun, FineTuneState

    project_id = run.project_id
    detail = (f"on {comparison.test_items} TEST items: {comparison.candidate_accuracy:.1%} against "
              f"{comparison.current_accuracy:.1%} ({comparison.only_candidate_right} right only with it, "
              f"{comparison.only_current_right} only without; one-sided McNemar p = {comparison.p_value:.3f})")
    decision, reason = ((FineTuneDecision.ADOPTED, f"better {detail}") if comparison.better
                        else (FineTuneDecision.KEPT, f"not shown better {detail}"))
    with transaction.atomic():
        settled = FineTuneRun.objects.filter(
            pk=run.pk, state=FineTuneState.RUNNING, claimed_by=token, cancel_requested=False
        ).update(
            state=FineTuneState.DONE, decision=decision, reason=reason[:500], comparison=comparison.as_dict(),
            training_seconds=training_seconds, embedding_seconds=embedding_seconds, finished_at=timezone.now(),
            progress=1.0, seconds_left=0, phase="done", claimed_by="",
        )
        if not settled:
            raise LostRun("the run was cancelled or taken away before it could be settled")
        if comparison.better:
            previous = FineTuneRun.objects.filter(
                pk__in=ModelState.objects.filter(pk=project_id).values("finetune")).first()
            ModelState.objects.filter(pk=project_id).update(finetune=run)
            if previous is not None:
                # The cache of the run it replaces: nothing reads it any more (its weights stay, for the versions
                # trained on them).
                transaction.on_commit(lambda: drop_vectors(previous.project, previous), robust=True)
            # robust: a broker hiccup must not undo an adoption already committed (resume_model_work retrains).
            transaction.on_commit(lambda: request_training(project_id, force=True), robust=True)
            transaction.on_commit(lambda: request_embedding(project_id), robust=True)  # items added meanwhile
    if not comparison.better:
        discard_files(run.project, run)  # kept for the record (its numbers and why): no model reads its files
    return f"fine-tune {run.number}: {decision}: {reason}"
