"""API-wide behaviour: domain errors become JSON 4xx responses, never 200 with an error body."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from labeling.services import InvalidLabel, ItemRejected, ItemUnavailable, LabelingError, LeaseConflict, NothingToUndo
from modeling.services import NoModelYet
from modeling.serving import NothingScored, ScoreRequestError, ScoreRequestTooLarge, ScoringUnavailable
from projects.services import MembershipError, ProjectError


def exception_handler(exc, context):
    if isinstance(exc, InvalidLabel):
        return Response({"detail": str(exc), "allowed": exc.allowed}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ItemUnavailable):
        return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, (LeaseConflict, NothingToUndo)):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, (ItemRejected, MembershipError, LabelingError, ProjectError)):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ScoreRequestTooLarge):
        return Response({"detail": str(exc)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, ScoreRequestError):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, NothingScored):
        return Response({"detail": str(exc), "errors": exc.errors}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, NoModelYet):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, ScoringUnavailable):
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return drf_exception_handler(exc, context)
