from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render

from labeling.models import JudgementSource, Stage
from lightbulb_site.errors import sentence
from projects.models import Role
from projects.permissions import get_project_for_user

from .exports import export_response, parse_export
from .judgements_file import InterchangeError


@login_required
def export(request: HttpRequest, project_id: int) -> HttpResponseBase:
    """The export page (reviewers and owners); with `as` in the query string, the download itself."""
    project, role = get_project_for_user(request.user, project_id, min_role=Role.REVIEWER)
    if "as" in request.GET:
        try:
            wanted = parse_export(fmt=request.GET.get("as"), history=request.GET.get("history"),
                                  sources=request.GET.getlist("source"), stages=request.GET.getlist("stage"))
        except InterchangeError as exc:
            messages.error(request, f"{sentence(str(exc))}.")
            return redirect("interchange:export", project.pk)
        return export_response(project, wanted)
    return render(request, "interchange/export.html", {
        "project": project, "role": role, "sources": JudgementSource.choices, "stages": Stage.choices,
    })


