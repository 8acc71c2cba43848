from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import OuterRef, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from lightbulb_site.errors import sentence
from projects.label_kinds import kind_for
from projects.models import DataType, ItemStatus, Role
from projects.permissions import get_project_for_user, has_role, signed_in
from projects.services import ProjectError, do_drop_duplicates, do_keep_duplicate, duplicate_hashes

from .blind import item_stage, sees_others_test_labels, visible_judgements, visible_prediction
from .disputes import dispute_counts, lease_dispute
from .errors import LabelingError, NotDisputed
from .hotkeys import BATCH_RESERVED_KEYS, class_hotkeys, command_keys
from .models import Judgement, Stage
from .overlap import is_overlap_item, live_votes
from .presenters import batch_payload, item_payload
from .proposals import (
    available_by_class,
    do_confirm_batch,
    do_undo_batch,
    last_batch_to_undo,
    lease_batch,
    lease_search_batch,
)
from .queue import model_hooks
from .reviews import do_review_labels, labels_to_review, reviewed_accuracy
from .services import do_record_judgement, get_item, overrules


@login_required
def label_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
    kind = kind_for(project)
    keys = class_hotkeys(project.classes, chosen=project.class_keys, reserved=kind.reserved_keys)
    config = {
        "project": project.pk,
        "dataType": project.data_type,
        "screen": kind.screen,
        # Sequence tagging's review queue: the texts the model is sure of, its spans pre-filled.
        "review": kind.structured and request.GET.get("review") == "1",
        "classes": keys,
        "commands": command_keys(keys, reserved=kind.reserved_keys),
        "recheck_seconds": settings.LIGHTBULB_LABEL_RECHECK_SECONDS,
        "api": {
            "next": reverse("api:next-items", args=[project.pk]),
            "judgements": reverse("api:judgements", args=[project.pk]),
            "undo": reverse("api:undo", args=[project.pk]),
            "stats": reverse("api:stats", args=[project.pk]),
            "skip": reverse("api:skip", args=[project.pk, 0]).replace("/0/", "/{id}/"),
        },
    }
    return render(
        request,
        "labeling/label.html",
        {"project": project, "role": role, "config": config, "hotkeys": keys,
         "screen_template": f"labeling/screens/{kind.screen}.html"},
    )


PAGE_SIZE = 48


