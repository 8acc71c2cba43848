"""Auto-labels: the model labels the unlabelled items above thresholds TEST proved, and nobody checks them.

Review batches need no proof (a person checks every item in them); labels nobody sees do. The current
version's per-class thresholds (`modeling.ml.thresholds`, Clopper-Pearson on TEST in a fixed sequence of
looks) are proven at the project's auto-label precision when the version proposes; an owner's action
labels every unlabelled item whose prediction clears its class's threshold, with source AUTO, the
version, and the proof kept on the run. No numpy and no torch here: the web process runs it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import TypedDict

from django.contrib.auth.models import User
from django.db.models import Count, Q

from labeling.autolabels import do_record_auto_labels
from labeling.errors import AutoLabelError
from labeling.models import AutoLabelRun, Judgement, JudgementSource
from projects.models import ItemStatus, Project

from .ml.thresholds import ALPHA
from .models import ItemPrediction, ModelState, ModelVersion


class ClassPlan(TypedDict):
    label: str
    threshold: float | None
    evidence: int  # TEST items predicted this class at or above the threshold
    correct: int  # of which right
    lower_bound: float | None  # one-sided 95% lower bound on their precision (None: shared threshold)
    reason: str  # why the class has no threshold yet
    items: int  # unlabelled items it would auto-label now


class RunRow(TypedDict):
    id: int
    version: int
    labelled: int
    skipped: int
    current: int  # still current (not withdrawn, not relabelled by a person)
    target: float
    guarantee: str
    created_at: datetime
    created_by: str
    withdrawn_at: datetime | None
    withdrawn: int


class AutoLabelPlan(TypedDict):
    version: int | None
    target: float
    guarantee: str
    ready: bool  # the owner can take the action now
    reason: str  # why not, when not
    items: int  # how many it would label
    per_class: list[ClassPlan]
    pooled: dict | None  # the shared evidence when proven for all classes together
    auto_labelled: int  # current auto-labels in the project (nobody saw them)
    runs: list[RunRow]


def proven_cuts(thresholds: dict[str, dict]) -> dict[str, float]:
    """Class -> the confidence from which TEST proved it (classes without a threshold left out)."""
    return {label: t["threshold"] for label, t in thresholds.items() if t.get("threshold") is not None}


def picks_above(
    thresholds: dict[str, dict], predictions: Iterable[tuple[int, str, float]]
) -> dict[int, tuple[str, float]]:
    """The (item id -> (class, confidence)) of predictions at or above their class's proven threshold."""
    cut = proven_cuts(thresholds)
    return {
        item_id: (label, confidence)
        for item_id, label, confidence in predictions
        if label in cut and confidence >= cut[label]
    }


def _runs(project: Project) -> list[RunRow]:
    runs = AutoLabelRun.objects.filter(project=project).annotate(
        current=Count("judgements", filter=Q(judgements__is_current=True))
    )
    return [
        RunRow(id=r.pk, version=r.version, labelled=r.labelled, skipped=r.skipped, current=r.current, target=r.target,
               guarantee=r.guarantee, created_at=r.created_at, created_by=r.created_by_name,
               withdrawn_at=r.withdrawn_at, withdrawn=r.withdrawn)
        for r in runs[:20]
    ]


def _unready(project: Project, state: ModelState | None, version: ModelVersion | None) -> str:
    """Why the current version's proven thresholds cannot be used as they are ("" when they can)."""
    if version is None:
        return "there is no model yet"
    if state is None or state.ranked_version != version.number or state.proposed_version != version.number:
        return f"model version {version.number} is still scoring the pool: try again in a moment"
    if version.thresholds_target is None or abs(version.thresholds_target - project.auto_label_precision) > 1e-9:
        return "the thresholds are being recomputed for the new auto-label precision: try again in a moment"
    if any(t.get("guarantee") != project.proposal_guarantee for t in version.thresholds.values()):
        return "the thresholds are being recomputed for the new guarantee: try again in a moment"
    return ""


