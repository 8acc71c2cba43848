"""Pages: login required everywhere, outsiders get 404, members see their projects, admin loads."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import Judgement
from projects.models import Membership, Role
from projects.services import MembershipError, do_add_member, do_remove_member

pytestmark = pytest.mark.django_db


def _page_urls(project):
    return [reverse("projects:list"), reverse("projects:detail", args=[project.pk])]


def test_it_requires_login_everywhere(client, image_project):
    for url in _page_urls(image_project) + [reverse("admin:index")]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert "/login/" in response["Location"]


def test_it_hides_projects_from_outsiders(client, image_project, charlie):
    client.force_login(charlie)
    assert client.get(reverse("projects:detail", args=[image_project.pk])).status_code == 404
    assert client.get(reverse("projects:detail", args=[999999])).status_code == 404
    listing = client.get(reverse("projects:list"))
    assert image_project.title not in listing.content.decode()
    assert "No projects yet" in listing.content.decode()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANNOTATOR, Role.OWNER])
def test_it_shows_the_project_page_to_members(client, image_project, bob, role):
    do_add_member(image_project, user=bob, role=role)
    client.force_login(bob)
    listing = client.get(reverse("projects:list")).content.decode()
    assert image_project.title in listing
    page = client.get(reverse("projects:detail", args=[image_project.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Is this a cat?" in html and "Not Cat" in html and "bob" in html and "alice" in html
    assert 'data-stat="total">6<' in html


def test_the_project_page_sanitises_the_description(client, image_project, alice):
    image_project.description = '<table><tr><td onclick="x()">ok</td></tr></table><script>alert(1)</script>'
    image_project.save()
    client.force_login(alice)
    html = client.get(reverse("projects:detail", args=[image_project.pk])).content.decode()
    assert "<td>ok</td>" in html
    assert "alert(1)" not in html and "onclick" not in html


def test_members_keep_at_least_one_owner(image_project, alice, bob):
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    with pytest.raises(MembershipError, match="at least one owner"):
        do_add_member(image_project, user=alice, role=Role.VIEWER)
    with pytest.raises(MembershipError, match="at least one owner"):
        do_remove_member(image_project, user=alice)
    do_remove_member(image_project, user=bob)
    assert list(Membership.objects.filter(project=image_project).values_list("user__username", "role")) == [
        ("alice", Role.OWNER)
    ]


def test_admin_pages_load_for_a_superuser(client, django_user_model, image_project, alice):
    admin = django_user_model.objects.create_superuser("root", password="root-pass-123")
    client.force_login(admin)
    item = image_project.items.first()
    judgement = Judgement.objects.create(project=image_project, item=item, label="Cat", user=alice, stage="TRAIN")
    membership = Membership.objects.get(project=image_project, user=alice)
    urls = [
        reverse("admin:index"),
        reverse("admin:projects_project_changelist"),
        reverse("admin:projects_project_change", args=[image_project.pk]),
        reverse("admin:projects_project_add"),
        reverse("admin:projects_item_changelist") + "?status__exact=rejected",
        reverse("admin:projects_item_change", args=[item.pk]),
        reverse("admin:projects_membership_changelist"),
        reverse("admin:projects_membership_change", args=[membership.pk]),
        reverse("admin:labeling_judgement_changelist") + "?stage__exact=TRAIN",
        reverse("admin:labeling_judgement_change", args=[judgement.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == 200, url
    listing = client.get(reverse("admin:projects_project_changelist")).content.decode()
    assert "Is this a cat?" in listing


def test_admin_rescan_action_adds_new_files(client, django_user_model, image_project):
    from pathlib import Path

    from tests.conftest import write_images

    admin = django_user_model.objects.create_superuser("root", password="root-pass-123")
    client.force_login(admin)
    write_images(Path(image_project.dataset_directory), 1, prefix="late")
    response = client.post(
        reverse("admin:projects_project_changelist"),
        {"action": "rescan_dataset", "_selected_action": [image_project.pk]},
        follow=True,
    )
    assert "1 new item(s)" in response.content.decode()
    assert image_project.items.filter(key="late000.png").exists()


def test_login_and_logout_work(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 302 and response["Location"] == reverse("projects:list")
    assert client.get(reverse("projects:list")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("projects:list")).status_code == 302
