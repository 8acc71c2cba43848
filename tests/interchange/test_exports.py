"""Exports from the page and the API (interchange.exports): the CLI's formats, streamed, filtered by source
and stage, for reviewers and owners; bad requests answer with what is wrong and export nothing."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from rest_framework.test import APIClient

from labeling.models import JudgementSource, Stage
from labeling.services import do_record_judgement, do_undo_last_judgement
from projects.models import Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(image_project, alice, bob, django_user_model):
    rita = django_user_model.objects.create_user("rita", password="x")
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=rita, role=Role.REVIEWER)
    items = list(image_project.items.order_by("id"))
    do_record_judgement(image_project, item=items[0], user=bob, label="Cat", time_taken=1.5)
    do_record_judgement(image_project, item=items[1], user=bob, label="Not Cat")
    do_record_judgement(image_project, item=items[2], user=bob, label="Cat")
    do_undo_last_judgement(image_project, user=bob)  # items[2]: undone, only in the history
    do_record_judgement(image_project, item=items[1], user=rita, label="Cat", role=Role.REVIEWER, reason="whiskers")
    return {"project": image_project, "items": items, "rita": rita}


def body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)  # streamed, never built in memory
    return b"".join(response.streaming_content).decode()


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_it_exports_current_labels_as_light_bulb_csv(labelled):
    project, items = labelled["project"], labelled["items"]
    response = api_for(labelled["rita"]).get(f"/api/projects/{project.pk}/export/")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith(f'attachment; filename="{project.slug}-labels-')
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert [(r["path"], r["label"], r["labelled_by"], r["source"]) for r in rows] == [
        (items[0].key, "Cat", "bob", JudgementSource.HUMAN),
        (items[1].key, "Cat", "rita", JudgementSource.ADJUDICATED),
    ]
    assert rows[0]["time_taken"] == "1.5"


def test_the_history_in_jsonl_carries_every_row_and_its_provenance(labelled):
    project, items = labelled["project"], labelled["items"]
    response = api_for(labelled["rita"]).get(f"/api/projects/{project.pk}/export/?as=jsonl&history=1")
    assert response["Content-Type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in body(response).splitlines()]
    assert len(rows) == 4
    undone = next(r for r in rows if r["path"] == items[2].key)
    assert undone["undone_at"] and not undone["is_current"]
    decided = next(r for r in rows if r["source"] == JudgementSource.ADJUDICATED)
    assert decided["reason"] == "whiskers" and decided["content_hash"] == items[1].content_hash


def test_it_filters_by_stage_and_source(labelled):
    project = labelled["project"]
    client = api_for(labelled["rita"])
    human = list(csv.DictReader(io.StringIO(body(client.get(f"/api/projects/{project.pk}/export/?source=human")))))
    assert [r["labelled_by"] for r in human] == ["bob"]
    stages = {r["stage"] for r in csv.DictReader(io.StringIO(body(client.get(
        f"/api/projects/{project.pk}/export/?stage=TEST&stage=TRAIN"))))}
    assert stages <= {Stage.TEST, Stage.TRAIN}
    assert body(client.get(f"/api/projects/{project.pk}/export/?stage=AUTO")).splitlines() == [
        "path,label,labelled_by,stage,time_taken,source"]  # no auto-labels here: the header alone


def test_bad_requests_say_what_is_wrong(labelled):
    project = labelled["project"]
    client = api_for(labelled["rita"])
    for query, words in (("as=xlsx", "unknown export format 'xlsx'"), ("source=robot", "unknown source 'robot'"),
                         ("stage=DEV", "unknown stage 'DEV'")):
        response = client.get(f"/api/projects/{project.pk}/export/?{query}")
        assert response.status_code == 400 and words in response.json()["detail"], query
    page = Client()
    page.force_login(labelled["rita"])
    shown = page.get(f"/projects/{project.pk}/export/?as=xlsx", follow=True)
    assert "Unknown export format" in shown.content.decode()


def test_the_page_offers_the_formats_and_downloads_the_same_file(labelled):
    project = labelled["project"]
    page = Client()
    page.force_login(labelled["rita"])
    html = page.get(f"/projects/{project.pk}/export/").content.decode()
    assert 'name="as" value="jsonl"' in html and 'name="stage" value="TEST"' in html
    assert 'id="export-link"' in page.get(f"/projects/{project.pk}/").content.decode()
    api = body(api_for(labelled["rita"]).get(f"/api/projects/{project.pk}/export/?as=jsonl"))
    downloaded = body(page.get(f"/projects/{project.pk}/export/?as=jsonl"))
    assert [json.loads(x)["judgement_id"] for x in downloaded.splitlines()] == [
        json.loads(x)["judgement_id"] for x in api.splitlines()]


def test_annotators_and_outsiders_cannot_export(labelled, bob, charlie):
    project = labelled["project"]
    assert api_for(bob).get(f"/api/projects/{project.pk}/export/").status_code == 403
    assert api_for(charlie).get(f"/api/projects/{project.pk}/export/").status_code == 404
    assert api_for(charlie).get("/api/projects/987654/export/").status_code == 404
    annotator = Client()
    annotator.force_login(bob)
    assert 'id="export-link"' not in annotator.get(f"/projects/{project.pk}/").content.decode()