def _current(project: Project) -> tuple[ModelState | None, ModelVersion | None]:
    state = ModelState.objects.select_related("current_version").filter(project=project).first()
    return state, state.current_version if state else None


def _predictions(project: Project, version: ModelVersion) -> list[tuple[int, str, float]]:
    return list(
        ItemPrediction.objects.filter(project=project, version=version.number, item__status=ItemStatus.UNLABELLED)
        .values_list("item_id", "label", "confidence")
    )


def auto_label_plan(project: Project) -> AutoLabelPlan:
    """What "label the rest automatically" would do now, with the proof, and what earlier runs did."""
    state, version = _current(project)
    reason = _unready(project, state, version)
    thresholds = version.thresholds if version is not None and not reason else {}
    # Counted in the database: the model card asks every few seconds, and a pool may hold 100k items.
    cut = proven_cuts(thresholds)
    per_label: dict[str, int] = {}
    if version is not None and cut:
        counts = {
            f"n{i}": Count("pk", filter=Q(label=label, confidence__gte=t)) for i, (label, t) in enumerate(cut.items())
        }
        found = ItemPrediction.objects.filter(
            project=project, version=version.number, item__status=ItemStatus.UNLABELLED
        ).aggregate(**counts)
        per_label = {label: found[f"n{i}"] for i, label in enumerate(cut)}
    total = sum(per_label.values())
    per_class = [
        ClassPlan(
            label=name, threshold=thresholds.get(name, {}).get("threshold"),
            evidence=thresholds.get(name, {}).get("evidence", 0), correct=thresholds.get(name, {}).get("correct", 0),
            lower_bound=thresholds.get(name, {}).get("lower_bound"), reason=thresholds.get(name, {}).get("reason", ""),
            items=per_label.get(name, 0),
        )
        for name in project.classes
    ]
    if not reason and not any(c["threshold"] is not None for c in per_class):
        reason = "TEST does not prove {:.1%} precision for any class yet ({})".format(
            project.auto_label_precision,
            "; ".join(sorted({c["reason"] for c in per_class if c["reason"]})) or "more TEST labels are needed",
        )
    if not reason and not total:
        reason = "no unlabelled item clears its class's proven threshold"
    pooled = next((t.get("pooled") for t in thresholds.values() if t.get("pooled")), None)
    return AutoLabelPlan(
        version=version.number if version is not None else None, target=project.auto_label_precision,
        guarantee=project.proposal_guarantee, ready=not reason, reason=reason, items=total, per_class=per_class,
        pooled=pooled,
        auto_labelled=Judgement.objects.filter(project=project, is_current=True, source=JudgementSource.AUTO).count(),
        runs=_runs(project),
    )


def do_auto_label(project: Project, *, user: User) -> AutoLabelRun:
    """Label the rest automatically with the current version, above its proven thresholds.

    Preconditions (AutoLabelError, 409, otherwise): a current version that has scored the pool and proven
    its thresholds at the project's current auto-label precision and guarantee; at least one unlabelled
    item above them. The caller checks that `user` is an owner.
    """
    state, version = _current(project)
    reason = _unready(project, state, version)
    if reason:
        raise AutoLabelError(reason)
    assert version is not None  # _unready says so otherwise
    picks = picks_above(version.thresholds, _predictions(project, version))
    if not picks:
        plan = auto_label_plan(project)
        raise AutoLabelError(plan["reason"] or "no unlabelled item clears its class's proven threshold")
    per_label = Counter(label for label, _ in picks.values())
    proof = {
        "alpha": ALPHA,
        "target": version.thresholds_target,
        "guarantee": project.proposal_guarantee,
        "model_accuracy": version.accuracy,
        "per_class": {
            label: {
                key: t.get(key) for key in ("threshold", "evidence", "correct", "lower_bound", "predicted", "pooled")
            } | {"labelled": per_label.get(label, 0)}
            for label, t in version.thresholds.items()
        },
    }
    return do_record_auto_labels(
        project, user=user, version=version.number, target=float(version.thresholds_target or 0.0),
        guarantee=project.proposal_guarantee, proof=proof, picks=picks,
    )
