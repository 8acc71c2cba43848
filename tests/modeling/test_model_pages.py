"""The model card (project page and in-place refresh), the model API, and labeling in Chromium with
the real loop running: the header flips to Training with accuracy, the chart draws the versions."""

from __future__ import annotations

import json
import time

import pytest
from rest_framework.test import APIClient

from modeling.models import ModelState, ModelVersion
from projects.models import Role
from projects.services import do_add_member
from tests.browser import login
from tests.modeling.conftest import make_text_project
from tests.modeling.test_training import label_from_queue


@pytest.mark.django_db
def test_the_project_page_shows_progress_then_the_curve_and_confusion_matrix(
    tmp_path, alice, bob, client, loop_on, django_capture_on_commit_callbacks
):
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = False
    project, truth = make_text_project(tmp_path, n=30)
    do_add_member(project, user=bob, role=Role.VIEWER)
    client.force_login(bob)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert 'id="model-card"' in page and "0</span> / 0 items" in page and "waiting for the worker" in page

    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = True
    from modeling.tasks import embed_until_done

    embed_until_done(project.pk)
    label_from_queue(project, alice, truth, 22, django_capture_on_commit_callbacks)
    versions = ModelVersion.objects.filter(project=project).count()
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "30</span> / 30 items" in page and "· done" in page
    current = ModelState.objects.get(project=project).current_version
    assert f"version {current.number}</strong>" in page
    assert 'id="confusion-matrix"' in page and 'id="per-class"' in page
    assert "vendor/chartjs/chart-4.6.1.umd.min.js" in page
    curve = json.loads(page.split('id="learning-curve-data" type="application/json">')[1].split("</script>")[0])
    assert len(curve) == versions
    assert curve[-1] == {"labels": 22, "accuracy": current.accuracy, "version": current.number}

    card = client.get(f"/projects/{project.pk}/model/card/")
    assert card.status_code == 200 and card.content.decode().lstrip().startswith('<section class="card model-card"')


@pytest.mark.django_db
def test_the_model_api_reports_progress_versions_and_metrics(tmp_path, alice, charlie, loop_on,
                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        project, truth = make_text_project(tmp_path, n=30)
    label_from_queue(project, alice, truth, 21, django_capture_on_commit_callbacks)
    api = APIClient()
    api.force_authenticate(alice)
    body = api.get(f"/api/projects/{project.pk}/model/").json()
    assert body["encoder"]["name"] == "minilm_ngrams" and body["encoder"]["dim"] == 384 + 2048
    assert body["embedding"] | {"items_per_second": None} == {
        "total": 30, "embedded": 30, "failed": 0, "percent": 100.0, "complete": True, "running": False,
        "items_per_second": None, "last_error": "",
    }
    assert body["training"]["in_the_loop"] is True and body["training"]["waiting_for"] == ""
    current = body["current_version"]
    assert current["labels"] == 21 and current["classes"] == ["sport", "food"]
    assert len(current["confusion"]) == 2 and set(current["per_class"]) == {"sport", "food"}
    assert [v["number"] for v in body["versions"]] == list(range(1, len(body["versions"]) + 1))

    api.force_authenticate(charlie)
    assert api.get(f"/api/projects/{project.pk}/model/").status_code == 404


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_labeling_in_the_browser_brings_the_model_into_the_loop(page, live_server, tmp_path, alice, loop_on):
    project, truth = make_text_project(tmp_path, n=40)  # the import embeds the pool (tasks run in-process)
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/label/")
    page.wait_for_selector("#item-view[data-item-id]")
    assert page.inner_text('[data-stat="training"]') in ("no", "–")

    keys = {"sport": "1", "food": "2"}
    for _ in range(21):
        page.wait_for_function("document.querySelector('#item-view').dataset.itemId")
        shown = page.get_attribute("#item-view", "data-item-id")
        page.keyboard.press(keys[truth[page.inner_text("#item-path")]])
        page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{shown}'")
    page.wait_for_function("window.__lb && window.__lb.pending === 0")
    page.wait_for_function(
        "document.querySelector('[data-stat=\"training\"]').textContent.startsWith('yes')", timeout=30_000
    )
    page.wait_for_function("document.querySelector('[data-stat=\"accuracy\"]').textContent.endsWith('%')")

    def shown_and_current() -> tuple[str, str]:
        state = ModelState.objects.select_related("current_version").get(project=project)
        assert state.current_version is not None
        return page.inner_text('[data-stat="accuracy"]'), f"{state.current_version.accuracy * 100:.1f}%"

    # A training still finishing may make a newer version after the header's last poll: the header polls
    # every 5 s, so it must show the current version's accuracy within a few polls.
    deadline = time.monotonic() + 30
    while (pair := shown_and_current())[0] != pair[1] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pair[0] == pair[1]

    # Items leased after the model exist show its prediction, and say why they were picked.
    page.reload()
    page.wait_for_selector("#prediction:not([hidden])")
    assert page.inner_text("#prediction").startswith("Model: ")

    # The project page draws the learning curve from the versions, and the confusion matrix.
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.wait_for_function("window.__lbChart && window.__lbChart.data.datasets[0].data.length > 0")
    points = page.evaluate("window.__lbChart.data.datasets[0].data.map(p => [p.x, p.version])")
    versions = list(
        ModelVersion.objects.filter(project=project)
        .order_by("number")
        .values_list("train_count", "test_count", "number")
    )
    assert points == [[t + s, n] for t, s, n in versions]
    assert page.locator("#confusion-matrix tbody tr").count() == 2
