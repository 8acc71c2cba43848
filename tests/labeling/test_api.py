"""REST API behaviour with token auth, as an engineer's script would use it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import Judgement
from projects.models import Item, ItemStatus, Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(bob, image_project):
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    client = APIClient()
    response = client.post("/api/auth/token/", {"username": "bob", "password": "bob-pass-123"}, format="json")
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def test_token_auth_rejects_bad_passwords():
    response = APIClient().post("/api/auth/token/", {"username": "bob", "password": "nope"}, format="json")
    assert response.status_code == 400


def test_it_leases_labels_and_reports_stats(api, image_project, bob):
    base = f"/api/projects/{image_project.pk}"
    items = api.get(f"{base}/items/next/?count=2").json()
    assert len(items) == 2
    first = items[0]
    assert set(first) >= {"id", "path", "data", "stage", "prediction"}
    assert first["path"].endswith(".png") and first["stage"] == "TEST" and first["prediction"] is None
    assert first["data"] == f"/api/items/{first['id']}/media"

    media = api.get(first["data"])
    assert media.status_code == 200 and media["Content-Type"] == "image/png"
    assert b"".join(media.streaming_content).startswith(b"\x89PNG")

    created = api.post(f"{base}/judgements/", {"item": first["id"], "label": "Cat", "time_taken": 1.25}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["label"] == "Cat" and body["stage"] == "TEST" and body["user"] == "bob"
    judgement = Judgement.objects.get(pk=body["id"])
    judgement.refresh_from_db()
    assert judgement.user == bob and judgement.time_taken == 1.25 and judgement.is_current

    stats = api.get(f"{base}/stats/").json()
    assert stats["labelled"] == {
        "total": 1, "train": 0, "test": 1, "model_labelled": 0, "seen_by_a_person": 1, "auto": 0,
    }
    assert stats["unlabelled"] == 5
    assert stats["training"] is False and stats["accuracy"] is None and stats["model_version"] is None
    assert stats["you"]["count"] == 1 and stats["you"]["median_seconds"] == 1.25

    listing = api.get(f"{base}/judgements/?stage=TEST&current=true").json()
    assert listing["count"] == 1 and listing["results"][0]["path"] == first["path"]
    assert api.get(f"{base}/judgements/?stage=TRAIN").json()["count"] == 0


def test_unknown_labels_get_400_with_the_allowed_list(api, image_project):
    item = api.get(f"/api/projects/{image_project.pk}/items/next/").json()[0]
    response = api.post(
        f"/api/projects/{image_project.pk}/judgements/", {"item": item["id"], "label": "Dog"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "'Dog' is not a class of this project", "allowed": ["Cat", "Not Cat"]}
    assert not Judgement.objects.exists()


def test_another_projects_item_is_404_and_changes_nothing(api, image_project, tmp_path, alice):
    from tests.conftest import make_image_project

    other = make_image_project(
        tmp_path, n=1, owner="alice", title="Other", label="{type: classification, classes: [Cat, Not Cat]}",
        folder="other",
    )
    foreign = other.items.get()
    response = api.post(
        f"/api/projects/{image_project.pk}/judgements/", {"item": foreign.pk, "label": "Cat"}, format="json"
    )
    assert response.status_code == 404
    assert api.get(f"/api/items/{foreign.pk}/media").status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == ItemStatus.UNLABELLED and not Judgement.objects.exists()


def test_a_judgement_on_an_item_leased_to_someone_else_is_409(api, image_project, alice):
    from labeling.services import next_items

    taken = next_items(image_project, user=alice, count=1)[0].item
    response = api.post(
        f"/api/projects/{image_project.pk}/judgements/", {"item": taken.pk, "label": "Cat"}, format="json"
    )
    assert response.status_code == 409
    assert "someone else" in response.json()["detail"]


def test_undo_and_skip(api, image_project, bob):
    base = f"/api/projects/{image_project.pk}"
    assert api.post(f"{base}/judgements/undo/").status_code == 409  # nothing yet
    item = api.get(f"{base}/items/next/").json()[0]
    api.post(f"{base}/judgements/", {"item": item["id"], "label": "Cat"}, format="json")
    undone = api.post(f"{base}/judgements/undo/")
    assert undone.status_code == 200 and undone.json()["id"] == item["id"]
    row = Item.objects.get(pk=item["id"])
    assert row.status == ItemStatus.UNLABELLED and row.leased_to == bob
    j = Judgement.objects.get(item=row)
    assert j.undone_at is not None and not j.is_current
    # The undone item is handed straight back, and a new label keeps how the queue picked it.
    assert api.get(f"{base}/items/next/").json()[0]["id"] == item["id"]
    relabelled = api.post(f"{base}/judgements/", {"item": item["id"], "label": "Not Cat"}, format="json").json()
    assert relabelled["picked_by"] == "random" and relabelled["picked_probability"] == j.picked_probability
    assert api.post(f"{base}/judgements/undo/").status_code == 200

    assert api.post(f"{base}/items/{item['id']}/skip/").status_code == 204
    row.refresh_from_db()
    assert row.leased_to is None


def test_next_validates_count(api, image_project):
    assert api.get(f"/api/projects/{image_project.pk}/items/next/?count=0").status_code == 400
    assert api.get(f"/api/projects/{image_project.pk}/items/next/?count=abc").status_code == 400
    assert len(api.get(f"/api/projects/{image_project.pk}/items/next/?count=50").json()) == 6


def test_owners_add_and_remove_members(client, image_project, alice, charlie):
    owner = APIClient()
    owner.force_authenticate(alice)
    url = f"/api/projects/{image_project.pk}/members/"
    assert owner.post(url, {"username": "nobody", "role": "annotator"}, format="json").status_code == 400
    assert owner.post(url, {"username": "charlie", "role": "boss"}, format="json").status_code == 400
    created = owner.post(url, {"username": "charlie", "role": "viewer"}, format="json")
    assert created.status_code == 201 and created.json()["role"] == "viewer"
    assert {m["username"] for m in owner.get(url).json()} == {"alice", "charlie"}
    assert owner.delete(f"{url}charlie/").status_code == 204
    assert owner.delete(f"{url}alice/").status_code == 400  # the last owner stays


def test_json_items_render_through_the_template_safely(tmp_path, alice):
    import json

    from interchange.config import load_config
    from interchange.importer import do_import_config
    from labeling.presenters import item_payload
    from tests.conftest import write_config

    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "a.json").write_text(
        json.dumps({"img_src": "https://example.org/a.png", "text": "<script>alert(1)</script> & co"})
    )
    cfg = write_config(
        tmp_path / "c.yml",
        "task:\n  title: T\n"
        "  template: '<div onclick=\"x()\"><img src=\"{{img_src}}\"/><p>{{text}}</p><script>bad()</script></div>'\n"
        "dataset: {directory: j, data_type: json}\nlabel: {type: binary}\nmodel: {directory: out}\nuser: alice\n",
    )
    project = do_import_config(load_config(cfg)).project
    html = item_payload(project, project.items.get())["html"]
    assert '<img src="https://example.org/a.png">' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "onclick" not in html and "bad()" not in html


def test_openapi_schema_is_served(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "/api/projects/{project_id}/items/next/" in text and "Light Bulb API" in text
