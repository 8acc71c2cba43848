"""The item page's breadcrumb: `?back=` may only lead to a path on this site."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.views import same_site_path

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("back", [
    "javascript:alert(1)", " javascript:alert(document.cookie)", "JaVaScRiPt:alert(1)", "https://elsewhere/",
    "//elsewhere/items/", "/\\\\elsewhere/", "\\\\\\\\elsewhere", "http:/elsewhere", "data:text/html,<b>x</b>",
    "/projects/\\x00/", "items/", "",
])
def test_it_never_links_the_breadcrumb_off_site_or_to_a_script(client, image_project, alice, back):
    item = image_project.items.order_by("id").first()
    client.force_login(alice)
    page = client.get(reverse("labeling:item", args=[image_project.pk, item.pk]), {"back": back})
    assert page.status_code == 200
    html = page.content.decode()
    default = reverse("labeling:browser", args=[image_project.pk])
    assert f'<a href="{default}">Items</a>' in html
    assert "javascript:" not in html.lower() and "elsewhere" not in html


def test_a_path_on_this_site_comes_back(client, image_project, alice):
    item = image_project.items.order_by("id").first()
    client.force_login(alice)
    back = f"/projects/{image_project.pk}/items/?status=labelled&page=2"
    page = client.get(reverse("labeling:item", args=[image_project.pk, item.pk]), {"back": back})
    expected = f'<a href="/projects/{image_project.pk}/items/?status=labelled&amp;page=2">Items</a>'
    assert expected in page.content.decode()
    assert same_site_path("/x/\\y") == "" and same_site_path(" /ok/ ") == "/ok/"


def test_media_gives_outsiders_the_same_404_for_an_item_that_exists_and_one_that_does_not(
    image_project, charlie
):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(charlie)  # not a member of the project
    existing = image_project.items.order_by("id").first()
    there = api.get(f"/api/items/{existing.pk}/media")
    missing = api.get("/api/items/99999999/media")
    assert there.status_code == missing.status_code == 404
    assert there.json() == missing.json() == {"detail": "No such item"}
    assert there["Content-Type"] == missing["Content-Type"] == "application/json"
