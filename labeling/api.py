from __future__ import annotations

import mimetypes
from dataclasses import asdict
from typing import ClassVar

from django.http import FileResponse, Http404, HttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from projects.label_kinds import kind_for
from projects.models import Item, ItemKind, ItemStatus, Project, Role
from projects.permissions import IsProjectMember, signed_in

from .agreement import project_agreement
from .blind import shows_prediction, visible_judgements, visible_prediction
from .disputes import disputes
from .models import Judgement
from .overlap import OVERLAP, first_vote_picks, is_overlap_item
from .permissions import IsItemProjectMember
from .presenters import batch_payload, item_payload
from .proposals import available_by_class, do_confirm_batch, lease_batch, lease_search_batch
from .queue import model_hooks
from .reviews import do_review_labels, labels_to_review, reviewed_accuracy
from .serializers import (
    ConfirmBatchSerializer,
    ConfirmResultSerializer,
    DisputeSerializer,
    JudgementCreateSerializer,
    JudgementFilterSerializer,
    JudgementSerializer,
    LabelReviewCreateSerializer,
    LabelReviewQuerySerializer,
    NextItemSerializer,
    ProposalBatchSerializer,
    ProposalQuerySerializer,
    StatsSerializer,
)
from .services import (
    MAX_BATCH,
    do_record_judgement,
    do_skip_item,
    do_undo_last_judgement,
    get_item,
    next_items,
    next_review_items,
    undone_value,
)
from .stats import project_stats


def leased_payloads(project, leased) -> list[dict]:
    # TEST items and audits are labelled blind (labeling.blind): their guesses are not even looked up. An
    # overlap item's next label says how the item was first picked, never that it is checked (people would
    # label checked items with more care than the rest, or skip them).
    round_picks = first_vote_picks([li.item.pk for li in leased if li.picked_by == OVERLAP])
    shown = [
        li.item.pk for li in leased
        if shows_prediction(project, stage=li.stage, picked_by=li.picked_by, overlap=is_overlap_item(li.item))
    ]
    predictions = model_hooks().predictions(project, shown) if shown else {}
    return [
        item_payload(
            project, li.item, stage=li.stage, picked_by=round_picks.get(li.item.pk, li.picked_by),
            prediction=predictions.get(li.item.pk) if li.item.pk in shown else None,
        )
        for li in leased
    ]


