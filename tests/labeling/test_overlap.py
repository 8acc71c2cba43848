"""Overlap (labeling.overlap): items labelled by k people independently, blind to each other; agreeing
votes settle an item, disagreeing ones go to a reviewer; nothing counts before the round is finished."""

from __future__ import annotations

import random

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.agreement import overlap_accuracy, project_agreement
from labeling.disputes import lease_dispute
from labeling.errors import AwaitingReview, NothingToUndo, NotYourLabel
from labeling.models import Judgement, JudgementSource, Stage
from labeling.overlap import OVERLAP, labeller_ids, overlap_probability
from labeling.services import (
    choose_stage,
    do_record_judgement,
    do_skip_item,
    do_undo_last_judgement,
    next_items,
    queue_counts,
)
from modeling.models import ItemPrediction
from projects.models import Item, ItemStatus, Project, Role
from projects.services import do_add_member, do_remove_member
from tests.conftest import make_image_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(tmp_path, alice, bob, charlie, django_user_model):
    """alice owns (and never labels), bob and dave annotate, rita reviews; every item is an overlap item
    labelled by two people; charlie is an outsider."""
    project = make_image_project(tmp_path, n=20, owner="alice", label="{type: classification, classes: [Cat, Dog]}")
    dave = django_user_model.objects.create_user("dave", password="x")
    rita = django_user_model.objects.create_user("rita", password="x")
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    do_add_member(project, user=dave, role=Role.ANNOTATOR)
    do_add_member(project, user=rita, role=Role.REVIEWER)
    Project.objects.filter(pk=project.pk).update(overlap_share=1.0, overlap_k=2, test_min_judgements=2, test_ratio=1.0)
    project.refresh_from_db()
    return {"project": project, "bob": bob, "dave": dave, "rita": rita, "alice": alice}


def lease_one(project, user):
    leased = next_items(project, user=user, rng=random.Random(1))
    assert leased, f"{user} got nothing"
    return leased[0]


def vote(project, user, item, label, role=Role.ANNOTATOR):
    return do_record_judgement(project, item=item, user=user, label=label, role=role)


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_it_puts_test_items_in_the_overlap_first():
    project = Project(overlap_share=0.1, test_ratio=0.33)
    t = 0.33 / 1.33
    assert overlap_probability(project, stage=Stage.TEST) == pytest.approx(0.1 / t)
    assert overlap_probability(project, stage=Stage.TRAIN) == 0.0
    project.overlap_share = 0.5
    assert overlap_probability(project, stage=Stage.TEST) == 1.0
    assert overlap_probability(project, stage=Stage.TRAIN) == pytest.approx((0.5 - t) / (1 - t))
    # In the long run s of all items: TEST's share t at p_test plus TRAIN's 1 - t at p_train.
    assert t * 1.0 + (1 - t) * overlap_probability(project, stage=Stage.TRAIN) == pytest.approx(0.5)
    project.overlap_share = 0
    assert overlap_probability(project, stage=Stage.TEST) == 0.0


def test_it_counts_nothing_until_both_people_agree(team):
    project, bob, dave = team["project"], team["bob"], team["dave"]
    first = lease_one(project, bob)
    assert first.item.labels_wanted == 2 and first.stage == Stage.TEST
    v1 = vote(project, bob, first.item, "Cat")
    item = Item.objects.get(pk=first.item.pk)
    assert item.status == ItemStatus.PARTIAL and item.overlap_stage == Stage.TEST
    assert v1.is_vote and not v1.is_current
    project.refresh_from_db()
    assert project.tally_test == 0  # no label for TEST accuracy or training yet
    assert not Judgement.objects.filter(item=item, is_current=True).exists()
    # Bob is never handed it again; dave gets it before any fresh item, in the same stage.
    assert lease_one(project, bob).item.pk != item.pk
    second = lease_one(project, dave)
    assert second.item.pk == item.pk and second.stage == Stage.TEST and second.picked_by == OVERLAP
    v2 = vote(project, dave, second.item, "Cat")
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELLED
    current = Judgement.objects.get(item=item, is_current=True)
    assert current.pk == v1.pk and current.stage == Stage.TEST and current.picked_by == "random"
    assert v2.picked_by == "random" and v2.picked_probability == v1.picked_probability  # the round's pick
    project.refresh_from_db()
    assert project.tally_test == 1


