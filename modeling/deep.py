"""The deep tier's torch-free side: asking for a fine-tune, cancelling one, taking back what a killed worker left,
and what the model card shows. The run itself is `modeling.tasks.finetune_run`, on the deep worker's queue
(settings.LIGHTBULB_DEEP_CLUSTER), so the fast head's training never waits behind it.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from lightbulb_site.errors import DomainError
from projects.encoders import EncoderError, EncoderSpec, spec_for
from projects.models import Project

from .ml.embeddings import project_encoder, store_path
from .models import FineTuneRun, FineTuneState, ModelState
from .services import _holder_is_dead as holder_is_dead
from .services import loop_enabled, request_embedding, request_training, stale_after, training_data

FINETUNABLE = {"mobilenet_v2", "efficientnet_lite0", "mobilenet_lite0", "minilm_l6", "minilm_ngrams"}


class FineTuneError(DomainError):
    """A fine-tune that cannot be asked for or cancelled now (409), with the reason."""

    status_code = 409


def supports_finetuning(project: Project) -> bool:
    return project.modelled and project.encoder_name in FINETUNABLE


def live_run(project: Project) -> FineTuneRun | None:
    return FineTuneRun.objects.filter(project=project, state__in=[FineTuneState.QUEUED, FineTuneState.RUNNING]).first()


def _enqueue(run_id: int) -> None:
    from django_q.tasks import async_task

    if not loop_enabled():
        return  # the model loop is off (imports, tests): the run stays queued for `resume_model_work`
    async_task("modeling.tasks.finetune_run", run_id, group=f"finetune-{run_id}",
               cluster=settings.LIGHTBULB_DEEP_CLUSTER)


def _create_run(project: Project, *, trigger: str, user: User | None, train_count: int) -> FineTuneRun:
    base = spec_for(project.encoder_name, data_type=project.data_type)
    for _attempt in range(3):
        number = (FineTuneRun.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        try:
            with transaction.atomic():
                run = FineTuneRun.objects.create(
                    project=project, number=number, trigger=trigger, requested_by=user, encoder=base.name,
                    base_version=base.version, encoder_version=f"{base.version}+ft-p{project.pk}-r{number}",
                    folder=f"finetune/run-{number:04d}", train_count=train_count,
                )
        except IntegrityError:
            continue  # another request took the number; take the next
        transaction.on_commit(lambda run_id=run.pk: _enqueue(run_id))  # type: ignore[misc]
        return run
    raise FineTuneError("could not number the fine-tune run; try again")


def do_request_finetune(project: Project, *, user: User) -> FineTuneRun:
    """An owner's "Fine-tune now". Preconditions (else FineTuneError): the project's encoder can be fine-tuned,
    it has a model (so there is something to compare with on TEST), and no run is queued or running."""
    if not supports_finetuning(project):
        raise FineTuneError(f"the encoder {project.encoder_name} cannot be fine-tuned")
    if not ModelState.objects.filter(project=project, current_version__isnull=False).exists():
        raise FineTuneError("there is no model yet to compare a fine-tuned one with; label more items first")
    recover_lost(project)
    with transaction.atomic():
        # One request at a time per project: a row lock on PostgreSQL; SQLite's IMMEDIATE transactions
        # (settings) serialise every writer anyway.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        if live_run(project) is not None:
            raise FineTuneError("a fine-tune is already queued or running")
        return _create_run(project, trigger="owner", user=user, train_count=len(training_data(project).train))


def maybe_request_finetune(project: Project) -> FineTuneRun | None:
    """After a new model version: start a fine-tune when TRAIN has LIGHTBULB_FINETUNE_MIN_TRAIN labels and has
    grown by LIGHTBULB_FINETUNE_GROWTH since the last run that finished (or was cut short); None otherwise."""
    if not (loop_enabled() and settings.LIGHTBULB_FINETUNE_AUTO and supports_finetuning(project)):
        return None
    train = len(training_data(project).train)
    if train < settings.LIGHTBULB_FINETUNE_MIN_TRAIN:
        return None
    recover_lost(project)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        if live_run(project) is not None:
            return None
        last = FineTuneRun.objects.filter(project=project).exclude(state=FineTuneState.CANCELLED).order_by(
            "-number").first()
        if last is not None and train < settings.LIGHTBULB_FINETUNE_GROWTH * last.train_count:
            return None
        return _create_run(project, trigger="auto", user=None, train_count=train)


def do_cancel_finetune(project: Project, *, run: FineTuneRun) -> FineTuneRun:
    """Cancel a queued run at once, or ask a running one to stop at its next batch (it then removes its files).
    Preconditions: the run is this project's and still queued or running (else FineTuneError)."""
    if run.project_id != project.pk:
        raise FineTuneError("no such fine-tune in this project")
    now = timezone.now()
    if FineTuneRun.objects.filter(pk=run.pk, state=FineTuneState.QUEUED).update(
        state=FineTuneState.CANCELLED, cancel_requested=True, finished_at=now, reason="cancelled before it started"
    ):
        run.refresh_from_db()
        return run
    run.refresh_from_db()
    if run.state == FineTuneState.RUNNING and is_lost(run):
        _fail_lost(run)  # nobody would read the flag: its worker is gone
        run.refresh_from_db()
        return run
    if not FineTuneRun.objects.filter(pk=run.pk, state=FineTuneState.RUNNING).update(cancel_requested=True):
        raise FineTuneError(f"fine-tune {run.number} has already ended ({run.get_state_display().lower()})")
    run.refresh_from_db()
    return run


