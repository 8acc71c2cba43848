"""API-wide behaviour: domain errors become JSON 4xx responses, never 200 with an error body; bodies that
would crash the server (nested thousands deep, numbers no database column holds) are a JSON 400."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFilesSent
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import DomainError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a body nested deeper than Python's recursion limit refused as a 400 (the
    decoder raises RecursionError, which DRF's parser lets through as a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None


def exception_handler(exc, context):
    # Every app's errors derive from DomainError and say their own status, so this module knows no app.
    if isinstance(exc, DomainError):
        return Response(exc.payload(), status=exc.status_code)
    # Input that reached past the parser anyway: data nested too deeply for a validator, a number too big
    # for a database column. The client's mistake, so a 400 that says so, never a 500 page.
    if isinstance(exc, RecursionError):
        return Response({"detail": "the request is nested too deeply"}, status=400)
    if isinstance(exc, OverflowError):
        return Response({"detail": "a number in the request is too large"}, status=400)
    # Django refuses these while parsing a body (an upload of too many files, a form too big): JSON, not its
    # HTML error page, saying what the limit is.
    if isinstance(exc, TooManyFilesSent):
        return Response({"detail": f"at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files per request; send the "
                                   "rest in further requests"}, status=413)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "the request's form fields are too large"}, status=413)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": "the request was refused as malformed"}, status=400)
    return drf_exception_handler(exc, context)