def test_it_sends_disagreements_to_a_reviewer_and_keeps_the_votes(team):
    project, bob, dave, rita = team["project"], team["bob"], team["dave"], team["rita"]
    item = lease_one(project, bob).item
    vote(project, bob, item, "Cat")
    assert lease_one(project, dave).item.pk == item.pk
    vote(project, dave, item, "Dog")
    item.refresh_from_db()
    assert item.status == ItemStatus.DISPUTED
    assert not Judgement.objects.filter(item=item, is_current=True).exists()
    with pytest.raises(AwaitingReview):  # annotators do not decide
        vote(project, bob, item, "Dog")
    dispute = lease_dispute(project, user=rita)
    assert dispute is not None and dispute.item.pk == item.pk
    assert [(v.labelled_by, v.label) for v in dispute.votes] == [("bob", "Cat"), ("dave", "Dog")]
    decision = vote(project, rita, dispute.item, "Dog", role=Role.REVIEWER)
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELLED
    decision.refresh_from_db()
    assert decision.is_current and decision.source == JudgementSource.ADJUDICATED and decision.stage == Stage.TEST
    assert Judgement.objects.filter(item=item, is_vote=True, undone_at__isnull=True).count() == 2
    assert lease_dispute(project, user=rita) is None
    # Agreement reads the votes (not the decision); accuracy compares each vote with the final label.
    agreement = project_agreement(project, rounds=50)
    assert agreement.items == 1 and agreement.raw.value == 0.0
    accuracy = overlap_accuracy(project)
    assert accuracy[bob.pk].correct == 0 and accuracy[dave.pk].correct == 1 and accuracy[dave.pk].items == 1


def test_it_hides_the_first_vote_and_the_model_guess_from_the_second_person(team):
    project, bob, dave, rita = team["project"], team["bob"], team["dave"], team["rita"]
    Project.objects.filter(pk=project.pk).update(test_min_judgements=0, test_ratio=0.0)  # TRAIN items
    project.refresh_from_db()
    for i in project.items.all():
        ItemPrediction.objects.create(item=i, project=project, version=1, label="Cat", confidence=0.9, entropy=0.3,
                                      uncertainty=0.2, scores=[0.9, 0.1])
    first = api_for(bob).get(f"/api/projects/{project.pk}/items/next/").json()[0]
    assert first["stage"] == Stage.TRAIN and first["prediction"] is None  # an overlap item: no guess, TRAIN too
    assert api_for(bob).post(f"/api/projects/{project.pk}/judgements/", {"item": first["id"], "label": "Cat"},
                             format="json").status_code == 201
    second = api_for(dave).get(f"/api/projects/{project.pk}/items/next/").json()[0]
    assert second["id"] == first["id"] and second["prediction"] is None
    assert second["picked_by"] == first["picked_by"] and "labels_wanted" not in second  # nothing says "checked"
    listed = api_for(dave).get(f"/api/projects/{project.pk}/judgements/?item={first['id']}").json()
    assert listed["count"] == 0  # bob's vote is not shown while the round is open
    page = Client()
    page.force_login(dave)
    html = page.get(f"/projects/{project.pk}/items/{first['id']}/").content.decode()
    assert "bob" not in html and "prediction-scores" not in html
    assert "labels so far" not in html  # nor that it is checked: nobody labels the checked items differently
    # While the round is open, nobody sees the votes, reviewers neither; once finished, reviewers see them all.
    assert api_for(rita).get(f"/api/projects/{project.pk}/judgements/?item={first['id']}").json()["count"] == 0
    assert api_for(dave).post(f"/api/projects/{project.pk}/judgements/", {"item": first["id"], "label": "Dog"},
                              format="json").status_code == 201
    assert api_for(rita).get(f"/api/projects/{project.pk}/judgements/?item={first['id']}").json()["count"] == 2
    assert api_for(bob).get(f"/api/projects/{project.pk}/judgements/?item={first['id']}").json()["count"] == 1


def test_it_lets_nobody_change_an_agreed_label_below_reviewer(team):
    project, bob, dave, rita = team["project"], team["bob"], team["dave"], team["rita"]
    item = lease_one(project, bob).item
    vote(project, bob, item, "Cat")
    lease_one(project, dave)
    vote(project, dave, item, "Cat")
    item.refresh_from_db()
    with pytest.raises(NotYourLabel):  # bob's own vote is current, but two people agreed on it
        vote(project, bob, item, "Dog")
    changed = do_record_judgement(project, item=item, user=rita, label="Dog", role=Role.REVIEWER,
                                  reason="a dog in a cat costume")
    assert changed.source == JudgementSource.ADJUDICATED and changed.is_current
    assert Judgement.objects.get(item=item, is_current=True).label == "Dog"


