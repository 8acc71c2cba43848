from __future__ import annotations

import mimetypes

from django.http import FileResponse, Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from projects.models import Item, ItemKind, ItemStatus, Role
from projects.permissions import get_project_for_user

from .models import Judgement
from .presenters import batch_payload, item_payload
from .proposals import available_by_class, do_confirm_batch, lease_batch, lease_search_batch
from .queue import model_hooks
from .serializers import (
    ConfirmBatchSerializer,
    ConfirmResultSerializer,
    JudgementCreateSerializer,
    JudgementFilterSerializer,
    JudgementSerializer,
    NextItemSerializer,
    ProposalBatchSerializer,
    ProposalQuerySerializer,
    StatsSerializer,
)
from .services import (
    AUDIT,
    MAX_BATCH,
    do_record_judgement,
    do_skip_item,
    do_undo_last_judgement,
    get_item,
    next_items,
)
from .stats import project_stats


def leased_payloads(project, leased) -> list[dict]:
    predictions = model_hooks().predictions(project, [li.item.pk for li in leased])
    return [
        item_payload(
            project, li.item, stage=li.stage, picked_by=li.picked_by,
            # An audit is a blind second look: the model's guess is not shown.
            prediction=None if li.picked_by == AUDIT else predictions.get(li.item.pk),
        )
        for li in leased
    ]


class NextItemsAPI(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("count", int, description=f"how many items to lease (1-{MAX_BATCH})")],
        responses=NextItemSerializer(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
        try:
            count = int(request.query_params.get("count", 1))
        except ValueError:
            raise ValidationError({"count": "must be a whole number"}) from None
        if not 1 <= count <= MAX_BATCH:
            raise ValidationError({"count": f"must be between 1 and {MAX_BATCH}"})
        leased = next_items(project, user=request.user, count=count)
        return Response(leased_payloads(project, leased))


class SkipItemAPI(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, project_id: int, item_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
        do_skip_item(project, item=get_item(project, item_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JudgementPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class JudgementListAPI(APIView):
    @extend_schema(parameters=[JudgementFilterSerializer], responses=JudgementSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id)
        filters = JudgementFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        qs = Judgement.objects.filter(project=project).select_related("item").order_by("-created_at", "-id")
        for key in ("stage", "source", "label"):
            if f.get(key):
                qs = qs.filter(**{key: f[key]})
        if f.get("user"):
            qs = qs.filter(labelled_by=f["user"])
        if f.get("item"):
            qs = qs.filter(item_id=f["item"])
        if f.get("current") is not None:
            qs = qs.filter(is_current=f["current"])
        paginator = JudgementPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(JudgementSerializer(page, many=True).data)

    @extend_schema(request=JudgementCreateSerializer, responses={201: JudgementSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
        serializer = JudgementCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        judgement = do_record_judgement(
            project,
            item=get_item(project, data["item"]),
            user=request.user,
            label=data["label"],
            time_taken=data.get("time_taken"),
        )
        return Response(JudgementSerializer(judgement).data, status=status.HTTP_201_CREATED)


class UndoJudgementAPI(APIView):
    @extend_schema(request=None, responses=NextItemSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
        item = do_undo_last_judgement(project, user=request.user)
        prediction = model_hooks().predictions(project, [item.pk]).get(item.pk)
        return Response(
            item_payload(project, item, stage=item.lease_stage or None, prediction=prediction,
                         picked_by=item.lease_picked_by)
        )


class StatsAPI(APIView):
    @extend_schema(responses=StatsSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id)
        return Response(project_stats(project, user=request.user))


class ItemMediaAPI(APIView):
    """The bytes of an item. The file path comes from the database row, never from the request."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, item_id: int) -> HttpResponse:
        item = Item.objects.select_related("project").filter(pk=item_id).first()
        if item is None:
            raise Http404("No such item")
        project, _ = get_project_for_user(request.user, item.project_id)
        if item.kind == ItemKind.TEXT:
            return HttpResponse(item.text, content_type="text/plain; charset=utf-8")
        if item.kind == ItemKind.JSON:
            return Response(item.data)
        if item.status == ItemStatus.REJECTED:
            raise Http404("This file was rejected at import")
        try:
            resolved = project.item_file_path(item).resolve(strict=True)
            resolved.relative_to(project.dataset_root.resolve())  # a symlink may not lead outside the dataset
        except (OSError, ValueError):
            raise Http404("The file is no longer available") from None
        content_type = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
        response = FileResponse(resolved.open("rb"), content_type=content_type)
        response["Cache-Control"] = "private, max-age=3600"
        response["X-Content-Type-Options"] = "nosniff"
        return response


class ProposalBatchAPI(APIView):
    """Lease a batch of proposals of one class (or, with `q`, of texts matching a search)."""

    @extend_schema(parameters=[ProposalQuerySerializer], responses=ProposalBatchSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
        query = ProposalQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if params.get("q"):
            leased = lease_search_batch(
                project, user=request.user, query=params["q"], label=params["label"], count=params.get("count")
            )
        else:
            leased = lease_batch(project, user=request.user, label=params.get("label"), count=params.get("count"))
        return Response(batch_payload(project, leased, ready=available_by_class(project)))


class ConfirmBatchAPI(APIView):
    """Accepted items become judgements (source confirmed_proposal); rejected ones go back to the queue."""

    @extend_schema(request=ConfirmBatchSerializer, responses=ConfirmResultSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id, min_role=Role.ANNOTATOR)
        serializer = ConfirmBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = do_confirm_batch(
            project, user=request.user, label=data["label"], accepted=data["accepted"], rejected=data["rejected"],
            time_taken=data.get("time_taken"),
        )
        return Response(
            {
                "batch": result.batch.pk, "label": result.batch.label, "accepted": len(result.accepted),
                "rejected": len(result.rejected), "skipped": result.skipped, "audit": result.audit,
                "paused": result.paused,
            }
        )
