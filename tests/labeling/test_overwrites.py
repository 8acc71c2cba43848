"""No silent overwrites: annotators relabel only their own labels; reviewers and owners change other
people's with a reason (source adjudicated), and every label stays in the history."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from labeling.models import Judgement, JudgementSource, Stage
from labeling.services import do_record_judgement
from projects.models import Project, Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(image_project, bob, django_user_model):
    """bob and carol annotate, rita reviews; the TEST stage is already full, so new labels are TRAIN."""
    carol = django_user_model.objects.create_user("carol", password="x")
    rita = django_user_model.objects.create_user("rita", password="x")
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=carol, role=Role.ANNOTATOR)
    do_add_member(image_project, user=rita, role=Role.REVIEWER)
    Project.objects.filter(pk=image_project.pk).update(test_min_judgements=0, test_ratio=0.0)
    image_project.refresh_from_db()
    return image_project, carol, rita


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post_label(user, project, item, label: str, **extra):
    return api_for(user).post(f"/api/projects/{project.pk}/judgements/", {"item": item.pk, "label": label, **extra},
                              format="json")


@pytest.fixture
def bobs_label(team, bob):
    project, _, _ = team
    item = project.items.order_by("id").first()
    judgement = do_record_judgement(project, item=item, user=bob, label="Cat", role=Role.ANNOTATOR)
    assert judgement.stage == Stage.TRAIN
    return judgement


def test_it_refuses_an_annotator_relabelling_someone_elses_label(team, bobs_label):
    project, carol, _ = team
    response = post_label(carol, project, bobs_label.item, "Not Cat")
    assert response.status_code == 409
    assert "bob" in response.json()["detail"] and "reviewer" in response.json()["detail"]
    page = Client()
    page.force_login(carol)
    html = page.post(f"/projects/{project.pk}/items/{bobs_label.item.pk}/relabel/", {"label": "Not Cat"},
                     follow=True).content.decode()
    assert "reviewer" in html
    detail = page.get(f"/projects/{project.pk}/items/{bobs_label.item.pk}/").content.decode()
    assert 'id="not-yours"' in detail and 'name="label"' not in detail
    bobs_label.refresh_from_db()
    assert bobs_label.is_current and bobs_label.label == "Cat"


def test_it_lets_annotators_relabel_their_own_labels(team, bob, bobs_label):
    project, _, _ = team
    response = post_label(bob, project, bobs_label.item, "Not Cat")
    assert response.status_code == 201 and response.json()["source"] == JudgementSource.HUMAN
    bobs_label.refresh_from_db()
    assert not bobs_label.is_current


def test_it_has_reviewers_say_why_and_records_an_adjudication(team, bobs_label):
    project, _, rita = team
    refused = post_label(rita, project, bobs_label.item, "Not Cat")
    assert refused.status_code == 400 and "why" in refused.json()["detail"]
    assert post_label(rita, project, bobs_label.item, "Not Cat", reason="   ").status_code == 400
    response = post_label(rita, project, bobs_label.item, "Not Cat", reason="a  fox, not a cat")
    assert response.status_code == 201
    body = response.json()
    assert body["source"] == JudgementSource.ADJUDICATED and body["reason"] == "a fox, not a cat"
    history = list(Judgement.objects.filter(item=bobs_label.item).order_by("id").values_list(
        "labelled_by", "label", "is_current", "source"))
    assert history == [("bob", "Cat", False, JudgementSource.HUMAN),
                       ("rita", "Not Cat", True, JudgementSource.ADJUDICATED)]
    # The item page shows the decision and its reason to everyone who may see it.
    page = Client()
    page.force_login(rita)
    html = page.get(f"/projects/{project.pk}/items/{bobs_label.item.pk}/").content.decode()
    assert "a fox, not a cat" in html and "Adjudicated by a reviewer" in html


def test_it_asks_reviewers_for_the_reason_on_the_item_page(team, bobs_label):
    project, _, rita = team
    page = Client()
    page.force_login(rita)
    url = f"/projects/{project.pk}/items/{bobs_label.item.pk}/"
    assert 'name="reason"' in page.get(url).content.decode()
    html = page.post(f"{url}relabel/", {"label": "Not Cat"}, follow=True).content.decode()
    assert "say why" in html.lower()
    page.post(f"{url}relabel/", {"label": "Not Cat", "reason": "tail and ears"})
    assert Judgement.objects.get(item=bobs_label.item, is_current=True).reason == "tail and ears"


def test_it_lets_reviewers_see_and_change_blind_test_labels(image_project, bob, django_user_model):
    rita = django_user_model.objects.create_user("rita", password="x")
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=rita, role=Role.REVIEWER)
    item = image_project.items.first()
    do_record_judgement(image_project, item=item, user=bob, label="Cat", role=Role.ANNOTATOR)
    listed = api_for(rita).get(f"/api/projects/{image_project.pk}/judgements/").json()["results"]
    assert [(j["user"], j["stage"]) for j in listed] == [("bob", Stage.TEST)]
    assert post_label(rita, image_project, item, "Not Cat", reason="checked").status_code == 201


def test_it_lets_annotators_correct_the_models_auto_labels(team, alice):
    from labeling.autolabels import do_record_auto_labels

    project, carol, _ = team
    item = project.items.order_by("id").last()
    do_record_auto_labels(project, user=alice, version=1, target=0.99, guarantee="test", proof={},
                          picks={item.pk: ("Cat", 0.999)})
    assert post_label(carol, project, item, "Not Cat").status_code == 201