def test_a_relabel_in_the_round_replaces_the_persons_vote(team):
    project, bob, dave = team["project"], team["bob"], team["dave"]
    item = lease_one(project, bob).item
    vote(project, bob, item, "Cat")
    item.refresh_from_db()
    vote(project, bob, item, "Dog")  # from the item page: still one vote of bob's
    assert Judgement.objects.filter(item=item, is_vote=True, user=bob).count() == 1
    item.refresh_from_db()
    assert item.status == ItemStatus.PARTIAL
    assert lease_one(project, dave).item.pk == item.pk
    vote(project, dave, item, "Dog")
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELLED
    assert Judgement.objects.get(item=item, is_current=True).label == "Dog"


def test_undo_takes_a_vote_back_only_while_the_round_is_open(team):
    project, bob, dave = team["project"], team["bob"], team["dave"]
    item = lease_one(project, bob).item
    vote(project, bob, item, "Cat")
    lease_one(project, dave)
    vote(project, dave, item, "Dog")  # disputed: dave may not learn it and change his label to match
    with pytest.raises(NothingToUndo, match="completed its round"):
        do_undo_last_judgement(project, user=dave)
    item.refresh_from_db()
    assert item.status == ItemStatus.DISPUTED
    assert Judgement.objects.filter(item=item, is_vote=True, undone_at__isnull=True).count() == 2
    # While partial: bob's only vote undone, the item is unlabelled again, held for bob, still an overlap item.
    other = lease_one(project, bob).item
    vote(project, bob, other, "Cat")
    again = do_undo_last_judgement(project, user=bob)
    assert again.pk == other.pk and again.status == ItemStatus.UNLABELLED and again.labels_wanted == 2
    assert lease_one(project, bob).item.pk == other.pk  # held: a reload shows it
    # A relabel withdraws the vote it replaces: an undo never brings it back.
    vote(project, bob, other, "Dog")
    vote(project, bob, Item.objects.get(pk=other.pk), "Cat")
    do_undo_last_judgement(project, user=bob)
    assert not Judgement.objects.filter(item=other, undone_at__isnull=True).exists()


def test_it_never_opens_more_overlap_items_than_the_team_can_finish(team):
    project, bob = team["project"], team["bob"]
    for _ in range(12):  # bob alone: every item he labels waits for dave
        leased = lease_one(project, bob)
        vote(project, bob, leased.item, "Cat")
    partial = project.items.filter(status=ItemStatus.PARTIAL).count()
    assert partial <= 2 * 3 + 1  # twice the labellers (bob, dave, rita), and no more
    assert project.items.filter(status=ItemStatus.LABELLED).count() == 12 - partial  # the rest: single labels


def test_owners_who_never_label_do_not_count_as_labellers(tmp_path, alice, bob):
    project = make_image_project(tmp_path, n=6, owner="alice")
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    Project.objects.filter(pk=project.pk).update(overlap_share=1.0)
    project.refresh_from_db()
    leased = next_items(project, user=bob, count=3)
    assert all(li.item.labels_wanted == 1 for li in leased)  # nobody else to give a second label


def test_open_rounds_count_towards_their_stage(team):
    project, bob = team["project"], team["bob"]
    for _ in range(2):
        vote(project, bob, lease_one(project, bob).item, "Cat")
    counts = queue_counts(project, now=timezone.now())
    assert counts.test == 2 and counts.partial == 2
    assert choose_stage(project, test=counts.test, train=counts.train) == Stage.TRAIN  # TEST minimum reached


