"""The OpenAPI schema view (its own module: lightbulb_site.api is imported by DRF's settings, and a view
imported there would import DRF's views while they are still loading)."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema (signed-in users only, SPECTACULAR_SETTINGS), with its errors in JSON like every
    other API error, whatever format the schema itself would have come in."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


def _browser_asks(request) -> bool:
    """A browser opening the URL (it asks for HTML first), not an API client asking for a format."""
    accept = request.META.get("HTTP_ACCEPT", "")
    return "text/html" in accept and not request.GET.get("format")


class BrowsableSchemaView(SchemaView):
    """The schema: YAML for API clients as before (or `?format=json`); a browser gets it as JSON it shows,
    where the OpenAPI media types made it download a file."""

    def perform_content_negotiation(self, request, force=False):
        if _browser_asks(request):
            from drf_spectacular.renderers import OpenApiJsonRenderer2

            renderer = OpenApiJsonRenderer2()
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI for the schema (/api/docs/), its files served by the site (drf-spectacular-sidecar) and its
    start-up script a file of its own, so the site's CSP holds. Signed-in users; a browser that is not
    signed in goes to the login page and comes back."""

    url_name = "api:schema"
    template_name = "api/swagger_ui.html"

    def handle_exception(self, exc):
        if isinstance(exc, (NotAuthenticated, AuthenticationFailed)) and _browser_asks(self.request):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)


class ApiIndexView(APIView):
    """`/api/`: where to start. Everyone: how to sign in and where the docs are; signed-in users also get every
    endpoint (method, path, summary) from the schema itself, so the list is never out of date."""

    permission_classes = (AllowAny,)

    @extend_schema(exclude=True)
    def get(self, request):
        body: dict = {
            "title": "Light Bulb API",
            "authentication": {
                "token": reverse("api:token"),
                "how": "POST username and password to the token URL, then send `Authorization: Token <key>`; "
                       "a signed-in browser session works too",
            },
            "docs": reverse("api:docs"),
            "schema": reverse("api:schema"),
        }
        if request.user and request.user.is_authenticated:
            body["endpoints"] = _endpoints()
        return Response(body)


def _endpoints() -> list[dict[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    rows = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                summary = (operation.get("summary") or operation.get("description") or "").strip().split("\n")[0]
                rows.append({"method": method.upper(), "path": path, "summary": summary})
    return rows
