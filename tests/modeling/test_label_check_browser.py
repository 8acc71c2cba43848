"""Check labels in real Chromium: an owner relabels a wrong label and keeps another in place, without leaving
the page; the database has the new judgement (history kept) and the kept label."""

from __future__ import annotations

import time

import pytest

from labeling.models import Judgement
from modeling.models import LabelCheckKept
from tests.browser import login
from tests.modeling.conftest import make_checked_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_an_owner_relabels_in_place(strict_page, live_server, tmp_path, alice, settings):
    page = strict_page
    project, truth, wrong = make_checked_project(tmp_path, alice, settings)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/model/labels/")
    stage = {j.item_id: j.stage for j in Judgement.objects.filter(item_id__in=list(wrong), is_current=True)}
    first = next(i for i in wrong if stage[i] == "TRAIN")
    second = next(i for i in wrong if i != first)
    card = page.locator(f"#finding-{first}")
    right = truth[project.items.get(pk=first).key]
    assert card.locator(".finding-given").inner_text() == wrong[first]
    assert card.locator("select[name=label]").input_value() == right  # the model's guess, preselected
    test_item = next((i for i in wrong if stage[i] == "TEST"), None)
    if test_item is not None:  # a TEST label is decided from the item alone: nothing preselected
        assert page.locator(f"#finding-{test_item} select[name=label]").input_value() == ""
    url = page.url
    card.locator("button", has_text="Relabel").click()
    page.wait_for_selector(f"#finding-{first}.settled")
    assert card.locator(".finding-outcome").inner_text() == f"Relabelled {right}."
    assert card.locator(".finding-given").inner_text() == right
    assert page.url == url  # in place: no navigation
    _wait(lambda: Judgement.objects.filter(item_id=first, is_current=True, label=right).exists())
    assert Judgement.objects.filter(item_id=first).count() == 2  # the wrong label stays in the history

    page.locator(f"#finding-{second} button", has_text="Keep as is").click()
    page.wait_for_selector(f"#finding-{second}.settled")
    _wait(lambda: LabelCheckKept.objects.filter(item_id=second).exists())
    assert page.locator(f"#finding-{second} .finding-outcome").inner_text().startswith("Kept as is")

    # Reloaded, the page no longer questions either of them.
    page.goto(f"{live_server.url}/projects/{project.pk}/model/labels/")
    assert page.locator(f"#finding-{first}").count() == 0 and page.locator(f"#finding-{second}").count() == 0
    assert not errors, errors