def test_the_disputes_page_and_api_let_a_reviewer_decide(team, charlie):
    project, bob, dave, rita = team["project"], team["bob"], team["dave"], team["rita"]
    item = lease_one(project, bob).item
    vote(project, bob, item, "Cat")
    lease_one(project, dave)
    vote(project, dave, item, "Dog")
    listed = api_for(rita).get(f"/api/projects/{project.pk}/disputes/").json()
    assert [d["item"]["id"] for d in listed] == [item.pk]
    assert sorted((v["labelled_by"], v["label"]) for v in listed[0]["votes"]) == [("bob", "Cat"), ("dave", "Dog")]
    refused = api_for(bob).get(f"/api/projects/{project.pk}/disputes/")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This needs the reviewer role; you are an annotator."
    assert api_for(charlie).get(f"/api/projects/{project.pk}/disputes/").status_code == 404
    page = Client()
    page.force_login(rita)
    html = page.get(f"/projects/{project.pk}/review/disputes/").content.decode()
    assert f'data-item="{item.pk}"' in html and "bob" in html and "dave" in html
    response = page.post(f"/projects/{project.pk}/review/disputes/", {"item": item.pk, "label": "Dog"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELLED
    decided = Judgement.objects.get(item=item, is_current=True)
    assert decided.source == JudgementSource.ADJUDICATED and decided.labelled_by == "rita"
    # Deciding it again (a second reviewer's stale page): refused, nothing written.
    page.post(f"/projects/{project.pk}/review/disputes/", {"item": item.pk, "label": "Cat"})
    assert Judgement.objects.filter(item=item, source=JudgementSource.ADJUDICATED).count() == 1
    assert "No disagreements to decide" in page.get(f"/projects/{project.pk}/review/disputes/").content.decode()


def test_owners_set_the_overlap_and_bad_values_change_nothing(team):
    project, alice, bob = team["project"], team["alice"], team["bob"]
    page = Client()
    page.force_login(alice)
    url = f"/projects/{project.pk}/labelling/settings/"
    page.post(url, {"show_model_guesses": "on", "overlap_percent": "25", "overlap_k": "3"})
    project.refresh_from_db()
    assert project.overlap_share == pytest.approx(0.25) and project.overlap_k == 3
    for bad in ({"overlap_percent": "250"}, {"overlap_k": "1"}, {"overlap_percent": "lots"}):
        response = page.post(url, {"show_model_guesses": "on", **bad}, follow=True)
        assert "Nothing changed" in response.content.decode() or "nothing changed" in response.content.decode()
        project.refresh_from_db()
        assert project.overlap_share == pytest.approx(0.25) and project.overlap_k == 3
    annotator = Client()
    annotator.force_login(bob)
    assert annotator.post(url, {"overlap_percent": "0"}).status_code == 403


def test_the_project_page_and_stats_say_how_many_wait(team):
    project, bob, dave, rita = team["project"], team["bob"], team["dave"], team["rita"]
    first = lease_one(project, bob).item
    vote(project, bob, first, "Cat")
    lease_one(project, dave)
    vote(project, dave, first, "Dog")  # disputed
    vote(project, bob, lease_one(project, bob).item, "Cat")  # partial
    stats = api_for(bob).get(f"/api/projects/{project.pk}/stats/").json()
    assert stats["overlap"] == {"partial": 1, "disputed": 1} and stats["labelled"]["total"] == 0
    assert stats["you"]["count"] == 2  # bob labelled two items, though neither has its label yet
    page = Client()
    page.force_login(rita)
    html = page.get(f"/projects/{project.pk}/").content.decode()
    assert 'data-stat="partial">1<' in html and 'data-stat="disputed">1<' in html
    assert f"/projects/{project.pk}/review/disputes/" in html


def test_undoing_a_first_vote_leaves_the_second_persons_lease_alone(team):
    project, bob, dave = team["project"], team["bob"], team["dave"]
    item = lease_one(project, bob).item
    vote(project, bob, item, "Cat")
    assert lease_one(project, dave).item.pk == item.pk  # dave holds it for his vote
    do_undo_last_judgement(project, user=bob)
    item.refresh_from_db()
    assert item.leased_to_id == dave.pk and item.status == ItemStatus.UNLABELLED
    first = vote(project, bob.__class__.objects.get(pk=dave.pk), item, "Dog")  # dave's vote opens the round now
    assert first.picked_by == "random"  # how the item was picked stays with the round
    item.refresh_from_db()
    assert item.status == ItemStatus.PARTIAL
    assert lease_one(project, bob).item.pk == item.pk


def test_a_round_nobody_is_left_to_finish_closes_with_the_votes_it_has(team):
    project, bob, dave = team["project"], team["bob"], team["dave"]
    item = lease_one(project, bob).item
    vote(project, bob, item, "Cat")
    held = lease_one(project, dave)
    assert held.item.pk == item.pk
    do_skip_item(project, item=held.item, user=dave)  # the only other labeller passes on it
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELLED and item.labels_wanted == 1  # bob's label, unchecked
    assert Judgement.objects.get(item=item, is_current=True).labelled_by == "bob"
    # The reviewer who never labels from the queue did not count: nobody waited for rita.
    assert "rita" not in {m.user.username for m in project.memberships.all() if m.user_id in labeller_ids(project)}


def test_a_labeller_leaving_closes_the_rounds_nobody_else_can_finish(team, django_capture_on_commit_callbacks):
    project, bob, dave = team["project"], team["bob"], team["dave"]
    item = lease_one(project, bob).item
    vote(project, bob, item, "Cat")
    with django_capture_on_commit_callbacks(execute=True):
        do_remove_member(project, user=dave)  # the only other labeller
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELLED and item.labels_wanted == 1
    assert Judgement.objects.get(item=item, is_current=True).labelled_by == "bob"
