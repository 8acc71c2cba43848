"""Quality checks on proposals: the precision people measured, pauses when it falls short, and audits.

An audit is a blind second look, item by item, at a confirmed batch; an overturned confirmation counts
against the class's measured precision, and a class below the target stops being proposed until the
model has learnt from more human labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import Case, Count, IntegerField, Q, Value, When
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
    rows: dict[str, dict[str, int]] = {
        row["label"]: {key: row[key] for key in ("seen", "accepted", "overturned", "audited")}
        for row in reviewed.values("label").annotate(
            seen=Count("id"),
            accepted=Count("id", filter=Q(status=ProposalStatus.ACCEPTED)),
            overturned=Count("id", filter=Q(audit_status=AuditStatus.DISAGREED)),
            audited=Count("id", filter=Q(audit_status__in=[AuditStatus.AGREED, AuditStatus.DISAGREED])),
        )
    }
    empty = {"seen": 0, "accepted": 0, "overturned": 0, "audited": 0}
    return {label: Measured(label=label, **rows.get(label, empty)) for label in project.classes}


def pause_if_below_target(project: Project, *, label: str, now: datetime) -> bool:
    """Stop proposing `label` when its measured precision fell below the target (enough reviews seen)."""
    if ProposalPause.objects.filter(project=project, label=label, lifted_at__isnull=True).exists():
        return True
    m = measured_precision(project)[label]
    if m.seen < PAUSE_MIN_SEEN or m.precision is None or m.precision >= project.target_precision:
        return False
    ProposalPause.objects.create(
        project=project, label=label, measured=m.precision, seen=m.seen, target=project.target_precision,
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
            pause_if_below_target(proposal.project, label=proposal.label, now=timezone.now())


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
