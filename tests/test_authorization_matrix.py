"""Every endpoint x anonymous / outsider / viewer / annotator / reviewer / owner.

Outsiders get 404 for anything inside a project (its existence never leaks); members below the role
an action needs get 403; anonymous API calls get 401 and anonymous page views go to the login page.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from projects.models import Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db

ANON, OUTSIDER, VIEWER, ANNOTATOR, REVIEWER, OWNER = (
    "anonymous", "outsider", "viewer", "annotator", "reviewer", "owner"
)
WHO = [ANON, OUTSIDER, VIEWER, ANNOTATOR, REVIEWER, OWNER]

# (method, url template, body, expected status per role)
API = [
    ("get", "/api/projects/", None, [401, 200, 200, 200, 200, 200]),
    ("get", "/api/projects/{p}/", None, [401, 404, 200, 200, 200, 200]),
    ("get", "/api/projects/{p}/guidelines/", None, [401, 404, 200, 200, 200, 200]),
    ("put", "/api/projects/{p}/guidelines/", {"guidelines": "# How"}, [401, 404, 403, 403, 403, 200]),
    ("get", "/api/projects/{p}/members/", None, [401, 404, 200, 200, 200, 200]),
    ("post", "/api/projects/{p}/members/", {"username": "dave", "role": "viewer"}, [401, 404, 403, 403, 403, 201]),
    ("delete", "/api/projects/{p}/members/dave/", None, [401, 404, 403, 403, 403, 204]),
    ("get", "/api/projects/{p}/items/next/", None, [401, 404, 403, 200, 200, 200]),
    ("post", "/api/projects/{p}/items/{i}/skip/", None, [401, 404, 403, 204, 204, 204]),
    ("get", "/api/projects/{p}/judgements/", None, [401, 404, 200, 200, 200, 200]),
    ("post", "/api/projects/{p}/judgements/", {"item": "{i}", "label": "Cat"}, [401, 404, 403, 201, 201, 201]),
    ("post", "/api/projects/{p}/judgements/undo/", None, [401, 404, 403, 409, 409, 409]),
    ("get", "/api/projects/{p}/label-reviews/?annotator=bob", None, [401, 404, 403, 403, 200, 200]),
    # Reviewers get past authorization to the service: bob has no labels to review here.
    ("post", "/api/projects/{p}/label-reviews/", {"annotator": "bob", "decisions": [{"judgement": 1, "label": "Cat"}]},
     [401, 404, 403, 403, 400, 400]),
    ("get", "/api/projects/{p}/agreement/", None, [401, 404, 200, 200, 200, 200]),
    ("get", "/api/projects/{p}/disputes/", None, [401, 404, 403, 403, 200, 200]),
    # An export holds every TEST label, which the blind stage hides below reviewer.
    ("get", "/api/projects/{p}/export/?as=jsonl", None, [401, 404, 403, 403, 200, 200]),
    ("get", "/api/projects/{p}/stats/", None, [401, 404, 200, 200, 200, 200]),
    ("get", "/api/items/{i}/media", None, [401, 404, 200, 200, 200, 200]),
    ("get", "/api/projects/{p}/model/", None, [401, 404, 200, 200, 200, 200]),
    ("get", "/api/projects/{p}/auto-labels/", None, [401, 404, 200, 200, 200, 200]),
    # Owners only; this project has no model, so the owner's request reaches the service and gets 409.
    ("post", "/api/projects/{p}/auto-labels/", None, [401, 404, 403, 403, 403, 409]),
    ("post", "/api/projects/{p}/auto-labels/withdraw/", {"version": 1}, [401, 404, 403, 403, 403, 409]),
    # Checking labels shows TEST labels (blind below reviewer); excluding an item is the owner's.
    ("get", "/api/projects/{p}/label-check/", None, [401, 404, 403, 403, 200, 200]),
    ("get", "/api/projects/{p}/label-check/?actual=Cat&predicted=Not%20Cat", None, [401, 404, 403, 403, 200, 200]),
    # The item has no label to keep (409): past authorization, nothing written.
    ("post", "/api/projects/{p}/label-check/keep/", {"item": "{i}"}, [401, 404, 403, 403, 409, 409]),
    ("post", "/api/projects/{p}/label-check/exclude/", {"item": "{i}"}, [401, 404, 403, 403, 403, 200]),
    ("get", "/api/projects/{p}/finetune/", None, [401, 404, 200, 200, 200, 200]),
    # Owners only; this project has no model to compare a fine-tune with (409), and no run 1 to cancel (404).
    ("post", "/api/projects/{p}/finetune/", None, [401, 404, 403, 403, 403, 409]),
    ("post", "/api/projects/{p}/finetune/cancel/", {"run": 1}, [401, 404, 403, 403, 403, 404]),
    # Nothing is adopted in this project: the owner is told so (409).
    ("post", "/api/projects/{p}/finetune/pretrained/", None, [401, 404, 403, 403, 403, 409]),
    ("get", "/api/projects/{p}/proposals/", None, [401, 404, 403, 200, 200, 200]),
    # Members who may confirm get past authorization to the service, which says there is no batch.
    ("post", "/api/projects/{p}/proposals/confirm/", {"label": "Cat", "accepted": [], "rejected": []},
     [401, 404, 403, 400, 400, 400]),
    # Scoring is reading: every member gets past authorization; this project has no model yet (409).
    ("post", "/api/projects/{p}/score/", {"type": "images", "urls": ["http://example.com/x.png"]},
     [401, 404, 409, 409, 409, 409]),
    ("post", "/api/projects/{p}/predict/", {"type": "images", "urls": ["http://example.com/x.png"]},
     [401, 404, 409, 409, 409, 409]),
    ("post", "/score", {"project": "{p}", "type": "images", "urls": ["http://example.com/x.png"]},
     [401, 404, 409, 409, 409, 409]),
    # Making projects needs the "Can add project" permission, which no role of a project gives.
    ("post", "/api/projects/", {"title": "x", "data_type": "text", "classes": "a,b"}, [401, 403, 403, 403, 403, 403]),
    # Adding data is the owners'; this project reads a server folder outside the allowed roots (400).
    ("post", "/api/projects/{p}/items/", {"server_folder": "/nonexistent"}, [401, 404, 403, 403, 403, 400]),
    ("get", "/api/projects/{p}/imports/", None, [401, 404, 403, 403, 403, 200]),
    ("post", "/api/projects/{p}/imports/", {"duplicates": "drop"}, [401, 404, 403, 403, 403, 400]),
    ("get", "/api/projects/{p}/imports/999/", None, [401, 404, 403, 403, 403, 404]),
    ("post", "/api/projects/{p}/imports/999/files/", None, [401, 404, 403, 403, 403, 404]),
    ("post", "/api/projects/{p}/imports/999/start/", None, [401, 404, 403, 403, 403, 404]),
    ("post", "/api/projects/{p}/imports/999/cancel/", None, [401, 404, 403, 403, 403, 404]),
    ("get", "/api/projects/{p}/server-folder/?path=/etc", None, [401, 404, 403, 403, 403, 200]),
]

# Pages: anonymous users are redirected to log in (302).
PAGES = [
    ("get", "/projects/", None, [302, 200, 200, 200, 200, 200]),
    ("get", "/projects/{p}/", None, [302, 404, 200, 200, 200, 200]),
    ("get", "/projects/{p}/label/", None, [302, 404, 403, 200, 200, 200]),
    ("get", "/projects/{p}/items/", None, [302, 404, 200, 200, 200, 200]),
    ("get", "/projects/{p}/items/?status=labelled&q=img&stage=TEST&label=Cat&user=bob", None,
     [302, 404, 200, 200, 200, 200]),
    ("get", "/projects/{p}/items/{i}/", None, [302, 404, 200, 200, 200, 200]),
    ("post", "/projects/{p}/items/{i}/relabel/", {"label": "Cat"}, [302, 404, 403, 302, 302, 302]),
    ("get", "/projects/{p}/review/labels/?annotator=bob", None, [302, 404, 403, 403, 200, 200]),
    ("post", "/projects/{p}/review/labels/", {"annotator": "bob"}, [302, 404, 403, 403, 302, 302]),
    ("get", "/projects/{p}/review/disputes/", None, [302, 404, 403, 403, 200, 200]),
    ("get", "/projects/{p}/export/", None, [302, 404, 403, 403, 200, 200]),
    ("get", "/projects/{p}/export/?as=csv&stage=TEST", None, [302, 404, 403, 403, 200, 200]),
    ("post", "/projects/{p}/review/disputes/", {"item": "{i}", "label": "Cat"}, [302, 404, 403, 403, 302, 302]),
    ("get", "/projects/{p}/guidelines/", None, [302, 404, 200, 200, 200, 200]),
    ("post", "/projects/{p}/guidelines/", {"guidelines": "# How"}, [302, 404, 403, 403, 403, 302]),
    ("get", "/projects/{p}/members/", None, [302, 404, 200, 200, 200, 200]),
    ("get", "/projects/{p}/model/card/", None, [302, 404, 200, 200, 200, 200]),
    ("get", "/projects/{p}/model/labels/", None, [302, 404, 403, 403, 200, 200]),
    ("get", "/projects/{p}/model/labels/?show=losses", None, [302, 404, 403, 403, 200, 200]),
    ("get", "/projects/{p}/model/labels/?actual=Cat&predicted=Not%20Cat", None, [302, 404, 403, 403, 200, 200]),
    ("post", "/projects/{p}/model/labels/{i}/relabel/", {"label": "Cat"}, [302, 404, 403, 403, 302, 302]),
    ("post", "/projects/{p}/model/labels/{i}/keep/", None, [302, 404, 403, 403, 302, 302]),
    ("post", "/projects/{p}/model/labels/{i}/exclude/", None, [302, 404, 403, 403, 403, 302]),
    # Owners only; without a model (or a run 1) the owner is sent back to the card with the reason.
    ("post", "/projects/{p}/model/finetune/", None, [302, 404, 403, 403, 403, 302]),
    ("post", "/projects/{p}/model/finetune/cancel/", {"run": "1"}, [302, 404, 403, 403, 403, 302]),
    ("post", "/projects/{p}/model/finetune/pretrained/", None, [302, 404, 403, 403, 403, 302]),
    ("get", "/projects/{p}/proposals/review/", None, [302, 404, 403, 200, 200, 200]),
    ("get", "/projects/{p}/classify/", None, [302, 404, 200, 200, 200, 200]),
    ("post", "/projects/{p}/classify/", {"url": "http://example.com/x.png"}, [302, 404, 409, 409, 409, 409]),
    # Owners only; this project has no model yet, so even the owner gets "not found".
    ("get", "/projects/{p}/model/export/", None, [302, 404, 403, 403, 403, 404]),
    ("get", "/projects/{p}/proposals/review/?label=Cat", None, [302, 404, 403, 200, 200, 200]),
    ("post", "/projects/{p}/proposals/review/", {"label": "Cat", "items": "1"}, [302, 404, 403, 302, 302, 302]),
    ("post", "/projects/{p}/proposals/settings/", {"auto_label_percent": "90"}, [302, 404, 403, 403, 403, 302]),
    ("post", "/projects/{p}/labelling/settings/", {}, [302, 404, 403, 403, 403, 302]),
    # Owners only; without a model the owner is sent back to the card with the reason.
    ("post", "/projects/{p}/model/auto-label/", None, [302, 404, 403, 403, 403, 302]),
    ("post", "/projects/{p}/model/auto-label/withdraw/", {"version": "1"}, [302, 404, 403, 403, 403, 302]),
    ("post", "/projects/{p}/members/", {"action": "add", "username": "dave", "role": "annotator"},
     [302, 404, 403, 403, 403, 302]),
    ("get", "/projects/new/", None, [302, 403, 403, 403, 403, 403]),
    ("get", "/projects/{p}/data/", None, [302, 404, 403, 403, 403, 200]),
    ("post", "/projects/{p}/data/", {}, [302, 404, 403, 403, 403, 302]),
    ("post", "/projects/{p}/data/server-folder/", {"path": "/etc"}, [302, 404, 403, 403, 403, 400]),
    ("get", "/projects/{p}/imports/999/", None, [302, 404, 403, 403, 403, 404]),
    ("post", "/projects/{p}/imports/999/cancel/", None, [302, 404, 403, 403, 403, 404]),
    ("get", "/projects/{p}/items/?duplicates=1", None, [302, 404, 200, 200, 200, 200]),
    ("post", "/projects/{p}/items/duplicates/drop/", None, [302, 404, 403, 403, 403, 302]),
    ("post", "/projects/{p}/items/{i}/keep/", None, [302, 404, 403, 403, 403, 302]),
    ("post", "/projects/{p}/keys/", {"key": ["c", ""]}, [302, 404, 403, 403, 403, 302]),
    # Members who review batches get past authorization; there is no batch of theirs to undo (said why).
    ("post", "/projects/{p}/proposals/review/undo/", {"batch": "1"}, [302, 404, 403, 302, 302, 302]),
]


@pytest.fixture
def actors(image_project, alice, bob, charlie, django_user_model):
    viewer = django_user_model.objects.create_user("vera", password="x")
    dave = django_user_model.objects.create_user("dave", password="x")
    rita = django_user_model.objects.create_user("rita", password="x")
    do_add_member(image_project, user=viewer, role=Role.VIEWER)
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=rita, role=Role.REVIEWER)
    do_add_member(image_project, user=dave, role=Role.VIEWER)
    return {ANON: None, OUTSIDER: charlie, VIEWER: viewer, ANNOTATOR: bob, REVIEWER: rita, OWNER: alice}


def _fill(value, project, item):
    if isinstance(value, str):
        return value.replace("{p}", str(project.pk)).replace("{i}", str(item.pk))
    if isinstance(value, dict):
        return {k: int(_fill(v, project, item)) if v == "{i}" else _fill(v, project, item) for k, v in value.items()}
    return value


@pytest.mark.parametrize("method,url,body,expected", API, ids=[f"{m} {u}" for m, u, _, _ in API])
@pytest.mark.parametrize("who", WHO)
def test_api_matrix(actors, image_project, who, method, url, body, expected):
    item = image_project.items.order_by("id").first()
    if method == "delete":
        do_add_member(image_project, user=actors[OWNER].__class__.objects.get(username="dave"), role=Role.VIEWER)
    client = APIClient()
    if actors[who] is not None:
        client.force_authenticate(actors[who])
    response = getattr(client, method)(_fill(url, image_project, item), _fill(body, image_project, item), format="json")
    assert response.status_code == expected[WHO.index(who)], response.content[:300]


@pytest.mark.parametrize("method,url,body,expected", PAGES, ids=[f"{m} {u}" for m, u, _, _ in PAGES])
@pytest.mark.parametrize("who", WHO)
def test_page_matrix(client, actors, image_project, who, method, url, body, expected):
    item = image_project.items.order_by("id").first()
    if actors[who] is not None:
        client.force_login(actors[who])
    response = getattr(client, method)(_fill(url, image_project, item), _fill(body, image_project, item))
    assert response.status_code == expected[WHO.index(who)]
    if who == ANON:
        assert "/accounts/login/" in response["Location"]
    if method == "post" and response.status_code == 302 and who != ANON:
        # The write went through for those allowed to make it.
        if "relabel" in url:
            assert item.judgements.get(is_current=True).labelled_by == actors[who].username
        elif "proposals/settings" in url:
            image_project.refresh_from_db()
            assert image_project.auto_label_precision == pytest.approx(0.9)
        elif "review/disputes" in url:
            assert not item.judgements.exists()  # the item is not disputed: an error message, nothing written
        elif "review/labels" in url:
            assert not item.judgements.exists()  # nothing chosen to review: an error message, nothing written
        elif "guidelines" in url:
            image_project.refresh_from_db()
            assert image_project.guidelines == "# How"
        elif "labelling/settings" in url:
            image_project.refresh_from_db()
            assert image_project.show_model_guesses is False  # the box was not ticked
        elif "proposals/review" in url:
            assert item.judgements.count() == 0  # no batch was leased: an error message, nothing written
        elif "review/undo" in url:
            assert item.judgements.count() == 0  # nothing to undo: an error message, nothing written
        elif url.endswith("/keys/"):
            image_project.refresh_from_db()
            assert image_project.class_keys == {"Cat": "c"}
        elif "model/labels" in url and url.endswith("/exclude/"):
            item.refresh_from_db()
            assert item.status == "rejected" and item.rejection_reason == "excluded by alice: label check"
        elif "model/finetune" in url:
            assert not image_project.finetune_runs.exists()  # refused, said why
        elif "model/labels" in url and url.endswith("/keep/"):
            assert not item.judgements.exists()  # the item has no label to keep: said why, nothing written
        elif "/data/" in url or "duplicates/drop" in url or url.endswith("/keep/"):
            # No files sent / no duplicates here / not a dropped duplicate: said why, nothing changed.
            assert image_project.items.filter(status="rejected").count() == 0
            assert not image_project.import_jobs.exists()
        elif "auto-label" in url:
            assert item.judgements.count() == 0 and not image_project.auto_label_runs.exists()  # refused, said why
        else:
            assert image_project.memberships.get(user__username="dave").role == Role.ANNOTATOR
