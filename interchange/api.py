"""The export API: `GET /api/projects/{id}/export/?as=csv|jsonl&history=1&source=...&stage=...`."""

from __future__ import annotations

import tempfile
from typing import ClassVar

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.utils.datastructures import MultiValueDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, extend_schema
from rest_framework import parsers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from labeling.models import JudgementSource, Stage
from lightbulb_site.ids import is_row_id
from projects.models import Project, Role
from projects.permissions import IsProjectMember, signed_in

from .exports import export_response, parse_export
from .judgements_file import InterchangeError, export_formats
from .models import ImportJob
from .serializers import (
    FolderCheckSerializer,
    ImportJobSerializer,
    ImportOpenSerializer,
    ReceivedSerializer,
    ServerFolderSerializer,
)
from .uploads import (
    UploadError,
    UploadTooLarge,
    check_server_folder,
    do_cancel_import,
    do_open_upload,
    do_queue_import,
    do_receive_files,
    do_use_server_folder,
)

JSONL_MEDIA_TYPES = ("application/x-ndjson", "application/jsonl", "application/jsonlines")


# `projects/<project_id>/export/`: an action on one project, for reviewers and owners (interchange.exports).
class ExportViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"export": Role.REVIEWER}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(
        parameters=[
            OpenApiParameter("as", str, enum=["csv", "jsonl", "conll"], description="classification: csv (Light "
                             "Bulb's columns plus source; the default) or jsonl (one judgement per line with its "
                             "provenance); sequence tagging: jsonl ({id, text, spans} per text; the default) or "
                             "conll (BIO tags, a `# id =` line per text)"),
            OpenApiParameter("history", bool, description="every judgement (relabels, undone, overlap votes), "
                             "not only the current ones"),
            OpenApiParameter("source", str, many=True, enum=JudgementSource.values,
                             description="only these sources (repeat it)"),
            OpenApiParameter("stage", str, many=True, enum=Stage.values, description="only these stages (repeat it)"),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR,
                   (200, "text/plain"): OpenApiTypes.STR},
    )
    @action(detail=True, url_path="export", url_name="export")
    def export(self, request: Request, project_id: int) -> HttpResponseBase:
        """The project's labels as a file, streamed; reviewers and owners (an export holds every TEST label)."""
        try:
            wanted = parse_export(fmt=request.query_params.get("as"), history=request.query_params.get("history"),
                                  sources=request.query_params.getlist("source"),
                                  stages=request.query_params.getlist("stage"), formats=export_formats(self.project))
        except InterchangeError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return export_response(self.project, wanted)


class JsonLinesParser(parsers.BaseParser):
    """A JSONL body (one JSON object per line) streamed to a temporary file as it arrives, so a large one never
    sits in memory; bigger than the one-file limit is refused as it is read."""

    media_type = "application/x-ndjson"

    def parse(self, stream, media_type=None, parser_context=None) -> parsers.DataAndFiles:
        limit = settings.LIGHTBULB_UPLOAD_MAX_FILE_BYTES
        spool = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)
        size = 0
        while stream is not None and (chunk := stream.read(1024 * 1024)):
            size += len(chunk)
            if size > limit:
                raise UploadTooLarge(f"the body is larger than the {limit:,}-byte limit for one file")
            spool.write(chunk)
        spool.seek(0)
        name = "upload.jsonl"
        request = (parser_context or {}).get("request")
        if request is not None and request.query_params.get("name"):
            name = request.query_params["name"]
        upload = UploadedFile(file=spool, name=name, content_type=media_type, size=size)
        return parsers.DataAndFiles({}, MultiValueDict({"files": [upload]}))


class JsonLinesAliasParser(JsonLinesParser):
    media_type = "application/jsonl"


class JsonLinesOtherAliasParser(JsonLinesParser):
    media_type = "application/jsonlines"


def _files_from(request: Request) -> list[tuple[str, UploadedFile]]:
    """(name, file) pairs of a multipart request: `files` repeated, and optionally `paths` repeated in the same
    order with each file's path inside the folder it came from (browsers send only the file's own name)."""
    files = request.FILES.getlist("files")
    paths = request.data.getlist("paths") if hasattr(request.data, "getlist") else []
    if paths and len(paths) != len(files):
        raise ValidationError({"paths": f"{len(paths)} paths for {len(files)} files; send one path per file or none"})
    return [(paths[i] if paths else (f.name or "upload"), f) for i, f in enumerate(files)]


def _job(project: Project, job_id: int) -> ImportJob:
    if not is_row_id(job_id):
        raise ValidationError({"detail": "no such import"})
    return get_object_or_404(ImportJob.objects.select_related("project", "created_by"), project=project, pk=job_id)


def _job_payload(job: ImportJob) -> dict:
    return dict(ImportJobSerializer(job).data)


