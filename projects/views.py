from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from labeling.agreement import overlap_accuracy, project_agreement
from labeling.disputes import dispute_counts
from labeling.reviews import reviewed_accuracy
from labeling.stats import member_stats, project_counts
from lightbulb_site.errors import sentence

from .label_kinds import kind_for
from .models import DataType, ItemStatus, LabelType, Role
from .permissions import get_project_for_user, has_role, projects_for_user, signed_in
from .services import (
    MembershipError,
    ProjectCreationRefused,
    ProjectError,
    can_create_projects,
    do_add_member,
    do_create_project,
    do_remove_member,
    do_set_class_keys,
    do_set_guidelines,
    do_set_labelling_settings,
    do_set_proposal_settings,
    parse_classes,
)


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    projects = (
        projects_for_user(request.user)
        .annotate(
            n_items=Count("items", distinct=True),
            n_unlabelled=Count("items", filter=Q(items__status=ItemStatus.UNLABELLED), distinct=True),
        )
        .order_by("title")
    )
    user = signed_in(request)
    roles = dict(user.memberships.values_list("project_id", "role"))
    rows = [(p, Role.OWNER if user.is_superuser else roles.get(p.pk)) for p in projects]
    return render(request, "projects/project_list.html",
                  {"rows": rows, "can_create": can_create_projects(user)})


WIZARD_FIELDS = ("title", "data_type", "label_type", "classes", "description", "template")


@login_required
def project_new(request: HttpRequest) -> HttpResponse:
    """The project wizard, step 1: what the project is (title, data type, label type, classes as chips,
    description). Step 2 is adding its data (interchange:data)."""
    user = signed_in(request)
    if not can_create_projects(user):
        raise PermissionDenied("You may not create projects here; an administrator can allow it.")
    values = {"data_type": DataType.IMAGES, "label_type": LabelType.CLASSIFICATION, "title": "", "classes": "",
              "description": "", "template": ""}
    status = 200
    if request.method == "POST":
        values = {name: request.POST.get(name, "") for name in WIZARD_FIELDS}
        try:
            project = do_create_project(
                creator=user, title=values["title"], data_type=values["data_type"], label_type=values["label_type"],
                classes=parse_classes(values["classes"]), description=values["description"],
                template=values["template"] if values["data_type"] == DataType.JSON else "",
            )
        except ProjectCreationRefused as exc:
            raise PermissionDenied(sentence(str(exc))) from None
        except ProjectError as exc:
            messages.error(request, sentence(str(exc)))
            status = 400
        else:
            messages.success(request, f"{project.title} is ready; now add its data.")
            return redirect("interchange:data", project.pk)
    return render(request, "projects/project_new.html", {
        "values": values, "data_types": DataType.choices,
        "label_types": [(LabelType.CLASSIFICATION, "Classification: one of several classes"),
                        (LabelType.BINARY, "Binary: YES or NO"),
                        (LabelType.SEQUENCE, "Sequence tagging: mark entity spans in text"),
                        (LabelType.OBJECT_DETECTION, "Object detection: draw boxes around objects in images")],
    }, status=status)


@login_required
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = get_project_for_user(request.user, project_id)
    members = project.memberships.select_related("user").order_by("role", "user__username")
    context = {
        "project": project,
        "role": role,
        "is_owner": has_role(role, Role.OWNER),
        "can_label": has_role(role, Role.ANNOTATOR) and project.labeling_supported,
        "counts": project_counts(project),
        "members": members,
    }
    if project.labeling_supported:
        from labeling.hotkeys import class_hotkeys  # the keys are labeling's; their rule is plain Python

        reserved = kind_for(project).reserved_keys
        automatic = {c["label"]: c["keys"] for c in class_hotkeys(project.classes, reserved=reserved)}
        context["class_key_rows"] = [
            {"label": name, "chosen": project.class_keys.get(name, ""), "auto": " ".join(automatic.get(name, []))}
            for name in project.classes
        ]
    if project.modelled:
        from modeling.views import model_card_context  # the model card is modeling's; it reads the DB only

        context.update(model_card_context(project, role=role))
    elif kind_for(project).head == "ner":
        from modeling.views import span_model_card_context

        context.update(span_model_card_context(project))
    elif kind_for(project).head == "detector":
        from modeling.views import box_model_card_context

        context.update(box_model_card_context(project))
    return render(request, "projects/project_detail.html", context)


