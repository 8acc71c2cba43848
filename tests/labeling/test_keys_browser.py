"""Keys in real Chromium: an owner gives a class its key on the project page, the labelling screen uses it and
"?" lists every key of the screen (the labelling screen, a review batch, a screen without keys)."""

from __future__ import annotations

import time

import pytest

from labeling.models import Judgement
from projects.services import ProjectError, do_set_class_keys
from tests.browser import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_sets_a_class_key_and_question_mark_lists_the_keys(page, live_server, image_project):
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{image_project.pk}/")
    inputs = page.locator("#class-keys input[name=key]")
    assert inputs.count() == 2
    inputs.nth(1).fill("k")  # Not Cat: k
    page.click("#save-class-keys")
    page.wait_for_selector(".msg-success")
    image_project.refresh_from_db()
    assert image_project.class_keys == {"Not Cat": "k"}

    page.goto(f"{live_server.url}/projects/{image_project.pk}/label/")
    page.wait_for_selector("#item-view[data-item-id]")
    assert page.locator(".class-btn", has_text="Not Cat").locator("kbd").inner_text() == "k"
    page.keyboard.press("?")
    page.wait_for_selector("#keys-help[open]")
    help_text = page.inner_text("#keys-help")
    assert "label it Not Cat" in help_text and "skip this item" in help_text and "undo your last label" in help_text
    page.keyboard.press("k")  # the list is open: keys are for it, nothing is labelled
    assert not Judgement.objects.exists()
    page.keyboard.press("Escape")
    page.wait_for_selector("#keys-help:not([open])", state="hidden")
    item = int(page.get_attribute("#item-view", "data-item-id"))
    page.keyboard.press("k")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{item}'")
    deadline = time.monotonic() + 10
    while not Judgement.objects.filter(item_id=item).exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the label is sent in the background while the next item shows
    assert Judgement.objects.get(item_id=item).label == "Not Cat"

    # A screen without keys of its own says so; the ? button opens the same list.
    page.goto(f"{live_server.url}/projects/{image_project.pk}/members/")
    page.click("#keys-button")
    page.wait_for_selector("#keys-help[open]")
    assert "no keys of its own" in page.inner_text("#keys-help")


def test_it_refuses_a_key_twice_or_one_that_is_not_a_letter(image_project):
    with pytest.raises(ProjectError, match="chosen for both"):
        do_set_class_keys(image_project, keys={"Cat": "k", "Not Cat": "K"})
    with pytest.raises(ProjectError, match="one letter or digit"):
        do_set_class_keys(image_project, keys={"Cat": "?"})
    image_project.refresh_from_db()
    assert image_project.class_keys == {}
