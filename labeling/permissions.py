"""DRF permissions of the labeling API; projects are opened only through `projects.permissions`."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from lightbulb_site.ids import is_row_id
from projects.models import Item
from projects.permissions import NO_PROJECT_ACTIONS, get_project_for_api


class IsItemProjectMember(BasePermission):
    """For URLs that name an item but not its project (`items/<item_id>/media`): any member of the item's project.

    An unknown item and an item of a project the user is not in get the same 404 ("No such item"), so the
    answer never tells an outsider which item ids exist. The item, its project and the role are kept on the
    view (`view.item`, `view.project`, `view.role`).
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        if getattr(view, "action", None) in NO_PROJECT_ACTIONS:
            return True
        item_id = view.kwargs["item_id"]
        item = Item.objects.select_related("project").filter(pk=item_id).first() if is_row_id(item_id) else None
        if item is None:
            raise NotFound("No such item")
        # The viewset declares item, project and role (MediaViewSet).
        view.item = item  # type: ignore[attr-defined]
        try:
            view.project, view.role = get_project_for_api(request.user, item.project_id)  # type: ignore[attr-defined]
        except NotFound:
            raise NotFound("No such item") from None
        return True
