"""The Content-Security-Policy in real Chromium: every page works under it with no violation, and the
sign-in lock-out and password pages as a person meets them."""

from __future__ import annotations

import pytest

from projects.models import Role
from projects.services import do_add_member
from tests.browser import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _violations(page) -> list[str]:
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    # The event a page gets for each refused script, style or image (the console may word it differently).
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    return seen


def test_the_pages_run_under_the_policy_without_a_violation(strict_page, live_server, image_project, bob,
                                                            django_user_model):
    page = strict_page
    root = django_user_model.objects.create_superuser("root", password="root-pass-123")
    do_add_member(image_project, user=root, role=Role.OWNER)
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    violations = _violations(page)
    login(page, live_server, "root", "root-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    p = image_project.pk
    for path in (f"/projects/{p}/", f"/projects/{p}/label/", f"/projects/{p}/members/",
                 f"/projects/{p}/classify/", f"/projects/{p}/model/card/", f"/projects/{p}/items/", "/admin/",
                 f"/admin/projects/project/{p}/change/", "/accounts/password/"):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        page.wait_for_load_state("load")
    # The labelling page's script ran (it draws the item), under script-src 'self'.
    page.goto(f"{live_server.url}/projects/{p}/label/")
    page.wait_for_selector("#item-view img", state="attached")
    # The members page's role select submits on change through site.js (it had an inline handler).
    page.goto(f"{live_server.url}/projects/{p}/members/")
    with page.expect_navigation():
        page.select_option('tr[data-user="bob"] select[name=role]', "viewer")
    assert page.locator('tr[data-user="bob"] select[name=role]').input_value() == "viewer"
    assert violations == []


def test_a_person_locked_out_sees_why_and_the_way_to_reset(strict_page, live_server, bob):
    page = strict_page
    for _ in range(10):
        login(page, live_server, "bob", "wrong-password")
    assert page.locator("#locked-out").inner_text().startswith("Too many failed sign-ins")
    page.click("text=Reset it by e-mail")
    assert page.locator("h1").inner_text() == "Forgotten your password?"


def test_a_person_changes_their_password_in_the_browser(strict_page, live_server, bob):
    page = strict_page
    login(page, live_server, "bob", "bob-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.click(".whoami >> text=Password")
    page.fill("#id_old_password", "bob-pass-123")
    page.fill("#id_new_password1", "a-new-long-phrase-42")
    page.fill("#id_new_password2", "a-new-long-phrase-42")
    page.click("#password-change button[type=submit]")
    assert "Your new password works" in page.locator("#password-changed").inner_text()
    page.click("text=Log out")
    login(page, live_server, "bob", "a-new-long-phrase-42")
    page.wait_for_url(f"{live_server.url}/projects/")
