"""The review grid: a reviewer checks an annotator's recent labels, accepting them or changing them.

A change is an adjudicated judgement (labeling.services.do_record_judgement with the reviewer's role and
a reason), so the annotator's label stays in the history; either way a `LabelReview` records the
verdict, and an annotator's reviewed accuracy is the share of their reviewed labels that were accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Q

from projects.models import Project

from .agreement import INDEPENDENT_SOURCES
from .blind import sees_others_test_labels
from .errors import LabelingError
from .models import Judgement, LabelReview, ReviewVerdict
from .services import do_record_judgement, validate_label

GRID_SIZE = 24


class ReviewError(LabelingError):
    """A review that cannot be recorded as asked (400); nothing of it is written."""


@dataclass(frozen=True)
class ReviewResult:
    accepted: int
    changed: int
    skipped: int  # labels changed by someone else meanwhile: not reviewed, still waiting for a review


@dataclass(frozen=True)
class ReviewedAccuracy:
    reviewed: int
    accepted: int

    @property
    def accuracy(self) -> float | None:
        return self.accepted / self.reviewed if self.reviewed else None


def labels_to_review(project: Project, *, annotator: User, limit: int = GRID_SIZE):
    """The annotator's current labels nobody has reviewed yet, newest first (their own labels and batch
    confirmations; not auto-labels, imports or adjudications)."""
    return (
        Judgement.objects.filter(project=project, user=annotator, is_current=True, source__in=INDEPENDENT_SOURCES,
                                 review__isnull=True)
        .select_related("item")
        .order_by("-created_at", "-id")[:limit]
    )


def do_review_labels(
    project: Project,
    *,
    reviewer: User,
    role: str,
    annotator: User,
    decisions: Mapping[int, str],
    reason: str = "",
) -> ReviewResult:
    """Record the reviewer's verdict on each of `annotator`'s labels in `decisions` (judgement id -> the
    right class: the label itself to accept it, another class to change it).

    Preconditions: `role` is reviewer or owner, and the reviewer is not the annotator (nobody reviews
    their own labels); every judgement is one of the annotator's labels in this project, not reviewed
    yet, and every class is one of the project's (ReviewError or InvalidLabel otherwise: nothing is
    written). A label no longer current (changed by someone meanwhile) is skipped.
    """
    if not sees_others_test_labels(role):
        raise ReviewError("reviewing labels is a reviewer's or owner's action")
    if reviewer.pk == annotator.pk:
        raise ReviewError("nobody reviews their own labels")
    if not decisions:
        raise ReviewError("nothing to review")
    for label in decisions.values():
        validate_label(project, label)
    reason = " ".join(str(reason or "").split()) or f"review of {annotator.get_username()}'s labels"
    with transaction.atomic():
        judgements = {
            j.pk: j
            for j in Judgement.objects.select_for_update().select_related("item").filter(
                project=project, user=annotator, pk__in=list(decisions), source__in=INDEPENDENT_SOURCES
            )
        }
        unknown = sorted(set(decisions) - set(judgements))
        if unknown:
            raise ReviewError(f"not labels of {annotator.get_username()} in this project: {unknown[:10]}")
        already = sorted(LabelReview.objects.filter(judgement_id__in=list(judgements)).values_list("judgement_id",
                                                                                                  flat=True))
        if already:
            raise ReviewError(f"already reviewed: {already[:10]}")
        accepted = changed = skipped = 0
        for pk, label in decisions.items():
            judgement = judgements[pk]
            if not judgement.is_current:
                skipped += 1
                continue
            verdict = ReviewVerdict.ACCEPTED if label == judgement.label else ReviewVerdict.CHANGED
            if verdict == ReviewVerdict.CHANGED:
                do_record_judgement(project, item=judgement.item, user=reviewer, label=label, role=role,
                                    reason=reason)
                changed += 1
            else:
                accepted += 1
            LabelReview.objects.create(
                project=project, judgement=judgement, annotator=annotator, annotator_name=annotator.get_username(),
                reviewer=reviewer, reviewer_name=reviewer.get_username(), verdict=verdict,
                corrected_label=label if verdict == ReviewVerdict.CHANGED else "",
            )
    return ReviewResult(accepted=accepted, changed=changed, skipped=skipped)


def reviewed_accuracy(project: Project) -> dict[int, ReviewedAccuracy]:
    """Per annotator (user id): how many of their labels were reviewed, and how many of those accepted."""
    rows = (
        LabelReview.objects.filter(project=project).exclude(annotator=None).values("annotator_id")
        .annotate(reviewed=Count("id"), accepted=Count("id", filter=Q(verdict=ReviewVerdict.ACCEPTED)))
    )
    return {r["annotator_id"]: ReviewedAccuracy(reviewed=r["reviewed"], accepted=r["accepted"]) for r in rows}
