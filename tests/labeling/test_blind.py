"""The blind TEST stage (labeling.blind): no model guess on a TEST item, and below owner nobody else's
TEST label, in the API and in the rendered pages; the owner's switch for guesses on TRAIN items."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from labeling.models import Judgement, Stage
from labeling.services import do_record_judgement, next_items
from modeling.models import ItemPrediction
from projects.models import Item, Project, Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(image_project, bob):
    """Bob annotates; every item has a stored model guess (what the worker writes); after one TEST
    label the queue alternates TEST and TRAIN (test_ratio 1)."""
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    Project.objects.filter(pk=image_project.pk).update(test_min_judgements=1, test_ratio=1.0)
    image_project.refresh_from_db()
    for item in image_project.items.all():
        ItemPrediction.objects.create(item=item, project=image_project, version=1, label="Cat", confidence=0.92,
                                      entropy=0.3, uncertainty=0.2, scores=[0.92, 0.08])
    return image_project


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def page_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def lease_and_label(client: APIClient, project, n: int) -> list[dict]:
    seen = []
    for _ in range(n):
        item = client.get(f"/api/projects/{project.pk}/items/next/").json()[0]
        seen.append(item)
        assert client.post(f"/api/projects/{project.pk}/judgements/", {"item": item["id"], "label": "Cat"},
                           format="json").status_code == 201
    return seen


def test_it_never_sends_a_model_guess_with_a_test_item(project, bob):
    seen = lease_and_label(api_for(bob), project, 5)
    stages = {item["stage"] for item in seen}
    assert stages == {Stage.TEST, Stage.TRAIN}
    for item in seen:
        if item["stage"] == Stage.TEST:
            assert item["prediction"] is None
        else:  # the owner's setting is on by default: TRAIN items carry the guess
            assert item["prediction"]["label"] == "Cat" and item["prediction"]["model_version"] == 1


def test_it_sends_no_guess_at_all_once_the_owner_switches_them_off(project, alice, bob):
    response = page_for(alice).post(f"/projects/{project.pk}/labelling/settings/", {})
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.show_model_guesses is False
    assert all(item["prediction"] is None for item in lease_and_label(api_for(bob), project, 4))
    page_for(alice).post(f"/projects/{project.pk}/labelling/settings/", {"show_model_guesses": "on"})
    project.refresh_from_db()
    assert project.show_model_guesses is True


def test_it_leaves_the_guess_off_the_item_page_of_a_test_item(project, bob):
    test_item = next_items(project, user=bob)[0]
    assert test_item.stage == Stage.TEST
    html = page_for(bob).get(f"/projects/{project.pk}/items/{test_item.item.pk}/").content.decode()
    assert "prediction-scores" not in html and "92%" not in html
    do_record_judgement(project, item=test_item.item, user=bob, label="Cat")
    train_item = next_items(project, user=bob)[0]
    assert train_item.stage == Stage.TRAIN
    html = page_for(bob).get(f"/projects/{project.pk}/items/{train_item.item.pk}/").content.decode()
    assert "prediction-scores" in html
    # Labelled TEST items stay blind on their page too.
    html = page_for(bob).get(f"/projects/{project.pk}/items/{test_item.item.pk}/").content.decode()
    assert "prediction-scores" not in html


@pytest.fixture
def alices_test_label(project, alice):
    leased = next_items(project, user=alice)[0]
    assert leased.stage == Stage.TEST
    judgement = do_record_judgement(project, item=leased.item, user=alice, label="Not Cat")
    return judgement


def test_it_hides_other_peoples_test_labels_from_annotators(project, alice, bob, alices_test_label):
    item = alices_test_label.item
    listed = api_for(bob).get(f"/api/projects/{project.pk}/judgements/").json()["results"]
    assert listed == []
    assert api_for(bob).get(f"/api/projects/{project.pk}/judgements/?item={item.pk}").json()["results"] == []
    page = page_for(bob).get(f"/projects/{project.pk}/items/{item.pk}/").content.decode()
    assert "labelled blind" in page and "Not Cat" not in page and "alice" not in page
    assert 'name="label"' not in page  # no relabel buttons for a label they cannot see
    grid = page_for(bob).get(f"/projects/{project.pk}/items/?status=labelled").content.decode()
    assert "labelled blind" in grid and "Not Cat</span>" not in grid
    # Filtering on the hidden label finds nothing either.
    assert "labelled blind" not in page_for(bob).get(f"/projects/{project.pk}/items/?label=Not+Cat").content.decode()
    # The owner sees it all.
    assert [j["label"] for j in api_for(alice).get(f"/api/projects/{project.pk}/judgements/").json()["results"]] == [
        "Not Cat"
    ]
    assert "Not Cat" in page_for(alice).get(f"/projects/{project.pk}/items/{item.pk}/").content.decode()


def test_it_shows_annotators_their_own_test_labels(project, bob):
    leased = next_items(project, user=bob)[0]
    do_record_judgement(project, item=leased.item, user=bob, label="Not Cat")
    listed = api_for(bob).get(f"/api/projects/{project.pk}/judgements/").json()["results"]
    assert [(j["label"], j["stage"]) for j in listed] == [("Not Cat", Stage.TEST)]


def test_it_hides_imported_test_labels_too(project, bob):
    item = project.items.first()
    Judgement.objects.create(project=project, item=item, label="Cat", user=None, labelled_by="from-a-file",
                             stage=Stage.TEST)
    Item.objects.filter(pk=item.pk).update(status="labelled")
    assert api_for(bob).get(f"/api/projects/{project.pk}/judgements/").json()["results"] == []


def test_it_refuses_to_replace_a_test_label_an_annotator_cannot_see(project, alice, bob, alices_test_label):
    item = alices_test_label.item
    response = api_for(bob).post(f"/api/projects/{project.pk}/judgements/", {"item": item.pk, "label": "Cat"},
                                 format="json")
    assert response.status_code == 409 and "blind" in response.json()["detail"]
    page = page_for(bob).post(f"/projects/{project.pk}/items/{item.pk}/relabel/", {"label": "Cat"}, follow=True)
    assert "blind" in page.content.decode()
    alices_test_label.refresh_from_db()
    assert alices_test_label.is_current and alices_test_label.label == "Not Cat"
    # An owner may.
    assert api_for(alice).post(f"/api/projects/{project.pk}/judgements/", {"item": item.pk, "label": "Cat"},
                               format="json").status_code == 201


def test_it_lets_only_owners_switch_guesses(project, bob, charlie):
    assert page_for(bob).post(f"/projects/{project.pk}/labelling/settings/", {}).status_code == 403
    assert page_for(charlie).post(f"/projects/{project.pk}/labelling/settings/", {}).status_code == 404
    assert page_for(charlie).post("/projects/999999/labelling/settings/", {}).status_code == 404
    project.refresh_from_db()
    assert project.show_model_guesses is True
