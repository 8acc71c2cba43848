from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.stats import member_stats

from .models import Role
from .permissions import get_project_for_user, projects_for_user
from .serializers import MemberSerializer, MemberWriteSerializer, ProjectSerializer
from .services import do_add_member, do_remove_member


def _roles(user) -> dict[int, str]:
    return dict(user.memberships.values_list("project_id", "role"))


class ProjectListAPI(APIView):
    @extend_schema(responses=ProjectSerializer(many=True))
    def get(self, request: Request) -> Response:
        projects = projects_for_user(request.user).order_by("title")
        roles = _roles(request.user)
        if request.user.is_superuser:
            roles = {p.pk: Role.OWNER for p in projects}
        return Response(ProjectSerializer(projects, many=True, context={"roles": roles}).data)


class ProjectDetailAPI(APIView):
    @extend_schema(responses=ProjectSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project, role = get_project_for_user(request.user, project_id)
        return Response(ProjectSerializer(project, context={"roles": {project.pk: role}}).data)


def _members_payload(project) -> list[dict]:
    stats = member_stats(project)
    rows = project.memberships.select_related("user").order_by("user__username")
    return [
        {
            "username": m.user.username,
            "role": m.role,
            "count": stats.get(m.user_id, {}).get("count", 0),
            "median_seconds": stats.get(m.user_id, {}).get("median_seconds"),
        }
        for m in rows
    ]


class MemberListAPI(APIView):
    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id)
        return Response(_members_payload(project))

    @extend_schema(request=MemberWriteSerializer, responses={201: MemberSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
        serializer = MemberWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["username"]
        do_add_member(project, user=user, role=serializer.validated_data["role"])
        row = next(r for r in _members_payload(project) if r["username"] == user.username)
        return Response(row, status=status.HTTP_201_CREATED)


class MemberDetailAPI(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, project_id: int, username: str) -> Response:
        project, _ = get_project_for_user(request.user, project_id, min_role=Role.OWNER)
        user = get_object_or_404(get_user_model(), username=username)
        do_remove_member(project, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
