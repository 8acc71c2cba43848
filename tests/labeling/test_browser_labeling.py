"""Labeling in real Chromium: keyboard labels and undo, two annotators side by side, browse and relabel."""

from __future__ import annotations

import statistics
import time

import pytest

from labeling.models import Judgement
from projects.models import Item, ItemStatus, Role
from projects.services import do_add_member
from tests.browser import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _open_labeling(page, live_server, project):
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.click("#start-labeling")
    page.wait_for_selector("#item-view[data-item-id]")


def _shown_item(page) -> int | None:
    """The item on screen, waiting through the moment between two items; None once the queue is done."""
    page.wait_for_function(
        "document.querySelector('#item-view').dataset.itemId || !document.querySelector('#done').hidden"
    )
    value = page.get_attribute("#item-view", "data-item-id")
    return int(value) if value else None


def _wait_idle(page):
    page.wait_for_function("window.__lb && window.__lb.pending === 0")


def test_it_labels_with_the_keyboard_and_undoes(page, live_server, image_project, bob, capsys):
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    login(page, live_server, "bob", "bob-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    _open_labeling(page, live_server, image_project)
    assert page.locator(".class-btn", has_text="Not Cat").inner_text().startswith("2 · n")

    seen = []
    for key in ["1", "n", "c"]:  # Cat, Not Cat, Cat: by position and by first letter
        seen.append(_shown_item(page))
        page.keyboard.press(key)
        page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{seen[-1]}'")
    _wait_idle(page)
    labels = {j.item_id: j.label for j in Judgement.objects.filter(is_current=True)}
    assert labels == {seen[0]: "Cat", seen[1]: "Not Cat", seen[2]: "Cat"}
    assert all(j.user == bob and j.time_taken is not None for j in Judgement.objects.all())

    # Undo (u) takes the last label back and shows that item again.
    page.keyboard.press("u")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{seen[2]}'")
    _wait_idle(page)
    undone = Item.objects.get(pk=seen[2])
    assert undone.status == ItemStatus.UNLABELLED and undone.leased_to == bob
    assert Judgement.objects.get(item=undone).undone_at is not None
    # Backspace undoes too; then relabel it differently by clicking.
    page.keyboard.press("Backspace")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{seen[1]}'")
    page.click(".class-btn[data-label='Cat']")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{seen[1]}'")
    _wait_idle(page)
    assert Judgement.objects.get(item_id=seen[1], is_current=True).label == "Cat"
    assert Judgement.objects.filter(item_id=seen[1]).count() == 2  # history kept

    # Skip (s) moves on without a judgement and releases the lease.
    skipped = _shown_item(page)
    page.keyboard.press("s")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{skipped}'")
    _wait_idle(page)
    assert not Judgement.objects.filter(item_id=skipped, is_current=True).exists()
    assert Item.objects.get(pk=skipped).leased_to is None

    # Live header numbers come from the stats API.
    page.wait_for_function("document.querySelector('[data-stat=total]').textContent === '2'")
    timings = page.evaluate("window.__lb.timings")
    with capsys.disabled():
        print(f"\nkeypress -> next item shown: median {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms")


def test_two_annotators_side_by_side_never_see_the_same_item(browser, live_server, image_project, bob, charlie):
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=charlie, role=Role.ANNOTATOR)
    # One label per item (overlap items, given to two people on purpose: tests/labeling/test_overlap.py).
    image_project.overlap_share = 0
    image_project.save()
    pages = []
    for name in ("bob", "charlie"):
        context = browser.new_context(bypass_csp=True)  # wait_for_function evals: see tests/browser.py
        p = context.new_page()
        p.set_default_timeout(10_000)
        login(p, live_server, name, f"{name}-pass-123")
        p.wait_for_url(f"{live_server.url}/projects/")
        _open_labeling(p, live_server, image_project)
        pages.append(p)

    shown = {0: [], 1: []}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        progressed = False
        for n, p in enumerate(pages):
            current = _shown_item(p)
            if current is None:
                continue
            if current in shown[1 - n]:
                pytest.fail(f"item {current} shown to both annotators")
            if not shown[n] or shown[n][-1] != current:
                shown[n].append(current)
            p.keyboard.press("1")
            p.wait_for_function(
                f"document.querySelector('#done').hidden === false || "
                f"document.querySelector('#item-view').dataset.itemId != '{current}'"
            )
            progressed = True
        if not progressed:
            break
    for p in pages:
        _wait_idle(p)
    assert set(shown[0]).isdisjoint(shown[1])
    assert len(shown[0]) + len(shown[1]) == 6 and shown[0] and shown[1]
    assert Judgement.objects.filter(project=image_project, is_current=True).count() == 6
    assert {j.labelled_by for j in Judgement.objects.all()} == {"bob", "charlie"}
    for p in pages:
        p.context.close()


