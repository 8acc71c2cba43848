"""/api/docs/ in real Chromium under the site's CSP: Swagger UI from the site's own files, the schema loaded,
and a request tried from the page with the signed-in session."""

from __future__ import annotations

import pytest

from tests.test_security_browser import _violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_signed_in_user_reads_the_api_docs_and_tries_an_endpoint(strict_page, live_server, image_project):
    page = strict_page
    violations = _violations(page)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_url(f"{live_server.url}/accounts/login/?next=/api/docs/")  # signed-in users only
    page.fill("#id_username", "alice")  # the login page brings them back
    page.fill("#id_password", "alice-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Light Bulb API" in page.inner_text(".swagger-ui .info .title")
    operation = page.locator("#operations-api-api_projects_list")
    operation.locator(".opblock-summary").click()
    page.click("#operations-api-api_projects_list .try-out__btn")
    page.click("#operations-api-api_projects_list .execute")
    live = "#operations-api-api_projects_list .live-responses-table tbody .response-col_status"
    page.wait_for_selector(live)
    assert page.inner_text(live).strip().startswith("200")
    assert image_project.title in page.inner_text("#operations-api-api_projects_list .live-responses-table tbody")
    assert all(url.startswith(live_server.url) for url in requested)  # nothing from a CDN
    assert violations == []
