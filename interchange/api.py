"""The export API: `GET /api/projects/{id}/export/?as=csv|jsonl&history=1&source=...&stage=...`."""

from __future__ import annotations

from typing import ClassVar

from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.viewsets import ViewSet

from labeling.models import JudgementSource, Stage
from projects.models import Project, Role
from projects.permissions import IsProjectMember

from .exports import export_response, parse_export
from .judgements_file import InterchangeError


# `projects/<project_id>/export/`: an action on one project, for reviewers and owners (interchange.exports).
class ExportViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"export": Role.REVIEWER}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(
        parameters=[
            OpenApiParameter("as", str, enum=["csv", "jsonl"], description="csv (Light Bulb's columns plus source; "
                             "the default) or jsonl (one judgement per line with its provenance)"),
            OpenApiParameter("history", bool, description="every judgement (relabels, undone, overlap votes), "
                             "not only the current ones"),
            OpenApiParameter("source", str, many=True, enum=JudgementSource.values,
                             description="only these sources (repeat it)"),
            OpenApiParameter("stage", str, many=True, enum=Stage.values, description="only these stages (repeat it)"),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    @action(detail=True, url_path="export", url_name="export")
    def export(self, request: Request, project_id: int) -> HttpResponseBase:
        """The project's labels as a file, streamed; reviewers and owners (an export holds every TEST label)."""
        try:
            wanted = parse_export(fmt=request.query_params.get("as"), history=request.query_params.get("history"),
                                  sources=request.query_params.getlist("source"),
                                  stages=request.query_params.getlist("stage"))
        except InterchangeError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return export_response(self.project, wanted)