@login_required
def members(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = get_project_for_user(request.user, project_id)
    is_owner = has_role(role, Role.OWNER)
    if request.method == "POST":
        if not is_owner:
            raise PermissionDenied("Only owners manage members.")
        _change_members(request, project)
        return redirect("projects:members", project.pk)
    stats = member_stats(project)
    reviewed = reviewed_accuracy(project)
    overlap = overlap_accuracy(project)
    rows = list(project.memberships.select_related("user").order_by("user__username"))
    for m in rows:
        m.stats = stats.get(m.user_id, {"count": 0, "median_seconds": None})  # type: ignore[attr-defined]
        m.reviewed = reviewed.get(m.user_id)  # type: ignore[attr-defined]
        m.overlap = overlap.get(m.user_id)  # type: ignore[attr-defined]
    agreement = project_agreement(project)
    confusion_rows = [(c, [agreement.confusion[c][k] for k in agreement.classes]) for c in agreement.classes]
    return render(
        request,
        "projects/members.html",
        {"project": project, "role": role, "is_owner": is_owner, "members": rows, "roles": Role.choices,
         "can_review": has_role(role, Role.REVIEWER), "disputes": dispute_counts(project),
         "agreement": agreement, "confusion_rows": confusion_rows,
         "disagreement": sorted(((c, r) for c, r in agreement.disagreement.items() if r is not None),
                                key=lambda pair: -pair[1])},
    )


def _change_members(request: HttpRequest, project) -> None:
    action = request.POST.get("action")
    username = request.POST.get("username", "").strip()
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        messages.error(request, f"No active user named '{username}'.")
        return
    try:
        if action == "remove":
            do_remove_member(project, user=user)
            messages.success(request, f"{username} was removed.")
        elif action in ("add", "role"):
            do_add_member(project, user=user, role=request.POST.get("role", Role.ANNOTATOR))
            messages.success(request, f"{username} is now {request.POST.get('role')}.")
        else:
            messages.error(request, "Unknown action.")
    except MembershipError as exc:
        messages.error(request, str(exc).capitalize() + ".")


@login_required
def guidelines(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's labelling guidelines for every member; owners edit them here (Markdown)."""
    writing = request.method == "POST"
    project, role = get_project_for_user(request.user, project_id, min_role=Role.OWNER if writing else Role.VIEWER)
    is_owner = has_role(role, Role.OWNER)
    if writing:
        try:
            do_set_guidelines(project, text=request.POST.get("guidelines", ""))
        except ProjectError as exc:
            messages.error(request, sentence(str(exc)))
            return render(request, "projects/guidelines.html",
                          {"project": project, "role": role, "is_owner": True,
                           "draft": request.POST.get("guidelines", "")}, status=400)
        messages.success(request, "Guidelines saved." if project.guidelines else "Guidelines removed.")
        return redirect("projects:guidelines", project.pk)
    return render(request, "projects/guidelines.html",
                  {"project": project, "role": role, "is_owner": is_owner, "draft": project.guidelines})


@login_required
@require_POST
def labelling_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    """Owners switch the model's guess on TRAIN items on or off (a checkbox: absent means off) and set the
    overlap (a percentage of items and how many people label each)."""
    project, _ = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    share = k = None
    try:
        if request.POST.get("overlap_percent", "").strip():
            share = float(request.POST["overlap_percent"]) / 100.0
        if request.POST.get("overlap_k", "").strip():
            k = int(request.POST["overlap_k"])
    except ValueError:
        messages.error(request, "The overlap is a percentage (0-100) and a number of people (2-10); nothing changed.")
        return redirect(f"{project.get_absolute_url()}#configuration")
    try:
        do_set_labelling_settings(project, show_model_guesses=request.POST.get("show_model_guesses") == "on",
                                  overlap_share=share, overlap_k=k)
    except ProjectError as exc:
        messages.error(request, f"{sentence(str(exc))} Nothing changed.")
        return redirect(f"{project.get_absolute_url()}#configuration")
    overlap = (f"{project.overlap_share:.0%} of items are labelled by {project.overlap_k} people independently"
               if project.overlap_share > 0 else "each item is labelled by one person")
    messages.success(
        request,
        ("Annotators now see the model's guess on TRAIN items (never on TEST or overlap items)"
         if project.show_model_guesses else "Annotators no longer see the model's guess while labelling")
        + f"; {overlap}.",
    )
    return redirect(f"{project.get_absolute_url()}#configuration")


@login_required
@require_POST
def class_keys(request: HttpRequest, project_id: int) -> HttpResponse:
    """Owners choose each class's key (one `key` field per class, in the classes' order; empty: automatic)."""
    project, _ = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    typed = request.POST.getlist("key")
    if len(typed) != len(project.classes):
        messages.error(request, "The classes changed since the page was opened; nothing changed. Try again.")
        return redirect(f"{project.get_absolute_url()}#class-keys")
    try:
        do_set_class_keys(project, keys=dict(zip(project.classes, typed, strict=True)))
    except ProjectError as exc:
        messages.error(request, f"{sentence(str(exc))} Nothing changed.")
    else:
        chosen = ", ".join(f"{k} for {name}" for name, k in project.class_keys.items()) or "the automatic keys"
        messages.success(request, f"Keys saved: {chosen}.")
    return redirect(f"{project.get_absolute_url()}#class-keys")


@login_required
@require_POST
def proposal_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    """Owners set the review precision floor and the auto-label precision TEST must prove (both entered in
    percent), and whether it is proven for each class or for all of them together. A field left out of the
    form (older pages, scripts) stays as it is."""
    project, _ = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    raw_floor = request.POST.get("floor_percent", "").strip()
    raw_target = request.POST.get("auto_label_percent", "").strip()
    guarantee = request.POST.get("guarantee") or None
    try:
        do_set_proposal_settings(
            project, floor=float(raw_floor) / 100.0 if raw_floor else None,
            target=float(raw_target) / 100.0 if raw_target else None, guarantee=guarantee,
        )
    except (ValueError, ProjectError) as exc:
        message = "the percentages must be numbers" if isinstance(exc, ValueError) else str(exc)
        messages.error(request, sentence(message))
    else:
        messages.success(
            request,
            f"Auto-labels now need {project.auto_label_precision:.1%} precision proven for "
            f"{project.get_proposal_guarantee_display().lower()}, and review batches are expected to be at least "
            f"{project.review_precision_floor:.1%} precise; thresholds are being recomputed.",
        )
    return redirect(f"{project.get_absolute_url()}#proposals")
