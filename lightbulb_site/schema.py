"""The OpenAPI schema view (its own module: lightbulb_site.api is imported by DRF's settings, and a view
imported there would import DRF's views while they are still loading)."""

from __future__ import annotations

from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema (signed-in users only, SPECTACULAR_SETTINGS), with its errors in JSON like every
    other API error, whatever format the schema itself would have come in."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response
