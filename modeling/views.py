"""The model card on the project page (also served alone, so the page can refresh it in place), the
model download, and the upload-and-classify page."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from labeling.autolabels import do_withdraw_auto_labels
from labeling.errors import AutoLabelError, LabelingError
from labeling.services import do_exclude_item, do_record_judgement, get_item
from lightbulb_site.errors import sentence
from projects.label_kinds import kind_for
from projects.models import Project, ProposalGuarantee, Role
from projects.permissions import get_project_for_user, has_role, signed_in

from .autolabels import AutoLabelPlan, auto_label_plan, do_auto_label
from .deep import FineTuneError, do_cancel_finetune, do_request_finetune, do_use_pretrained, finetune_summary
from .label_check import (
    LabelCheckError,
    OpenFinding,
    Show,
    confusion_items,
    do_keep_label,
    is_stale,
    open_findings,
    request_label_check,
)
from .models import FineTuneRun, ItemPrediction, LabelCheck, ModelState, ModelVersion
from .services import ModelSummary, NoModelYet, VersionRow, current_version, export_bundle, model_summary
from .serving import (
    NothingScored,
    ScoreRequestError,
    ScoringUnavailable,
    default_min_score,
    score_request,
)

if TYPE_CHECKING:
    from labeling.stats import ProposalStats


class ConfusionCell(TypedDict):
    n: int
    diagonal: bool
    predicted: str


class ConfusionRow(TypedDict):
    name: str
    cells: list[ConfusionCell]
    total: int
    metrics: dict[str, Any]  # the class's precision, recall, f1, support


class CurvePoint(TypedDict):
    labels: int
    accuracy: float
    version: int


class RecentVersion(VersionRow):
    created: datetime  # `created_at` parsed, for the template's date filter


class ProposalRow(TypedDict):
    name: str
    threshold: dict[str, Any]  # ClassThreshold.as_dict() (proven on TEST), or {} before the version has one
    review: dict[str, Any]  # ReviewThreshold.as_dict() (where its review batches start), or {}
    adjustment: str  # how reviews moved the class's confidences ("-3.2 points from reviews"), or ""
    ready: int
    auto: int  # unlabelled items of this class "label the rest automatically" would label now
    measured: Mapping[str, object]  # labeling.stats.MeasuredPrecision, or {} when not measured yet


class ModelCardContext(TypedDict):
    """What templates/modeling/model_card.html (and the proposals card in it) read."""

    model: ModelSummary
    confusion_rows: list[ConfusionRow]
    curve: list[CurvePoint]
    recent_versions: list[RecentVersion]
    model_signature: str  # changes whenever the card would: the page refreshes it in place then
    proposals: ProposalStats
    proposal_ready_classes: list[tuple[str, int]]
    proposal_rows: list[ProposalRow]
    proposal_pooled: dict[str, Any] | None
    proposal_shared_threshold: float | None
    guarantee_choices: list[tuple[str, str]]
    proposal_note: str
    proposal_version: bool
    is_owner: bool
    can_label: bool
    can_check_labels: bool  # reviewers and owners: the label check, and the items behind the confusion cells
    finetune: dict[str, Any]  # modeling.deep.finetune_summary, plus min_train
    auto_labels: AutoLabelPlan
    first_model_status: str


def _adjustment(review: dict[str, Any]) -> str:
    """What measured reviews did to a class's confidences, in points (blank when nothing yet)."""
    offset = float(review.get("offset") or 0.0)
    if abs(offset) < 0.0005:
        return ""
    return f"{'−' if offset > 0 else '+'}{abs(offset) * 100:.1f} points from reviews"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def first_model_status(project: Project, summary: ModelSummary) -> str:
    """Why there is no model yet, in the words of what actually blocks it (issue 21: the card said "trains once
    10 TEST and 10 TRAIN labels exist" while 59 existed and the worker was busy embedding)."""
    if summary["current_version"]:
        return ""
    training, embedding = summary["training"], summary["embedding"]
    test, train = project.tally_test, project.tally_train
    need_test, need_train = project.test_min_judgements, project.min_train_judgements
    if test < need_test or train < need_train:
        return (f"it trains once {need_test} TEST and {need_train} TRAIN labels of two classes exist "
                f"(now {test:,} TEST, {train:,} TRAIN)")
    if training["running"]:
        return "the first version is training now"
    trained_revision = ModelState.objects.filter(project=project).values_list("trained_revision", flat=True).first()
    if training["waiting_for"] and trained_revision == project.judgement_revision:
        return training["waiting_for"]  # what the last run found missing (two classes, ...), still true
    if embedding["total"] and not embedding["complete"]:
        done = embedding["embedded"] + embedding["failed"]
        rate = embedding["items_per_second"]
        left = f", about {_duration((embedding['total'] - done) / rate)} left" if rate else ""
        return (f"waiting for embeddings ({done:,} of {embedding['total']:,}{left}); the first version trains "
                "between two chunks")
    return "waiting for the worker to train the first version"


