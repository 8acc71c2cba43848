from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import ItemStatus, Role
from .permissions import get_project_for_user, has_role, projects_for_user
from .services import project_counts


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
    roles = dict(request.user.memberships.values_list("project_id", "role"))
    rows = [(p, Role.OWNER if request.user.is_superuser else roles.get(p.pk)) for p in projects]
    return render(request, "projects/project_list.html", {"rows": rows})


@login_required
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = get_project_for_user(request.user, project_id)
    members = project.memberships.select_related("user").order_by("role", "user__username")
    context = {
        "project": project,
        "role": role,
        "is_owner": has_role(role, Role.OWNER),
        "counts": project_counts(project),
        "members": members,
    }
    return render(request, "projects/project_detail.html", context)
