"""Read models: what the project page, the header, the members page and the stats API show.

Counts only; nothing here writes.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.utils import timezone

from projects.models import Item, ItemStatus, Project

from .audits import active_pauses, measured_precision
from .models import AuditStatus, Judgement, JudgementSource, Proposal, ProposalOrigin, ProposalStatus, Stage
from .proposals import available_by_class
from .queue import model_hooks


def project_counts(project: Project) -> dict:
    items = project.items.aggregate(
        total=Count("id"),
        unlabelled=Count("id", filter=Q(status=ItemStatus.UNLABELLED)),
        labelled=Count("id", filter=Q(status=ItemStatus.LABELLED)),
        rejected=Count("id", filter=Q(status=ItemStatus.REJECTED)),
    )
    judgements = Judgement.objects.filter(project=project, is_current=True).aggregate(
        train=Count("id", filter=Q(stage=Stage.TRAIN)),
        test=Count("id", filter=Q(stage=Stage.TEST)),
        confirmed=Count("id", filter=Q(source=JudgementSource.CONFIRMED_PROPOSAL)),
    )
    per_class = dict(
        Judgement.objects.filter(project=project, is_current=True)
        .values_list("label")
        .annotate(n=Count("id"))
        .values_list("label", "n")
    )
    return {
        **items,
        **judgements,
        "per_class": [(c, per_class.get(c, 0)) for c in project.classes],
    }


def project_stats(project: Project, *, user: User | None = None, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    current = Judgement.objects.filter(project=project, is_current=True)
    counts = current.aggregate(
        total=Count("id"),
        train=Count("id", filter=Q(stage=Stage.TRAIN)),
        test=Count("id", filter=Q(stage=Stage.TEST)),
        model_labelled=Count("id", filter=Q(source=JudgementSource.CONFIRMED_PROPOSAL)),
    )
    unlabelled = Item.objects.filter(project=project, status=ItemStatus.UNLABELLED).count()
    status = model_hooks().status(project)
    stats = {
        "labelled": counts,
        "unlabelled": unlabelled,
        "training": status.training,
        "accuracy": status.accuracy,
        "model_version": status.model_version,
        "updating": status.updating,
        "model_detail": status.detail,
        "proposals": proposal_stats(project, now=now),
    }
    if user is not None:
        stats["you"] = user_stats(project, user=user, now=now)
    return stats


def user_stats(project: Project, *, user: User, now: datetime | None = None) -> dict:
    """The user's count, their pace over the last hour, and their median seconds per label."""
    now = now or timezone.now()
    mine = Judgement.objects.filter(project=project, user=user, undone_at__isnull=True)
    recent = mine.filter(created_at__gte=now - timedelta(hours=1))
    times = [t for t in recent.values_list("time_taken", flat=True) if t is not None]
    return {
        "count": mine.filter(is_current=True).count(),
        "last_hour": recent.count(),
        "median_seconds": round(statistics.median(times), 2) if times else None,
    }


def member_stats(project: Project) -> dict[int, dict]:
    """Per user: current judgements and median seconds per label (over all their judgements)."""
    rows = Judgement.objects.filter(project=project, undone_at__isnull=True).exclude(user=None)
    out: dict[int, dict] = {}
    for user_id, is_current, time_taken in rows.values_list("user_id", "is_current", "time_taken").iterator():
        entry = out.setdefault(user_id, {"count": 0, "times": []})
        entry["count"] += int(is_current)
        if time_taken is not None:
            entry["times"].append(time_taken)
    return {
        uid: {"count": e["count"], "median_seconds": round(statistics.median(e["times"]), 2) if e["times"] else None}
        for uid, e in out.items()
    }


def proposal_stats(project: Project, *, now: datetime | None = None) -> dict:
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
    return {
        "ready": sum(waiting.values()),
        "pending": sum(pending.values()),
        "by_class": {label: waiting.get(label, 0) for label in project.classes},
        "accepted": totals["accepted"],
        "rejected": totals["rejected"],
        "audits_waiting": audits,
        "target_precision": project.target_precision,
        "proposal_guarantee": project.proposal_guarantee,
        "measured_precision": {
            label: {
                "seen": m.seen, "confirmed": m.confirmed, "audited": m.audited, "overturned": m.overturned,
                "precision": m.precision, "paused": label in pauses,
            }
            for label, m in measured.items()
        },
    }
