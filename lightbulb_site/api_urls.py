from typing import ClassVar

from django.urls import path
from rest_framework.routers import DynamicRoute, Route, SimpleRouter
from rest_framework.viewsets import ViewSetMixin

from interchange import api as interchange_api
from labeling import api as labeling_api
from modeling import api as modeling_api
from projects import api as projects_api

from .schema import ApiDocsView, ApiIndexView, BrowsableSchemaView
from .security import ObtainTokenView

app_name = "api"


class ApiRouter(SimpleRouter):
    """DRF's SimpleRouter, with the URL converters and URL names the API had before it had a router.

    - Routes are `path()`s: a viewset's `lookup_value_converter` and the prefixes' `<int:project_id>` match and
      convert as the hand-written URLs did (ids arrive as ints; a `str` username may hold dots, which DRF's
      default lookup regex would stop at).
    - Pages, templates and clients reverse "api:projects", "api:project", "api:next-items", ...; DRF would name
      the routes "<basename>-list", "<basename>-detail" and "<basename>-<url_name>". Here an action's `url_name`
      is its whole name, and the list and detail routes take theirs from the viewset's `list_url_name` and
      `detail_url_name`.
    """

    routes = [
        route._replace(name="{url_name}") if isinstance(route, DynamicRoute) else route
        for route in SimpleRouter.routes
    ]
    _named_by_viewset: ClassVar[dict[str, str]] = {
        "{basename}-list": "list_url_name", "{basename}-detail": "detail_url_name",
    }

    def __init__(self, *, trailing_slash: bool = True) -> None:
        super().__init__(trailing_slash=trailing_slash, use_regex_path=False)

    def get_routes(self, viewset: type[ViewSetMixin]) -> list[Route]:
        names = {template: getattr(viewset, attr, template) for template, attr in self._named_by_viewset.items()}
        return [route._replace(name=names.get(route.name, route.name)) for route in super().get_routes(viewset)]


router = ApiRouter()
router.register("projects", projects_api.ProjectViewSet, basename="project")
router.register("projects/<int:project_id>/members", projects_api.MemberViewSet, basename="member")
router.register("projects/<int:project_id>/items", labeling_api.ItemViewSet, basename="item")
# POST `projects/<project_id>/items/` (adding data) is the import app's; the labelling actions above are below it.
router.register("projects/<int:project_id>/items", interchange_api.ItemUploadViewSet, basename="item-upload")
router.register("projects/<int:project_id>/imports", interchange_api.ImportViewSet, basename="import")
router.register("projects/<int:project_id>/judgements", labeling_api.JudgementViewSet, basename="judgement")
# Actions on one project (`projects/<project_id>/<action>/`), each app's in its own viewset.
router.register("projects", labeling_api.StatsViewSet, basename="stats")
router.register("projects", labeling_api.ProposalViewSet, basename="proposal")
router.register("projects", labeling_api.LabelReviewViewSet, basename="label-review")
router.register("projects", labeling_api.DisputeViewSet, basename="dispute")
router.register("projects", modeling_api.ModelSummaryViewSet, basename="model")
router.register("projects", modeling_api.ScoringViewSet, basename="scoring")
router.register("projects", modeling_api.AutoLabelViewSet, basename="auto-labels")
router.register("projects", modeling_api.LabelCheckViewSet, basename="label-check")
router.register("projects", modeling_api.FineTuneViewSet, basename="finetune")
router.register("projects", interchange_api.ExportViewSet, basename="export")
router.register("projects", interchange_api.ServerFolderViewSet, basename="server-folder")

# The one URL without a trailing slash, as item payloads and pages have always linked it.
media_router = ApiRouter(trailing_slash=False)
media_router.register("items", labeling_api.MediaViewSet, basename="media")

urlpatterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="token"),
    path("", ApiIndexView.as_view(), name="index"),
    path("schema/", BrowsableSchemaView.as_view(), name="schema"),
    path("docs/", ApiDocsView.as_view(), name="docs"),
    *router.urls,
    *media_router.urls,
]
