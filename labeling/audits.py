"""Quality checks on proposals: the precision people measured, pauses when it falls short, and audits.

An audit is a blind second look, item by item, at a confirmed batch; an overturned confirmation counts
against the class's measured precision. What is measured feeds the next version's batch thresholds
(modeling/ml/review.py), and a class clearly below the review floor stops being proposed until the model
has learnt from more human labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import Case, Count, IntegerField, Q, Sum, Value, When
from django.utils import timezone

from projects.models import Item, ItemStatus, Project

from .leases import free_lease
from .models import (
    AuditStatus,
    Judgement,
    JudgementSource,
    Proposal,
    ProposalOrigin,
    ProposalPause,
    ProposalStatus,
    Skip,
)

# picked_by of an item handed out to be checked again (blind) after its batch was confirmed.
AUDIT = "audit"
# A class is paused once at least this many of its proposals were reviewed and too few held up.
PAUSE_MIN_SEEN = 20


def human_label_count(project: Project) -> int:
    """Labels a person chose (one by one, imported, or a correction in a batch), not confirmations."""
    chosen = [JudgementSource.HUMAN, JudgementSource.IMPORTED, JudgementSource.CORRECTED_PROPOSAL]
    return Judgement.objects.filter(project=project, is_current=True, source__in=chosen).count()


def active_pauses(project: Project) -> dict[str, ProposalPause]:
    return {p.label: p for p in ProposalPause.objects.filter(project=project, lifted_at__isnull=True)}


@dataclass
class Measured:
    label: str
    seen: int  # model proposals of this class people reviewed (since the class was last resumed)
    accepted: int
    overturned: int  # accepted in a batch, then labelled otherwise in an item-by-item audit
    audited: int
    expected: float = 0.0  # the sum of the model's calibrated confidence over those reviewed: what it expected

    @property
    def confirmed(self) -> int:
        return self.accepted - self.overturned

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.seen if self.seen else None


def measured_precision(project: Project) -> dict[str, Measured]:
    """Per class: confirmed / seen over reviewed model proposals, audits counted against confirmations.

    Counted since the class's last pause was lifted, so a retrained model starts with a clean record.
    """
    lifted = dict(
        ProposalPause.objects.filter(project=project, lifted_at__isnull=False)
        .order_by("label", "lifted_at")
        .values_list("label", "lifted_at")
    )
    reviewed = Proposal.objects.filter(
        project=project, origin=ProposalOrigin.MODEL, status__in=[ProposalStatus.ACCEPTED, ProposalStatus.REJECTED]
    )
    for label, when in lifted.items():
        reviewed = reviewed.exclude(label=label, reviewed_at__lte=when)
    # One grouped query: the stats API (polled by the labeling page after every label) calls this.
    rows = {
        row["label"]: Measured(
            label=row["label"], seen=row["seen"], accepted=row["accepted"], overturned=row["overturned"],
            audited=row["audited"], expected=float(row["expected"] or 0.0),
        )
        for row in reviewed.values("label").annotate(
            seen=Count("id"),
            accepted=Count("id", filter=Q(status=ProposalStatus.ACCEPTED)),
            overturned=Count("id", filter=Q(audit_status=AuditStatus.DISAGREED)),
            audited=Count("id", filter=Q(audit_status__in=[AuditStatus.AGREED, AuditStatus.DISAGREED])),
            expected=Sum("confidence"),
        )
    }
    return {
        label: rows.get(label, Measured(label=label, seen=0, accepted=0, overturned=0, audited=0))
        for label in project.classes
    }


def precision_upper_bound(confirmed: int, seen: int, *, z: float = 1.645) -> float:
    """One-sided 95% Wilson upper bound on a class's batch precision (pure arithmetic, no scipy)."""
    if seen == 0:
        return 1.0
    share = confirmed / seen
    centre = share + z * z / (2 * seen)
    spread = z * math.sqrt(share * (1 - share) / seen + z * z / (4 * seen * seen))
    return min(1.0, (centre + spread) / (1 + z * z / seen))


def pause_if_below_floor(project: Project, *, label: str, now: datetime) -> bool:
    """Stop proposing `label` when its batches are clearly below the review precision floor.

    The next version already asks the class for more confidence (modeling/ml/review.py); a pause is the
    safety net for a class the model cannot tell apart: at least PAUSE_MIN_SEEN reviews, and even the
    95% upper bound of their precision below the floor, so ordinary batch-to-batch luck never pauses.
    """
    if ProposalPause.objects.filter(project=project, label=label, lifted_at__isnull=True).exists():
        return True
    m = measured_precision(project)[label]
    floor = project.review_precision_floor
    if m.seen < PAUSE_MIN_SEEN or m.precision is None or precision_upper_bound(m.confirmed, m.seen) >= floor:
        return False
    ProposalPause.objects.create(
        project=project, label=label, measured=m.precision, seen=m.seen, target=floor,
        human_labels=human_label_count(project), paused_at=now,
    )
    # Free pending proposals of the class are withdrawn; ones in open batches are still reviewed.
    Proposal.objects.filter(
        project=project, label=label, status=ProposalStatus.PENDING, origin=ProposalOrigin.MODEL
    ).filter(free_lease(now)).update(status=ProposalStatus.WITHDRAWN, closed_at=now)
    return True


def record_audit(item: Item, *, user: User, label: str) -> None:
    """An item-by-item check of a confirmed proposal: does the blind label agree with the batch?"""
    for proposal in Proposal.objects.select_related("project").filter(item=item, audit_status=AuditStatus.PENDING):
        agreed = proposal.label == label
        Proposal.objects.filter(pk=proposal.pk).update(
            audit_status=AuditStatus.AGREED if agreed else AuditStatus.DISAGREED, audit_label=label, audited_by=user,
        )
        if not agreed:  # an overturned confirmation lowers the class's measured precision
            pause_if_below_floor(proposal.project, label=proposal.label, now=timezone.now())


def undo_audit(item_id: int) -> None:
    """The audit label was taken back: the check is owed again."""
    Proposal.objects.filter(
        item_id=item_id, audit_status__in=[AuditStatus.AGREED, AuditStatus.DISAGREED]
    ).update(audit_status=AuditStatus.PENDING, audit_label="", audited_by=None)


def audit_items(project: Project, *, user: User, now: datetime):
    """Items of audited batches still to be checked, nobody else's lease on them, others' batches first."""
    skipped = Skip.objects.filter(user=user, item__project=project).values("item_id")
    return (
        Proposal.objects.filter(project=project, audit_status=AuditStatus.PENDING, item__status=ItemStatus.LABELLED)
        .filter(free_lease(now, "item__leased_until"))
        .exclude(item_id__in=skipped)
        .annotate(own=Case(When(reviewed_by=user, then=Value(1)), default=Value(0), output_field=IntegerField()))
        .order_by("own", "reviewed_at", "id")
        .values_list("item_id", flat=True)
    )
