"""A confirmed batch can be taken back by its reviewer for a few minutes (issue 21: one Enter too many confirmed
the next batch unseen): its labels are undone (kept in the history), its items unlabelled again; unticked tiles
stay rejected; after the window, or once someone changed one of its labels, it is a relabel, not an undo."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.errors import NothingToUndo
from labeling.models import BatchStatus, Judgement, Proposal, ProposalBatch, ProposalStatus
from labeling.proposals import do_confirm_batch, do_sync_proposals, do_undo_batch, last_batch_to_undo, lease_batch
from labeling.services import do_record_judgement
from projects.models import ItemStatus, Role
from projects.services import do_add_member
from tests.browser import login
from tests.labeling.test_corrections import make_three_topic_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def confirmed(tmp_path, alice):
    project, items = make_three_topic_project(tmp_path)
    keys = sorted(items)[:5]
    do_sync_proposals(project, version=1, desired={items[k].pk: ("sport", 0.9) for k in keys})
    leased = lease_batch(project, user=alice, label="sport")
    ids = [p.item_id for p in leased.proposals]
    result = do_confirm_batch(project, user=alice, label="sport", accepted=ids[:3], rejected=[ids[3]],
                              corrected={ids[4]: "food"})
    return project, ids, result.batch


def test_it_undoes_the_last_batch_and_keeps_the_unticked_ones_rejected(confirmed, alice):
    project, ids, batch = confirmed
    assert last_batch_to_undo(project, user=alice) == batch
    undone = do_undo_batch(project, user=alice, batch_id=batch.pk)
    assert undone.undone == 4
    for item_id in ids[:3] + [ids[4]]:
        assert project.items.get(pk=item_id).status == ItemStatus.UNLABELLED
        judgement = Judgement.objects.get(item_id=item_id)
        assert judgement.undone_at is not None and not judgement.is_current  # in the history, undone
    assert Proposal.objects.get(item_id=ids[3]).status == ProposalStatus.REJECTED
    assert set(Proposal.objects.filter(item_id__in=ids[:3]).values_list("status", flat=True)) == {
        ProposalStatus.WITHDRAWN}
    stored = ProposalBatch.objects.get(pk=batch.pk)
    assert stored.status == BatchStatus.UNDONE and last_batch_to_undo(project, user=alice) is None
    with pytest.raises(NothingToUndo):
        do_undo_batch(project, user=alice, batch_id=batch.pk)


def test_it_refuses_after_the_window_for_someone_else_or_after_a_relabel(confirmed, alice, bob, settings):
    project, ids, batch = confirmed
    do_add_member(project, user=bob, role=Role.REVIEWER)
    with pytest.raises(NothingToUndo):
        do_undo_batch(project, user=bob, batch_id=batch.pk)
    with pytest.raises(NothingToUndo, match="can be undone for 5 minute"):
        do_undo_batch(project, user=alice, batch_id=batch.pk, now=timezone.now() + timedelta(minutes=6))
    item = project.items.get(pk=ids[0])
    do_record_judgement(project, item=item, user=bob, label="travel", role=Role.REVIEWER, reason="a trip")
    with pytest.raises(NothingToUndo, match="changed since"):
        do_undo_batch(project, user=alice, batch_id=batch.pk)
    assert project.items.get(pk=ids[1]).status == ItemStatus.LABELLED  # nothing was undone


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_the_browser_the_last_batch_stays_with_an_undo(page, live_server, tmp_path, alice):
    project, items = make_three_topic_project(tmp_path)
    keys = sorted(items)[:4]
    do_sync_proposals(project, version=1, desired={items[k].pk: ("sport", 0.9) for k in keys})
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/proposals/review/?label=sport")
    page.wait_for_selector("#batch-grid[data-ready=true]")
    page.click("#confirm-batch")
    page.wait_for_selector("#last-batch")
    assert "4 confirmed as sport" in page.inner_text("#last-batch")
    page.click("#undo-batch")
    page.wait_for_selector(".msg-success")
    assert "Undone" in page.inner_text(".msg-success") and not page.locator("#last-batch").count()
    assert set(project.items.filter(pk__in=[items[k].pk for k in keys]).values_list("status", flat=True)) == {
        ItemStatus.UNLABELLED}
