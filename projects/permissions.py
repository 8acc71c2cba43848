"""The one door to a project: every page and API view goes through `get_project_for_user`."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest
from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from lightbulb_site.ids import is_row_id

from .models import ROLE_RANK, Membership, Project, Role


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
    if not is_row_id(pk):
        raise Http404("No such project")
    if not user.is_authenticated or not user.is_active:
        raise Http404("No such project")
    projects = Project.objects.filter(pk=pk)
    if not user.is_superuser:
        # The member's role comes with the project in one query (every API call starts here).
        projects = projects.annotate(
            member_role=Subquery(Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1])
        )
    project = projects.first()
    if project is None:
        raise Http404("No such project")
    role = Role.OWNER if user.is_superuser else getattr(project, "member_role", None)
    if role is None:
        raise Http404("No such project")
    if ROLE_RANK[role] < ROLE_RANK[min_role]:
        article = "an" if role[:1] in "aeiou" else "a"
        raise PermissionDenied(f"This needs the {min_role} role; you are {article} {role}.")
    return project, role


def projects_for_user(user: User | AnonymousUser):
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def signed_in(request: HttpRequest | Request) -> User:
    """The signed-in user of a request that only signed-in users reach (`login_required`, DRF's
    IsAuthenticated); typed as such for the services, which take a real user."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("Sign in first.")
    return user


def has_role(role: str | None, min_role: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[min_role]


def get_project_for_api(
    user: User | AnonymousUser, project_id: int | str, *, min_role: str = Role.VIEWER
) -> tuple[Project, str]:
    """`get_project_for_user` for DRF permissions: the same door, its refusals raised as DRF's exceptions.

    The responses are the ones DRF makes of Django's Http404 / PermissionDenied (same status, same message),
    but the browsable API checks permissions for the forms it draws (a viewer looking at the members list is
    checked for adding one) and only catches DRF's exceptions there; Django's would be a 500.
    """
    try:
        return get_project_for_user(user, project_id, min_role=min_role)
    except Http404 as exc:
        raise exceptions.NotFound(*exc.args) from exc
    except PermissionDenied as exc:
        raise exceptions.PermissionDenied(*exc.args) from exc


# The viewset `action`s that never looked at a project: a method without a handler (None, DRF's 405) and OPTIONS
# ("metadata"). Both were answered to any signed-in user before the viewsets (an outsider got 405, not 404), so the
# project permissions let them through unchecked.
NO_PROJECT_ACTIONS = (None, "metadata")


class IsProjectMember(BasePermission):
    """The URL's project (`project_id`) through the one door, at the role the view asks for this action.

    A viewset names the roles in `min_roles` ({action: role}; unnamed actions need a viewer). Outsiders get
    404 and members below the role 403, exactly as from `get_project_for_user`. The project and role are kept
    on the view (`view.project`, `view.role`) so that the handler does not open the door a second time.
    List it after IsAuthenticated: anonymous calls are 401, not outsiders.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        action = getattr(view, "action", None)
        if action in NO_PROJECT_ACTIONS:
            return True
        min_role = getattr(view, "min_roles", {}).get(action, Role.VIEWER)
        # The viewsets declare both attributes (`project: Project`); APIView itself has neither.
        view.project, view.role = get_project_for_api(  # type: ignore[attr-defined]
            request.user, view.kwargs["project_id"], min_role=min_role
        )
        return True
