"""The review queue of disagreements in real Chromium, under the site's Content-Security-Policy."""

from __future__ import annotations

import random
import time

import pytest

from labeling.models import Judgement, JudgementSource
from labeling.services import do_record_judgement, next_items
from projects.models import ItemStatus, Project, Role
from projects.services import do_add_member, do_set_guidelines
from tests.browser import login
from tests.test_security_browser import _violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_decides_each_disagreement_seeing_who_said_what(strict_page, live_server, image_project, bob,
                                                                   django_user_model):
    page = strict_page
    dave = django_user_model.objects.create_user("dave", password="x")
    django_user_model.objects.create_user("rita", password="rita-pass-123")
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=dave, role=Role.ANNOTATOR)
    do_add_member(image_project, user=django_user_model.objects.get(username="rita"), role=Role.REVIEWER)
    Project.objects.filter(pk=image_project.pk).update(overlap_share=1.0, overlap_k=2)
    image_project.refresh_from_db()
    do_set_guidelines(image_project, text="Ears **up** means Cat.")
    disputed = []
    for _ in range(2):  # bob says Cat, dave says Not Cat: two disagreements
        item = next_items(image_project, user=bob, rng=random.Random(3))[0].item
        do_record_judgement(image_project, item=item, user=bob, label="Cat", role=Role.ANNOTATOR)
        assert next_items(image_project, user=dave)[0].item.pk == item.pk
        do_record_judgement(image_project, item=item, user=dave, label="Not Cat", role=Role.ANNOTATOR)
        disputed.append(item.pk)
    violations = _violations(page)
    login(page, live_server, "rita", "rita-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{image_project.pk}/members/")
    assert "2" in page.inner_text("#review-disputes-link")
    page.click("#review-disputes-link")
    page.wait_for_selector("#dispute")
    assert page.locator("#guidelines-panel").count() == 1
    page.click("#guidelines-panel summary")
    assert "up" in page.inner_text("#guidelines-panel strong")
    for expected_left in (2, 1):
        assert page.inner_text("#disputes-left").startswith(str(expected_left))
        votes = page.inner_text("#votes")
        assert "bob" in votes and "dave" in votes and "Not Cat" in votes
        item_id = int(page.get_attribute("#dispute", "data-item"))
        page.fill("#decision-reason", "ears up")
        with page.expect_navigation():
            page.click("#decide-form button[data-label='Cat']")
        assert "is now labelled Cat" in page.inner_text(".messages")
        decided = Judgement.objects.get(item_id=item_id, is_current=True)
        assert (decided.label, decided.source, decided.reason, decided.labelled_by) == (
            "Cat", JudgementSource.ADJUDICATED, "ears up", "rita")
    page.wait_for_selector("#no-disputes")
    assert not image_project.items.filter(status=ItemStatus.DISPUTED).exists()
    assert sorted(Judgement.objects.filter(is_current=True, source=JudgementSource.ADJUDICATED)
                  .values_list("item_id", flat=True)) == sorted(disputed)
    assert violations == []


def test_the_labelling_page_with_nothing_left_picks_up_an_item_that_needs_this_persons_label(
    strict_page, live_server, image_project, bob, settings, django_user_model
):
    page = strict_page
    settings.LIGHTBULB_LABEL_RECHECK_SECONDS = 1
    django_user_model.objects.create_user("dave", password="dave-pass-123")
    dave = django_user_model.objects.get(username="dave")
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=dave, role=Role.ANNOTATOR)
    Project.objects.filter(pk=image_project.pk).update(overlap_share=1.0, overlap_k=2)
    image_project.refresh_from_db()
    held = next_items(image_project, user=bob, count=6, rng=random.Random(5))  # bob holds every item
    assert len(held) == 6 and held[0].item.labels_wanted == 2
    violations = _violations(page)
    login(page, live_server, "dave", "dave-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{image_project.pk}/label/")
    page.wait_for_selector("#done:not([hidden])")  # nothing for dave now
    do_record_judgement(image_project, item=held[0].item, user=bob, label="Cat", role=Role.ANNOTATOR)
    page.wait_for_selector(f"#item-view[data-item-id='{held[0].item.pk}']", timeout=15_000)  # his turn now
    page.keyboard.press("1")  # Cat, as bob said: the two agree
    deadline = time.monotonic() + 15  # the label is sent in the background (no page script under this CSP)
    while not Judgement.objects.filter(item=held[0].item, is_current=True).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    settled = Judgement.objects.get(item=held[0].item, is_current=True)
    assert settled.labelled_by == "bob" and Judgement.objects.filter(item=held[0].item, is_vote=True).count() == 2
    assert violations == []
