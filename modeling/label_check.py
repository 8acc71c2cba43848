"""Checking the team's labels with the model's help (torch-free: the web process's side).

The worker (`modeling.tasks.check_labels`) scores every human label out of fold and stores the findings in
`LabelCheck`; these functions request a check, read what is still open (a finding whose label has since
changed, was kept, or whose item was excluded is gone), list the items behind a confusion-matrix cell, and
record "keep as is". Relabelling is `labeling.services.do_record_judgement` and excluding
`labeling.services.do_exclude_item`, as everywhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from labeling.models import Judgement, Stage
from lightbulb_site.errors import DomainError
from projects.models import Item, ItemStatus, Project

from .models import ItemPrediction, LabelCheck, LabelCheckKept, ModelState
from .services import claim_enqueue, loop_enabled


class LabelCheckError(DomainError):
    """A label-check action that cannot be done as asked (409: the item changed meanwhile)."""

    status_code = 409


class Show:
    CANDIDATES = "candidates"
    LOSSES = "losses"


def request_label_check(project_id: int) -> bool:
    """Enqueue a check unless one is queued already (a conditional UPDATE claims the right to enqueue it)."""
    from django_q.tasks import async_task

    if not loop_enabled():
        return False
    LabelCheck.objects.get_or_create(project_id=project_id)
    queued = claim_enqueue(LabelCheck.objects.filter(project_id=project_id), "queued_at")
    if queued:
        transaction.on_commit(lambda: async_task("modeling.tasks.check_labels", project_id,
                                                 group=f"label-check-{project_id}"))
    return queued


def is_stale(project: Project, check: LabelCheck | None) -> bool:
    """The labels or the model changed since the last check (or there was none)."""
    if check is None or check.checked_at is None:
        return True
    version = ModelState.objects.filter(project=project).values_list("current_version__number", flat=True).first()
    return check.judgement_revision < project.judgement_revision or (version is not None and version != check.version)


@dataclass
class OpenFinding:
    item: Item
    judgement: Judgement
    given: str
    suggested: str
    p_given: float
    p_suggested: float
    loss: float


def open_findings(project: Project, check: LabelCheck | None, *, show: str, limit: int = 200) -> list[OpenFinding]:
    """The check's findings that still stand: the label questioned is the item's current one, nobody kept it,
    and the item is not excluded; in the check's order."""
    if check is None:
        return []
    rows = check.top_losses if show == Show.LOSSES else check.candidates
    judgement_ids = [int(f["judgement"]) for f in rows]
    kept = set(LabelCheckKept.objects.filter(judgement_id__in=judgement_ids).values_list("judgement_id", flat=True))
    current = {
        j.pk: j for j in Judgement.objects.filter(pk__in=judgement_ids, is_current=True)
        .exclude(item__status=ItemStatus.REJECTED).select_related("item")
    }
    out = []
    for f in rows:
        judgement = current.get(int(f["judgement"]))
        if judgement is None or judgement.pk in kept:
            continue
        out.append(OpenFinding(item=judgement.item, judgement=judgement, given=f["given"], suggested=f["suggested"],
                               p_given=float(f["p_given"]), p_suggested=float(f["p_suggested"]),
                               loss=float(f["loss"])))
        if len(out) >= limit:
            break
    return out


def confusion_items(project: Project, *, actual: str, predicted: str, limit: int = 200) -> list[OpenFinding]:
    """The TEST items behind one cell of the confusion matrix as it stands now: current TEST label `actual`,
    the current version predicting `predicted` (its stored prediction of the item)."""
    state = ModelState.objects.select_related("current_version").filter(project=project).first()
    if state is None or state.current_version is None:
        return []
    classes = list(state.current_version.classes)
    judgements = (
        Judgement.objects.filter(project=project, is_current=True, stage=Stage.TEST, label=actual)
        .exclude(item__status=ItemStatus.REJECTED).select_related("item").order_by("item_id")
    )
    by_item = {j.item_id: j for j in judgements}
    predictions = ItemPrediction.objects.filter(
        project=project, version=state.current_version.number, label=predicted, item_id__in=list(by_item)
    ).values_list("item_id", "confidence", "scores")
    out = []
    for item_id, confidence, scores in predictions:
        judgement = by_item[item_id]
        p_given = float(scores[classes.index(actual)]) if actual in classes and len(scores) == len(classes) else 0.0
        out.append(OpenFinding(item=judgement.item, judgement=judgement, given=actual, suggested=predicted,
                               p_given=p_given, p_suggested=float(confidence),
                               loss=-math.log(max(p_given, 1e-12))))
    out.sort(key=lambda f: f.p_given)
    return out[:limit]


def do_keep_label(
    project: Project, *, item: Item, user: User, judgement_id: int | None = None
) -> LabelCheckKept:
    """"Keep as is": remember that `user` looked at the item's current label and kept it.

    Preconditions (else LabelCheckError): the item belongs to the project and has a current label, and when
    `judgement_id` names the label the person looked at, that label is still the current one (a page left open
    while someone relabelled must not keep a label nobody looked at). Keeping it twice is keeping it once."""
    if item.project_id != project.pk:
        raise LabelCheckError("no such item in this project")
    judgement = Judgement.objects.filter(item=item, is_current=True).first()
    if judgement is None:
        raise LabelCheckError(f"item {item.key} has no label to keep")
    if judgement_id is not None and judgement.pk != judgement_id:
        raise LabelCheckError(f"item {item.key} was labelled again since you looked: it is now {judgement.label}")
    existing = LabelCheckKept.objects.filter(judgement=judgement).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return LabelCheckKept.objects.create(project=project, item=item, judgement=judgement, user=user,
                                                 kept_by=user.get_username())
    except IntegrityError:  # kept at the same moment by someone else
        return LabelCheckKept.objects.get(judgement=judgement)