# `projects/<project_id>/items/next/` and `.../items/<item_id>/skip/`: annotators' work on the queue.
class ItemViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"lease_next": Role.ANNOTATOR, "skip": Role.ANNOTATOR}
    lookup_url_kwarg = "item_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(
        parameters=[OpenApiParameter("count", int, description=f"how many items to lease (1-{MAX_BATCH})")],
        responses=NextItemSerializer(many=True),
    )
    @action(detail=False, url_path="next", url_name="next-items")
    def lease_next(self, request: Request, project_id: int) -> Response:
        project = self.project
        try:
            count = int(request.query_params.get("count", 1))
        except ValueError:
            raise ValidationError({"count": "must be a whole number"}) from None
        if not 1 <= count <= MAX_BATCH:
            raise ValidationError({"count": f"must be between 1 and {MAX_BATCH}"})
        mode = request.query_params.get("mode", "")
        if mode not in ("", "label", "review"):
            raise ValidationError({"mode": "label (the default) or review"})
        if mode == "review":
            # Sequence tagging and detection: the items the model is confident about, its spans or boxes pre-filled.
            leased = next_review_items(project, user=signed_in(request), count=count)
        else:
            leased = next_items(project, user=signed_in(request), count=count)
        return Response(leased_payloads(project, leased))

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"], url_name="skip")
    def skip(self, request: Request, project_id: int, item_id: int) -> Response:
        project = self.project
        do_skip_item(project, item=get_item(project, item_id), user=signed_in(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JudgementPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


# `projects/<project_id>/judgements/` and `.../judgements/undo/`: members read them, annotators make them.
class JudgementViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"create": Role.ANNOTATOR, "undo": Role.ANNOTATOR}
    list_url_name = "judgements"
    project: Project  # set by IsProjectMember
    role: str  # the same

    @extend_schema(parameters=[JudgementFilterSerializer], responses=JudgementSerializer(many=True))
    def list(self, request: Request, project_id: int) -> Response:
        filters = JudgementFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        # Members below reviewer do not see other people's TEST labels (labeling.blind).
        qs = visible_judgements(
            Judgement.objects.filter(project=self.project), user=signed_in(request), role=self.role
        ).select_related("item", "auto_run").order_by("-created_at", "-id")
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
    def create(self, request: Request, project_id: int) -> Response:
        project = self.project
        serializer = JudgementCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        judgement = do_record_judgement(
            project,
            item=get_item(project, data["item"]),
            user=signed_in(request),
            label=data["label"],
            value=answer_value(data),
            time_taken=data.get("time_taken"),
            role=self.role,
            reason=data.get("reason", ""),
        )
        return Response(JudgementSerializer(judgement).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=NextItemSerializer)
    @action(detail=False, methods=["post"], url_name="undo")
    def undo(self, request: Request, project_id: int) -> Response:
        project = self.project
        item = do_undo_last_judgement(project, user=signed_in(request))
        # The spans just undone come back pre-filled: undo is for fixing one, not starting over.
        answer = undone_value(item, user=signed_in(request)) if kind_for(project).structured else None
        prediction = visible_prediction(project, stage=item.lease_stage or None, picked_by=item.lease_picked_by,
                                        prediction=model_hooks().predictions(project, [item.pk]).get(item.pk),
                                        overlap=is_overlap_item(item))
        return Response(
            item_payload(project, item, stage=item.lease_stage or None, prediction=prediction,
                         picked_by=item.lease_picked_by, answer=answer)
        )


def answer_value(data: dict) -> dict | None:
    """A structured answer as the request gave it (spans or boxes; the project's kind checks it), else None."""
    for part in ("spans", "boxes"):
        if data.get(part) is not None:
            return {part: data[part]}
    return None


# `projects/<project_id>/stats/`: an action on one project (a `list` would be documented as an array).
class StatsViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(responses=StatsSerializer)
    @action(detail=True, url_name="stats")
    def stats(self, request: Request, project_id: int) -> Response:
        return Response(project_stats(self.project, user=signed_in(request)))

    @extend_schema(responses=OpenApiTypes.OBJECT, description=(
        "Agreement between people who labelled the same items: Krippendorff's alpha and raw agreement over "
        "everyone, raw agreement and Cohen's kappa per pair, each {value, low, high, items} with a bootstrap "
        "95% interval; the confusion between annotators and each class's disagreement rate."
    ))
    @action(detail=True, url_name="agreement")
    def agreement(self, request: Request, project_id: int) -> Response:
        return Response(asdict(project_agreement(self.project)))


# `items/<item_id>/media` (no trailing slash, as pages and payloads have always linked it).
class MediaViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsItemProjectMember)
    lookup_url_kwarg = "item_id"
    lookup_value_converter = "int"
    item: Item  # set by IsItemProjectMember, with its project
    project: Project

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, url_name="item-media")
    def media(self, request: Request, item_id: int) -> HttpResponseBase:
        """The bytes of an item. The file path comes from the database row, never from the request."""
        item, project = self.item, self.project
        if item.kind == ItemKind.TEXT:
            return HttpResponse(item.text, content_type="text/plain; charset=utf-8")
        if item.kind == ItemKind.JSON:
            return Response(item.data)
        # A file that could not be read is never served; a duplicate dropped at import is a good image.
        if item.status == ItemStatus.REJECTED and not item.rejection_reason.startswith("duplicate of "):
            raise Http404("This file was rejected at import")
        path = project.item_file_path(item)
        if path is None:  # only file items get here; a file item always has a path
            raise Http404("The file is no longer available")
        try:
            resolved = path.resolve(strict=True)
            resolved.relative_to(project.dataset_root.resolve())  # a symlink may not lead outside the dataset
        except (OSError, ValueError):
            raise Http404("The file is no longer available") from None
        content_type = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
        response = FileResponse(resolved.open("rb"), content_type=content_type)
        response["Cache-Control"] = "private, max-age=3600"
        response["X-Content-Type-Options"] = "nosniff"
        return response