def span_model_card_context(project: Project) -> dict:
    """The sequence tagging model card: the current version's entity-level scores on TEST, per type, and
    the versions before it (modeling/ml/ner.py)."""
    summary = model_summary(project)
    current = summary["current_version"]
    entities: dict = (current["entities"] if current else None) or {}
    per_type = entities.get("per_type") or {}
    versions = list(ModelVersion.objects.filter(project=project).order_by("-number")[:12])
    return {"span_card": {
        "summary": summary,
        "current": current,
        "overall": entities.get("overall") or {},
        "rows": [{"name": t, **per_type.get(t, {})} for t in project.classes],
        "versions": [{"number": v.number, "train_count": v.train_count, "test_count": v.test_count,
                      "f1": (v.metrics.get("overall") or {}).get("f1"), "epochs": v.metrics.get("epochs"),
                      "seconds": v.training_seconds, "created_at": v.created_at} for v in versions],
    }}


def box_model_card_context(project: Project) -> dict:
    """The object detection model card: the current version's AP on TEST per class (modeling/ml/detection.py),
    and the versions before it."""
    summary = model_summary(project)
    current = summary["current_version"]
    scored: dict = (current["boxes"] if current else None) or {}
    per_class = scored.get("per_class") or {}
    versions = list(ModelVersion.objects.filter(project=project).order_by("-number")[:12])
    review: dict = {}
    if current:
        version = ModelVersion.objects.filter(project=project, number=current["number"]).first()
        review = dict((version.metrics.get("review") if version else None) or {})
        images = review.get("images") or 0
        if images:
            review["review_per_image"] = review["review_seconds"] / images
            review["hand_per_image"] = review["hand_seconds"] / images
        predictions = ItemPrediction.objects.filter(project=project, version=current["number"])
        review["proposed_images"] = predictions.filter(value__prefill=True).count()
        review["to_review"] = predictions.filter(value__review=True).count()
    return {"box_card": {
        "summary": summary,
        "current": current,
        "review": review,
        "overall": scored.get("overall") or {},
        "rows": [{"name": c, **per_class.get(c, {})} for c in project.classes],
        "versions": [{"number": v.number, "train_count": v.train_count, "test_count": v.test_count,
                      "map50": ((v.metrics.get("boxes") or {}).get("overall") or {}).get("map50"),
                      "map50_95": ((v.metrics.get("boxes") or {}).get("overall") or {}).get("map50_95"),
                      "iterations": v.metrics.get("iterations"), "seconds": v.training_seconds,
                      "created_at": v.created_at} for v in versions],
    }}


