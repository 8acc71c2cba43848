"""API-wide behaviour: domain errors become JSON 4xx responses, never 200 with an error body."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import DomainError


def exception_handler(exc, context):
    # Every app's errors derive from DomainError and say their own status, so this module knows no app.
    if isinstance(exc, DomainError):
        return Response(exc.payload(), status=exc.status_code)
    return drf_exception_handler(exc, context)
