"""The span screen in real Chromium: tokens selected by keyboard and mouse, typed by key and button, removed,
saved with Enter, undone with the spans back, skipped; its key list; bad spans lose nothing."""

from __future__ import annotations

import time

import pytest

from labeling.models import Judgement
from projects.models import Item
from tests.browser import login
from tests.labeling.test_spans import make_sequence_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)  # a judgement is sent in the background while the next text shows
    raise AssertionError("timed out")


def shown_item(page) -> Item:
    page.wait_for_selector("#item-view[data-item-id] .span-text .tok")
    return Item.objects.get(pk=int(page.get_attribute("#item-view", "data-item-id")))


def open_screen(page, live_server, project) -> Item:
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    assert "Entity types" in page.inner_text("main")
    page.click("#start-labeling")
    return shown_item(page)


def test_it_marks_spans_with_keys_and_mouse_and_saves_them_with_enter(page, live_server, tmp_path, alice):
    project = make_sequence_project(tmp_path)
    item = open_screen(page, live_server, project)
    tokens = item.tokens
    assert page.locator(".span-text .tok").count() == len(tokens)
    assert page.locator(".span-type", has_text="geo-loc").locator("kbd").inner_text() == "2 · g"

    # Keyboard: the cursor starts on the first token; Shift+→ takes the second too; g marks geo-loc.
    page.keyboard.press("Home")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("g")
    assert page.locator(".span-text mark.ent").count() == 1
    assert page.locator(".span-text mark.ent .ent-tag").text_content() == "geo-loc"
    # Mouse: drag over the last token (a press and release on it), then the person button.
    last = page.locator(f'.span-text .tok[data-i="{len(tokens) - 1}"]')
    last.hover()
    page.mouse.down()
    page.mouse.up()
    page.click('.span-type[data-label="person"]')
    assert page.locator(".span-text mark.ent").count() == 2
    assert page.inner_text("#span-count") == "2 spans"
    page.keyboard.press("Enter")

    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{item.pk}'")
    judgement = wait_for(lambda: Judgement.objects.filter(item=item, is_current=True).first())
    assert judgement.user == alice
    assert judgement.label == "2 spans"
    assert judgement.value == {"spans": [
        {"start": tokens[0][0], "end": tokens[1][1], "label": "geo-loc"},
        {"start": tokens[-1][0], "end": tokens[-1][1], "label": "person"},
    ]}

    # Undo brings the text back with its spans; x on the cursor removes the first; Enter saves the rest.
    page.keyboard.press("u")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{item.pk}'")
    page.wait_for_selector(".span-text mark.ent")
    assert page.locator(".span-text mark.ent").count() == 2
    page.keyboard.press("x")
    assert page.locator(".span-text mark.ent").count() == 1
    # A lone cursor inside a span retypes it: move to the last token, press c (company).
    page.keyboard.press("End")
    page.keyboard.press("c")
    assert page.locator(".span-text mark.ent .ent-tag").text_content() == "company"
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{item.pk}'")
    wait_for(lambda: Judgement.objects.filter(item=item, is_current=True, label="1 span").exists())
    current = Judgement.objects.get(item=item, is_current=True)
    assert current.value == {"spans": [{"start": tokens[-1][0], "end": tokens[-1][1], "label": "company"}]}

    # The × on a span removes it; Enter with none saves "none" (no entities is an answer).
    second = shown_item(page)
    page.keyboard.press("Home")
    page.keyboard.press("p")
    page.click(".span-text .ent-x")
    assert page.locator(".span-text mark.ent").count() == 0
    page.keyboard.press("Enter")
    wait_for(lambda: Judgement.objects.filter(item=second, is_current=True).exists())
    assert Judgement.objects.get(item=second, is_current=True).value == {"spans": []}

    # s skips: the text changes and nothing is recorded for it.
    third = shown_item(page)
    page.keyboard.press("s")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{third.pk}'")
    time.sleep(0.5)
    assert not Judgement.objects.filter(item=third).exists()


def test_its_key_list_describes_the_span_keys(page, live_server, tmp_path, alice):
    project = make_sequence_project(tmp_path)
    open_screen(page, live_server, project)
    page.keyboard.press("?")
    page.wait_for_selector("#keys-help[open]")
    text = page.inner_text("#keys-help")
    assert "mark the selection person" in text and "remove the span under the cursor" in text
    assert "save the text as it stands" in text and "skip this text" in text


def test_a_refused_answer_keeps_what_the_person_marked(page, live_server, tmp_path, alice):
    """The server refuses the spans (here: the owner removed a type while the text was open); the text
    comes back with them and says why."""
    project = make_sequence_project(tmp_path)
    item = open_screen(page, live_server, project)
    page.keyboard.press("Home")
    page.keyboard.press("3")  # company
    project.classes = ["person", "geo-loc"]
    project.save(update_fields=["classes"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#toast:not([hidden])")
    assert "not an entity type of this project" in page.inner_text("#toast")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{item.pk}'")
    assert page.locator(".span-text mark.ent .ent-tag").text_content() == "company"
    assert not Judgement.objects.filter(item=item).exists()


def test_spans_marked_on_a_text_survive_an_undo_of_the_one_before(page, live_server, tmp_path, alice):
    project = make_sequence_project(tmp_path)
    first = open_screen(page, live_server, project)
    page.keyboard.press("Enter")  # the first text: no entities
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{first.pk}'")
    second = shown_item(page)
    page.keyboard.press("Home")
    page.keyboard.press("p")  # marked, not saved
    page.keyboard.press("u")  # undo the first text's answer: it comes back first
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{first.pk}'")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{second.pk}'")
    assert page.locator(".span-text mark.ent").count() == 1  # what was marked is still there
    assert page.locator(".span-text mark.ent .ent-tag").text_content() == "person"
