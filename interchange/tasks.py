"""Background tasks of the interchange app (django-q2): keep judgements files in sync. Cheap, torch-free, idempotent."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from projects.models import Project

from .judgements_file import sync_judgements_file
from .uploads import claim_import, do_run_import

logger = logging.getLogger(__name__)


def enqueue_judgements_file_sync(project_id: int) -> None:
    """One queued sync per burst of labels: a conditional UPDATE claims the right to enqueue it; a mark older
    than the claim timeout is a lost task and is claimed again."""
    from django_q.tasks import async_task

    now = timezone.now()
    lost = now - timedelta(seconds=settings.LIGHTBULB_CLAIM_STALE_SECONDS)
    claimed = (
        Project.objects.filter(pk=project_id).exclude(judgements_file="")
        .filter(Q(judgements_file_queued_at__isnull=True) | Q(judgements_file_queued_at__lt=lost))
        .update(judgements_file_queued_at=now)
    )
    if claimed:
        async_task("interchange.tasks.sync_judgements_file_task", project_id, group=f"judgements-file-{project_id}")


def sync_judgements_file_task(project_id: int) -> str:
    """Rewrite a project's judgements file if judgements changed since it was last written.

    Many judgements arriving together enqueue many of these; all but the first find the file already
    current and return at once.
    """
    # From here on a new label enqueues a new sync (enqueue_judgements_file_sync); until here it needed none.
    Project.objects.filter(pk=project_id).update(judgements_file_queued_at=None)
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return "project deleted"
    revision = project.judgement_revision
    if project.judgements_file_revision >= revision:
        return "up to date"
    rows = sync_judgements_file(project)
    with transaction.atomic():
        Project.objects.filter(pk=project_id, judgements_file_revision__lt=revision).update(
            judgements_file_revision=revision
        )
    return f"wrote {rows} judgements"


def run_import_task(job_id: int) -> str:
    """Import an upload or a server folder (interchange.uploads). Idempotent: a job another worker holds, a
    finished one or a deleted one is left alone; one whose worker died is taken over and starts clean."""
    job = claim_import(job_id)
    if job is None:
        return "not queued (finished, taken by another worker, or deleted)"
    job = do_run_import(job)
    if job.state == "failed":
        return f"failed: {job.error}"
    return f"imported {job.items_added} item(s), {job.items_rejected} rejected, {job.duplicates_found} duplicate(s)"
