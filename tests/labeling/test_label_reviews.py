"""The review grid: reviewers accept or change an annotator's labels; reviewed accuracy per annotator."""

from __future__ import annotations

import pytest
from django.test import Client

from labeling.models import Judgement, JudgementSource, LabelReview, ReviewVerdict
from labeling.reviews import ReviewError, do_review_labels, labels_to_review, reviewed_accuracy
from labeling.services import do_record_judgement
from projects.models import Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed_team(image_project, bob, django_user_model):
    """bob labelled 4 items Cat; rita reviews."""
    rita = django_user_model.objects.create_user("rita", password="rita-pass-123")
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=rita, role=Role.REVIEWER)
    labels = [
        do_record_judgement(image_project, item=item, user=bob, label="Cat", role=Role.ANNOTATOR)
        for item in image_project.items.order_by("id")[:4]
    ]
    return image_project, rita, labels


def page_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_records_accepted_and_changed_labels_and_the_accuracy(reviewed_team, bob, alice):
    project, rita, labels = reviewed_team
    url = f"/projects/{project.pk}/review/labels/"
    grid = page_for(rita).get(f"{url}?annotator=bob").content.decode()
    assert grid.count('class="batch-tile review-tile"') == 4
    form = {"annotator": "bob", "judgements": [j.pk for j in labels], "reason": "tabby is Cat, the rest not"}
    form.update({f"label-{j.pk}": "Cat" for j in labels[:3]})
    form[f"label-{labels[3].pk}"] = "Not Cat"
    response = page_for(rita).post(url, form, follow=True)
    assert "3 accepted, 1 changed" in response.content.decode()
    verdicts = dict(LabelReview.objects.values_list("judgement_id", "verdict"))
    assert verdicts == {**{j.pk: ReviewVerdict.ACCEPTED for j in labels[:3]}, labels[3].pk: ReviewVerdict.CHANGED}
    changed = Judgement.objects.get(item=labels[3].item, is_current=True)
    assert (changed.label, changed.source, changed.labelled_by, changed.reason) == (
        "Not Cat", JudgementSource.ADJUDICATED, "rita", "tabby is Cat, the rest not")
    labels[3].refresh_from_db()
    assert not labels[3].is_current  # bob's label stays in the history
    assert reviewed_accuracy(project)[bob.pk].accuracy == pytest.approx(0.75)
    # Reviewed labels leave the grid; the members page shows the accuracy.
    assert list(labels_to_review(project, annotator=bob)) == []
    members = page_for(alice).get(f"/projects/{project.pk}/members/").content.decode()
    assert "75%" in members and "of 4" in members


def test_it_refuses_what_it_cannot_record_and_writes_nothing(reviewed_team, bob, alice):
    project, rita, labels = reviewed_team
    with pytest.raises(ReviewError):
        do_review_labels(project, reviewer=bob, role=Role.ANNOTATOR, annotator=rita, decisions={labels[0].pk: "Cat"})
    with pytest.raises(ReviewError):
        do_review_labels(project, reviewer=bob, role=Role.REVIEWER, annotator=bob, decisions={labels[0].pk: "Cat"})
    with pytest.raises(ReviewError):  # a label that is not bob's
        do_review_labels(project, reviewer=rita, role=Role.REVIEWER, annotator=alice, decisions={labels[0].pk: "Cat"})
    do_review_labels(project, reviewer=rita, role=Role.REVIEWER, annotator=bob, decisions={labels[0].pk: "Cat"})
    with pytest.raises(ReviewError):  # twice
        do_review_labels(project, reviewer=rita, role=Role.REVIEWER, annotator=bob,
                         decisions={labels[0].pk: "Cat", labels[1].pk: "Not Cat"})
    assert LabelReview.objects.count() == 1
    assert Judgement.objects.filter(source=JudgementSource.ADJUDICATED).count() == 0


def test_it_skips_a_label_changed_meanwhile(reviewed_team, bob):
    project, rita, labels = reviewed_team
    do_record_judgement(project, item=labels[0].item, user=bob, label="Not Cat", role=Role.ANNOTATOR)
    result = do_review_labels(project, reviewer=rita, role=Role.REVIEWER, annotator=bob,
                              decisions={labels[0].pk: "Cat", labels[1].pk: "Cat"})
    assert (result.accepted, result.changed, result.skipped) == (1, 0, 1)


def test_it_lets_only_reviewers_and_owners_in(reviewed_team, bob, charlie, alice):
    project, _, _ = reviewed_team
    url = f"/projects/{project.pk}/review/labels/"
    assert page_for(bob).get(url).status_code == 403
    assert page_for(charlie).get(url).status_code == 404
    assert page_for(charlie).get("/projects/999999/review/labels/").status_code == 404
    assert page_for(alice).get(f"{url}?annotator=bob").status_code == 200


def test_it_reviews_through_the_api(reviewed_team, bob, charlie):
    from rest_framework.test import APIClient

    project, rita, labels = reviewed_team
    api = APIClient()
    api.force_authenticate(rita)
    url = f"/api/projects/{project.pk}/label-reviews/"
    listed = api.get(url, {"annotator": "bob"}).json()
    assert sorted(j["id"] for j in listed) == sorted(j.pk for j in labels)
    response = api.post(url, {"annotator": "bob", "reason": "ears",
                              "decisions": [{"judgement": labels[0].pk, "label": "Cat"},
                                            {"judgement": labels[1].pk, "label": "Not Cat"}]}, format="json")
    assert response.status_code == 201
    assert response.json() == {"accepted": 1, "changed": 1, "skipped": 0, "reviewed": 2, "accuracy": 0.5}
    again = api.post(url, {"annotator": "bob", "decisions": [{"judgement": labels[0].pk, "label": "Cat"}]},
                     format="json")
    assert again.status_code == 400 and "already reviewed" in again.json()["detail"]
    unknown = api.get(url, {"annotator": "nobody"})
    assert unknown.status_code == 400 and "annotator" in unknown.json()
    annotator = APIClient()
    annotator.force_authenticate(bob)
    assert annotator.get(url, {"annotator": "bob"}).status_code == 403
    outsider = APIClient()
    outsider.force_authenticate(charlie)
    assert outsider.get(url, {"annotator": "bob"}).status_code == 404
    assert outsider.get("/api/projects/999999/label-reviews/", {"annotator": "bob"}).status_code == 404
