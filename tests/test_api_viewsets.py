"""Edges of the API that the move to viewsets and DRF permission classes had to keep as they were.

The project's door now opens in permission classes, which run earlier than the handlers that used to open it;
these pin what must not have moved with it.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from projects.models import Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_it_answers_unsupported_methods_and_options_without_opening_the_project(image_project, charlie):
    outsider = _client(charlie)
    base = f"/api/projects/{image_project.pk}"
    assert outsider.put(f"{base}/stats/", {}, format="json").status_code == 405
    assert outsider.get(f"{base}/judgements/undo/").status_code == 405
    assert outsider.get(f"{base}/score/").status_code == 405
    assert outsider.options(f"{base}/members/").status_code == 200
    assert outsider.options(f"{base}/score/").status_code == 200
    assert outsider.get(f"{base}/stats/").status_code == 404


def test_it_throttles_and_size_checks_scoring_before_the_project_door(image_project, charlie, settings):
    cache.clear()
    settings.LIGHTBULB_SCORE_RATE = "1/min"
    outsider = _client(charlie)
    body = {"type": "text", "texts": ["x"]}
    assert outsider.post(f"/api/projects/{image_project.pk}/score/", body, format="json").status_code == 404
    # The outsider's first call counted against the rate: the second is throttled, not another 404.
    assert outsider.post(f"/api/projects/{image_project.pk}/predict/", body, format="json").status_code == 429

    cache.clear()
    settings.LIGHTBULB_SCORE_RATE = "1000/min"
    settings.LIGHTBULB_SCORE_MAX_REQUEST_BYTES = 10
    too_big = outsider.post(f"/api/projects/{image_project.pk}/score/", body, format="json")
    assert too_big.status_code == 413 and "exceeds the 10-byte limit" in too_big.json()["detail"]


def test_it_keeps_the_doors_messages(image_project, charlie, django_user_model):
    viewer = django_user_model.objects.create_user("vera", password="x")
    do_add_member(image_project, user=viewer, role=Role.VIEWER)
    base = f"/api/projects/{image_project.pk}"
    assert _client(charlie).get(f"{base}/").json() == {"detail": "No such project"}
    assert _client(viewer).post(f"{base}/judgements/undo/").json() == {
        "detail": "This needs the annotator role; you are a viewer."
    }
    assert _client(viewer).get("/api/items/999999/media").json() == {"detail": "No such item"}


def test_it_renders_the_browsable_api_for_members_below_a_write_role(image_project, django_user_model):
    # The browsable API checks the POST form's permission too; a refusal there must hide the form, not be a 500.
    viewer = django_user_model.objects.create_user("vera", password="x")
    do_add_member(image_project, user=viewer, role=Role.VIEWER)
    for url in (f"/api/projects/{image_project.pk}/members/", f"/api/projects/{image_project.pk}/judgements/"):
        response = _client(viewer).get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/html")


def test_it_removes_members_whose_usernames_hold_dots(image_project, alice, django_user_model):
    dotted = django_user_model.objects.create_user("ann.e@example.org", password="x")
    do_add_member(image_project, user=dotted, role=Role.VIEWER)
    response = _client(alice).delete(f"/api/projects/{image_project.pk}/members/ann.e@example.org/")
    assert response.status_code == 204
    assert not image_project.memberships.filter(user=dotted).exists()