# `projects/<project_id>/proposals/` and `.../proposals/confirm/`: actions on one project, like stats.
class ProposalViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"lease": Role.ANNOTATOR, "confirm": Role.ANNOTATOR}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(parameters=[ProposalQuerySerializer], responses=ProposalBatchSerializer)
    @action(detail=True, url_path="proposals", url_name="proposals")
    def lease(self, request: Request, project_id: int) -> Response:
        """Lease a batch of proposals of one class (or, with `q`, of texts matching a search)."""
        project = self.project
        query = ProposalQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if params.get("q"):
            leased = lease_search_batch(
                project, user=signed_in(request), query=params["q"], label=params["label"], count=params.get("count")
            )
        else:
            leased = lease_batch(project, user=signed_in(request), label=params.get("label"), count=params.get("count"))
        return Response(batch_payload(project, leased, ready=available_by_class(project)))

    @extend_schema(request=ConfirmBatchSerializer, responses=ConfirmResultSerializer)
    @action(detail=True, methods=["post"], url_path="proposals/confirm", url_name="proposals-confirm")
    def confirm(self, request: Request, project_id: int) -> Response:
        """Accepted items become judgements (source confirmed_proposal), corrected ones human labels of the
        class given (corrected_proposal); rejected ones go to their next-likeliest class or the queue."""
        project = self.project
        serializer = ConfirmBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = do_confirm_batch(
            project, user=signed_in(request), label=data["label"], accepted=data["accepted"], rejected=data["rejected"],
            corrected=data.get("corrected"), time_taken=data.get("time_taken"),
        )
        return Response(
            {
                "batch": result.batch.pk, "label": result.batch.label, "accepted": len(result.accepted),
                "rejected": len(result.rejected), "corrected": len(result.corrected), "skipped": result.skipped,
                "audit": result.audit, "paused": result.paused,
            }
        )


# `projects/<project_id>/label-reviews/`: reviewers check an annotator's labels (the review grid's API).
class LabelReviewViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"to_review": Role.REVIEWER, "record": Role.REVIEWER}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember
    role: str

    def _annotator(self, name: str):
        member = self.project.memberships.select_related("user").filter(user__username=name).first()
        if member is None:
            raise ValidationError({"annotator": f"{name!r} is not a member of this project"})
        return member.user

    @extend_schema(parameters=[LabelReviewQuerySerializer], responses=JudgementSerializer(many=True))
    @action(detail=True, url_path="label-reviews", url_name="label-reviews")
    def to_review(self, request: Request, project_id: int) -> Response:
        """The annotator's current labels nobody has reviewed yet, newest first (up to 24)."""
        query = LabelReviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        annotator = self._annotator(query.validated_data["annotator"])
        return Response(JudgementSerializer(labels_to_review(self.project, annotator=annotator), many=True).data)

    @extend_schema(request=LabelReviewCreateSerializer, responses={201: OpenApiTypes.OBJECT})
    @to_review.mapping.post
    def record(self, request: Request, project_id: int) -> Response:
        """Accept or change each of the annotator's labels; a change is an adjudicated judgement."""
        body = LabelReviewCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        decisions = {d["judgement"]: d["label"] for d in data["decisions"]}
        annotator = self._annotator(data["annotator"])
        result = do_review_labels(self.project, reviewer=signed_in(request), role=self.role, annotator=annotator,
                                  decisions=decisions, reason=data.get("reason", ""))
        mine = reviewed_accuracy(self.project).get(annotator.pk)
        return Response(
            {**asdict(result), "reviewed": mine.reviewed if mine else 0,
             "accuracy": mine.accuracy if mine else None},
            status=status.HTTP_201_CREATED,
        )


# `projects/<project_id>/disputes/`: overlap items whose independent labels disagree, for reviewers.
class DisputeViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"disputes": Role.REVIEWER}
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    project: Project  # set by IsProjectMember

    @extend_schema(
        parameters=[OpenApiParameter("offset", int, description="skip this many (oldest first)")],
        responses=DisputeSerializer(many=True),
    )
    @action(detail=True, url_path="disputes", url_name="disputes")
    def disputes(self, request: Request, project_id: int) -> Response:
        """Disputed items, oldest first (up to 50), each with every vote and who gave it. A reviewer decides
        one with `POST judgements/` (the same service as the page): its label, source `adjudicated`."""
        try:
            offset = max(0, int(request.query_params.get("offset", 0)))
        except ValueError:
            raise ValidationError({"offset": "must be a whole number"}) from None
        rows = disputes(self.project, offset=offset)
        return Response(DisputeSerializer(
            [{"item": item_payload(self.project, d.item), "stage": d.stage, "votes": [asdict(v) for v in d.votes]}
             for d in rows], many=True,
        ).data)
