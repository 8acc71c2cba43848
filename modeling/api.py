from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet, ViewSetMixin

from labeling.autolabels import do_withdraw_auto_labels
from labeling.services import do_exclude_item, get_item
from lightbulb_site.api import JSONParser
from projects.models import Project, Role
from projects.permissions import IsProjectMember, get_project_for_user, projects_for_user, signed_in

from .autolabels import auto_label_plan, do_auto_label
from .deep import do_cancel_finetune, do_request_finetune, do_use_pretrained, finetune_summary
from .label_check import Show, confusion_items, do_keep_label, is_stale, open_findings, request_label_check
from .models import FineTuneRun, LabelCheck, ModelState
from .serializers import (
    AutoLabelPlanSerializer,
    AutoLabelRunSerializer,
    FineTuneCancelSerializer,
    FineTuneListSerializer,
    FineTuneRunSerializer,
    LabelCheckDoneSerializer,
    LabelCheckItemSerializer,
    LabelCheckQuerySerializer,
    LabelCheckSerializer,
    ModelSummarySerializer,
    PredictResponseSerializer,
    ScoreRequestSerializer,
    ScoreResponseSerializer,
    WithdrawAutoLabelsSerializer,
    WithdrawnSerializer,
)
from .services import model_summary
from .serving import score_request


# `projects/<project_id>/model/`: an action on one project.
class ModelSummaryViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(responses=ModelSummarySerializer)
    @action(detail=True, url_path="model", url_name="model")
    def summary(self, request: Request, project_id: int) -> Response:
        """The project's encoder, embedding progress, training status, current version and history."""
        return Response(model_summary(self.project))


def run_payload(run) -> dict:
    return {
        "id": run.pk, "version": run.version, "labelled": run.labelled, "skipped": run.skipped,
        "current": run.labelled if run.withdrawn_at is None else 0, "target": run.target, "guarantee": run.guarantee,
        "created_at": run.created_at, "created_by": run.created_by_name, "withdrawn_at": run.withdrawn_at,
        "withdrawn": run.withdrawn,
    }


# `projects/<project_id>/auto-labels/` (GET: what it would do, with the proof; POST: do it) and
# `.../auto-labels/withdraw/`: labels nobody sees, an owner's decision.
class AutoLabelViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"run": Role.OWNER, "withdraw": Role.OWNER}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(responses=AutoLabelPlanSerializer)
    @action(detail=True, url_path="auto-labels", url_name="auto-labels")
    def plan(self, request: Request, project_id: int) -> Response:
        """What "label the rest automatically" would label now, the proof TEST gives for it, and earlier runs."""
        return Response(AutoLabelPlanSerializer(auto_label_plan(self.project)).data)

    @extend_schema(request=None, responses={201: AutoLabelRunSerializer})
    @plan.mapping.post
    def run(self, request: Request, project_id: int) -> Response:
        """Owners: auto-label every unlabelled item above its class's threshold proven at the project's
        auto-label precision (source auto, never trained on, never in TEST); 409 with the reason if none."""
        run = do_auto_label(self.project, user=signed_in(request))
        return Response(AutoLabelRunSerializer(run_payload(run)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=WithdrawAutoLabelsSerializer, responses=WithdrawnSerializer)
    @action(detail=True, methods=["post"], url_path="auto-labels/withdraw", url_name="auto-labels-withdraw")
    def withdraw(self, request: Request, project_id: int) -> Response:
        """Owners: take back every auto-label of one model version; the items go back to the queue."""
        body = WithdrawAutoLabelsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = body.validated_data["version"]
        withdrawn = do_withdraw_auto_labels(self.project, user=signed_in(request), version=version)
        return Response({"version": version, "withdrawn": withdrawn})


# `projects/<project_id>/label-check/` (GET: the labels the model questions) and `.../label-check/keep/`,
# `.../label-check/exclude/`; relabelling is a judgement (`POST .../judgements/` with a reason).
class LabelCheckViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"findings": Role.REVIEWER, "keep": Role.REVIEWER, "exclude": Role.OWNER}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(parameters=[LabelCheckQuerySerializer], responses=LabelCheckSerializer)
    @action(detail=True, url_path="label-check", url_name="label-check")
    def findings(self, request: Request, project_id: int) -> Response:
        """Reviewers and owners: the human labels the model, fitted without them, finds unlikely (likely label
        errors by confident learning, or the top losses), or the TEST items of one confusion-matrix cell. A
        check older than the labels or the model is requested again (`stale`)."""
        query = LabelCheckQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        project = self.project
        check = LabelCheck.objects.filter(project=project).first()
        has_model = ModelState.objects.filter(project=project, current_version__isnull=False).exists()
        stale = has_model and is_stale(project, check)
        if stale:
            request_label_check(project.pk)
        if q.get("actual") or q.get("predicted"):
            for key in ("actual", "predicted"):
                if q.get(key) not in project.classes:
                    raise ParseError(f"{key}: {q.get(key)!r} is not one of the project's classes")
            found = confusion_items(project, actual=q["actual"], predicted=q["predicted"])
        else:
            found = open_findings(project, check, show=Show.LOSSES if q["show"] == "losses" else Show.CANDIDATES)
        return Response(LabelCheckSerializer({
            "checked_at": check.checked_at if check else None, "version": check.version if check else None,
            "labels": check.labels if check else 0, "flagged": check.estimated_errors if check else 0, "stale": stale,
            "findings": [{"item": f.item.pk, "key": f.item.key, "judgement": f.judgement.pk, "stage": f.judgement.stage,
                          "labelled_by": f.judgement.labelled_by, "given": f.given, "suggested": f.suggested,
                          "p_given": f.p_given, "p_suggested": f.p_suggested} for f in found],
        }).data)

    @extend_schema(request=LabelCheckItemSerializer, responses=LabelCheckDoneSerializer)
    @action(detail=True, methods=["post"], url_path="label-check/keep", url_name="label-check-keep")
    def keep(self, request: Request, project_id: int) -> Response:
        """Reviewers and owners: keep the item's current label; it is not questioned again unless it changes."""
        body = LabelCheckItemSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        item = get_item(self.project, body.validated_data["item"])
        do_keep_label(self.project, item=item, user=signed_in(request),
                      judgement_id=body.validated_data.get("judgement"))
        return Response({"item": item.pk, "status": "kept"})

    @extend_schema(request=LabelCheckItemSerializer, responses=LabelCheckDoneSerializer)
    @action(detail=True, methods=["post"], url_path="label-check/exclude", url_name="label-check-exclude")
    def exclude(self, request: Request, project_id: int) -> Response:
        """Owners: take the item out of the project (rejected, with who and why); its label stops counting."""
        body = LabelCheckItemSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        item = get_item(self.project, body.validated_data["item"])
        do_exclude_item(self.project, item=item, user=signed_in(request),
                        reason=body.validated_data.get("reason", "") or "label check")
        return Response({"item": item.pk, "status": "excluded"})


