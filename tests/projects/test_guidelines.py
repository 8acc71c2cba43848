"""Owner-written guidelines: Markdown rendered safely, on the labelling, batch and item screens, a header
link, a page of their own and an API; only owners write them."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from projects.models import Role
from projects.services import GUIDELINES_MAX, do_add_member, do_set_guidelines

pytestmark = pytest.mark.django_db

HOSTILE = """# Cats

**Tabby** counts as *Cat*; see [the style guide](https://example.com/guide).

| looks like | label |
|---|---|
| lynx | Not Cat |

<script>alert(1)</script><img src="x.png" onerror="alert(2)"><a href="javascript:alert(3)">x</a>
"""


@pytest.fixture
def team(image_project, bob):
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    return image_project


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_renders_markdown_and_strips_what_could_run(team, alice):
    response = logged_in(alice).post(f"/projects/{team.pk}/guidelines/", {"guidelines": HOSTILE})
    assert response.status_code == 302
    team.refresh_from_db()
    assert team.guidelines == HOSTILE.strip() and team.guidelines_updated_at is not None
    page = logged_in(alice).get(f"/projects/{team.pk}/guidelines/").content.decode()
    html = page[page.index('id="guidelines-text"'):page.index("</section>")]  # the rendered part
    assert "<h1>Cats</h1>" in html and "<strong>Tabby</strong>" in html and "<td>lynx</td>" in html
    assert 'href="https://example.com/guide"' in html
    assert "<script>alert" not in html and "onerror" not in html and "javascript:alert" not in html
    # The owner's own text comes back to edit, escaped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page


def test_it_shows_them_on_the_screens_people_label_on(team, alice, bob):
    do_set_guidelines(team, text="Label **tabbies** as Cat.")
    annotator = logged_in(bob)
    item = team.items.first()
    for url in (f"/projects/{team.pk}/label/", f"/projects/{team.pk}/proposals/review/",
                f"/projects/{team.pk}/items/{item.pk}/"):
        html = annotator.get(url).content.decode()
        assert 'id="guidelines-panel"' in html and "<strong>tabbies</strong>" in html, url
        assert f'href="/projects/{team.pk}/guidelines/"' in html  # the header link
    # An annotator reads them but cannot change them.
    page = annotator.get(f"/projects/{team.pk}/guidelines/").content.decode()
    assert "<strong>tabbies</strong>" in page and 'id="guidelines-form"' not in page
    assert annotator.post(f"/projects/{team.pk}/guidelines/", {"guidelines": "mine"}).status_code == 403
    team.refresh_from_db()
    assert team.guidelines == "Label **tabbies** as Cat."


def test_it_shows_no_panel_until_there_are_guidelines(team, bob):
    html = logged_in(bob).get(f"/projects/{team.pk}/label/").content.decode()
    assert 'id="guidelines-panel"' not in html


def test_it_hides_them_from_outsiders_alike(team, charlie):
    assert logged_in(charlie).get(f"/projects/{team.pk}/guidelines/").status_code == 404
    assert logged_in(charlie).get("/projects/999999/guidelines/").status_code == 404
    api = APIClient()
    api.force_authenticate(charlie)
    assert api.get(f"/api/projects/{team.pk}/guidelines/").json() == api.get("/api/projects/999999/guidelines/").json()


def test_it_serves_and_replaces_them_through_the_api(team, alice, bob):
    owner, annotator = APIClient(), APIClient()
    owner.force_authenticate(alice)
    annotator.force_authenticate(bob)
    url = f"/api/projects/{team.pk}/guidelines/"
    assert annotator.get(url).json()["guidelines"] == ""
    response = owner.put(url, {"guidelines": "## Rules\n\n- tabby: Cat"}, format="json")
    assert response.status_code == 200 and "<h2>Rules</h2>" in response.json()["html"]
    refused = annotator.put(url, {"guidelines": "x"}, format="json")
    assert refused.status_code == 403 and "detail" in refused.json()
    too_long = owner.put(url, {"guidelines": "x" * (GUIDELINES_MAX + 1)}, format="json")
    assert too_long.status_code == 400 and "guidelines" in too_long.json()
    team.refresh_from_db()
    assert team.guidelines == "## Rules\n\n- tabby: Cat"
    assert owner.put(url, {"guidelines": ""}, format="json").json()["updated_at"] is None
