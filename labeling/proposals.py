"""Write paths for proposals: syncing them with a model version, leasing batches, confirming, audits.

A proposal is the model's (or a text search's) suggested label for an unlabelled item. It never counts
as a judgement: a person confirms a batch of them, and only the ticked items become judgements
(source=confirmed_proposal, stage TRAIN, so the TEST stage stays a uniform random sample).

Called alike by the batch page, the REST API, the modeling task that proposes after each version, and
simulations. Errors are the labeling domain errors; views turn them into 400 / 404 / 409.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from projects.models import DataType, Item, ItemStatus, Project

from .audits import active_pauses, human_label_count, pause_if_below_floor
from .errors import BatchConflict, BatchError, InvalidLabel, LabelingError, NothingToUndo
from .leases import LEASE_CLEARED, after_change, claim_rows, free_lease
from .models import (
    AuditStatus,
    BatchStatus,
    Judgement,
    JudgementSource,
    Proposal,
    ProposalBatch,
    ProposalOrigin,
    ProposalPause,
    ProposalStatus,
    Stage,
)
from .services import validate_label
from .signals import announce_proposals_rejected

MAX_BATCH_ITEMS = 100
# ... and proposed again once the model has been retrained on this many more human labels.
RESUME_AFTER_HUMAN_LABELS = 10
SYNC_CHUNK = 500


def default_batch_size(project: Project) -> int:
    """About a screenful: many thumbnails fit, but only ~20 texts can be read at once."""
    if project.data_type == DataType.IMAGES:
        return settings.LIGHTBULB_BATCH_SIZE_IMAGES
    return settings.LIGHTBULB_BATCH_SIZE_TEXT


# --------------------------------------------------------------------------------------------------
# Syncing with a model version (called by modeling.tasks after every version)
# --------------------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    created: int = 0
    kept: int = 0
    withdrawn: int = 0
    paused: list[str] = field(default_factory=list)
    lifted: list[str] = field(default_factory=list)


def do_sync_proposals(
    project: Project, *, version: int, desired: dict[int, tuple[str, float]], now: datetime | None = None
) -> SyncResult:
    """Make the pending model proposals exactly `desired` (item id → (label, confidence)) for `version`.

    - Proposals the version still supports are kept (a batch being reviewed keeps them) and re-dated.
    - Pending proposals it no longer supports are withdrawn, leased or not: a reviewer's verdict on
      them still counts (a person looked), but no new batch offers them.
    - Never proposed: items labelled meanwhile, (item, class) pairs a person already rejected, and
      classes paused for low measured precision, unless this retrained model lifts the pause.
    """
    now = now or timezone.now()
    result = SyncResult()
    humans = human_label_count(project)
    paused = set()
    for label, pause in active_pauses(project).items():
        if humans >= pause.human_labels + RESUME_AFTER_HUMAN_LABELS:
            ProposalPause.objects.filter(pk=pause.pk).update(lifted_at=now, lifted_by_version=version)
            result.lifted.append(label)
        else:
            paused.add(label)
    result.paused = sorted(paused)
    desired = {i: lc for i, lc in desired.items() if lc[0] not in paused}

    rejected = set(
        Proposal.objects.filter(project=project, status=ProposalStatus.REJECTED).values_list("item_id", "label")
    )
    open_ = Proposal.objects.filter(project=project, status=ProposalStatus.PENDING)
    pending = {
        item_id: (pk, label)
        for pk, item_id, label in open_.filter(origin=ProposalOrigin.MODEL).values_list("pk", "item_id", "label")
    }
    # A pending search proposal stays (a person asked for it); the model does not propose over it.
    search_held = set(open_.filter(origin=ProposalOrigin.SEARCH).values_list("item_id", flat=True))
    unlabelled = set(Item.objects.filter(project=project, status=ItemStatus.UNLABELLED).values_list("pk", flat=True))

    withdraw, keep, create = [], [], []
    for item_id, (pk, label) in pending.items():
        wanted = desired.get(item_id)
        if wanted is None or wanted[0] != label or item_id not in unlabelled:
            withdraw.append(pk)
    for item_id, (label, confidence) in desired.items():
        if item_id not in unlabelled or (item_id, label) in rejected or item_id in search_held:
            continue
        if item_id in pending and pending[item_id][1] == label:
            keep.append((pending[item_id][0], confidence))
        else:
            create.append(
                Proposal(project=project, item_id=item_id, label=label, origin=ProposalOrigin.MODEL,
                         version=version, confidence=confidence)
            )
    # Short transactions: a pool of 100k items must not hold the write lock for long.
    for start in range(0, len(withdraw), SYNC_CHUNK):
        with transaction.atomic():
            result.withdrawn += Proposal.objects.filter(
                pk__in=withdraw[start : start + SYNC_CHUNK], status=ProposalStatus.PENDING
            ).update(status=ProposalStatus.WITHDRAWN, closed_at=now)
    for start in range(0, len(keep), SYNC_CHUNK):
        rows = [Proposal(pk=pk, version=version, confidence=c) for pk, c in keep[start : start + SYNC_CHUNK]]
        with transaction.atomic():
            Proposal.objects.bulk_update(rows, ["version", "confidence"])
        result.kept += len(rows)
    for start in range(0, len(create), SYNC_CHUNK):
        with transaction.atomic():
            # ignore_conflicts: an item that gained a pending proposal meanwhile (a search) keeps that one.
            Proposal.objects.bulk_create(create[start : start + SYNC_CHUNK], ignore_conflicts=True)
        result.created += len(create[start : start + SYNC_CHUNK])
    return result


# --------------------------------------------------------------------------------------------------
# Leasing batches
# --------------------------------------------------------------------------------------------------


@dataclass
class LeasedBatch:
    batch: ProposalBatch
    proposals: list[Proposal]


def _available(project: Project, now: datetime):
    """Pending proposals nobody is reviewing, on unlabelled items nobody is labelling one by one."""
    return Proposal.objects.filter(
        free_lease(now), project=project, status=ProposalStatus.PENDING, item__status=ItemStatus.UNLABELLED
    ).filter(free_lease(now, "item__leased_until"))


def available_by_class(project: Project, *, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    rows = (
        _available(project, now).filter(origin=ProposalOrigin.MODEL).values("label").annotate(n=Count("id"))
    )
    counts = {row["label"]: row["n"] for row in rows}
    return {label: counts[label] for label in project.classes if counts.get(label)}


def _held_batch(project: Project, user: User, now: datetime) -> ProposalBatch | None:
    return (
        ProposalBatch.objects.filter(project=project, user=user, status=BatchStatus.OPEN, leased_until__gt=now)
        .order_by("-created_at", "-id")
        .first()
    )


def _batch_proposals(batch: ProposalBatch) -> list[Proposal]:
    return list(batch.proposals.select_related("item").order_by("id"))


def _renew(batch: ProposalBatch, until: datetime) -> None:
    ProposalBatch.objects.filter(pk=batch.pk).update(leased_until=until)
    Proposal.objects.filter(batch=batch, status=ProposalStatus.PENDING).update(leased_until=until)
    batch.leased_until = until


def do_release_batch(batch: ProposalBatch) -> None:
    """Give a batch up unreviewed: its pending proposals go back to the pool."""
    with transaction.atomic():
        Proposal.objects.filter(batch=batch, status=ProposalStatus.PENDING).update(batch=None, leased_until=None)
        ProposalBatch.objects.filter(pk=batch.pk, status=BatchStatus.OPEN).update(status=BatchStatus.RELEASED)


def lease_batch(
    project: Project,
    *,
    user: User,
    label: str | None = None,
    count: int | None = None,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> LeasedBatch | None:
    """Lease up to `count` pending model proposals of one class to `user` (None when there are none).

    The user's open batch comes back first (a reload shows the same page). Without `label`, the class
    with the most proposals waiting. Items are drawn at random within the class, so the precision people
    measure batch by batch is that of the class's proposals as a whole, not of its easiest ones.
    """
    if label is not None:
        validate_label(project, label)
    count = max(1, min(int(count or default_batch_size(project)), MAX_BATCH_ITEMS))
    rng = rng or random.Random()
    now = now or timezone.now()
    until = now + timedelta(seconds=project.lease_seconds)

    held = _held_batch(project, user, now)
    if held is not None and (label is None or held.label == label) and held.origin == ProposalOrigin.MODEL:
        _renew(held, until)
        return LeasedBatch(batch=held, proposals=_batch_proposals(held))
    if held is not None:
        do_release_batch(held)

    if label is None:
        waiting = available_by_class(project, now=now)
        if not waiting:
            return None
        label = max(waiting, key=lambda c: (waiting[c], -project.classes.index(c)))
    ids = list(
        _available(project, now).filter(origin=ProposalOrigin.MODEL, label=label).values_list("pk", flat=True)
    )
    if not ids:
        return None
    rng.shuffle(ids)
    return _claim_batch(project, user=user, label=label, origin=ProposalOrigin.MODEL, ids=ids, count=count,
                        until=until, now=now)


def _claim_batch(
    project: Project, *, user, label: str, origin: str, ids: list[int], count: int, until: datetime,
    now: datetime, query: str = "",
) -> LeasedBatch | None:
    with transaction.atomic():
        batch = ProposalBatch.objects.create(
            project=project, label=label, origin=origin, user=user, leased_until=until, query=query[:300]
        )
        claimed, position = 0, 0
        while claimed < count and position < len(ids):
            want = ids[position : position + count - claimed]
            position += len(want)
            # Only proposals still free and pending are taken (`claim_rows`), so two reviewers asking at
            # the same moment never share one.
            claimed += claim_rows(
                Proposal.objects.filter(free_lease(now), pk__in=want, status=ProposalStatus.PENDING),
                batch=batch, leased_until=until,
            )
        if not claimed:
            batch.delete()
            return None
        ProposalBatch.objects.filter(pk=batch.pk).update(size=claimed)
        batch.size = claimed
    return LeasedBatch(batch=batch, proposals=_batch_proposals(batch))


def search_items(project: Project, query: str):
    """Unlabelled items whose text contains every word of `query` (case-insensitive)."""
    words = [w for w in query.split() if w]
    items = Item.objects.filter(project=project, status=ItemStatus.UNLABELLED)
    for word in words:
        items = items.filter(Q(text__icontains=word) | Q(key__icontains=word))
    return items


def lease_search_batch(
    project: Project,
    *,
    user: User,
    query: str,
    label: str,
    count: int | None = None,
    now: datetime | None = None,
) -> LeasedBatch | None:
    """A batch of unlabelled texts containing `query`, all proposed as `label`, for a person to confirm."""
    validate_label(project, label)
    query = " ".join(query.split())
    if not query:
        raise LabelingError("type some words to search for")
    if project.data_type == DataType.IMAGES:
        raise LabelingError("text search is for text and JSON projects")
    count = max(1, min(int(count or default_batch_size(project)), MAX_BATCH_ITEMS))
    now = now or timezone.now()
    until = now + timedelta(seconds=project.lease_seconds)
    held = _held_batch(project, user, now)
    if held is not None and held.origin == ProposalOrigin.SEARCH and held.query == query and held.label == label:
        _renew(held, until)
        return LeasedBatch(batch=held, proposals=_batch_proposals(held))
    if held is not None:
        do_release_batch(held)

    rejected = Proposal.objects.filter(project=project, status=ProposalStatus.REJECTED, label=label).values("item_id")
    busy = Proposal.objects.filter(
        project=project, status=ProposalStatus.PENDING, leased_until__gt=now
    ).values("item_id")
    matches = list(
        search_items(project, query)
        .filter(free_lease(now))
        .exclude(pk__in=rejected)
        .exclude(pk__in=busy)
        .order_by("id")
        .values_list("pk", flat=True)[:count]
    )
    if not matches:
        return None
    with transaction.atomic():
        # The search replaces any free model proposal on these items (one pending proposal per item).
        Proposal.objects.filter(item_id__in=matches, status=ProposalStatus.PENDING).filter(free_lease(now)).update(
            status=ProposalStatus.WITHDRAWN, closed_at=now
        )
        Proposal.objects.bulk_create(
            [Proposal(project=project, item_id=i, label=label, origin=ProposalOrigin.SEARCH) for i in matches],
            ignore_conflicts=True,
        )
        ids = list(
            Proposal.objects.filter(
                item_id__in=matches, status=ProposalStatus.PENDING, origin=ProposalOrigin.SEARCH, label=label
            ).values_list("pk", flat=True)
        )
        return _claim_batch(project, user=user, label=label, origin=ProposalOrigin.SEARCH, ids=ids, count=count,
                            until=until, now=now, query=query)


# --------------------------------------------------------------------------------------------------
# Confirming a batch
# --------------------------------------------------------------------------------------------------


@dataclass
class ConfirmResult:
    batch: ProposalBatch
    accepted: list[int]
    rejected: list[int]
    corrected: list[int]  # given another class in the grid: human labels of that class
    skipped: list[int]  # items someone labelled one by one while the batch was open
    audit: bool
    paused: bool  # this class's batches are clearly below the floor: no more proposals until retrained


def do_confirm_batch(
    project: Project,
    *,
    user: User,
    label: str,
    accepted: Sequence[int | str],
    rejected: Sequence[int | str],
    corrected: Mapping[int, str] | Mapping[str, str] | None = None,
    time_taken: float | None = None,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> ConfirmResult:
    """Accepted items become judgements of `label` by `user`; corrected items become judgements of the
    class the person gave them (a human label, source corrected_proposal); rejected proposals are closed
    for good (the model may propose the item's next-likeliest class instead, or it waits in the queue).

    All or nothing: an id that is not in the user's open batch, a label that is not the batch's, or a
    correction to something that is not another class of the project writes nothing. Unmentioned
    proposals of the batch go back to the pool.
    """
    validate_label(project, label)
    rng = rng or random.Random()
    now = now or timezone.now()
    try:
        accepted_ids = [int(i) for i in accepted]
        rejected_ids = [int(i) for i in rejected]
        corrections = {int(i): c for i, c in (corrected or {}).items()}
    except (TypeError, ValueError, AttributeError):
        raise BatchError("accepted and rejected must be lists of item ids, corrected a map of id to class") from None
    for item_id, correction in corrections.items():
        validate_label(project, correction)
        if correction == label:
            raise BatchError(f"item {item_id}: {label!r} is this batch's own class; accept it instead of correcting")
    groups = [set(accepted_ids), set(rejected_ids), set(corrections)]
    both = (groups[0] & groups[1]) | (groups[0] & groups[2]) | (groups[1] & groups[2])
    if both:
        raise BatchError(f"items with two answers (both accepted and rejected, or corrected too): {sorted(both)}")
    if not accepted_ids and not rejected_ids and not corrections:
        raise BatchError("nothing to confirm: list the accepted and rejected item ids")
    mentioned = accepted_ids + rejected_ids + list(corrections)

    with transaction.atomic():
        batch_id = (
            Proposal.objects.filter(
                project=project, item_id__in=mentioned, batch__user=user, batch__status=BatchStatus.OPEN
            )
            .order_by("-batch_id")
            .values_list("batch_id", flat=True)
            .first()
        )
        batch = ProposalBatch.objects.select_for_update().filter(pk=batch_id).first() if batch_id else None
        if batch is None:
            taken = Proposal.objects.filter(
                project=project, item_id__in=mentioned, leased_until__gt=now
            ).exclude(batch__user=user)
            if taken.exists():
                raise BatchConflict("these proposals are being reviewed by someone else (your batch expired)")
            raise BatchError("these items are not in a batch of yours: ask for a batch first")
        if batch.label != label:
            raise InvalidLabel(label, [batch.label])
        proposals = {p.item_id: p for p in Proposal.objects.select_for_update().filter(batch=batch)}
        foreign = [i for i in mentioned if i not in proposals]
        if foreign:
            raise BatchError(f"items not in your batch {batch.pk}: {sorted(foreign)}")
        settled = [i for i in mentioned if proposals[i].status in (ProposalStatus.ACCEPTED, ProposalStatus.REJECTED)]
        if settled:
            raise BatchError(f"items already confirmed or rejected: {sorted(settled)}")

        seen = len(mentioned)
        per_item = None if time_taken is None else max(0.0, min(float(time_taken), 24 * 3600.0)) / seen
        source = (
            JudgementSource.CONFIRMED_PROPOSAL if batch.origin == ProposalOrigin.MODEL else JudgementSource.SEARCH_BATCH
        )
        items = {i.pk: i for i in Item.objects.select_for_update().filter(pk__in=accepted_ids + list(corrections))}
        picked_by = "proposal" if batch.origin == ProposalOrigin.MODEL else "search"
        done_accepted: list[int] = []
        done_corrected: list[int] = []
        skipped: list[int] = []
        for item_id in accepted_ids + list(corrections):
            item = items[item_id]
            if item.status != ItemStatus.UNLABELLED:
                skipped.append(item_id)
                continue
            given = corrections.get(item_id, label)
            Judgement.objects.create(
                project=project, item=item, label=given, user=user, labelled_by=user.get_username(),
                stage=Stage.TRAIN, source=source if item_id not in corrections else JudgementSource.CORRECTED_PROPOSAL,
                time_taken=per_item, picked_by=picked_by,
            )
            (done_corrected if item_id in corrections else done_accepted).append(item_id)
        if done_accepted or done_corrected:
            Item.objects.filter(pk__in=done_accepted + done_corrected).update(
                status=ItemStatus.LABELLED, **LEASE_CLEARED
            )
        audit = batch.origin == ProposalOrigin.MODEL and bool(done_accepted) and rng.random() < project.audit_share
        closing = {"reviewed_by": user, "reviewed_at": now, "closed_at": now, "leased_until": None}
        Proposal.objects.filter(batch=batch, item_id__in=done_accepted).update(
            status=ProposalStatus.ACCEPTED, audit_status=AuditStatus.PENDING if audit else AuditStatus.NONE, **closing
        )
        Proposal.objects.filter(batch=batch, item_id__in=skipped).update(status=ProposalStatus.SUPERSEDED, **closing)
        Proposal.objects.filter(batch=batch, item_id__in=rejected_ids).update(status=ProposalStatus.REJECTED, **closing)
        # The model's class was wrong: a rejection that says the right one (one UPDATE per class given).
        by_class: dict[str, list[int]] = {}
        for item_id in done_corrected:
            by_class.setdefault(corrections[item_id], []).append(item_id)
        for correction, ids in by_class.items():
            Proposal.objects.filter(batch=batch, item_id__in=ids).update(
                status=ProposalStatus.REJECTED, corrected_label=correction, **closing
            )
        # Unmentioned ones go back to the pool for someone else.
        Proposal.objects.filter(batch=batch, status=ProposalStatus.PENDING).update(batch=None, leased_until=None)
        ProposalBatch.objects.filter(pk=batch.pk).update(
            status=BatchStatus.SUBMITTED, submitted_at=now, accepted=len(done_accepted), rejected=len(rejected_ids),
            corrected=len(done_corrected), time_taken=time_taken, audit=audit,
        )
        if done_accepted or done_corrected:
            after_change(project)
        if rejected_ids and batch.origin == ProposalOrigin.MODEL:
            # An untick says "not this class" only: the model may now propose the next-likeliest one.
            announce_proposals_rejected(project)
        paused = batch.origin == ProposalOrigin.MODEL and pause_if_below_floor(project, label=label, now=now)
    batch.refresh_from_db()
    return ConfirmResult(
        batch=batch, accepted=done_accepted, rejected=rejected_ids, corrected=done_corrected, skipped=skipped,
        audit=audit, paused=paused,
    )


@dataclass
class UndoneBatch:
    batch: ProposalBatch
    undone: int


def undo_window() -> timedelta:
    return timedelta(seconds=settings.LIGHTBULB_BATCH_UNDO_SECONDS)


def last_batch_to_undo(project: Project, *, user: User, now: datetime | None = None) -> ProposalBatch | None:
    """The user's last confirmed batch, while it may still be undone (its summary shows with an undo)."""
    now = now or timezone.now()
    return (ProposalBatch.objects.filter(project=project, user=user, status=BatchStatus.SUBMITTED,
                                         submitted_at__gte=now - undo_window())
            .filter(Q(accepted__gt=0) | Q(corrected__gt=0)).order_by("-submitted_at", "-id").first())


def do_undo_batch(project: Project, *, user: User, batch_id: int, now: datetime | None = None) -> UndoneBatch:
    """Take back a batch the user confirmed a moment ago (an Enter meant for the batch before, a slip): its
    accepted and corrected items become unlabelled again and their labels stay in the history, undone; the
    tiles the person unticked stay rejected (that was a decision). The model proposes the items again after
    it retrains.

    Preconditions: the user's own confirmed batch, within LIGHTBULB_BATCH_UNDO_SECONDS, and nobody has changed
    one of its labels since (then it is a relabel on the item's page, not an undo). Else NothingToUndo."""
    now = now or timezone.now()
    with transaction.atomic():
        batch = ProposalBatch.objects.select_for_update().filter(pk=batch_id, project=project, user=user).first()
        if batch is None or batch.status != BatchStatus.SUBMITTED:
            raise NothingToUndo("that is not a batch you confirmed")
        if batch.submitted_at is None or batch.submitted_at < now - undo_window():
            minutes = settings.LIGHTBULB_BATCH_UNDO_SECONDS // 60 or 1
            raise NothingToUndo(f"a batch can be undone for {minutes} minute(s) after it was confirmed; change "
                                "single labels on their item pages instead")
        accepted = list(Proposal.objects.filter(batch=batch, status=ProposalStatus.ACCEPTED)
                        .values_list("item_id", flat=True))
        corrected = list(Proposal.objects.filter(batch=batch, status=ProposalStatus.REJECTED)
                         .exclude(corrected_label="").values_list("item_id", flat=True))
        ids = accepted + corrected
        sources = [JudgementSource.CONFIRMED_PROPOSAL, JudgementSource.SEARCH_BATCH, JudgementSource.CORRECTED_PROPOSAL]
        judgements = list(Judgement.objects.select_for_update().filter(
            project=project, item_id__in=ids, user=user, source__in=sources, undone_at__isnull=True,
            created_at__gte=batch.created_at,
        ))
        current = {j.item_id for j in judgements if j.is_current}
        if len(current) != len(ids):
            raise NothingToUndo("some of this batch's labels were changed since; change them on their item pages")
        Judgement.objects.filter(pk__in=[j.pk for j in judgements]).update(is_current=False, undone_at=now)
        Item.objects.filter(pk__in=ids, status=ItemStatus.LABELLED).update(
            status=ItemStatus.UNLABELLED, **LEASE_CLEARED
        )
        # Out of the measured precision and any audit; the next model proposes the items afresh.
        Proposal.objects.filter(batch=batch, item_id__in=accepted).update(
            status=ProposalStatus.WITHDRAWN, audit_status=AuditStatus.NONE
        )
        Proposal.objects.filter(batch=batch, item_id__in=corrected).update(corrected_label="")
        ProposalBatch.objects.filter(pk=batch.pk).update(
            status=BatchStatus.UNDONE, accepted=0, corrected=0, audit=False
        )
        after_change(project)
    batch.refresh_from_db()
    return UndoneBatch(batch=batch, undone=len(ids))