def model_card_context(project: Project, *, role: str | None = None) -> ModelCardContext:
    from labeling.stats import proposal_stats

    summary = model_summary(project)
    proposals = proposal_stats(project)
    finetune = {**finetune_summary(project), "min_train": settings.LIGHTBULB_FINETUNE_MIN_TRAIN}
    live = finetune["live"]
    auto = auto_label_plan(project)
    current = summary["current_version"]
    confusion_rows: list[ConfusionRow] = []
    if current:
        classes = current["classes"]
        for i, (name, row) in enumerate(zip(classes, current["confusion"], strict=False)):
            cells: list[ConfusionCell] = [
                {"n": n, "diagonal": i == j, "predicted": classes[j] if j < len(classes) else ""}
                for j, n in enumerate(row)
            ]
            per_class = current["per_class"].get(name, {})
            confusion_rows.append({"name": name, "cells": cells, "total": sum(row), "metrics": per_class})
    embedding, training = summary["embedding"], summary["training"]
    signature = "|".join(
        str(x)
        for x in (
            embedding["embedded"], embedding["failed"], embedding["total"], embedding["running"],
            training["running"], training["waiting_for"], training["last_error"],
            current["number"] if current else 0,
            proposals["ready"], proposals["pending"], proposals["accepted"], proposals["rejected"],
            proposals["audits_waiting"], proposals["auto_label_precision"], proposals["proposal_guarantee"],
            proposals["review_precision_floor"],
            current["thresholds_target"] if current else None,
            auto["items"], auto["auto_labelled"], auto["reason"], len(auto["runs"]),
            # A fine-tune's progress moves the card too (every heartbeat), and its end.
            live.pk if live else None, live.state if live else None, live.epoch if live else None,
            round(live.progress, 2) if live else None, live.cancel_requested if live else None,
            finetune["adopted"].pk if finetune["adopted"] else None, len(finetune["runs"]),
        )
    )
    thresholds = current["thresholds"] if current else {}
    reviews = current["review_thresholds"] if current else {}
    # The shared evidence when the current thresholds were proven for all proposals together.
    pooled = next(
        (t["pooled"] for t in thresholds.values() if t.get("guarantee") == ProposalGuarantee.ALL_PROPOSALS), None
    )
    proposal_rows: list[ProposalRow] = [
        {
            "name": name,
            "threshold": thresholds.get(name, {}),
            "review": reviews.get(name, {}),
            "adjustment": _adjustment(reviews.get(name, {})),
            "ready": proposals["by_class"].get(name, 0),
            "auto": next((c["items"] for c in auto["per_class"] if c["label"] == name), 0),
            "measured": proposals["measured_precision"].get(name, {}),
        }
        for name in project.classes
    ]
    curve: list[CurvePoint] = [
        {"labels": v["labels"], "accuracy": v["accuracy"], "version": v["number"]}
        for v in summary["versions"]
        if v["accuracy"] is not None
    ]
    return {
        "model": summary,
        "confusion_rows": confusion_rows,
        "curve": curve,
        "recent_versions": [
            {**v, "created": datetime.fromisoformat(v["created_at"])} for v in reversed(summary["versions"][-10:])
        ],
        "model_signature": signature,
        "proposals": proposals,
        "proposal_ready_classes": [(name, n) for name, n in proposals["by_class"].items() if n],
        "proposal_rows": proposal_rows,
        "proposal_pooled": pooled,
        "proposal_shared_threshold": next(iter(thresholds.values()), {}).get("threshold") if pooled else None,
        "guarantee_choices": ProposalGuarantee.choices,
        "proposal_note": current["proposal_note"] if current else "",
        "proposal_version": bool(current and current["thresholds_target"] is not None),
        "is_owner": role is not None and has_role(role, Role.OWNER),
        "can_label": role is not None and has_role(role, Role.ANNOTATOR) and project.labeling_supported,
        # TEST labels are blind below reviewer (labeling.blind): the cells' items are for reviewers and owners.
        "can_check_labels": role is not None and has_role(role, Role.REVIEWER),
        "finetune": finetune,
        "auto_labels": auto,
        "first_model_status": first_model_status(project, summary),
    }


