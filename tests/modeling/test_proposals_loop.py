"""Proposals from the real loop: a calibrated version, thresholds from TEST, proposals tied to it."""

from __future__ import annotations

import pytest

from labeling.models import Judgement, JudgementSource, Proposal, ProposalStatus
from labeling.proposals import do_confirm_batch, lease_batch
from modeling.ml.head import Head
from modeling.models import ItemPrediction, ModelState
from projects.models import ItemStatus
from projects.services import do_set_proposal_settings
from tests.browser import login
from tests.modeling.conftest import make_proposing_project

pytestmark = pytest.mark.django_db


def test_a_version_calibrates_sets_thresholds_and_proposes_above_them(tmp_path, alice, settings):
    project, truth = make_proposing_project(tmp_path, alice, settings)
    state = ModelState.objects.select_related("current_version").get(project=project)
    version = state.current_version
    assert (version.train_count, version.test_count) == (40, 130)
    assert state.proposed_version == version.number

    # Calibration: fitted on TEST, reported cross-fitted, stored with the head file too.
    calibration = version.metrics["calibration"]
    assert calibration["test_items"] == 130 and calibration["method"].startswith("temperature scaling")
    head = Head.load(project.model_path / version.file)
    assert head.temperature == pytest.approx(version.temperature) == pytest.approx(calibration["temperature"])
    assert version.loss == pytest.approx(calibration["loss_after"])

    # Both classes earned a threshold on their TEST evidence at the 95% the project asks for.
    assert version.thresholds_target == 0.95 and version.proposal_note == ""
    for label in ("sport", "food"):
        t = version.thresholds[label]
        assert t["threshold"] is not None and t["lower_bound"] >= 0.95 and t["evidence"] >= 59

    # Proposals: exactly the unlabelled items predicted above their class threshold, of this version.
    pending = Proposal.objects.filter(project=project, status=ProposalStatus.PENDING)
    expected = {
        (p.item_id, p.label)
        for p in ItemPrediction.objects.filter(project=project, item__status=ItemStatus.UNLABELLED)
        if p.confidence >= version.thresholds[p.label]["threshold"]
    }
    assert set(pending.values_list("item_id", "label")) == expected and len(expected) > 50
    assert set(pending.values_list("version", flat=True)) == {version.number}
    assert not pending.filter(item__status=ItemStatus.LABELLED).exists()
    # None of it is a judgement until someone confirms it.
    assert not Judgement.objects.filter(project=project, source=JudgementSource.CONFIRMED_PROPOSAL).exists()
    correct = sum(truth[p.item.key] == p.label for p in pending.select_related("item"))
    assert correct / pending.count() >= 0.95


def test_the_target_changes_only_what_is_proven_and_a_stricter_floor_holds_the_new_floor(
    tmp_path, alice, settings, django_capture_on_commit_callbacks
):
    project, _ = make_proposing_project(tmp_path, alice, settings)
    pending = Proposal.objects.filter(project=project, status=ProposalStatus.PENDING)
    before = pending.count()
    assert before
    # A target no TEST stage can prove changes the proven column only: batches are checked by people.
    with django_capture_on_commit_callbacks(execute=True):
        do_set_proposal_settings(project, target=0.999)  # would take ~3,000 flawless TEST items per class
    version = ModelState.objects.get(project=project).current_version
    assert version.thresholds_target == 0.999
    assert all(t["threshold"] is None and "needs" in t["reason"] for t in version.thresholds.values())
    assert pending.count() == before
    # A stricter floor asks each class for more confidence (these two topics are so clear that even 99%
    # keeps every item; modeling/test_review.py shows the cut on harder scores).
    loose = {label: t["threshold"] for label, t in version.review_thresholds.items()}
    with django_capture_on_commit_callbacks(execute=True):
        do_set_proposal_settings(project, floor=0.99)
    version.refresh_from_db()
    for label, t in version.review_thresholds.items():
        assert t["threshold"] is None or t["threshold"] >= loose[label]
        assert t["threshold"] is None or t["expected_precision"] >= 0.99
    assert pending.count() <= before


