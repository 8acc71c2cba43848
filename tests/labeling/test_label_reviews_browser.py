"""The review grid in real Chromium, under the site's Content-Security-Policy."""

from __future__ import annotations

import pytest

from labeling.models import Judgement, JudgementSource
from labeling.services import do_record_judgement
from projects.models import Role
from projects.services import do_add_member
from tests.browser import login
from tests.test_security_browser import _violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_picks_an_annotator_changes_one_label_and_keeps_the_rest(strict_page, live_server, image_project,
                                                                              bob, django_user_model):
    page = strict_page
    django_user_model.objects.create_user("rita", password="rita-pass-123")
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=django_user_model.objects.get(username="rita"), role=Role.REVIEWER)
    labels = [do_record_judgement(image_project, item=item, user=bob, label="Cat", role=Role.ANNOTATOR)
              for item in image_project.items.order_by("id")[:3]]
    violations = _violations(page)
    login(page, live_server, "rita", "rita-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{image_project.pk}/members/")
    page.click("#review-labels-link")
    page.select_option("#annotator", "bob")  # the select submits itself (site.js)
    page.wait_for_selector("#review-grid")
    assert page.locator(".review-tile").count() == 3
    page.select_option(f"select[name='label-{labels[1].pk}']", "Not Cat")
    page.fill("#review-reason", "pointed ears")
    page.click("#submit-review")
    page.wait_for_selector("#nothing-to-review")
    assert "2 accepted, 1 changed" in page.inner_text(".messages")
    current = Judgement.objects.get(item=labels[1].item, is_current=True)
    assert (current.label, current.source, current.reason) == ("Not Cat", JudgementSource.ADJUDICATED, "pointed ears")
    assert violations == []
