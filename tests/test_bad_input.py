"""Input built to crash the server gets a JSON 400 (or the usual 404), never a 500 page."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from projects.models import Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db

DEEP = "[" * 2000 + "]" * 2000
HUGE = 99999999999999999999


@pytest.fixture
def api(image_project, bob):
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    client = APIClient()
    client.force_authenticate(bob)
    return client


@pytest.mark.parametrize("path", ["judgements/", "proposals/confirm/", "score/"])
def test_a_body_nested_2000_deep_is_a_json_400(api, image_project, path):
    response = api.post(f"/api/projects/{image_project.pk}/{path}", DEEP, content_type="application/json")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert "nested too deeply" in response.json()["detail"]
    nested = {"item": 1, "label": json.loads("[" * 900 + "]" * 900)}  # parses, then too deep to validate
    response = api.post(f"/api/projects/{image_project.pk}/judgements/", nested, format="json")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"


def test_ids_too_large_for_any_row_are_a_json_4xx(api, image_project):
    base = f"/api/projects/{image_project.pk}"
    listed = api.get(f"{base}/judgements/", {"item": HUGE})
    assert listed.status_code == 400 and "item" in listed.json()
    confirm = api.post(f"{base}/proposals/confirm/", {"label": "Cat", "accepted": [HUGE], "rejected": []},
                       format="json")
    assert confirm.status_code == 400 and "accepted" in confirm.json()
    corrected = api.post(f"{base}/proposals/confirm/",
                         {"label": "Cat", "accepted": [], "rejected": [], "corrected": {str(HUGE): "Not Cat"}},
                         format="json")
    assert corrected.status_code == 400 and corrected["Content-Type"] == "application/json"
    created = api.post(f"{base}/judgements/", {"item": HUGE, "label": "Cat"}, format="json")
    assert created.status_code == 400 and "item" in created.json()
    media = api.get(f"/api/items/{HUGE}/media")
    assert media.status_code == 404 and media.json() == {"detail": "No such item"}
    assert api.get(f"/api/projects/{HUGE}/stats/").status_code == 404


def test_pages_with_ids_too_large_are_404_not_500(image_project, alice):
    client = Client()
    client.force_login(alice)
    assert client.get(f"/projects/{HUGE}/").status_code == 404
    assert client.get(f"/projects/{image_project.pk}/items/{HUGE}/").status_code == 404
