"""Proposals as people meet them: synced with model versions, leased in batches, confirmed, audited.

Proposals are made here with `do_sync_proposals`, the same service the modeling task calls with the
items above each class threshold (the thresholds themselves are tested in tests/modeling).
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.audits import measured_precision
from labeling.errors import BatchConflict, BatchError, InvalidLabel
from labeling.models import (
    AuditStatus,
    BatchStatus,
    Judgement,
    JudgementSource,
    Proposal,
    ProposalBatch,
    ProposalPause,
    ProposalStatus,
    Stage,
)
from labeling.proposals import (
    do_confirm_batch,
    do_sync_proposals,
    lease_batch,
    lease_search_batch,
)
from labeling.services import do_record_judgement, do_undo_last_judgement, next_items
from labeling.stats import proposal_stats
from projects.models import ItemStatus, Role
from projects.services import do_add_member
from tests.conftest import make_image_project
from tests.modeling.conftest import make_text_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def topics(tmp_path, alice, bob):
    project, truth = make_text_project(tmp_path, n=40)
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    items = {i.key: i for i in project.items.all()}
    return project, truth, items


def propose(project, items, keys, *, version=1, label=None, truth=None):
    desired = {items[k].pk: (label or truth[k], 0.99) for k in keys}
    return do_sync_proposals(project, version=version, desired=desired)


def test_it_ties_proposals_to_the_version_and_withdraws_what_a_newer_version_no_longer_supports(topics):
    project, truth, items = topics
    keys = sorted(items)[:6]
    result = propose(project, items, keys, truth=truth)
    assert (result.created, result.kept, result.withdrawn) == (6, 0, 0)
    assert set(Proposal.objects.filter(status=ProposalStatus.PENDING).values_list("version", flat=True)) == {1}
    # Proposals are not judgements.
    assert Judgement.objects.filter(project=project).count() == 0
    assert project.items.filter(status=ItemStatus.UNLABELLED).count() == 40

    # Version 2 supports the first three, proposes the fourth as the other class, drops the rest.
    flipped = {"sport": "food", "food": "sport"}
    desired = {items[k].pk: (truth[k], 0.98) for k in keys[:3]}
    desired[items[keys[3]].pk] = (flipped[truth[keys[3]]], 0.97)
    result = do_sync_proposals(project, version=2, desired=desired)
    assert (result.created, result.kept, result.withdrawn) == (1, 3, 3)
    pending = Proposal.objects.filter(project=project, status=ProposalStatus.PENDING)
    assert set(pending.values_list("version", flat=True)) == {2}
    assert {(p.item.key, p.label) for p in pending} == {(k, truth[k]) for k in keys[:3]} | {
        (keys[3], flipped[truth[keys[3]]])
    }
    withdrawn = Proposal.objects.filter(project=project, status=ProposalStatus.WITHDRAWN)
    assert sorted(p.item.key for p in withdrawn) == sorted(keys[3:])
    assert all(p.closed_at is not None for p in withdrawn)


def test_a_batch_is_leased_to_one_person_and_never_shared(topics, alice, bob, charlie):
    project, truth, items = topics
    sport = [k for k in sorted(items) if truth[k] == "sport"][:10]
    propose(project, items, sport, truth=truth)
    first = lease_batch(project, user=alice, count=6, rng=random.Random(0))
    second = lease_batch(project, user=bob, count=6, rng=random.Random(0))
    assert first.batch.label == second.batch.label == "sport"
    mine = {p.item_id for p in first.proposals}
    theirs = {p.item_id for p in second.proposals}
    assert len(mine) == 6 and len(theirs) == 4 and not mine & theirs
    # Nothing left for a third person while both leases are live.
    assert lease_batch(project, user=charlie) is None

    # Asking again gives alice the same batch (a reload shows the same page), lease renewed.
    again = lease_batch(project, user=alice, count=6)
    assert again.batch.pk == first.batch.pk and {p.item_id for p in again.proposals} == mine

    # Once alice's lease has expired, her proposals go to the next person; alice's late confirm is refused.
    later = timezone.now() + timedelta(seconds=project.lease_seconds + 1)
    taken = lease_batch(project, user=bob, label="sport", count=10, now=later)
    assert {p.item_id for p in taken.proposals} == mine | theirs  # both expired leases are free again
    with pytest.raises(BatchConflict):
        do_confirm_batch(project, user=alice, label="sport", accepted=sorted(mine), rejected=[], now=later)
    assert Judgement.objects.count() == 0


def test_confirming_records_judgements_for_the_ticked_and_rejects_the_rest(topics, alice):
    project, truth, items = topics
    sport = [k for k in sorted(items) if truth[k] == "sport"][:8]
    propose(project, items, sport, truth=truth)
    leased = lease_batch(project, user=alice, label="sport", count=8)
    ids = [p.item_id for p in leased.proposals]
    accepted, rejected = ids[:6], ids[6:]
    result = do_confirm_batch(
        project, user=alice, label="sport", accepted=accepted, rejected=rejected, time_taken=4.0,
        rng=random.Random(1),
    )
    assert (len(result.accepted), len(result.rejected), result.skipped) == (6, 2, [])

    judgements = Judgement.objects.filter(project=project, is_current=True)
    assert sorted(judgements.values_list("item_id", flat=True)) == sorted(accepted)
    for j in judgements:
        assert (j.label, j.user, j.source, j.stage, j.picked_by) == (
            "sport", alice, JudgementSource.CONFIRMED_PROPOSAL, Stage.TRAIN, "proposal"
        )
        assert j.time_taken == pytest.approx(0.5)  # 4 s over 8 items seen
    for item_id in rejected:
        item = project.items.get(pk=item_id)
        assert item.status == ItemStatus.UNLABELLED and item.leased_to is None
    statuses = dict(Proposal.objects.filter(batch=leased.batch).values_list("item_id", "status"))
    assert {statuses[i] for i in accepted} == {ProposalStatus.ACCEPTED}
    assert {statuses[i] for i in rejected} == {ProposalStatus.REJECTED}
    batch = ProposalBatch.objects.get(pk=leased.batch.pk)
    assert (batch.status, batch.accepted, batch.rejected, batch.time_taken) == (BatchStatus.SUBMITTED, 6, 2, 4.0)
    project.refresh_from_db()
    assert project.judgement_revision == 1  # one bump for the whole batch: one training request

    # Rejected (item, class) pairs are never proposed again, not even by the same version re-syncing.
    result = propose(project, items, sport, truth=truth)
    assert result.created == 0
    assert not Proposal.objects.filter(item_id__in=rejected, status=ProposalStatus.PENDING).exists()
    # ... and the rejected items go back to the queue (first, once a ranking exists).
    stats = proposal_stats(project)
    assert stats["accepted"] == 6 and stats["rejected"] == 2 and stats["ready"] == 0
    assert stats["measured_precision"]["sport"]["seen"] == 8
    assert stats["measured_precision"]["sport"]["precision"] == pytest.approx(0.75)


def test_a_bad_confirmation_writes_nothing(topics, alice, tmp_path):
    project, truth, items = topics
    sport = [k for k in sorted(items) if truth[k] == "sport"][:4]
    propose(project, items, sport, truth=truth)
    leased = lease_batch(project, user=alice, label="sport", count=4)
    ids = [p.item_id for p in leased.proposals]
    other = make_image_project(tmp_path / "other", n=2, owner="alice", folder="x")
    foreign = other.items.first().pk
    with pytest.raises(BatchError, match=str(foreign)):
        do_confirm_batch(project, user=alice, label="sport", accepted=ids + [foreign], rejected=[])
    with pytest.raises(InvalidLabel):
        do_confirm_batch(project, user=alice, label="food", accepted=ids, rejected=[])
    with pytest.raises(InvalidLabel):
        do_confirm_batch(project, user=alice, label="Dog", accepted=ids, rejected=[])
    with pytest.raises(BatchError, match="both"):
        do_confirm_batch(project, user=alice, label="sport", accepted=ids, rejected=ids[:1])
    assert Judgement.objects.count() == 0
    assert Proposal.objects.filter(status=ProposalStatus.PENDING).count() == 4


def test_items_labelled_one_by_one_meanwhile_are_skipped_not_overwritten(topics, alice, bob):
    project, truth, items = topics
    sport = [k for k in sorted(items) if truth[k] == "sport"][:3]
    propose(project, items, sport, truth=truth)
    leased = lease_batch(project, user=alice, label="sport", count=3)
    ids = [p.item_id for p in leased.proposals]
    # Bob labels one of them from the item page before alice submits.
    do_record_judgement(project, item=project.items.get(pk=ids[0]), user=bob, label="food")
    result = do_confirm_batch(project, user=alice, label="sport", accepted=ids, rejected=[])
    assert result.skipped == [ids[0]] and sorted(result.accepted) == sorted(ids[1:])
    assert Judgement.objects.get(item_id=ids[0], is_current=True).label == "food"


def test_an_audited_batch_is_checked_item_by_item_blind_and_counts_against_confirmations(topics, alice, bob):
    project, truth, items = topics
    project.audit_share = 1.0
    project.save()
    sport = [k for k in sorted(items) if truth[k] == "sport"][:5]
    propose(project, items, sport, truth=truth)
    leased = lease_batch(project, user=alice, label="sport", count=5)
    ids = [p.item_id for p in leased.proposals]
    result = do_confirm_batch(project, user=alice, label="sport", accepted=ids, rejected=[])
    assert result.audit is True
    assert Proposal.objects.filter(audit_status=AuditStatus.PENDING).count() == 5

    # Bob's queue starts with the audit items (someone else's batch first), shown without the proposal.
    handed = next_items(project, user=bob, count=2)
    assert [h.picked_by for h in handed] == ["audit", "audit"]
    assert {h.item.pk for h in handed} <= set(ids)
    client = APIClient()
    client.force_authenticate(bob)
    payload = client.get(f"/api/projects/{project.pk}/items/next/?count=2").json()
    assert [p["picked_by"] for p in payload] == ["audit", "audit"] and all(p["prediction"] is None for p in payload)

    agree, disagree = handed[0].item, handed[1].item
    do_record_judgement(project, item=agree, user=bob, label="sport")
    do_record_judgement(project, item=disagree, user=bob, label="food")
    audited = dict(Proposal.objects.filter(item_id__in=[agree.pk, disagree.pk]).values_list("item_id", "audit_status"))
    assert audited == {agree.pk: AuditStatus.AGREED, disagree.pk: AuditStatus.DISAGREED}
    # The audit label is a human judgement and now counts.
    current = Judgement.objects.get(item=disagree, is_current=True)
    assert (current.label, current.source, current.picked_by) == ("food", JudgementSource.HUMAN, "audit")
    m = measured_precision(project)["sport"]
    assert (m.seen, m.accepted, m.overturned, m.audited) == (5, 5, 1, 2)
    assert m.precision == pytest.approx(0.8)

    # Undoing an audit label owes the check again.
    do_undo_last_judgement(project, user=bob)
    assert Proposal.objects.get(item=disagree).audit_status == AuditStatus.PENDING
    assert Judgement.objects.get(item=disagree, is_current=True).source == JudgementSource.CONFIRMED_PROPOSAL


def test_a_class_clearly_below_the_floor_pauses_until_the_model_is_retrained_on_new_labels(topics, alice):
    project, truth, items = topics
    sport = [k for k in sorted(items) if truth[k] == "sport"]
    food = [k for k in sorted(items) if truth[k] == "food"]
    # 20 items proposed as sport; the reviewer rejects 4: 80%, at the floor: batch-to-batch luck, no pause.
    propose(project, items, sport[:10] + food[:10], label="sport")
    leased = lease_batch(project, user=alice, label="sport", count=20)
    ids = [p.item_id for p in leased.proposals]
    wrong = [items[k].pk for k in food[:4]]
    result = do_confirm_batch(
        project, user=alice, label="sport", accepted=[i for i in ids if i not in wrong], rejected=wrong
    )
    assert result.paused is False
    # Another batch with 6 of 10 wrong: 20 of 30 (67%), and even the 95% upper bound is below 80%.
    propose(project, items, sport[10:14] + food[10:16], label="sport", version=2)
    leased = lease_batch(project, user=alice, label="sport", count=10)
    ids = [p.item_id for p in leased.proposals]
    wrong = [items[k].pk for k in food[10:16]]
    result = do_confirm_batch(
        project, user=alice, label="sport", accepted=[i for i in ids if i not in wrong], rejected=wrong
    )
    assert result.paused is True
    pause = ProposalPause.objects.get(project=project, label="sport", lifted_at=None)
    assert pause.measured == pytest.approx(20 / 30) and pause.seen == 30 and pause.target == pytest.approx(0.8)

    # The next version proposes sport items again: nothing is created while paused.
    fresh = [k for k in sport[14:]]
    assert propose(project, items, fresh, label="sport", version=3).created == 0
    stats = proposal_stats(project)
    assert stats["measured_precision"]["sport"]["paused"] is True

    # After ten more human labels the next version lifts the pause, and the measured record starts over.
    for key in food[0:4] + food[10:12] + food[16:20]:
        do_record_judgement(project, item=items[key], user=alice, label="food")
    result = propose(project, items, fresh, label="sport", version=4)
    assert result.lifted == ["sport"] and result.created == len(fresh)
    assert measured_precision(project)["sport"].seen == 0


def test_text_search_proposes_matching_texts_as_one_class(topics, alice):
    project, truth, items = topics
    leased = lease_search_batch(project, user=alice, query="goal", label="sport")
    assert leased.batch.origin == "search" and leased.batch.query == "goal"
    texts = [p.item.text for p in leased.proposals]
    assert texts and all("goal" in t.lower() for t in texts)
    expected = project.items.filter(text__icontains="goal").count()
    assert len(texts) == min(expected, 20)
    ids = [p.item_id for p in leased.proposals]
    do_confirm_batch(project, user=alice, label="sport", accepted=ids, rejected=[])
    assert set(Judgement.objects.values_list("source", flat=True)) == {JudgementSource.SEARCH_BATCH}
    # Search proposals are not the model's: they do not count towards its measured precision.
    assert measured_precision(project)["sport"].seen == 0


def test_image_projects_have_no_text_search(tmp_path, alice):
    project = make_image_project(tmp_path, n=2, owner="alice", label="{type: classification, classes: [a, b]}")
    from labeling.errors import LabelingError

    with pytest.raises(LabelingError, match="text"):
        lease_search_batch(project, user=alice, query="cat", label="a")


# --------------------------------------------------------------------------------------------------
# REST API
# --------------------------------------------------------------------------------------------------


def test_the_api_leases_and_confirms_batches(topics, alice, bob, charlie):
    project, truth, items = topics
    keys = sorted(items)[:10]
    propose(project, items, keys, truth=truth)
    api = APIClient()
    api.force_authenticate(alice)
    body = api.get(f"/api/projects/{project.pk}/proposals/?count=3&label=food").json()
    assert body["label"] == "food" and len(body["items"]) == 3 and body["origin"] == "model"
    assert set(body["items"][0]) >= {"id", "path", "kind", "data", "proposal"}
    assert body["items"][0]["proposal"]["model_version"] == 1
    ids = [i["id"] for i in body["items"]]
    assert all(truth[items_by_id(items)[i].key] == "food" for i in ids)

    r = api.post(f"/api/projects/{project.pk}/proposals/confirm/",
                 {"label": "food", "accepted": ids[:2], "rejected": ids[2:], "time_taken": 3}, format="json")
    assert r.status_code == 200, r.content
    assert r.json() | {"audit": None} == {
        "batch": body["batch"], "label": "food", "accepted": 2, "rejected": 1, "corrected": 0, "skipped": [],
        "audit": None, "paused": False,
    }
    stats = api.get(f"/api/projects/{project.pk}/stats/").json()
    assert stats["proposals"]["accepted"] == 2 and stats["proposals"]["rejected"] == 1
    assert stats["labelled"]["model_labelled"] == 2

    # Errors are JSON 4xx and write nothing.
    again = api.post(f"/api/projects/{project.pk}/proposals/confirm/",
                     {"label": "food", "accepted": ids[:1], "rejected": []}, format="json")
    assert again.status_code == 400 and "detail" in again.json()
    bad = api.get(f"/api/projects/{project.pk}/proposals/?label=Dog")
    assert bad.status_code == 400 and bad.json()["allowed"] == ["sport", "food"]
    assert api.get(f"/api/projects/{project.pk}/proposals/?q=goal").status_code == 400
    api.force_authenticate(charlie)
    assert api.get(f"/api/projects/{project.pk}/proposals/").status_code == 404
    assert Judgement.objects.count() == 2


def items_by_id(items):
    return {i.pk: i for i in items.values()}


def test_nothing_to_review_is_an_empty_batch_not_an_error(topics, alice):
    project, _, _ = topics
    api = APIClient()
    api.force_authenticate(alice)
    r = api.get(f"/api/projects/{project.pk}/proposals/")
    assert r.status_code == 200 and r.json() == {
        "batch": None, "label": None, "origin": None, "query": "", "lease_expires": None, "items": [], "ready": {}
    }
