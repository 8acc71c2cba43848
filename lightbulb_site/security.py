"""Sign-in protection and security headers, site-wide.

- Failed sign-ins are counted by django-axes (per account and per client address, in the database, so
  every gunicorn worker and every machine sees the same counts); once either reaches the limit, the
  login page, the admin login and `POST /api/auth/token/` answer 429 until the cool-off has passed or
  an administrator resets it (admin -> Axes -> Access attempts, or `manage.py axes_reset`).
- The client address is REMOTE_ADDR, or, behind LIGHTBULB_TRUSTED_PROXIES reverse proxies, the address
  the outermost trusted proxy saw (X-Forwarded-For read from the right, so a client cannot choose it).
- Every response carries a strict Content-Security-Policy: the pages load scripts and styles from
  this site only and have no inline script.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response


def client_ip(request: HttpRequest) -> str:
    """The address a failed sign-in is counted against."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    proxies = settings.LIGHTBULB_TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    # Each trusted proxy appends the address it received the request from; what lies further left was
    # written by the client and proves nothing. With N proxies the N-th entry from the right is the
    # client as the outermost proxy saw it.
    forwarded = [part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR") or "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) >= proxies:
        return forwarded[-proxies]
    return forwarded[0] if forwarded else remote


def _cooloff_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def locked_out_message() -> str:
    return (f"Too many failed sign-ins for this account or from this address. Try again in "
            f"{_cooloff_minutes()} minutes, or ask an administrator to unlock it.")


def retry_after() -> str:
    """Seconds a locked-out client should wait, for the Retry-After header."""
    return str(int(settings.AXES_COOLOFF_TIME.total_seconds()))


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    """django-axes' AXES_LOCKOUT_CALLABLE: a JSON 429 for API clients, the sign-in page with the reason
    for people, both with Retry-After."""
    response: HttpResponse
    if request.path.startswith("/api/") or "application/json" in request.META.get("HTTP_ACCEPT", ""):
        response = JsonResponse({"detail": locked_out_message()}, status=429)
    else:
        response = render(request, "registration/locked_out.html",
                          {"message": locked_out_message()}, status=429)
    response["Retry-After"] = retry_after()
    return response


class ObtainTokenView(ObtainAuthToken):
    """DRF's token endpoint, with the sign-in lock-out. DRF hands its own Request to `authenticate()`, so
    django-axes marks that object, not the Django request its middleware looks at: answer here."""

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            if getattr(request, "axes_locked_out", False):
                return Response({"detail": locked_out_message()}, status=429, headers={"Retry-After": retry_after()})
            return Response(serializer.errors, status=400)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})


class ContentSecurityPolicyMiddleware:
    """Adds the site's Content-Security-Policy (settings.LIGHTBULB_CSP) to every response that has none."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.LIGHTBULB_CSP and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = settings.LIGHTBULB_CSP
        return response
