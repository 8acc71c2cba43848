"""Correction in the grid: a wrong tile given its right class is a human label; an untick without one
goes to the item's next-likeliest class when that class's threshold admits it, else to the queue."""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from labeling.errors import BatchError, InvalidLabel
from labeling.models import Judgement, JudgementSource, Proposal, ProposalBatch, ProposalStatus, Stage
from labeling.proposals import do_confirm_batch, do_sync_proposals, lease_batch
from modeling.ml.thresholds import ClassThreshold
from modeling.models import ItemPrediction, ModelVersion
from modeling.tasks import next_likeliest
from projects.models import Item, ItemStatus, Role
from projects.services import do_add_member
from tests.browser import login
from tests.conftest import write_config

pytestmark = pytest.mark.django_db

CLASSES = ["sport", "food", "travel"]


def make_three_topic_project(root, *, n=12):
    from interchange.config import load_config
    from interchange.importer import do_import_config

    root.mkdir(parents=True, exist_ok=True)
    (root / "texts.csv").write_text("id,text\n" + "".join(f"t{i:02d},text number {i}\n" for i in range(n)))
    cfg = write_config(
        root / "three.yml",
        "task: {title: Three}\ndataset: {directory: texts.csv, data_type: text, id_column: id, text_column: text}\n"
        f"label: {{type: classification, classes: {CLASSES}}}\nmodel: {{directory: three-model}}\nuser: alice\n",
    )
    project = do_import_config(load_config(cfg)).project
    return project, {i.key: i for i in project.items.all()}


@pytest.fixture
def batch(tmp_path, alice):
    project, items = make_three_topic_project(tmp_path)
    keys = sorted(items)[:6]
    do_sync_proposals(project, version=1, desired={items[k].pk: ("sport", 0.9) for k in keys})
    leased = lease_batch(project, user=alice, label="sport")
    return project, items, [p.item_id for p in leased.proposals]


def test_it_turns_a_correction_into_a_human_label_and_the_proposal_into_a_rejection(batch, alice):
    project, _, ids = batch
    accepted, corrected, rejected = ids[:3], ids[3], ids[4]
    result = do_confirm_batch(project, user=alice, label="sport", accepted=accepted, rejected=[rejected],
                              corrected={str(corrected): "food"}, time_taken=6.0)
    assert (len(result.accepted), result.corrected, result.rejected) == (3, [corrected], [rejected])

    judgement = Judgement.objects.get(item_id=corrected)
    assert (judgement.label, judgement.source, judgement.stage, judgement.labelled_by, judgement.is_current) == (
        "food", JudgementSource.CORRECTED_PROPOSAL, Stage.TRAIN, "alice", True)
    assert judgement.time_taken == pytest.approx(6.0 / 5)  # the batch's time over the five items answered
    proposal = Proposal.objects.get(item_id=corrected, label="sport")
    proposal.refresh_from_db()
    assert (proposal.status, proposal.corrected_label, proposal.reviewed_by) == (ProposalStatus.REJECTED, "food", alice)
    assert project.items.get(pk=corrected).status == ItemStatus.LABELLED
    assert project.items.get(pk=rejected).status == ItemStatus.UNLABELLED  # an untick labels nothing
    stored = ProposalBatch.objects.get(pk=result.batch.pk)
    assert (stored.accepted, stored.rejected, stored.corrected) == (3, 1, 1)
    # The sixth, unmentioned, went back to the pool.
    assert Proposal.objects.get(item_id=ids[5]).status == ProposalStatus.PENDING


@pytest.mark.parametrize("corrected,error", [
    ({"ITEM": "cooking"}, InvalidLabel),  # not a class
    ({"ITEM": "sport"}, BatchError),  # the batch's own class: that is an accept
    ({"ITEM": "food", "999999": "food"}, BatchError),  # an item outside the batch
    ({"ACCEPTED": "food"}, BatchError),  # accepted and corrected at once
])
def test_it_refuses_a_bad_correction_and_writes_nothing(batch, alice, corrected, error):
    project, _, ids = batch
    corrected = {k.replace("ITEM", str(ids[3])).replace("ACCEPTED", str(ids[0])): v for k, v in corrected.items()}
    with pytest.raises(error):
        do_confirm_batch(project, user=alice, label="sport", accepted=ids[:3], rejected=[], corrected=corrected)
    assert not Judgement.objects.filter(project=project).exists()
    assert set(Proposal.objects.filter(item_id__in=ids).values_list("status", flat=True)) == {ProposalStatus.PENDING}


def test_the_api_takes_corrections_and_says_how_many(batch, alice, bob, charlie):
    project, _, ids = batch
    client = APIClient()
    client.force_authenticate(alice)
    url = f"/api/projects/{project.pk}/proposals/confirm/"
    body = {"label": "sport", "accepted": ids[:2], "rejected": [], "corrected": {str(ids[2]): "travel"}}
    response = client.post(url, body, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["corrected"]) == (2, 1)
    assert Judgement.objects.get(item_id=ids[2]).label == "travel"

    bad = client.post(url, {"label": "sport", "accepted": [], "rejected": [], "corrected": {str(ids[3]): 7}},
                      format="json")
    assert bad.status_code == 400 and bad.json()["detail"]
    client.force_authenticate(charlie)  # an outsider: the same 404 as for a project that does not exist
    assert client.post(url, body, format="json").status_code == 404
    assert client.post("/api/projects/999999/proposals/confirm/", body, format="json").status_code == 404
    do_add_member(project, user=bob, role=Role.VIEWER)
    client.force_authenticate(bob)
    assert client.post(url, body, format="json").status_code == 403


