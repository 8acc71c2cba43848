"""The foundation pages in real Chromium: log in, see your projects, open one, log out."""

from __future__ import annotations

import pytest

from projects.models import Role
from projects.services import do_add_member
from tests.browser import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_logs_in_lists_projects_and_opens_one(page, live_server, image_project, bob):
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)

    page.goto(f"{live_server.url}/projects/")
    assert "/accounts/login/" in page.url  # anonymous users are sent to log in

    login(page, live_server, "bob", "wrong-password")
    assert page.locator("[role=alert]").inner_text().startswith("Your username and password didn't match")

    login(page, live_server, "bob", "bob-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    card = page.locator(".project-card", has_text="Is this a cat?")
    assert card.count() == 1
    assert "6 items" in card.inner_text()

    card.click()
    page.wait_for_url(f"{live_server.url}/projects/{image_project.pk}/")
    assert page.locator("h1").inner_text() == "Is this a cat?"
    assert page.locator('[data-stat="unlabelled"]').inner_text() == "6"
    assert page.locator("table", has_text="Role").inner_text().count("alice") == 1
    # The stylesheet is served (WhiteNoise) and applied.
    assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).display") == "flex"

    page.click("text=Log out")
    page.wait_for_url(f"{live_server.url}/accounts/login/")


def test_outsiders_get_a_404_page(page, live_server, image_project, charlie):
    login(page, live_server, "charlie", "charlie-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    assert "No projects yet" in page.content()
    response = page.goto(f"{live_server.url}/projects/{image_project.pk}/")
    assert response.status == 404
