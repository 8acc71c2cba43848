"""The one door to a project: every page and API view goes through `get_project_for_user`."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from .models import ROLE_RANK, Membership, Project, Role


def role_for(user: User | AnonymousUser, project: Project) -> str | None:
    """The user's role in the project; superusers act as owners everywhere."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.OWNER
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def get_project_for_user(
    user: User | AnonymousUser, project_id: int | str, *, min_role: str = Role.VIEWER
) -> tuple[Project, str]:
    """Return (project, role).

    Outsiders get 404, so a project's existence never leaks; members below `min_role` already know
    the project exists and get 403 (PermissionDenied), which tells them why.
    """
    try:
        pk = int(project_id)
    except (TypeError, ValueError):
        raise Http404("No such project") from None
    project = Project.objects.filter(pk=pk).first()
    if project is None:
        raise Http404("No such project")
    role = role_for(user, project)
    if role is None:
        raise Http404("No such project")
    if ROLE_RANK[role] < ROLE_RANK[min_role]:
        raise PermissionDenied(f"This needs the {min_role} role; you are a {role}.")
    return project, role


def projects_for_user(user: User | AnonymousUser):
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def signed_in(request: HttpRequest) -> User:
    """The signed-in user of a request that only signed-in users reach (`login_required`, DRF's
    IsAuthenticated); typed as such for the services, which take a real user."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("Sign in first.")
    return user


def has_role(role: str | None, min_role: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[min_role]