def do_use_pretrained(project: Project, *, user: User) -> FineTuneRun:
    """An owner's "Use the pretrained encoder": the project stops reading its adopted fine-tune, re-embeds with the
    catalogued weights and trains a new version on them; the run is marked set aside and returned. Its vectors
    go (the cache of an encoder nobody reads); its weights stay, for the model versions trained on them (their
    exports carry them). Preconditions (else FineTuneError): a fine-tune is adopted now."""
    state = ModelState.objects.filter(project=project).select_related("finetune").first()
    run = state.finetune if state else None
    if run is None:
        raise FineTuneError("the project already uses the pretrained encoder")
    with transaction.atomic():
        # Conditional: a second click, or a run adopted meanwhile, is not undone blindly.
        if not ModelState.objects.filter(project=project, finetune=run).update(finetune=None):
            raise FineTuneError("the fine-tune in use changed meanwhile; reload the model card")
        FineTuneRun.objects.filter(pk=run.pk).update(set_aside_at=timezone.now(), set_aside_by=user)
        project_id = project.pk

        def follow() -> None:
            drop_vectors(project, run)
            request_embedding(project_id)
            request_training(project_id, force=True)

        transaction.on_commit(follow, robust=True)
    run.refresh_from_db()
    return run


def run_spec(run: FineTuneRun) -> EncoderSpec:
    """The fine-tuned encoder a run makes: its catalogued encoder under the run's own version (the cache key of
    the vectors it re-embeds). EncoderError if the catalogue no longer has that encoder."""
    return replace(spec_for(run.encoder), version=run.encoder_version)


def drop_vectors(project: Project, run: FineTuneRun) -> None:
    """The embeddings a run's encoder made (nothing reads them once the project reads another encoder)."""
    try:
        spec = run_spec(run)
    except EncoderError:
        return
    shutil.rmtree(store_path(project, spec), ignore_errors=True)


def discard_files(project: Project, run: FineTuneRun) -> None:
    """A run's weights and the embeddings made with them (a run that was not adopted, or did not finish)."""
    shutil.rmtree(project.model_path / run.folder, ignore_errors=True)
    drop_vectors(project, run)


def is_lost(run: FineTuneRun) -> bool:
    """A RUNNING run whose worker is gone: no word for the claim timeout, no claim, or its process is dead.
    (django-q2's timeout terminates the process without running any handler, and so does a kill.)"""
    lost = timezone.now() - stale_after()
    return (run.heartbeat_at is None or run.heartbeat_at < lost or not run.claimed_by
            or holder_is_dead(run.claimed_by))


def _fail_lost(run: FineTuneRun) -> bool:
    """Mark a lost run failed (conditionally: its worker may have reported meanwhile) and remove its files."""
    if not FineTuneRun.objects.filter(
        pk=run.pk, state=FineTuneState.RUNNING, heartbeat_at=run.heartbeat_at, claimed_by=run.claimed_by
    ).update(state=FineTuneState.FAILED, claimed_by="", finished_at=timezone.now(),
             last_error="the worker stopped during the run; the project kept its model"):
        return False
    if not ModelState.objects.filter(project_id=run.project_id, finetune_id=run.pk).exists():
        discard_files(run.project, run)
    return True


def recover_lost(project: Project | None = None) -> list[FineTuneRun]:
    """Lost runs (see `is_lost`), of one project or of all, failed: before a new run is asked for, so a dead
    worker's run never blocks the next one, and at worker start."""
    runs = FineTuneRun.objects.filter(state=FineTuneState.RUNNING).select_related("project")
    if project is not None:
        runs = runs.filter(project=project)
    return [run for run in runs if is_lost(run) and _fail_lost(run)]


def recover_finetunes() -> list[str]:
    """At worker start: lost runs are marked failed and their files removed, so the project stays on its last
    model and the next run starts clean; queued runs are enqueued again (a second copy of a task finds its run
    taken and returns)."""
    out = [f"fine-tune {run.project.slug} #{run.number} failed (worker stopped)" for run in recover_lost()]
    for run in FineTuneRun.objects.filter(state=FineTuneState.QUEUED):
        _enqueue(run.pk)
        out.append(f"fine-tune #{run.number} re-enqueued")
    return out


def finetune_summary(project: Project) -> dict:
    """The model card's deep-tier section: the run in progress (with its progress), the adopted one and the
    last few others with what the comparison on TEST said."""
    state = ModelState.objects.filter(project=project).select_related("finetune").first()
    adopted = state.finetune if state else None
    # An adoption made for another encoder (the owner switched since) waits for a switch back, unread.
    reading = adopted is not None and project_encoder(project).spec.version == adopted.encoder_version
    runs = list(FineTuneRun.objects.filter(project=project).select_related("set_aside_by").order_by("-number")[:5])
    live = next((r for r in runs if r.live), None)
    return {
        "supported": supports_finetuning(project),
        "adopted": adopted if reading else None,
        "dormant": None if reading else adopted,
        "live": live,
        # Its worker is gone (the card asks whether the deep worker runs; Cancel then fails it at once).
        "silent": bool(live and live.state == FineTuneState.RUNNING and is_lost(live)),
        "runs": runs,
    }
