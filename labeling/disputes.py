"""The review queue for overlap items whose independent labels disagree (labeling.overlap).

A reviewer or owner is handed one disputed item at a time (leased like any item, so two reviewers never
decide the same one), sees every vote with who gave it, and decides: `do_record_judgement` records the
decision as an adjudicated judgement, the votes kept for agreement and per-annotator accuracy. Items the
reviewer did not vote on come first, so people rarely judge their own disagreements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.utils import timezone

from projects.models import Item, ItemStatus, Project

from .leases import claim_item, free_lease
from .models import Judgement
from .overlap import voted_by

DISPUTE = "dispute"  # lease_picked_by of a disputed item leased to a reviewer


@dataclass(frozen=True)
class Vote:
    label: str
    labelled_by: str
    created_at: datetime
    time_taken: float | None


@dataclass(frozen=True)
class Dispute:
    item: Item
    stage: str
    votes: list[Vote]


def votes_of(item_ids: list[int]) -> dict[int, list[Vote]]:
    """The live votes of each item, earliest first."""
    out: dict[int, list[Vote]] = {i: [] for i in item_ids}
    rows = (
        Judgement.objects.filter(item_id__in=item_ids, is_vote=True, undone_at__isnull=True)
        .order_by("created_at", "id")
        .values_list("item_id", "label", "labelled_by", "created_at", "time_taken")
    )
    for item_id, label, who, at, seconds in rows:
        out[item_id].append(Vote(label=label, labelled_by=who, created_at=at, time_taken=seconds))
    return out


def disputes(project: Project, *, limit: int = 50, offset: int = 0) -> list[Dispute]:
    """Disputed items, oldest first, with their votes."""
    items = list(project.items.filter(status=ItemStatus.DISPUTED).order_by("id")[offset : offset + limit])
    votes = votes_of([i.pk for i in items])
    return [Dispute(item=i, stage=i.overlap_stage, votes=votes[i.pk]) for i in items]


def dispute_counts(project: Project) -> dict[str, int]:
    """How many overlap items are disputed and how many wait for more labels."""
    row = project.items.aggregate(
        disputed=Count("id", filter=Q(status=ItemStatus.DISPUTED)),
        partial=Count("id", filter=Q(status=ItemStatus.PARTIAL)),
    )
    return {"disputed": row["disputed"], "partial": row["partial"]}


def lease_dispute(project: Project, *, user: User, now: datetime | None = None) -> Dispute | None:
    """Hand `user` (a reviewer or owner: the caller checks) a disputed item to decide, or None.

    Their own live lease first (a reload shows the same item); then items they did not vote on, then the
    rest, oldest first. The claim is the queue's conditional UPDATE, so two reviewers never share one.
    """
    now = now or timezone.now()
    until = now + timedelta(seconds=project.lease_seconds)
    held = project.items.filter(status=ItemStatus.DISPUTED, leased_to=user, leased_until__gt=now).first()
    if held is not None:
        Item.objects.filter(pk=held.pk, leased_to=user).update(leased_until=until)
        return Dispute(item=held, stage=held.overlap_stage, votes=votes_of([held.pk])[held.pk])
    pool = Item.objects.filter(free_lease(now), project=project, status=ItemStatus.DISPUTED)
    for rows in (pool.exclude(voted_by(user)), pool.filter(voted_by(user))):
        for item_id in list(rows.order_by("id").values_list("id", flat=True)[:10]):
            claimed = claim_item(
                Item.objects.filter(free_lease(now), pk=item_id, status=ItemStatus.DISPUTED), pk=item_id,
                leased_to=user, leased_until=until, lease_stage="", lease_picked_by=DISPUTE, lease_probability=None,
            )
            if claimed is not None:
                return Dispute(item=claimed, stage=claimed.overlap_stage, votes=votes_of([item_id])[item_id])
    return None
