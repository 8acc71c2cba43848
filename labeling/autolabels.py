"""Write paths for auto-labels: the owner's "label the rest automatically" and its withdrawal.

An auto-label is a judgement nobody saw: source AUTO, stage AUTO (so it never trains the model and never
enters TEST), no user, `labelled_by` "model vN", the calibrated confidence, and the run that made it,
which keeps the proof TEST gave for it. Modeling chooses the items (above thresholds proven at the
project's auto-label precision) and calls these; nothing here knows about models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from projects.models import Item, ItemStatus, Project

from .errors import AutoLabelError
from .leases import LEASE_CLEARED, free_lease
from .models import AutoLabelRun, Judgement, JudgementSource, Proposal, ProposalStatus, Stage
from .services import validate_label
from .signals import announce_auto_labels_withdrawn

CHUNK = 500


def auto_labeller_name(version: int) -> str:
    return f"model v{version}"


def do_record_auto_labels(
    project: Project,
    *,
    user: User,
    version: int,
    target: float,
    guarantee: str,
    proof: dict,
    picks: Mapping[int, tuple[str, float]],
    now: datetime | None = None,
) -> AutoLabelRun:
    """Auto-label `picks` (item id -> (class, calibrated confidence)) as model version `version`.

    Preconditions (the caller's, modeling's): every pick clears its class's threshold that TEST proved at
    `target` for `version`, and `proof` says so. Here: only items still unlabelled and free take a label;
    one a person holds (a single-label lease, or a proposal in someone's open batch) is left to them and
    counted in `skipped`. Pending proposals of the labelled items are superseded. The judgement revision
    is not bumped: what the model trains on and the judgements file (human labels) did not change.
    """
    for label, _ in picks.values():
        validate_label(project, label)
    now = now or timezone.now()
    ids = sorted(picks)
    with transaction.atomic():
        run = AutoLabelRun.objects.create(
            project=project, version=version, target=target, guarantee=guarantee, proof=proof,
            created_by=user, created_by_name=user.get_username(),
        )
        labelled = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            in_review = Proposal.objects.filter(
                item_id__in=chunk, status=ProposalStatus.PENDING, leased_until__gt=now
            ).values("item_id")
            free = list(
                Item.objects.select_for_update(skip_locked=True)
                .filter(free_lease(now), project=project, pk__in=chunk, status=ItemStatus.UNLABELLED)
                .exclude(pk__in=in_review)
                .values_list("pk", flat=True)
            )
            Judgement.objects.bulk_create(
                [
                    Judgement(
                        project=project, item_id=item_id, label=picks[item_id][0], user=None,
                        labelled_by=auto_labeller_name(version), stage=Stage.AUTO, source=JudgementSource.AUTO,
                        picked_by="auto", auto_run=run, confidence=float(picks[item_id][1]),
                    )
                    for item_id in free
                ]
            )
            Item.objects.filter(pk__in=free).update(status=ItemStatus.LABELLED, **LEASE_CLEARED)
            Proposal.objects.filter(item_id__in=free, status=ProposalStatus.PENDING).update(
                status=ProposalStatus.SUPERSEDED, closed_at=now
            )
            labelled += len(free)
        AutoLabelRun.objects.filter(pk=run.pk).update(labelled=labelled, skipped=len(ids) - labelled)
    run.refresh_from_db()
    return run


def do_withdraw_auto_labels(
    project: Project, *, user: User, version: int, now: datetime | None = None
) -> int:
    """Take back every auto-label model version `version` made in the project; returns how many were current.

    Precondition: the version has auto-labels not withdrawn yet (AutoLabelError otherwise). The rows stay
    for the record (marked undone); items whose current label was one go back to the queue unlabelled.
    An item a person relabelled since keeps that person's label (the auto-label was history already).
    """
    now = now or timezone.now()
    with transaction.atomic():
        runs = list(
            AutoLabelRun.objects.select_for_update().filter(project=project, version=version, withdrawn_at__isnull=True)
        )
        if not runs:
            raise AutoLabelError(f"model version {version} has no auto-labels to withdraw")
        judgements = Judgement.objects.filter(project=project, auto_run__in=runs, undone_at__isnull=True)
        rows = list(judgements.filter(is_current=True).values_list("item_id", "auto_run_id"))
        current = [item_id for item_id, _ in rows]
        per_run = Counter(run_id for _, run_id in rows)
        judgements.update(is_current=False, undone_at=now)
        for start in range(0, len(current), CHUNK):
            Item.objects.filter(pk__in=current[start : start + CHUNK], status=ItemStatus.LABELLED).update(
                status=ItemStatus.UNLABELLED
            )
        for run in runs:
            AutoLabelRun.objects.filter(pk=run.pk).update(
                withdrawn_at=now, withdrawn_by=user, withdrawn=per_run[run.pk]
            )
        announce_auto_labels_withdrawn(project)
    return len(current)