# `projects/<project_id>/finetune/` (GET: the runs; POST: an owner's "Fine-tune now"), `.../finetune/cancel/` and
# `.../finetune/pretrained/` (back to the catalogued encoder).
class FineTuneViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"start": Role.OWNER, "cancel": Role.OWNER, "pretrained": Role.OWNER}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(responses=FineTuneListSerializer)
    @action(detail=True, url_path="finetune", url_name="finetune")
    def runs(self, request: Request, project_id: int) -> Response:
        """The project's fine-tunes, newest first (progress of the one running), and which one the model reads."""
        summary = finetune_summary(self.project)
        runs = FineTuneRun.objects.filter(project=self.project).order_by("-number")[:50]
        return Response(FineTuneListSerializer({
            "supported": summary["supported"], "adopted": summary["adopted"].number if summary["adopted"] else None,
            "runs": list(runs),
        }).data)

    @extend_schema(request=None, responses={201: FineTuneRunSerializer})
    @runs.mapping.post
    def start(self, request: Request, project_id: int) -> Response:
        """Owners: fine-tune the encoder now on the deep worker; 409 with the reason if it cannot start."""
        run = do_request_finetune(self.project, user=signed_in(request))
        return Response(FineTuneRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=FineTuneCancelSerializer, responses=FineTuneRunSerializer)
    @action(detail=True, methods=["post"], url_path="finetune/cancel", url_name="finetune-cancel")
    def cancel(self, request: Request, project_id: int) -> Response:
        """Owners: cancel a queued run, or stop a running one at its next batch (its files are removed)."""
        body = FineTuneCancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = FineTuneRun.objects.filter(project=self.project, number=body.validated_data["run"]).first()
        if run is None:
            raise Http404("no such fine-tune in this project")
        return Response(FineTuneRunSerializer(do_cancel_finetune(self.project, run=run)).data)

    @extend_schema(request=None, responses=FineTuneRunSerializer)
    @action(detail=True, methods=["post"], url_path="finetune/pretrained", url_name="finetune-pretrained")
    def pretrained(self, request: Request, project_id: int) -> Response:
        """Owners: stop using the adopted fine-tune; the pool is re-embedded with the pretrained encoder and a new
        version trained on it. Returns the run set aside; 409 if none is in use."""
        return Response(FineTuneRunSerializer(do_use_pretrained(self.project, user=signed_in(request))).data)


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

    def _body(self, request: Request) -> Mapping[str, Any]:
        data = request.data
        if not isinstance(data, Mapping):  # a JSON object, or a form (QueryDict); a JSON list is refused
            raise ParseError("the body must be a JSON object")
        return data

    def _score(self, request: Request, project: Project, data, *, predict: bool = False) -> Response:
        outcome = score_request(project, data, request.FILES.getlist("images"))
        return Response(outcome.as_predictions() if predict else outcome.as_scores())


# `projects/<project_id>/score/` and `.../predict/`: actions on one project, open to every member.
class ScoringViewSet(ViewSetMixin, _ScoringView):
    permission_classes = (IsAuthenticated,)
    # The project's door is opened in `initial`, after throttling and the size limit, the order these endpoints
    # have always had: an outsider's calls count against the rate (429) and an oversized body is 413, not 404.
    project_permission_classes = (IsProjectMember,)
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication (401), throttling (429), size (413)
        for permission in [permission_class() for permission_class in self.project_permission_classes]:
            if not permission.has_permission(request, self):
                self.permission_denied(
                    request, message=getattr(permission, "message", None), code=getattr(permission, "code", None)
                )

    @extend_schema(request=ScoreRequestSerializer, responses=ScoreResponseSerializer)
    @action(detail=True, methods=["post"], url_name="score")
    def score(self, request: Request, project_id: int) -> Response:
        """Class probabilities from the project's current model for image URLs, uploaded images or texts."""
        return self._score(request, self.project, self._body(request))

    @extend_schema(request=ScoreRequestSerializer, responses=PredictResponseSerializer)
    @action(detail=True, methods=["post"], url_name="predict")
    def predict(self, request: Request, project_id: int) -> Response:
        """The most likely class (and its probability) for each input; same body as score."""
        return self._score(request, self.project, self._body(request), predict=True)


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
