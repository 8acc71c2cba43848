from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from projects.permissions import get_project_for_user

from .serializers import ModelSummarySerializer
from .services import model_summary


class ModelSummaryAPI(APIView):
    """The project's encoder, embedding progress, training status, current version and history."""

    @extend_schema(responses=ModelSummarySerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id)
        return Response(model_summary(project))
