"""The guidelines panel in real Chromium, under the site's Content-Security-Policy."""

from __future__ import annotations

import pytest

from projects.models import Role
from projects.services import do_add_member, do_set_guidelines
from tests.browser import login
from tests.test_security_browser import _violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_folds_the_guidelines_on_the_labelling_screen_and_opens_them(strict_page, live_server, image_project,
                                                                        bob):
    page = strict_page
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_set_guidelines(image_project,
                      text="## When in doubt\n\n- a **lynx** is *Not Cat*\n\n<script>window.pwned=1</script>")
    violations = _violations(page)
    login(page, live_server, "bob", "bob-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{image_project.pk}/label/")
    page.wait_for_selector("#item-view[data-item-id]")
    panel = page.locator("#guidelines-panel")
    assert panel.get_attribute("open") is None  # folded: the item stays in view
    assert not page.locator("#guidelines-panel h2").is_visible()
    page.click("#guidelines-panel summary")
    assert page.locator("#guidelines-panel h2").inner_text() == "When in doubt"
    assert page.locator("#guidelines-panel strong").inner_text() == "lynx"
    assert page.evaluate("window.pwned === undefined")
    # The header link opens them on their own page.
    page.click("#nav-guidelines")
    page.wait_for_url(f"{live_server.url}/projects/{image_project.pk}/guidelines/")
    assert page.locator("#guidelines-text h2").inner_text() == "When in doubt"
    assert violations == []