def test_batches_exist_before_any_class_is_proven_and_all_proposals_together_proves_one_threshold(
    tmp_path, alice, client, settings, django_capture_on_commit_callbacks
):
    # 90 TEST items: about 45 predicted as each topic, short of the 59 one class needs on its own.
    project, truth = make_proposing_project(tmp_path, alice, settings, test=90)
    version = ModelState.objects.get(project=project).current_version
    assert all(t["threshold"] is None and "needs 59 TEST items predicted" in t["reason"]
               for t in version.thresholds.values())
    # No 59-item wait for review batches: they follow the expected precision from the first version.
    batches = Proposal.objects.filter(project=project, status=ProposalStatus.PENDING).select_related("item")
    assert batches.exists()
    assert all(t["threshold"] is not None and t["expected_precision"] >= 0.8
               for t in version.review_thresholds.values())
    assert sum(truth[p.item.key] == p.label for p in batches) / batches.count() >= 0.8

    with django_capture_on_commit_callbacks(execute=True):
        do_set_proposal_settings(project, guarantee="all_proposals")
    version.refresh_from_db()
    shared = {t["threshold"] for t in version.thresholds.values()}
    assert len(shared) == 1 and None not in shared  # one threshold for both classes
    t = shared.pop()
    pooled = version.thresholds["sport"]["pooled"]
    assert pooled["evidence"] >= 59 and pooled["lower_bound"] >= 0.95
    assert sum(c["evidence"] for c in version.thresholds.values()) == pooled["evidence"]
    proven = {
        (p.item_id, p.label)
        for p in ItemPrediction.objects.filter(project=project, item__status=ItemStatus.UNLABELLED, confidence__gte=t)
    }
    assert len(proven) > 50 and sum(truth[ItemPrediction.objects.get(item_id=i).item.key] == label
                                    for i, label in proven) / len(proven) >= 0.95

    # The model card says what was proven, and for what.
    client.force_login(alice)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "Proven on TEST for all classes together:" in page
    assert f"{pooled['correct']} of the {pooled['evidence']} TEST items" in page
    assert '<option value="all_proposals" selected>All classes together</option>' in page


def test_confirming_a_batch_retrains_and_the_new_version_keeps_supported_proposals(
    tmp_path, alice, settings, django_capture_on_commit_callbacks
):
    project, truth = make_proposing_project(tmp_path, alice, settings)
    first = ModelState.objects.get(project=project).current_version.number
    leased = lease_batch(project, user=alice, count=20)
    ids = [p.item_id for p in leased.proposals]
    wrong = [p.item_id for p in leased.proposals if truth[p.item.key] != p.label]
    with django_capture_on_commit_callbacks(execute=True):
        do_confirm_batch(project, user=alice, label=leased.batch.label,
                         accepted=[i for i in ids if i not in wrong], rejected=wrong, time_taken=12.0)
    state = ModelState.objects.select_related("current_version").get(project=project)
    assert state.current_version.number == first + 1  # the confirmed labels trained a new version
    assert state.current_version.train_count == 40 + 20 - len(wrong)
    pending = Proposal.objects.filter(project=project, status=ProposalStatus.PENDING)
    assert set(pending.values_list("version", flat=True)) == {first + 1}
    assert not pending.filter(item_id__in=ids).exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_the_browser_proposals_are_ready_and_a_reviewed_batch_records_the_right_judgements(
    page, live_server, tmp_path, alice, settings
):
    project, truth = make_proposing_project(tmp_path, alice, settings)
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    status = page.inner_text("#proposals-status")
    assert status.startswith("Proposals ready:")
    assert page.locator("#proposal-classes tbody tr").count() == 2
    assert "proposing" in page.inner_text("#proposal-classes")

    page.click("#review-proposals")
    # review.js is deferred: under load the grid is on screen before its keys work.
    page.wait_for_selector("#batch-grid[data-ready=true]")
    label = page.get_attribute("input[name=label]", "value")
    assert f"Untick everything that is not {label}" in page.inner_text("#batch-instruction")
    tiles = page.locator(".batch-tile")
    assert tiles.count() == 20  # a text batch is about a screenful of reading
    ids = [int(tiles.nth(i).get_attribute("data-item")) for i in range(20)]
    items = {i.pk: i for i in project.items.filter(pk__in=ids)}

    # The reviewer unticks what is not the class, plus one item by mouse and one by keyboard.
    untick = [i for i in ids if truth[items[i].key] != label]
    by_mouse, by_key = [i for i in ids if i not in untick][:2]
    for item_id in untick + [by_mouse]:
        page.click(f'.batch-tile[data-item="{item_id}"] .snippet')
    page.focus(f'.batch-tile[data-item="{by_key}"]')
    page.keyboard.press("Space")
    rejected = set(untick + [by_mouse, by_key])
    assert page.inner_text("#n-rejected") == str(len(rejected))
    assert page.locator(".batch-tile.rejected").count() == len(rejected)
    page.wait_for_selector('#batch-grid[data-enter-armed="true"]')  # looked at it a moment
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-success")
    assert f"Confirmed {20 - len(rejected)} as {label}, rejected {len(rejected)}." in page.inner_text(".msg-success")

    confirmed = Judgement.objects.filter(project=project, source=JudgementSource.CONFIRMED_PROPOSAL)
    assert set(confirmed.values_list("item_id", flat=True)) == set(ids) - rejected
    assert {(j.label, j.labelled_by, j.is_current) for j in confirmed} == {(label, "alice", True)}
    assert all(j.time_taken is not None and j.time_taken > 0 for j in confirmed)
    statuses = dict(Proposal.objects.filter(item_id__in=ids, label=label).values_list("item_id", "status"))
    assert {statuses[i] for i in rejected} == {ProposalStatus.REJECTED}
    assert project.items.filter(pk__in=rejected, status=ItemStatus.UNLABELLED).count() == len(rejected)


