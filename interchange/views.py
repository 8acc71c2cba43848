from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from labeling.models import JudgementSource, Stage
from lightbulb_site.errors import sentence
from lightbulb_site.ids import is_row_id
from projects.models import Project, Role
from projects.permissions import get_project_for_user, signed_in
from projects.services import uploads_folder

from .exports import export_response, parse_export
from .judgements_file import InterchangeError, export_formats
from .models import DuplicatePolicy, ImportJob
from .uploads import (
    UploadError,
    accepted_extensions,
    do_cancel_import,
    do_open_upload,
    do_queue_import,
    do_receive_files,
    do_use_server_folder,
    is_stalled,
    upload_limits,
)


@login_required
def export(request: HttpRequest, project_id: int) -> HttpResponseBase:
    """The export page (reviewers and owners); with `as` in the query string, the download itself."""
    project, role = get_project_for_user(request.user, project_id, min_role=Role.REVIEWER)
    if "as" in request.GET:
        try:
            wanted = parse_export(fmt=request.GET.get("as"), history=request.GET.get("history"),
                                  sources=request.GET.getlist("source"), stages=request.GET.getlist("stage"),
                                  formats=export_formats(project))
        except InterchangeError as exc:
            messages.error(request, f"{sentence(str(exc))}.")
            return redirect("interchange:export", project.pk)
        return export_response(project, wanted)
    return render(request, "interchange/export.html", {
        "project": project, "role": role, "sources": JudgementSource.choices, "stages": Stage.choices,
        "formats": export_formats(project),
    })


def _data_context(project: Project, role: str) -> dict:
    has_items = project.items.exists()
    reads_uploads = uploads_folder(project)
    return {
        "project": project, "role": role, "has_items": has_items,
        "can_upload": reads_uploads,
        # A project with no items yet may take a server folder instead; one that reads a folder may scan it again.
        "can_use_folder": bool(settings.LIGHTBULB_SERVER_FOLDER_ROOTS) and (not has_items or not reads_uploads),
        "folder_roots": settings.LIGHTBULB_SERVER_FOLDER_ROOTS,
        "accept": ",".join(sorted(accepted_extensions(project.data_type))),
        "extensions": sorted(accepted_extensions(project.data_type)),
        "limits": upload_limits(),
        "policies": DuplicatePolicy.choices,
        "jobs": ImportJob.objects.filter(project=project).select_related("created_by")[:20],
    }


@login_required
def data(request: HttpRequest, project_id: int) -> HttpResponse:
    """Step 2 of a new project, and where owners add data later: upload files, a folder, zips, a CSV / JSONL,
    or name a server folder. Without JavaScript the form posts the files here in one request; with it
    (static/js/upload.js) they go to the API in small requests with a progress bar."""
    project, role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    if request.method != "POST":
        return render(request, "interchange/data.html", _data_context(project, role))
    try:
        files = [(f.name or "upload", f) for f in request.FILES.getlist("files")]
    except (TooManyFilesSent, RequestDataTooBig):
        messages.error(request, f"At most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files at once without "
                                "JavaScript; upload a zip of them instead.")
        return redirect("interchange:data", project.pk)
    if not files:
        messages.error(request, "Choose some files first.")
        return redirect("interchange:data", project.pk)
    job = None
    try:
        job = do_open_upload(project, user=signed_in(request), duplicates=request.POST.get("duplicates", "drop"))
        received = do_receive_files(job, files=files)
        if not received.stored:
            raise UploadError("none of the files can be imported: " + "; ".join(received.refused[:10]))
        do_queue_import(job)
    except UploadError as exc:
        if job is not None and job.state == "open":
            do_cancel_import(job)  # nothing of it is kept; the page says why
        messages.error(request, sentence(str(exc)))
        return render(request, "interchange/data.html", _data_context(project, role), status=exc.status_code)
    return redirect("interchange:import", project.pk, job.pk)


@login_required
@require_POST
def server_folder(request: HttpRequest, project_id: int) -> HttpResponse:
    """Owners name a folder on the server (inside LIGHTBULB_SERVER_FOLDER_ROOTS) as the project's data."""
    project, role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    try:
        job = do_use_server_folder(project, user=signed_in(request), path=request.POST.get("path", ""),
                                   duplicates=request.POST.get("duplicates", "drop"))
    except UploadError as exc:
        messages.error(request, sentence(str(exc)))
        context = _data_context(project, role) | {"typed_path": request.POST.get("path", "")}
        return render(request, "interchange/data.html", context, status=exc.status_code)
    return redirect("interchange:import", project.pk, job.pk)


@login_required
def import_detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """One import's progress (static/js/upload.js follows the API while it runs) and its summary."""
    project, role = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    if not is_row_id(job_id):
        return redirect("interchange:data", project.pk)
    job = get_object_or_404(ImportJob.objects.select_related("created_by"), project=project, pk=job_id)
    return render(request, "interchange/import.html",
                  {"project": project, "role": role, "job": job, "stalled": is_stalled(job)})


@login_required
@require_POST
def import_cancel(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """Owners throw away an import that has not started, or whose worker went silent."""
    project, _ = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
    job = get_object_or_404(ImportJob, project=project, pk=job_id) if is_row_id(job_id) else None
    if job is None:
        return redirect("interchange:data", project.pk)
    try:
        do_cancel_import(job)
    except UploadError as exc:
        messages.error(request, sentence(str(exc)))
    else:
        messages.success(request, "The import was cancelled; nothing of it was kept.")
    return redirect("interchange:import", project.pk, job.pk)
