"""Read models: what the project page, the header, the members page and the stats API show.

Counts only; nothing here writes.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timedelta
from typing import NotRequired, TypedDict

from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.utils import timezone

from projects.label_kinds import kind_for
from projects.models import Item, ItemStatus, Project

from .audits import active_pauses, measured_precision
from .models import AuditStatus, Judgement, JudgementSource, Proposal, ProposalOrigin, ProposalStatus, Stage
from .proposals import available_by_class
from .queue import model_hooks


class ProjectCounts(TypedDict):
    total: int
    unlabelled: int
    labelled: int
    rejected: int
    train: int
    test: int
    confirmed: int
    auto: int  # auto-labels: nobody saw them
    per_class: list[tuple[str, int]]
    partial: int  # overlap items waiting for more labels (no label yet)
    disputed: int  # overlap items whose labels disagree, waiting for a reviewer (no label yet)


class LabelledCounts(TypedDict):
    total: int  # every current label: seen_by_a_person + auto
    train: int
    test: int
    model_labelled: int  # model proposals a person confirmed in a batch (seen)
    seen_by_a_person: int  # labelled one by one, confirmed or corrected in a batch, or imported
    auto: int  # auto-labelled: the model labelled them and nobody saw them


class UserStats(TypedDict):
    count: int
    last_hour: int
    median_seconds: float | None


class MemberStats(TypedDict):
    count: int
    median_seconds: float | None


class MeasuredPrecision(TypedDict):
    seen: int
    confirmed: int
    audited: int
    overturned: int
    precision: float | None
    paused: bool


class ProposalStats(TypedDict):
    ready: int
    pending: int
    by_class: dict[str, int]
    accepted: int
    rejected: int
    audits_waiting: int
    review_precision_floor: float
    auto_label_precision: float
    proposal_guarantee: str
    measured_precision: dict[str, MeasuredPrecision]


class ProjectStats(TypedDict):
    labelled: LabelledCounts
    unlabelled: int
    overlap: dict[str, int]  # "partial" and "disputed": overlap items that have no label yet
    training: bool
    accuracy: float | None
    f1: float | None
    model_version: int | None
    updating: bool
    model_detail: str
    proposals: ProposalStats
    you: NotRequired[UserStats]



def project_counts(project: Project) -> ProjectCounts:
    items = project.items.aggregate(
        total=Count("id"),
        unlabelled=Count("id", filter=Q(status=ItemStatus.UNLABELLED)),
        labelled=Count("id", filter=Q(status=ItemStatus.LABELLED)),
        rejected=Count("id", filter=Q(status=ItemStatus.REJECTED)),
        partial=Count("id", filter=Q(status=ItemStatus.PARTIAL)),
        disputed=Count("id", filter=Q(status=ItemStatus.DISPUTED)),
    )
    judgements = Judgement.objects.filter(project=project, is_current=True).aggregate(
        train=Count("id", filter=Q(stage=Stage.TRAIN)),
        test=Count("id", filter=Q(stage=Stage.TEST)),
        confirmed=Count("id", filter=Q(source=JudgementSource.CONFIRMED_PROPOSAL)),
        auto=Count("id", filter=Q(source=JudgementSource.AUTO)),
    )
    kind = kind_for(project)
    if kind.structured:
        # Per entity type: how many spans (boxes) the current answers hold, not how many answers.
        per_class = dict(Counter(
            label
            for value in Judgement.objects.filter(project=project, is_current=True).values_list("value", flat=True)
            for label in kind.part_labels(value)
        ))
    else:
        per_class = dict(
            Judgement.objects.filter(project=project, is_current=True)
            .values_list("label")
            .annotate(n=Count("id"))
            .values_list("label", "n")
        )
    return ProjectCounts(
        total=items["total"], unlabelled=items["unlabelled"], labelled=items["labelled"], rejected=items["rejected"],
        train=judgements["train"], test=judgements["test"], confirmed=judgements["confirmed"], auto=judgements["auto"],
        per_class=[(c, per_class.get(c, 0)) for c in project.classes],
        partial=items["partial"], disputed=items["disputed"],
    )


def project_stats(project: Project, *, user: User | None = None, now: datetime | None = None) -> ProjectStats:
    now = now or timezone.now()
    current = Judgement.objects.filter(project=project, is_current=True)
    counts = current.aggregate(
        total=Count("id"),
        train=Count("id", filter=Q(stage=Stage.TRAIN)),
        test=Count("id", filter=Q(stage=Stage.TEST)),
        model_labelled=Count("id", filter=Q(source=JudgementSource.CONFIRMED_PROPOSAL)),
        auto=Count("id", filter=Q(source=JudgementSource.AUTO)),
    )
    items = Item.objects.filter(project=project).aggregate(
        unlabelled=Count("id", filter=Q(status=ItemStatus.UNLABELLED)),
        partial=Count("id", filter=Q(status=ItemStatus.PARTIAL)),
        disputed=Count("id", filter=Q(status=ItemStatus.DISPUTED)),
    )
    unlabelled = items["unlabelled"]
    status = model_hooks().status(project)
    stats = ProjectStats(
        labelled=LabelledCounts(total=counts["total"], train=counts["train"], test=counts["test"],
                                model_labelled=counts["model_labelled"],
                                seen_by_a_person=counts["total"] - counts["auto"], auto=counts["auto"]),
        unlabelled=unlabelled,
        overlap={"partial": items["partial"], "disputed": items["disputed"]},
        training=status.training,
        accuracy=status.accuracy,
        f1=status.f1,
        model_version=status.model_version,
        updating=status.updating,
        model_detail=status.detail,
        proposals=proposal_stats(project, now=now),
    )
    if user is not None:
        stats["you"] = user_stats(project, user=user, now=now)
    return stats


def user_stats(project: Project, *, user: User, now: datetime | None = None) -> UserStats:
    """The user's count, their pace over the last hour, and their median seconds per label."""
    now = now or timezone.now()
    mine = Judgement.objects.filter(project=project, user=user, undone_at__isnull=True)
    recent = mine.filter(created_at__gte=now - timedelta(hours=1))
    times = [t for t in recent.values_list("time_taken", flat=True) if t is not None]
    return UserStats(
        # Items labelled: current labels and overlap votes, each item once.
        count=mine.filter(Q(is_current=True) | Q(is_vote=True)).values("item_id").distinct().count(),
        last_hour=recent.count(),
        median_seconds=round(statistics.median(times), 2) if times else None,
    )