def test_what_reviews_measure_asks_an_overconfident_class_for_more_confidence_next_time(
    tmp_path, alice, client, settings, django_capture_on_commit_callbacks
):
    project, truth = make_proposing_project(tmp_path, alice, settings)
    first = ModelState.objects.get(project=project).current_version
    leased = lease_batch(project, user=alice, count=20)
    label = leased.batch.label
    before = first.review_thresholds[label]
    assert before["offset"] == 0.0  # nothing reviewed yet
    ids = [p.item_id for p in leased.proposals]
    # The reviewer finds half the batch wrong, where the model expected nearly all of it right.
    with django_capture_on_commit_callbacks(execute=True):
        do_confirm_batch(project, user=alice, label=label, accepted=ids[:10], rejected=ids[10:], time_taken=8.0)
    after = ModelState.objects.get(project=project).current_version.review_thresholds[label]
    expected = sum(p.confidence for p in leased.proposals)
    assert after["offset"] == pytest.approx((expected - 10) / (20 + 20), abs=1e-3)
    assert after["threshold"] is None or after["threshold"] > before["threshold"]
    client.force_login(alice)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    # Corrected by what was measured, no item of the class holds the floor any more; and half of 20 is
    # clearly below it (even the 95% upper bound is), so the class is paused on top.
    assert after["threshold"] is None and "below the 80% floor" in after["reason"]
    assert "clearly below the floor" in page


def test_pairs_a_reviewer_rejected_do_not_count_towards_their_class_batches(
    tmp_path, alice, settings, django_capture_on_commit_callbacks
):
    project, _ = make_proposing_project(tmp_path, alice, settings)
    leased = lease_batch(project, user=alice, label="sport", count=20)
    ids = [p.item_id for p in leased.proposals][:4]  # unticked (rightly or not: this is about the count)
    accepted = [p.item_id for p in leased.proposals][4:]
    with django_capture_on_commit_callbacks(execute=True):  # the rejection re-proposes at once
        do_confirm_batch(project, user=alice, label="sport", accepted=accepted, rejected=ids, time_taken=10.0)
    version = ModelState.objects.get(project=project).current_version
    sport = version.review_thresholds["sport"]
    offered = ItemPrediction.objects.filter(
        project=project, label="sport", item__status=ItemStatus.UNLABELLED, confidence__gte=sport["threshold"]
    ).exclude(item_id__in=ids)
    # The class's batches are what it can still offer: the rejected items are neither counted nor expected.
    assert sport["items"] == offered.count() > 0
    assert not Proposal.objects.filter(item_id__in=ids, label="sport", status=ProposalStatus.PENDING).exists()