def test_browse_filter_and_relabel_keeps_history(page, live_server, image_project, alice):
    from labeling.services import do_record_judgement

    item = image_project.items.order_by("id").first()
    do_record_judgement(image_project, item=item, user=alice, label="Cat")
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{image_project.pk}/items/?status=labelled")
    tiles = page.locator(".item-tile")
    assert tiles.count() == 1
    tiles.first.click()
    page.wait_for_selector("#current-label")
    assert page.inner_text("#current-label") == "Cat"
    page.click("form.relabel button[value='Not Cat']")
    page.wait_for_selector(".msg-success")
    assert page.inner_text("#current-label") == "Not Cat"
    assert page.locator("#history tbody tr").count() == 2
    history = list(Judgement.objects.filter(item=item).order_by("id").values_list("label", "is_current"))
    assert history == [("Cat", False), ("Not Cat", True)]

    page.goto(f"{live_server.url}/projects/{image_project.pk}/items/?label=Not+Cat")
    assert page.locator(".item-tile").count() == 1
    page.goto(f"{live_server.url}/projects/{image_project.pk}/items/?status=unlabelled")
    assert page.locator(".item-tile").count() == 5


def test_owner_adds_a_member_on_the_members_page(page, live_server, image_project, alice, bob):
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{image_project.pk}/members/")
    page.fill("#m-username", "bob")
    page.select_option("#m-role", "viewer")
    page.click(".add-member button[type=submit]")
    page.wait_for_selector("tr[data-user=bob]")
    assert image_project.memberships.get(user=bob).role == Role.VIEWER
    page.select_option("tr[data-user=bob] select", "annotator")
    page.wait_for_selector(".msg-success")
    assert image_project.memberships.get(user=bob).role == Role.ANNOTATOR


def test_it_labels_test_items_blind_and_shows_the_guess_on_train_items(page, live_server, image_project, bob):
    from modeling.models import ItemPrediction
    from projects.models import Project

    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    Project.objects.filter(pk=image_project.pk).update(test_min_judgements=1, test_ratio=0.0)
    for item in image_project.items.all():  # what the worker stores for the current model
        ItemPrediction.objects.create(item=item, project=image_project, version=1, label="Cat", confidence=0.92,
                                      entropy=0.3, uncertainty=0.2, scores=[0.92, 0.08])
    login(page, live_server, "bob", "bob-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    _open_labeling(page, live_server, image_project)
    first = _shown_item(page)
    assert page.inner_text("#item-stage") == "TEST"
    assert "blind" in page.inner_text("#prediction") and "Model:" not in page.inner_text("#prediction")
    page.keyboard.press("1")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{first}'")
    _shown_item(page)
    assert page.inner_text("#item-stage") == "TRAIN"
    assert page.inner_text("#prediction").startswith("Model: Cat (92%)")


def test_a_class_named_spam_keeps_s_and_skip_moves_to_a_free_key(page, live_server, tmp_path, bob):
    from tests.conftest import make_image_project

    project = make_image_project(tmp_path, n=4, owner="bob", label="{type: classification, classes: [Spam, Ham]}")
    login(page, live_server, "bob", "bob-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    _open_labeling(page, live_server, project)
    assert page.inner_text("#skip-btn kbd") == "k" and page.inner_text("#undo-btn kbd") == "u"
    assert page.locator(".class-btn", has_text="Spam").inner_text().startswith("1 · s")
    first = _shown_item(page)
    page.keyboard.press("s")  # Spam, not skip
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{first}'")
    second = _shown_item(page)
    page.keyboard.press("k")  # skip
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{second}'")
    _wait_idle(page)
    assert Judgement.objects.get(item_id=first, is_current=True).label == "Spam"
    assert not Judgement.objects.filter(item_id=second).exists()
    assert Item.objects.get(pk=second).leased_to is None
