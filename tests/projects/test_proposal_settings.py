"""Owners choose the auto-label precision and what it is proven for (each class, or all classes together)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from projects.models import Role
from projects.services import ProjectError, do_add_member, do_set_proposal_settings

pytestmark = pytest.mark.django_db


def settings_url(project) -> str:
    return reverse("projects:proposal-settings", args=[project.pk])


def test_it_sets_the_auto_label_precision_and_the_guarantee_and_re_proposes(
    client, image_project, alice, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(settings_url(image_project), {"auto_label_percent": "90", "guarantee": "all_proposals"})
    assert response.status_code == 302 and response["Location"].endswith("#proposals")
    assert len(callbacks) == 1  # the current model's proposals are recomputed once this commits
    image_project.refresh_from_db()
    assert image_project.auto_label_precision == pytest.approx(0.9)
    assert image_project.proposal_guarantee == "all_proposals"
    page = client.get(response["Location"].split("#")[0])
    assert "Auto-labels now need 90.0% precision proven for all classes together" in page.content.decode()

    # A form without the field (older pages, scripts) leaves the guarantee alone.
    client.post(settings_url(image_project), {"auto_label_percent": "95"})
    image_project.refresh_from_db()
    assert image_project.auto_label_precision == pytest.approx(0.95)
    assert image_project.proposal_guarantee == "all_proposals"


def test_a_bad_guarantee_is_refused_and_changes_nothing(client, image_project, alice):
    client.force_login(alice)
    response = client.post(settings_url(image_project), {"auto_label_percent": "80", "guarantee": "most"}, follow=True)
    assert (
        "The proposal guarantee must be &#x27;each_class&#x27; or &#x27;all_proposals&#x27;"
        in response.content.decode()
    )
    image_project.refresh_from_db()
    assert (image_project.auto_label_precision, image_project.proposal_guarantee) == (pytest.approx(0.99), "each_class")
    with pytest.raises(ProjectError, match="the auto-label precision must be between"):
        do_set_proposal_settings(image_project, target=1.0, guarantee="all_proposals")
    image_project.refresh_from_db()
    assert image_project.proposal_guarantee == "each_class"  # nothing half-applied


@pytest.mark.parametrize("role,status", [(Role.ANNOTATOR, 403), (Role.VIEWER, 403), (None, 404)])
def test_only_owners_change_it_and_outsiders_see_nothing(client, image_project, bob, role, status):
    if role:
        do_add_member(image_project, user=bob, role=role)
    client.force_login(bob)
    response = client.post(settings_url(image_project), {"auto_label_percent": "80", "guarantee": "all_proposals"})
    assert response.status_code == status
    image_project.refresh_from_db()
    assert image_project.proposal_guarantee == "each_class"


def test_the_api_shows_the_guarantee(client, image_project, alice):
    client.force_login(alice)
    body = client.get(f"/api/projects/{image_project.pk}/").json()
    assert body["proposal_guarantee"] == "each_class" and body["auto_label_precision"] == 0.99


def test_it_sets_the_review_floor_and_refuses_one_out_of_range(client, image_project, alice):
    client.force_login(alice)
    response = client.post(settings_url(image_project), {"floor_percent": "90"}, follow=True)
    image_project.refresh_from_db()
    assert image_project.review_precision_floor == pytest.approx(0.9)
    assert image_project.auto_label_precision == pytest.approx(0.99)  # left out of the form: unchanged
    assert "review batches are expected to be at least 90.0% precise" in response.content.decode()

    response = client.post(settings_url(image_project), {"floor_percent": "100"}, follow=True)
    assert "The review precision floor must be between 50% and 99%." in response.content.decode()
    image_project.refresh_from_db()
    assert image_project.review_precision_floor == pytest.approx(0.9)
    with pytest.raises(ProjectError, match="must be a number"):
        do_set_proposal_settings(image_project, floor="lots")
