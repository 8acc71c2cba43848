from __future__ import annotations

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from projects.models import Project
from projects.permissions import get_project_for_user, projects_for_user

from .serializers import (
    ModelSummarySerializer,
    PredictResponseSerializer,
    ScoreRequestSerializer,
    ScoreResponseSerializer,
)
from .services import model_summary
from .serving import score_request


class ModelSummaryAPI(APIView):
    """The project's encoder, embedding progress, training status, current version and history."""

    @extend_schema(responses=ModelSummarySerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id)
        return Response(model_summary(project))


class ScoreRateThrottle(UserRateThrottle):
    """Requests per user (an API token belongs to one user), LIGHTBULB_SCORE_RATE read per request."""

    scope = "score"

    def get_rate(self) -> str | None:
        return settings.LIGHTBULB_SCORE_RATE or None


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "request too large"
    default_code = "too_large"


class _ScoringView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [ScoreRateThrottle]
    predict = False

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication (401), throttling (429)
        # Refused before a byte is parsed: DRF would read a JSON body of any size into memory.
        limit = settings.LIGHTBULB_SCORE_MAX_REQUEST_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise ParseError("invalid Content-Length") from None
        if length > limit:
            raise RequestTooLarge(f"request body of {length:,} bytes exceeds the {limit:,}-byte limit")

    def _body(self, request: Request) -> dict:
        data = request.data
        if not hasattr(data, "get"):
            raise ParseError("the body must be a JSON object")
        return data

    def _score(self, request: Request, project: Project, data) -> Response:
        outcome = score_request(project, data, request.FILES.getlist("images"))
        return Response(outcome.as_predictions() if self.predict else outcome.as_scores())


class ScoreAPI(_ScoringView):
    """Class probabilities from the project's current model for image URLs, uploaded images or texts."""

    @extend_schema(request=ScoreRequestSerializer, responses=ScoreResponseSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id)
        return self._score(request, project, self._body(request))


class PredictAPI(ScoreAPI):
    """The most likely class (and its probability) for each input; same body as score."""

    predict = True

    @extend_schema(request=ScoreRequestSerializer, responses=PredictResponseSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        return super().post(request, project_id)


class LegacyScoreAPI(_ScoringView):
    """Light Bulb's `POST /score`: the same body plus `"project"` (id or slug), which may be left out
    when the user can see exactly one project."""

    @extend_schema(request=ScoreRequestSerializer, responses=ScoreResponseSerializer)
    def post(self, request: Request) -> Response:
        data = self._body(request)
        project_id = resolve_project_key(request.user, data.get("project"))
        project, _ = get_project_for_user(request.user, project_id)
        return self._score(request, project, data)


def resolve_project_key(user, key) -> int:
    """A project id for `key` (an id or a slug); outsiders get 404 from `get_project_for_user` afterwards."""
    if key is None or key == "":
        ids = list(projects_for_user(user).values_list("id", flat=True)[:2])
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise Http404("You are not a member of any project.")
        raise ParseError('say which project to score: "project": id or slug (you can see several)')
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise ParseError('"project" must be a project id or slug')
    project = Project.objects.by_key(key)
    if project is None:
        raise Http404("No such project")
    return project.pk