@login_required
def item_browser(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = get_project_for_user(request.user, project_id)
    current = Judgement.objects.filter(item=OuterRef("pk"), is_current=True)
    # Below reviewer, someone else's TEST label is not shown, nor can it be filtered on (labeling.blind):
    # the item shows as labelled blind.
    shown = visible_judgements(current, user=signed_in(request), role=role)
    items = project.items.annotate(
        label=Subquery(shown.values("label")[:1]),
        stage=Subquery(shown.values("stage")[:1]),
        labelled_by=Subquery(shown.values("labelled_by")[:1]),
    ).order_by("id")
    f = {k: request.GET.get(k, "").strip() for k in ("status", "label", "stage", "user", "q", "duplicates")}
    if f["duplicates"]:
        # Every item whose content another item has too: the first of each, and the copies (kept or dropped).
        items = items.filter(content_hash__in=duplicate_hashes(project)).order_by("content_hash", "id")
    if f["status"] in ItemStatus.values:
        items = items.filter(status=f["status"])
    if f["label"]:
        items = items.filter(label=f["label"])
    if f["stage"] in Stage.values:
        items = items.filter(stage=f["stage"])
    if f["user"]:
        items = items.filter(labelled_by=f["user"])
    if f["q"]:
        items = items.filter(Q(text__icontains=f["q"]) | Q(key__icontains=f["q"]))
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    annotators = (
        visible_judgements(Judgement.objects.filter(project=project, is_current=True), user=signed_in(request),
                           role=role).exclude(labelled_by="")
        .values_list("labelled_by", flat=True).distinct().order_by("labelled_by")
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "labeling/browser.html",
        {
            "project": project,
            "role": role,
            "page": page,
            "filters": f,
            "statuses": ItemStatus.choices,
            "stages": Stage.choices,
            "annotators": list(annotators),
            "querystring": query.urlencode(),
            "is_owner": has_role(role, Role.OWNER),
        },
    )


@login_required
@require_POST
def drop_duplicates(request: HttpRequest, project_id: int) -> HttpResponse:
    """Owners drop the copies of identical items (the first of each stays; labelled copies stay too)."""
    project, _ = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    result = do_drop_duplicates(project)
    kept = (f" {result.labelled_kept} already labelled cop{'y stays' if result.labelled_kept == 1 else 'ies stay'}."
            if result.labelled_kept else "")
    messages.success(request, f"Dropped {result.dropped} duplicate{'' if result.dropped == 1 else 's'}; they stay "
                              f"as rejected items naming the one they repeat.{kept}")
    return redirect(f"{reverse('labeling:browser', args=[project.pk])}?duplicates=1")


@login_required
@require_POST
def keep_duplicate(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """Owners bring a dropped duplicate back to be labelled."""
    project, _ = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    item = get_item(project, item_id)
    try:
        do_keep_duplicate(project, item=item)
    except ProjectError as exc:
        messages.error(request, sentence(str(exc)))
    else:
        messages.success(request, f"{item.key} is back among the items to label.")
    return redirect("labeling:item", project.pk, item.pk)


@login_required
def item_detail(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    project, role = get_project_for_user(request.user, project_id)
    try:
        item = get_item(project, item_id)
    except LabelingError:
        raise Http404("No such item") from None
    user = signed_in(request)
    judgements = Judgement.objects.filter(item=item).select_related("user").order_by("-created_at", "-id")
    current = next((j for j in judgements if j.is_current), None)
    # The TEST stage is blind (labeling.blind): no guess on a TEST item, and below reviewer nobody else's
    # TEST label, not even that there is one beyond "labelled blind".
    history = list(visible_judgements(judgements, user=user, role=role))
    hidden_current = current is not None and current not in history
    # The rules do_record_judgement applies: someone else's label, or one agreed in an overlap round, is a
    # reviewer's or owner's to change; a disputed item is theirs to decide.
    overruling = current is not None and overrules(item, current, user=user)
    disputed = item.status == ItemStatus.DISPUTED
    votes = live_votes(item).count() if is_overlap_item(item) else 0
    # An overlap round: the item was drawn for one and has votes or waits for its first (an item drawn
    # for one whose lease lapsed and that a batch or an auto-label labelled since had no round).
    in_round = is_overlap_item(item) and (votes > 0 or item.status != ItemStatus.LABELLED)
    if item.status in (ItemStatus.UNLABELLED, ItemStatus.PARTIAL) and not sees_others_test_labels(role) and not (
        live_votes(item).filter(user=user).exists()
    ):
        in_round = False  # before they label it, nobody below reviewer learns that the item is checked
    stage = item_stage(item, current)
    prediction = visible_prediction(project, stage=stage, picked_by=item.lease_picked_by,
                                    prediction=model_hooks().predictions(project, [item.pk]).get(item.pk),
                                    overlap=is_overlap_item(item))
    return render(
        request,
        "labeling/item_detail.html",
        {
            "project": project,
            "role": role,
            "item": item,
            "payload": item_payload(project, item, prediction=prediction),
            "current": None if hidden_current else current,
            "hidden_current": hidden_current,
            "history": history,
            "can_label": has_role(role, Role.ANNOTATOR) and not hidden_current and (
                not (overruling or disputed) or sees_others_test_labels(role)
            ),
            # Changing someone else's label: a reviewer's or owner's decision, with a reason.
            "needs_reason": overruling and sees_others_test_labels(role),
            "disputed": disputed,
            "round": {"wanted": item.labels_wanted, "votes": votes} if in_round else None,
            "back": same_site_path(request.GET.get("back", "")),
            "query": " ".join(request.GET.get("q", "").split())[:200],
            "is_owner": has_role(role, Role.OWNER),
            "dropped_duplicate": (item.status == ItemStatus.REJECTED
                                  and item.rejection_reason.startswith("duplicate of ")),
        },
    )


def same_site_path(value: str) -> str:
    """`value` if it is a path on this site ("/projects/3/items/?page=2"), else "" (the default link).

    A `?back=` comes from a link anyone can craft: `javascript:...` would run in the breadcrumb, and
    `https://elsewhere/` or `//elsewhere` would send people off-site. Only a relative path with no
    scheme and no host passes; Django's own check then refuses what browsers would still read as one
    (backslashes, control characters)."""
    value = value.strip()
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return ""
    return value if url_has_allowed_host_and_scheme(value, allowed_hosts=set()) else ""


@login_required
@require_POST
def relabel(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    project, role = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
    detail = reverse("labeling:item", args=[project.pk, item_id])
    try:
        item = get_item(project, item_id)
        do_record_judgement(project, item=item, user=signed_in(request), label=request.POST.get("label", ""),
                            role=role, reason=request.POST.get("reason", ""))
    except LabelingError as exc:
        messages.error(request, str(exc))
        return redirect(detail)
    messages.success(request, f"{item.key} is now labelled {request.POST.get('label')}.")
    return redirect(detail)


@login_required
def review_batch(request: HttpRequest, project_id: int) -> HttpResponse:
    """The batch page: a grid of proposals of one class, all ticked; untick what is not that class.

    GET leases a batch (the user's open one first, like the label page's item); POST confirms it. The
    form works without JavaScript; review.js adds keyboard control and the time spent.
    """
    project, role = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
    if request.method == "POST":
        return _submit_batch(request, project)
    label = request.GET.get("label", "").strip() or None
    query = " ".join(request.GET.get("q", "").split())
    error = ""
    leased = None
    try:
        if query:
            if label is None:
                raise LabelingError("choose the class to give the matching texts")
            leased = lease_search_batch(project, user=signed_in(request), query=query, label=label)
        else:
            leased = lease_batch(project, user=signed_in(request), label=label)
    except LabelingError as exc:
        error = str(exc)
    payload = batch_payload(project, leased, ready=available_by_class(project))
    # Class keys on the batch grid: the labeling page's, less x and a (untick, tick all) used here.
    keys = class_hotkeys(list(project.classes), reserved=BATCH_RESERVED_KEYS, chosen=project.class_keys)
    return render(
        request,
        "labeling/review.html",
        {
            "project": project,
            "role": role,
            "batch": payload,
            "leased": leased,
            "label": label,
            "query": query,
            "error": error,
            "is_text": project.data_type != DataType.IMAGES,
            "config": {"project": project.pk, "size": len(payload["items"]), "label": payload["label"],
                       "keys": keys},
            "correction_keys": [k for k in keys if k["keys"] and k["label"] != payload["label"]],
            # The summary of the last confirmed batch stays, with an undo, for a few minutes.
            "last_batch": last_batch_to_undo(project, user=signed_in(request)),
            "undo_minutes": max(1, settings.LIGHTBULB_BATCH_UNDO_SECONDS // 60),
        },
    )


@login_required
@require_POST
def undo_batch(request: HttpRequest, project_id: int) -> HttpResponse:
    """A reviewer takes back the batch they just confirmed (within LIGHTBULB_BATCH_UNDO_SECONDS)."""
    project, _ = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
    try:
        undone = do_undo_batch(project, user=signed_in(request), batch_id=int(request.POST.get("batch", "0")))
    except ValueError:
        messages.error(request, "No batch was named; nothing changed.")
    except LabelingError as exc:
        messages.error(request, f"{sentence(str(exc))} Nothing changed.")
    else:
        messages.success(request, f"Undone: the {undone.undone} item(s) of that {undone.batch.label} batch are "
                                  "unlabelled again (their labels stay in the history).")
    return redirect("labeling:review", project.pk)


def _submit_batch(request: HttpRequest, project) -> HttpResponse:
    label = request.POST.get("label", "")
    shown = request.POST.getlist("items")
    # A tile given another class (its picker, or a class key in review.js) is a correction, not a rejection.
    corrected = {i: request.POST[f"correct-{i}"] for i in shown if request.POST.get(f"correct-{i}")}
    ticked = set(request.POST.getlist("accepted")) - set(corrected)
    query = request.POST.get("q", "")
    try:
        time_taken = float(request.POST["time_taken"]) if request.POST.get("time_taken") else None
    except ValueError:
        time_taken = None
    try:
        result = do_confirm_batch(
            project, user=signed_in(request), label=label, accepted=[i for i in shown if i in ticked],
            rejected=[i for i in shown if i not in ticked and i not in corrected], corrected=corrected,
            time_taken=time_taken,
        )
    except LabelingError as exc:
        messages.error(request, str(exc))
        return redirect(reverse("labeling:review", args=[project.pk]))
    fixed = f", corrected {len(result.corrected)}" if result.corrected else ""
    note = f"Confirmed {len(result.accepted)} as {label}, rejected {len(result.rejected)}{fixed}."
    if result.skipped:
        note += f" {len(result.skipped)} had been labelled by someone else meanwhile."
    if result.paused:
        note += f" {label} proposals are paused: their measured precision is clearly below the review floor."
    messages.success(request, note)
    if query:
        return redirect(f"{reverse('labeling:review', args=[project.pk])}?{urlencode({'label': label, 'q': query})}")
    if available_by_class(project).get(label):
        return redirect(f"{reverse('labeling:review', args=[project.pk])}?{urlencode({'label': label})}")
    return redirect(reverse("labeling:review", args=[project.pk]))


@login_required
def review_labels(request: HttpRequest, project_id: int) -> HttpResponse:
    """Reviewers check an annotator's recent labels in a grid: keep each, or give it its right class.

    GET `?annotator=name` shows up to GRID_SIZE of their labels nobody reviewed yet; POST records the
    verdicts (labeling.reviews) and shows the next ones. Works without JavaScript.
    """
    project, role = get_project_for_user(request.user, project_id, min_role=Role.REVIEWER)
    reviewer = signed_in(request)
    people = {
        m.user.get_username(): m.user
        for m in project.memberships.select_related("user").exclude(user=reviewer).order_by("user__username")
    }
    name = (request.POST.get("annotator") or request.GET.get("annotator") or "").strip()
    annotator = people.get(name)
    if request.method == "POST":
        if annotator is None:
            messages.error(request, "Pick an annotator to review.")
            return redirect("labeling:review-labels", project.pk)
        decisions: dict[int, str] = {}
        for raw in request.POST.getlist("judgements"):
            if not raw.isdigit():
                continue
            chosen = request.POST.get(f"label-{raw}", "")
            if chosen:
                decisions[int(raw)] = chosen
        try:
            result = do_review_labels(project, reviewer=reviewer, role=role, annotator=annotator,
                                      decisions=decisions, reason=request.POST.get("reason", ""))
        except LabelingError as exc:
            messages.error(request, sentence(str(exc)))
        else:
            note = (f" {result.skipped} had been changed meanwhile and wait for a later review."
                    if result.skipped else "")
            messages.success(request, f"Reviewed {result.accepted + result.changed} of {name}'s labels: "
                                      f"{result.accepted} accepted, {result.changed} changed.{note}")
        return redirect(f"{reverse('labeling:review-labels', args=[project.pk])}?{urlencode({'annotator': name})}")
    labels = list(labels_to_review(project, annotator=annotator)) if annotator is not None else []
    accuracy = reviewed_accuracy(project)
    return render(
        request,
        "labeling/review_labels.html",
        {
            "project": project,
            "role": role,
            "people": [(n, accuracy.get(u.pk)) for n, u in people.items()],
            "annotator": name if annotator is not None else "",
            "labels": [(j, item_payload(project, j.item)) for j in labels],
            "accuracy": accuracy.get(annotator.pk) if annotator is not None else None,
        },
    )


@login_required
def review_disputes(request: HttpRequest, project_id: int) -> HttpResponse:
    """The review queue of overlap items whose independent labels disagree: one item at a time, every
    vote with who gave it; the reviewer's class is the item's label (adjudicated, the votes kept).

    GET leases the next disputed item to the reviewer (labeling.disputes); POST decides it, then the
    next one comes. Works without JavaScript.
    """
    project, role = get_project_for_user(request.user, project_id, min_role=Role.REVIEWER)
    user = signed_in(request)
    if request.method == "POST":
        try:
            item = get_item(project, request.POST.get("item", ""))
            label = request.POST.get("label", "")
            if item.status != ItemStatus.DISPUTED:  # decided meanwhile (by another reviewer), or never disputed
                raise NotDisputed(f"item {item.key} is not waiting for a decision any more")
            do_record_judgement(project, item=item, user=user, label=label, role=role,
                                reason=request.POST.get("reason", ""))
        except LabelingError as exc:
            messages.error(request, sentence(str(exc)))
        else:
            messages.success(request, f"{item.key} is now labelled {label}.")
        return redirect("labeling:review-disputes", project.pk)
    dispute = lease_dispute(project, user=user)
    return render(
        request,
        "labeling/review_disputes.html",
        {
            "project": project,
            "role": role,
            "dispute": dispute,
            "payload": item_payload(project, dispute.item) if dispute else None,
            "counts": dispute_counts(project),
            "hotkeys": class_hotkeys(project.classes, chosen=project.class_keys),
        },
    )