def member_stats(project: Project) -> dict[int, MemberStats]:
    """Per user: items labelled (current judgements, and votes in overlap rounds) and median seconds per
    label (over all their judgements)."""
    rows = Judgement.objects.filter(project=project, undone_at__isnull=True).exclude(user=None)
    items: dict[int, set[int]] = {}
    times: dict[int, list[float]] = {}
    fields = ("user_id", "item_id", "is_current", "is_vote", "time_taken")
    for user_id, item_id, is_current, is_vote, time_taken in rows.values_list(*fields).iterator():
        # Items they labelled: their current labels, and their votes on overlap items (current or not),
        # each item once (a reviewer may have voted on an item and decided it).
        mine_items = items.setdefault(user_id, set())
        if is_current or is_vote:
            mine_items.add(item_id)
        mine = times.setdefault(user_id, [])
        if time_taken is not None:
            mine.append(time_taken)
    return {
        uid: MemberStats(count=len(labelled),
                         median_seconds=round(statistics.median(times[uid]), 2) if times[uid] else None)
        for uid, labelled in items.items()
    }


def proposal_stats(project: Project, *, now: datetime | None = None) -> ProposalStats:
    """What the project page, the header and the stats API say about proposals."""
    now = now or timezone.now()
    waiting = available_by_class(project, now=now)
    pending = dict(
        Proposal.objects.filter(project=project, status=ProposalStatus.PENDING, origin=ProposalOrigin.MODEL)
        .values("label").annotate(n=Count("id")).values_list("label", "n")
    )
    measured = measured_precision(project)
    pauses = active_pauses(project)
    reviewed = Proposal.objects.filter(project=project, status__in=[ProposalStatus.ACCEPTED, ProposalStatus.REJECTED])
    totals = reviewed.aggregate(
        accepted=Count("id", filter=Q(status=ProposalStatus.ACCEPTED)),
        rejected=Count("id", filter=Q(status=ProposalStatus.REJECTED)),
    )
    audits = Proposal.objects.filter(project=project, audit_status=AuditStatus.PENDING).count()
    # Sequence tagging reviews whole texts on the span screen (the review queue), not class batches.
    ready = model_hooks().review_items(project).count() if kind_for(project).structured else sum(waiting.values())
    return ProposalStats(
        ready=ready,
        pending=sum(pending.values()),
        by_class={label: waiting.get(label, 0) for label in project.classes},
        accepted=totals["accepted"],
        rejected=totals["rejected"],
        audits_waiting=audits,
        review_precision_floor=project.review_precision_floor,
        auto_label_precision=project.auto_label_precision,
        proposal_guarantee=project.proposal_guarantee,
        measured_precision={
            label: MeasuredPrecision(
                seen=m.seen, confirmed=m.confirmed, audited=m.audited, overturned=m.overturned,
                precision=m.precision, paused=label in pauses,
            )
            for label, m in measured.items()
        },
    )