@login_required
def model_card(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = get_project_for_user(request.user, project_id)
    return render(
        request, "modeling/model_card.html", {"project": project, **model_card_context(project, role=role)}
    )


@login_required
@require_POST
def auto_label(request: HttpRequest, project_id: int) -> HttpResponse:
    """Owners: label the rest automatically above the thresholds TEST proved (nobody will see these labels)."""
    project, _role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    try:
        run = do_auto_label(project, user=signed_in(request))
    except AutoLabelError as exc:
        messages.error(request, f"Nothing was auto-labelled: {exc}.")
    else:
        skipped = f"; {run.skipped} someone was working on were left to them" if run.skipped else ""
        messages.success(
            request,
            f"Model v{run.version} auto-labelled {run.labelled:,} item(s) at {run.target:.1%} proven precision"
            f"{skipped}. Nobody saw them: they never train the model, exports mark them, and they can be withdrawn.",
        )
    return redirect(f"{project.get_absolute_url()}#auto-labels")


@login_required
@require_POST
def withdraw_auto_labels(request: HttpRequest, project_id: int) -> HttpResponse:
    """Owners: take back every auto-label of one model version; the items go back to the queue."""
    project, _role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    try:
        version = int(request.POST.get("version", ""))
        if not 0 < version < 2**31:
            raise ValueError
    except ValueError:
        messages.error(request, "Say which model version's auto-labels to withdraw.")
        return redirect(f"{project.get_absolute_url()}#auto-labels")
    try:
        withdrawn = do_withdraw_auto_labels(project, user=signed_in(request), version=version)
    except AutoLabelError as exc:
        messages.error(request, sentence(str(exc)))
    else:
        messages.success(
            request, f"Withdrew {withdrawn:,} auto-label(s) of model v{version}; those items are unlabelled again."
        )
    return redirect(f"{project.get_absolute_url()}#auto-labels")


@login_required
def export_model(request: HttpRequest, project_id: int) -> FileResponse:
    """Owners download the current model version as a self-contained .lbmodel file."""
    project, _role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    # A temporary file, not memory: a bundle with fine-tuned weights is about 90 MB. FileResponse closes it
    # when the download ends (or the client goes), and closing deletes it.
    out = tempfile.TemporaryFile()
    try:
        name = export_bundle(project, out=out)
    except NoModelYet:
        out.close()
        raise Http404("This project has no model yet.") from None
    except BaseException:
        out.close()
        raise
    out.seek(0)
    response = FileResponse(out, as_attachment=True, filename=name, content_type="application/zip")
    response["X-Content-Type-Options"] = "nosniff"
    return response


PREVIEW_MAX_BYTES = 2 * 1024 * 1024  # the no-JS result page inlines uploaded images up to this size


@login_required
def classify(request: HttpRequest, project_id: int) -> HttpResponse:
    """Drop an image or paste a text, see the current model's class probabilities.

    With JS, the page calls the score API and draws the bars in place. Without it, the form posts
    here and the same services score the input.
    """
    project, _role = get_project_for_user(request.user, project_id)
    try:
        version = current_version(project)
    except NoModelYet:
        version = None  # the page says so; a POST answers 409
    results: list[dict[str, Any]] = []  # per input: preview, bars, error, name
    context: dict[str, Any] = {"project": project, "version": version, "results": results, "error": "", "text": "",
                               "url": "", "max_items": settings.LIGHTBULB_SCORE_MAX_ITEMS}
    sequence = kind_for(project).head == "ner"
    boxes = kind_for(project).head == "detector"
    context["sequence"], context["boxes"] = sequence, boxes
    if sequence and version is not None:
        context["f1"] = (version.metrics.get("overall") or {}).get("f1")
    if boxes and version is not None:
        context["map50"] = ((version.metrics.get("boxes") or {}).get("overall") or {}).get("map50")
        context["min_score"] = request.POST.get("min_score", "").strip() or f"{default_min_score(version):.2f}"
    status = 200
    if request.method == "POST" and version is not None:
        files = request.FILES.getlist("images")
        context["text"] = request.POST.get("text", "")
        context["url"] = request.POST.get("url", "").strip()
        if sequence:
            data = {"type": "sequence", "texts": [context["text"]]}
        elif project.data_type == "images":
            data = {} if files else {"type": "images", "urls": [context["url"]] if context["url"] else []}
            if boxes:
                data["min_score"] = context["min_score"]
        else:
            data = {"type": "json" if project.data_type == "json" else "text", "texts": [context["text"]]}
        previews = [_preview(f) for f in files] if files else [context["url"] or context["text"]]
        try:
            outcome = score_request(project, data, files)
        except ScoreRequestError as exc:
            context["error"], status = str(exc), 400
        except NothingScored as exc:
            context["error"], status = "; ".join(e["detail"] for e in exc.errors), 422
        except ScoringUnavailable as exc:
            context["error"], status = f"Scoring is unavailable right now: {exc}", 503
        else:
            errors = {e["index"]: e["detail"] for e in outcome.errors}
            for i, found in enumerate(outcome.spans or []):
                results.append({"error": errors.get(i, ""), "spans": found or [],
                                "segments": span_segments(context["text"], found or [], types=list(project.classes))})
            for i, found in enumerate(outcome.boxes or []):
                upload = files[i] if i < len(files) else None
                width, height = _image_size(upload) if upload is not None else (0, 0)
                results.append({
                    "error": errors.get(i, ""), "name": getattr(upload, "name", "") or context["url"],
                    "preview": previews[i] if upload is not None and i < len(previews) else "",
                    "width": width, "height": height,
                    "boxes": [{**b, "w": b["xmax"] - b["xmin"], "h": b["ymax"] - b["ymin"],
                               "tint": project.classes.index(b["label"]) % 8 if b["label"] in project.classes else 0}
                              for b in found or []],
                })
            for i, row in enumerate(outcome.scores if outcome.spans is None and outcome.boxes is None else []):
                bars = sorted(zip(outcome.classes, row or [], strict=False), key=lambda pair: -pair[1])
                results.append(
                    {"preview": previews[i] if i < len(previews) else "", "bars": bars, "error": errors.get(i, ""),
                     "name": getattr(files[i], "name", "") if files else ""}
                )
    elif request.method == "POST":
        context["error"], status = "This project has no trained model yet: label more items first.", 409
    return render(request, "modeling/classify.html", context, status=status)


def span_segments(text: str, spans: list[dict], *, types: list[str]) -> list[dict]:
    """The text cut at its spans, for the page to mark them: [{"text", "label", "tint"}], label "" between."""
    out, at = [], 0
    for s in sorted(spans, key=lambda s: s["start"]):
        if s["start"] < at:
            continue
        if s["start"] > at:
            out.append({"text": text[at:s["start"]], "label": "", "tint": 0})
        tint = types.index(s["label"]) % 8 if s["label"] in types else 0
        out.append({"text": text[s["start"]:s["end"]], "label": s["label"], "tint": tint})
        at = s["end"]
    if at < len(text):
        out.append({"text": text[at:], "label": "", "tint": 0})
    return out


def _image_size(upload) -> tuple[int, int]:
    """An uploaded image's pixel size (Pillow reads the header only), for drawing its boxes over the preview."""
    from PIL import Image, UnidentifiedImageError

    upload.seek(0)
    try:
        with Image.open(upload) as im:
            size = im.size
    except (UnidentifiedImageError, OSError, ValueError):
        size = (0, 0)
    upload.seek(0)
    return int(size[0]), int(size[1])


def _preview(upload) -> str:
    """A data: URL of a small uploaded image, so the no-JS result shows what was scored."""
    if upload.size > PREVIEW_MAX_BYTES:
        return ""
    upload.seek(0)
    data = upload.read()
    upload.seek(0)
    kind = (upload.content_type or "image/png") if (upload.content_type or "").startswith("image/") else "image/png"
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


# --------------------------------------------------------------------------------------------------
# Checking the labels: top losses, label-error candidates, the items behind a confusion cell
# --------------------------------------------------------------------------------------------------


def _check_back(request: HttpRequest, project: Project) -> str:
    """Where an action on the label-check page returns: the same view of it (candidates, losses or a cell)."""
    query = {k: request.POST.get(k, "") for k in ("show", "actual", "predicted") if request.POST.get(k)}
    url = reverse("modeling:label-check", args=[project.pk])
    return f"{url}?{urlencode(query)}" if query else url


def _finding_rows(project: Project, findings: list[OpenFinding]) -> list[dict[str, Any]]:
    from labeling.presenters import item_payload

    return [{"finding": f, "payload": item_payload(project, f.item)} for f in findings]


@login_required
def label_check(request: HttpRequest, project_id: int) -> HttpResponse:
    """Reviewers and owners: the labels the model, fitted without them, finds least likely, with actions in place
    (relabel, keep as is, and for owners exclude the item). A check older than the labels or the model is
    redone in the background; the page says so and shows the last one meanwhile."""
    project, role = get_project_for_user(request.user, project_id, min_role=Role.REVIEWER)
    state = ModelState.objects.select_related("current_version").filter(project=project).first()
    has_model = state is not None and state.current_version is not None
    check = LabelCheck.objects.filter(project=project).first()
    stale = has_model and is_stale(project, check)
    queued = False
    if stale:
        request_label_check(project.pk)
        queued = True
    actual, predicted = request.GET.get("actual", ""), request.GET.get("predicted", "")
    cell = actual in project.classes and predicted in project.classes
    show = Show.LOSSES if request.GET.get("show") == Show.LOSSES else Show.CANDIDATES
    if cell:
        findings = confusion_items(project, actual=actual, predicted=predicted)
    else:
        findings = open_findings(project, check, show=show)
    return render(request, "modeling/label_check.html", {
        "project": project, "role": role, "has_model": has_model, "check": check, "stale": stale, "queued": queued,
        "show": "cell" if cell else show, "actual": actual if cell else "", "predicted": predicted if cell else "",
        "rows": _finding_rows(project, findings), "is_owner": has_role(role, Role.OWNER),
        "open_candidates": len(open_findings(project, check, show=Show.CANDIDATES, limit=MAX_SHOWN)),
    })


MAX_SHOWN = 200


@login_required
@require_POST
def label_check_relabel(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """A new judgement for a questioned label (history kept; someone else's label is adjudicated, with the
    reason the page gives or the person wrote)."""
    project, role = get_project_for_user(request.user, project_id, min_role=Role.REVIEWER)
    back = _check_back(request, project)
    label = request.POST.get("label", "")
    reason = request.POST.get("reason", "").strip() or LABEL_CHECK_REASON
    try:
        item = get_item(project, item_id)
        do_record_judgement(project, item=item, user=signed_in(request), label=label, role=role, reason=reason)
    except LabelingError as exc:
        messages.error(request, sentence(str(exc)))
    else:
        messages.success(request, f"{item.key} is now labelled {label}.")
    return redirect(back)


LABEL_CHECK_REASON = "label check: the model, fitted without this label, found it unlikely"


@login_required
@require_POST
def label_check_keep(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    project, _role = get_project_for_user(request.user, project_id, min_role=Role.REVIEWER)
    back = _check_back(request, project)
    try:
        item = get_item(project, item_id)
        looked_at = request.POST.get("judgement", "")
        do_keep_label(project, item=item, user=signed_in(request),
                      judgement_id=int(looked_at) if looked_at.isdigit() and int(looked_at) < 2**63 else None)
    except (LabelingError, LabelCheckError) as exc:
        messages.error(request, sentence(str(exc)))
    else:
        messages.success(request, f"Kept {item.key}'s label; it is not questioned again.")
    return redirect(back)


@login_required
@require_POST
def label_check_exclude(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """Owners take an item out of the project (its label stops counting; the item stays, rejected, with why)."""
    project, _role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    back = _check_back(request, project)
    try:
        item = get_item(project, item_id)
        do_exclude_item(project, item=item, user=signed_in(request),
                        reason=request.POST.get("reason", "").strip() or "label check")
    except LabelingError as exc:
        messages.error(request, sentence(str(exc)))
    else:
        messages.success(request, f"{item.key} is out of the project: the model no longer learns from it or is "
                                  "measured by it.")
    return redirect(back)


# --------------------------------------------------------------------------------------------------
# Fine-tuning (the deep tier): owners start and cancel a run from the model card
# --------------------------------------------------------------------------------------------------


@login_required
@require_POST
def finetune(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    try:
        run = do_request_finetune(project, user=signed_in(request))
    except FineTuneError as exc:
        messages.error(request, f"No fine-tune was started: {exc}.")
    else:
        messages.success(request, f"Fine-tune {run.number} is queued for the deep worker, on {run.train_count:,} "
                                  "TRAIN labels; the card shows its progress. The model moves to it only if TEST "
                                  "says better.")
    return redirect(f"{project.get_absolute_url()}#finetune")


@login_required
@require_POST
def finetune_cancel(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    try:
        number = int(request.POST.get("run", ""))
        run = FineTuneRun.objects.filter(project=project, number=number).first() if 0 < number < 2**31 else None
    except ValueError:
        run = None
    if run is None:
        messages.error(request, "No such fine-tune in this project.")
        return redirect(f"{project.get_absolute_url()}#finetune")
    try:
        run = do_cancel_finetune(project, run=run)
    except FineTuneError as exc:
        messages.error(request, sentence(str(exc)))
    else:
        what = "is cancelled" if run.state == "cancelled" else "stops at its next batch"
        messages.success(request, f"Fine-tune {run.number} {what}; the project keeps its model.")
    return redirect(f"{project.get_absolute_url()}#finetune")


@login_required
@require_POST
def finetune_pretrained(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    try:
        run = do_use_pretrained(project, user=signed_in(request))
    except FineTuneError as exc:
        messages.error(request, sentence(str(exc)))
    else:
        messages.success(request, f"The project uses the pretrained encoder again: the pool is re-embedded with it "
                                  f"and a new model version trained. Fine-tune {run.number}'s weights stay with the "
                                  "versions trained on them.")
    return redirect(f"{project.get_absolute_url()}#finetune")