# `projects/<project_id>/imports/`: owners upload in steps (open, send files in as many requests as needed,
# start) and follow the worker's progress; `POST .../items/` below does it in one request.
class ImportViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {
        "list": Role.OWNER, "create": Role.OWNER, "retrieve": Role.OWNER, "files": Role.OWNER, "start": Role.OWNER,
        "cancel": Role.OWNER,
    }
    lookup_url_kwarg = "job_id"
    lookup_value_converter = "int"
    list_url_name = "imports"
    detail_url_name = "import"
    project: Project  # set by IsProjectMember

    @extend_schema(responses=ImportJobSerializer(many=True))
    def list(self, request: Request, project_id: int) -> Response:
        jobs = ImportJob.objects.filter(project=self.project).select_related("created_by")[:50]
        return Response(ImportJobSerializer(jobs, many=True).data)

    @extend_schema(request=ImportOpenSerializer, responses={201: ImportJobSerializer})
    def create(self, request: Request, project_id: int) -> Response:
        """Open an upload; send its files to `files/`, then `start/` it."""
        serializer = ImportOpenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = do_open_upload(self.project, user=signed_in(request), duplicates=serializer.validated_data["duplicates"])
        return Response(_job_payload(job), status=status.HTTP_201_CREATED)

    @extend_schema(responses=ImportJobSerializer)
    def retrieve(self, request: Request, project_id: int, job_id: int) -> Response:
        return Response(_job_payload(_job(self.project, job_id)))

    @extend_schema(
        request={"multipart/form-data": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "paths": {"type": "array", "items": {"type": "string"}},
        }}},
        responses=ReceivedSerializer,
    )
    @action(detail=True, methods=["post"], url_path="files", url_name="import-files",
            parser_classes=[parsers.MultiPartParser])
    def files(self, request: Request, project_id: int, job_id: int) -> Response:
        """Add files to an open upload (`files` repeated; `paths` for their folders)."""
        job = _job(self.project, job_id)
        received = do_receive_files(job, files=_files_from(request))
        return Response({"stored": received.stored, "refused": received.refused, "job": _job_payload(job)})

    @extend_schema(request=None, responses={202: ImportJobSerializer})
    @action(detail=True, methods=["post"], url_path="start", url_name="import-start")
    def start(self, request: Request, project_id: int, job_id: int) -> Response:
        """Hand the upload to the worker; follow it here until `finished`."""
        job = do_queue_import(_job(self.project, job_id))
        return Response(_job_payload(job), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=ImportJobSerializer)
    @action(detail=True, methods=["post"], url_path="cancel", url_name="import-cancel")
    def cancel(self, request: Request, project_id: int, job_id: int) -> Response:
        """Throw away an upload the worker has not started."""
        return Response(_job_payload(do_cancel_import(_job(self.project, job_id))))


# `projects/<project_id>/items/`: add data in one request (owners).
class ItemUploadViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"create": Role.OWNER}
    list_url_name = "items"
    project: Project  # set by IsProjectMember

    def get_parsers(self) -> list[parsers.BaseParser]:
        # The site's parsers (its JSON parser for server folders; multipart) and JSONL bodies.
        return [*super().get_parsers(), JsonLinesParser(), JsonLinesAliasParser(), JsonLinesOtherAliasParser()]

    @extend_schema(
        request={
            "multipart/form-data": OpenApiRequest({"type": "object", "properties": {
                "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                "paths": {"type": "array", "items": {"type": "string"}},
                "duplicates": {"type": "string", "enum": ["drop", "keep"]},
            }}),
            "application/x-ndjson": OpenApiRequest(OpenApiTypes.STR),
            "application/json": ServerFolderSerializer,
        },
        parameters=[OpenApiParameter("duplicates", str, enum=["drop", "keep"],
                                     description="for a JSONL body: drop (the default) or keep identical texts")],
        responses={202: ImportJobSerializer},
    )
    def create(self, request: Request, project_id: int) -> Response:
        """Add items: files (images, texts, CSV/TSV/JSONL, zips of them) as multipart, one JSONL body, or
        `{"server_folder": ...}` for a folder on the server inside the allowed roots. The worker imports them;
        follow the answer's `id` at `imports/{id}/`."""
        project, user = self.project, signed_in(request)
        if request.content_type.split(";")[0].strip() in JSONL_MEDIA_TYPES:
            policy = ImportOpenSerializer(data={"duplicates": request.query_params.get("duplicates", "drop")})
            policy.is_valid(raise_exception=True)
            files = _files_from(request)
            return _upload_now(project, user=user, duplicates=policy.validated_data["duplicates"], files=files)
        if request.content_type.startswith("multipart/"):
            form = request.data
            policy = ImportOpenSerializer(data={"duplicates": form.get("duplicates", "drop") if isinstance(form, dict)
                                                else "drop"})
            policy.is_valid(raise_exception=True)
            files = _files_from(request)
            if not files:
                raise ValidationError({"files": "no files in the request"})
            return _upload_now(project, user=user, duplicates=policy.validated_data["duplicates"], files=files)
        serializer = ServerFolderSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = do_use_server_folder(project, user=user, path=serializer.validated_data["server_folder"],
                                   duplicates=serializer.validated_data["duplicates"])
        return Response(_job_payload(job), status=status.HTTP_202_ACCEPTED)


def _upload_now(project: Project, *, user, duplicates: str, files: list) -> Response:
    job = do_open_upload(project, user=user, duplicates=duplicates)
    try:
        received = do_receive_files(job, files=files)
        if not received.stored:
            raise UploadError("none of the files can be imported: " + "; ".join(received.refused[:20]))
        job = do_queue_import(job)
    except UploadError:
        do_cancel_import(job)
        raise
    payload = _job_payload(job)
    payload["refused"] = received.refused
    return Response(payload, status=status.HTTP_202_ACCEPTED)


# `projects/<project_id>/server-folder/?path=...`: is this folder one the project may read? (owners; the wizard
# asks as the path is typed)
class ServerFolderViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"check_folder": Role.OWNER}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(parameters=[OpenApiParameter("path", str, required=True)], responses=FolderCheckSerializer)
    @action(detail=True, url_path="server-folder", url_name="server-folder")
    def check_folder(self, request: Request, project_id: int) -> Response:
        """Whether a server folder can be this project's data, and how many files it holds (always 200: `ok`
        says)."""
        try:
            checked = check_server_folder(request.query_params.get("path", ""), data_type=self.project.data_type)
        except UploadError as exc:
            return Response({"ok": False, "path": None, "files": None, "message": str(exc)})
        return Response({"ok": True, "path": str(checked.path), "files": checked.files, "message": checked.message})
