"""The API's front door: /api/ says where to start, /api/docs/ is Swagger UI served by the site itself,
and a browser reads /api/schema/ instead of downloading it."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_it_tells_everyone_how_to_start_and_members_every_endpoint(alice):
    anonymous = APIClient().get("/api/")
    assert anonymous.status_code == 200
    body = anonymous.json()
    assert body["authentication"]["token"] == "/api/auth/token/" and body["docs"] == "/api/docs/"
    assert "endpoints" not in body  # the list is the schema's, which only signed-in users read
    client = APIClient()
    client.force_authenticate(alice)
    endpoints = client.get("/api/").json()["endpoints"]
    assert {"method": "GET", "path": "/api/projects/{project_id}/disputes/"} == {
        k: v for k, v in next(e for e in endpoints if e["path"].endswith("/disputes/")).items() if k != "summary"}
    assert ("POST", "/api/projects/{project_id}/judgements/") in {(e["method"], e["path"]) for e in endpoints}


def test_the_docs_page_is_swagger_ui_from_the_site_for_signed_in_users(alice):
    browser = Client()
    html_accept = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}
    anonymous = browser.get("/api/docs/", **html_accept)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/?next=/api/docs/")
    assert APIClient().get("/api/docs/").status_code == 401  # an API client gets the API's answer
    browser.force_login(alice)
    page = browser.get("/api/docs/", **html_accept)
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "<style" not in html and "cdn" not in html.lower()
    script = browser.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript") and "/api/schema/" in script.content.decode()


def test_a_browser_reads_the_schema_and_clients_keep_their_formats(alice):
    browser = Client()
    browser.force_login(alice)
    shown = browser.get("/api/schema/", HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert shown["Content-Type"].startswith("application/json")
    assert "attachment" not in shown.get("Content-Disposition", "")
    assert shown.json()["info"]["title"] == "Light Bulb API"
    client = APIClient()
    client.force_authenticate(alice)
    assert client.get("/api/schema/")["Content-Type"].startswith("application/vnd.oai.openapi")
    assert client.get("/api/schema/?format=json").json()["openapi"].startswith("3.")
    assert APIClient().get("/api/schema/").status_code == 401