def _threshold(label: str, value: float | None) -> ClassThreshold:
    return ClassThreshold(label=label, threshold=value, evidence=59, correct=59, lower_bound=0.95, predicted=59,
                          needed=59, reason="")


def test_an_untick_sends_the_item_to_its_next_likeliest_class_when_that_class_admits_it(tmp_path, alice):
    project, items = make_three_topic_project(tmp_path)
    first, second, third = (items[k] for k in sorted(items)[:3])
    scores = {first: [0.6, 0.35, 0.05], second: [0.6, 0.1, 0.3], third: [0.5, 0.45, 0.05]}
    for item, row in scores.items():
        ItemPrediction.objects.create(item=item, project=project, version=1, label="sport", confidence=row[0],
                                      entropy=0.5, scores=row)
        Proposal.objects.create(project=project, item=item, label="sport", version=1, confidence=row[0],
                                status=ProposalStatus.REJECTED)
    thresholds = {"sport": _threshold("sport", 0.5), "food": _threshold("food", 0.3),
                  "travel": _threshold("travel", None)}
    version = ModelVersion.objects.create(project=project, number=1, encoder="minilm_l6", encoder_version="v",
                                          classes=CLASSES, file="v1.npz")
    desired = next_likeliest(project, version=version, classes=CLASSES, thresholds=thresholds)
    # first: food (0.35) clears food's 0.30; second: its next class is travel, which has no threshold yet;
    # third: food 0.45 clears it.
    assert desired == {first.pk: ("food", 0.35), third.pk: ("food", 0.45)}
    # A labelled item is never proposed again.
    Item.objects.filter(pk=third.pk).update(status=ItemStatus.LABELLED)
    assert set(next_likeliest(project, version=version, classes=CLASSES, thresholds=thresholds)) == {first.pk}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_the_browser_a_class_key_or_the_picker_corrects_a_tile_and_space_unticks_one(
    page, live_server, tmp_path, alice
):
    project, items = make_three_topic_project(tmp_path)
    keys = sorted(items)[:6]
    do_sync_proposals(project, version=1, desired={items[k].pk: ("sport", 0.9) for k in keys})
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/proposals/review/?label=sport")
    page.wait_for_selector("#batch-grid[data-ready=true]")
    ids = [int(t.get_attribute("data-item")) for t in page.locator(".batch-tile").all()]
    assert len(ids) == 6
    assert "f food" in page.inner_text(".batch-head") or "2 food" in page.inner_text(".batch-head")

    by_key, by_picker, unticked = ids[0], ids[1], ids[2]
    page.focus(f'.batch-tile[data-item="{by_key}"]')
    page.keyboard.press("2")  # food's key on this screen (1 sport, 2 food, 3 travel)
    page.select_option(f'.batch-tile[data-item="{by_picker}"] .batch-correct', "travel")
    page.focus(f'.batch-tile[data-item="{unticked}"]')
    page.keyboard.press("Space")
    assert page.locator(".batch-tile.corrected").count() == 2
    assert page.locator(".batch-tile.rejected").count() == 1
    assert (page.inner_text("#n-accepted"), page.inner_text("#n-corrected"), page.inner_text("#n-rejected")) == (
        "3", "2", "1")
    # Space on a corrected tile takes the correction back; the key again corrects it.
    page.focus(f'.batch-tile[data-item="{by_key}"]')
    page.keyboard.press("Space")
    assert page.inner_text("#n-corrected") == "1"
    page.keyboard.press("2")
    page.wait_for_selector('#batch-grid[data-enter-armed="true"]')  # looked at it a moment
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-success")
    assert "Confirmed 3 as sport, rejected 1, corrected 2." in page.inner_text(".msg-success")

    current = dict(Judgement.objects.filter(project=project, is_current=True).values_list("item_id", "label"))
    assert current == {**{i: "sport" for i in ids[3:]}, by_key: "food", by_picker: "travel"}
    sources = dict(Judgement.objects.filter(project=project).values_list("item_id", "source"))
    assert sources[by_key] == sources[by_picker] == JudgementSource.CORRECTED_PROPOSAL
    assert Proposal.objects.get(item_id=unticked, label="sport").status == ProposalStatus.REJECTED


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_the_browser_a_new_batch_does_not_take_an_enter_meant_for_the_last_one(page, live_server, tmp_path,
                                                                                  alice):
    project, items = make_three_topic_project(tmp_path)
    keys = sorted(items)[:4]
    do_sync_proposals(project, version=1, desired={items[k].pk: ("sport", 0.9) for k in keys})
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/proposals/review/?label=sport")
    page.wait_for_selector("#batch-grid[data-ready=true]")
    # Enter at once (held, or pressed twice for the batch before): nothing is confirmed; the page says why.
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    page.wait_for_selector("#enter-hint:not([hidden])")
    time.sleep(1.5)  # past the moment, still without moving: Enter still waits for a look
    page.keyboard.press("Enter")
    assert not Judgement.objects.filter(project=project).exists()
    assert page.locator("#batch-grid").get_attribute("data-enter-armed") is None
    page.mouse.move(200, 300)
    page.mouse.move(260, 340)
    page.wait_for_selector('#batch-grid[data-enter-armed="true"]')
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-success")
    assert Judgement.objects.filter(project=project, label="sport").count() == 4
