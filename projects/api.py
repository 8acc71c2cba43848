from __future__ import annotations

from typing import ClassVar

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from labeling.stats import member_stats

from .models import Project, Role
from .permissions import IsProjectMember, projects_for_user, signed_in
from .rendering import render_guidelines
from .serializers import (
    GuidelinesSerializer,
    MemberSerializer,
    MemberWriteSerializer,
    ProjectCreateSerializer,
    ProjectSerializer,
)
from .services import do_add_member, do_create_project, do_remove_member, do_set_guidelines, parse_classes


def _roles(user) -> dict[int, str]:
    return dict(user.memberships.values_list("project_id", "role"))


# `projects/` and `projects/<project_id>/`. No docstring on purpose: drf-spectacular would show it as the
# description of both operations, which have none.
class ProjectViewSet(ViewSet):
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "int"
    list_url_name = "projects"
    detail_url_name = "project"
    project: Project  # set by IsProjectMember
    role: str

    def get_permissions(self) -> list[BasePermission]:
        # The list is the user's own projects (projects_for_user); one project goes through the door.
        if self.action in ("list", "create"):
            return [IsAuthenticated()]
        return [IsAuthenticated(), IsProjectMember()]

    @extend_schema(responses=ProjectSerializer(many=True))
    def list(self, request: Request) -> Response:
        projects = projects_for_user(request.user).order_by("title")
        roles = _roles(request.user)
        if request.user.is_superuser:
            roles = {p.pk: Role.OWNER for p in projects}
        return Response(ProjectSerializer(projects, many=True, context={"roles": roles}).data)

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectSerializer})
    def create(self, request: Request) -> Response:
        """A new project you own, its data to come: `POST projects/{id}/items/` (files, JSONL, or a server
        folder). Needs the "Can add project" permission (or LIGHTBULB_ANYONE_CREATES_PROJECTS)."""
        serializer = ProjectCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = do_create_project(
            creator=signed_in(request), title=data["title"], data_type=data["data_type"],
            label_type=data["label_type"], classes=parse_classes(data.get("classes", [])),
            description=data["description"], template=data["template"],
        )
        body = ProjectSerializer(project, context={"roles": {project.pk: Role.OWNER}}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ProjectSerializer)
    def retrieve(self, request: Request, project_id: int) -> Response:
        project = self.project
        return Response(ProjectSerializer(project, context={"roles": {project.pk: self.role}}).data)

    # `projects/<project_id>/guidelines/`: every member reads them; owners replace them (PUT).
    min_roles: ClassVar[dict[str, str]] = {"set_guidelines": Role.OWNER}

    @extend_schema(responses=GuidelinesSerializer)
    @action(detail=True, methods=["get"], url_path="guidelines", url_name="guidelines")
    def guidelines(self, request: Request, project_id: int) -> Response:
        return Response(_guidelines_payload(self.project))

    @extend_schema(request=GuidelinesSerializer, responses=GuidelinesSerializer)
    @guidelines.mapping.put
    def set_guidelines(self, request: Request, project_id: int) -> Response:
        serializer = GuidelinesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = do_set_guidelines(self.project, text=serializer.validated_data["guidelines"])
        return Response(_guidelines_payload(project))


def _guidelines_payload(project: Project) -> dict:
    return {"guidelines": project.guidelines, "html": render_guidelines(project.guidelines),
            "updated_at": project.guidelines_updated_at}


def _members_payload(project) -> list[dict]:
    stats = member_stats(project)
    rows = project.memberships.select_related("user").order_by("user__username")
    return [
        {
            "username": m.user.username,
            "role": m.role,
            "count": stats[m.user_id]["count"] if m.user_id in stats else 0,
            "median_seconds": stats[m.user_id]["median_seconds"] if m.user_id in stats else None,
        }
        for m in rows
    ]


# `projects/<project_id>/members/` and `.../members/<username>/`: every member sees them, owners change them.
class MemberViewSet(ViewSet):
    permission_classes = (IsAuthenticated, IsProjectMember)
    min_roles: ClassVar[dict[str, str]] = {"create": Role.OWNER, "destroy": Role.OWNER}
    lookup_field = "username"
    lookup_value_converter = "str"  # as `<str:username>` did: any character but "/" (usernames may hold dots)
    list_url_name = "members"
    detail_url_name = "member"
    project: Project  # set by IsProjectMember

    @extend_schema(responses=MemberSerializer(many=True))
    def list(self, request: Request, project_id: int) -> Response:
        return Response(_members_payload(self.project))

    @extend_schema(request=MemberWriteSerializer, responses={201: MemberSerializer})
    def create(self, request: Request, project_id: int) -> Response:
        project = self.project
        serializer = MemberWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["username"]
        do_add_member(project, user=user, role=serializer.validated_data["role"])
        row = next(r for r in _members_payload(project) if r["username"] == user.username)
        return Response(row, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, project_id: int, username: str) -> Response:
        user = get_object_or_404(get_user_model(), username=username)
        do_remove_member(self.project, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
