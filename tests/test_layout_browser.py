"""Every main screen fits a phone (390 px) and a laptop (1280 px) without horizontal scrolling, in the light
and the dark theme (`prefers-color-scheme`): the wizard, adding data, labelling, a review batch, the project
page with its model card, the item list. Tables scroll inside their card instead of widening the page.

With LIGHTBULB_SCREENSHOTS_DIR set (`make screenshots`), the screenshots are written there; docs/screenshots/
holds the committed ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from labeling.proposals import do_sync_proposals
from labeling.services import do_record_judgement
from modeling.models import ModelState
from tests.browser import login
from tests.modeling.conftest import make_text_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"390": {"width": 390, "height": 844}, "1280": {"width": 1280, "height": 800}}
SCHEMES = ("light", "dark")


@pytest.fixture
def trained(tmp_path, alice, settings):
    """A text project with a real first model (MiniLM), labels, and a review batch waiting."""
    from modeling.tasks import check_labels, embed_until_done, train_project

    alice.user_permissions.add(Permission.objects.get(codename="add_project"))
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False
    project, truth = make_text_project(tmp_path, n=60)
    project.test_min_judgements, project.min_train_judgements = 6, 6
    project.description = "Sort the sentences by topic: <b>sport</b> or <b>food</b>."
    project.save()
    for item in project.items.order_by("key")[:20]:
        do_record_judgement(project, item=item, user=alice, label=truth[item.key], time_taken=1.5)
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = True
    embed_until_done(project.pk)
    train_project(project.pk)
    assert ModelState.objects.get(project=project).current_version is not None
    check_labels(project.pk)  # the label-check page has its findings
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False
    unlabelled = list(project.items.filter(status="unlabelled").order_by("key")[:12])
    do_sync_proposals(project, version=1, desired={i.pk: ("sport", 0.9) for i in unlabelled})
    return project


def _screens(project) -> list[tuple[str, str]]:
    p = project.pk
    return [
        ("projects", "/projects/"),
        ("wizard", "/projects/new/"),
        ("add-data", f"/projects/{p}/data/"),
        ("project", f"/projects/{p}/"),
        ("label", f"/projects/{p}/label/"),
        ("review", f"/projects/{p}/proposals/review/?label=sport"),
        ("items", f"/projects/{p}/items/"),
        ("members", f"/projects/{p}/members/"),
        ("export", f"/projects/{p}/export/"),
        ("label-check", f"/projects/{p}/model/labels/?show=losses"),
    ]


def test_every_screen_fits_390_and_1280_px_in_light_and_dark(browser, live_server, trained, tmp_path):
    out = Path(os.environ.get("LIGHTBULB_SCREENSHOTS_DIR") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    overflow = []
    for width, viewport in VIEWPORTS.items():
        for scheme in SCHEMES:
            context = browser.new_context(viewport=viewport, color_scheme=scheme, bypass_csp=True)
            page = context.new_page()
            page.set_default_timeout(15_000)
            login(page, live_server, "alice", "alice-pass-123")
            page.wait_for_url(f"{live_server.url}/projects/")
            for name, path in _screens(trained):
                page.goto(f"{live_server.url}{path}")
                page.wait_for_load_state("networkidle")
                if name == "label":
                    page.wait_for_selector("#item-view[data-item-id]")
                dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
                assert dark == (scheme == "dark")
                sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                if sizes[0] > sizes[1]:
                    wide = page.evaluate(
                        """() => [...document.querySelectorAll('body *')]
                            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                            .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"""
                    )
                    overflow.append(f"{name} at {width} px ({scheme}): {sizes[0]} > {sizes[1]}: {wide}")
                page.screenshot(path=str(out / f"{name}-{width}-{scheme}.png"), full_page=width == "1280")
            context.close()
    assert not overflow, "\n".join(overflow)
