"""Span judgements for sequence tagging: checked against the text, its tokens and the project's types."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from labeling.errors import InvalidValue
from labeling.models import Judgement
from labeling.services import do_record_judgement, do_undo_last_judgement, next_items
from projects.models import Item, ItemStatus, Project, Role
from projects.services import do_add_member
from tests.conftest import write_config

pytestmark = pytest.mark.django_db

TWEETS = [
    "Heading to New York with Alice tomorrow",
    "Nothing to see here",
    "Apple opens a store in Paris",
]


def make_sequence_project(
    root, *, owner: str = "alice", texts=TWEETS, tokenize: bool = True, title: str = "Tweets NER"
):
    """A sequence project imported from a real config and JSONL, tokenized by the real spaCy task."""
    from interchange.config import load_config
    from interchange.importer import do_import_config
    from modeling.tasks import tokenize_project

    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "tweets.jsonl").write_text(
        "".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8"
    )
    cfg = write_config(
        root / ("ner.yml" if title == "Tweets NER" else f"{title.lower().replace(' ', '-')}.yml"),  # its slug
        f"task: {{title: {title}}}\ndataset: {{directory: data, data_type: text}}\n"
        f"label: {{type: sequence, classes: [person, geo-loc, company]}}\nmodel: {{directory: out}}\nuser: {owner}\n",
    )
    project = do_import_config(load_config(cfg)).project
    if tokenize:
        tokenize_project(project.pk)
    return project


@pytest.fixture
def ner(tmp_path, alice):
    return make_sequence_project(tmp_path)


def item(project, key: str) -> Item:
    return Item.objects.get(project=project, key=key)


def span(text: str, part: str, label: str) -> dict:
    start = text.index(part)
    return {"start": start, "end": start + len(part), "label": label}


def test_it_tokenizes_with_the_pipelines_own_tokenizer(ner):
    first = item(ner, "t0")
    first.refresh_from_db()
    words = [first.text[a:b] for a, b in first.tokens]
    assert words == ["Heading", "to", "New", "York", "with", "Alice", "tomorrow"]


def test_it_records_spans_sorted_with_a_summary(ner, alice):
    first = item(ner, "t0")
    spans = [span(first.text, "Alice", "person"), span(first.text, "New York", "geo-loc")]
    judgement = do_record_judgement(ner, item=first, user=alice, value={"spans": spans})
    judgement.refresh_from_db()
    assert judgement.label == "2 spans"
    assert judgement.value == {"spans": [spans[1], spans[0]]}
    first.refresh_from_db()
    assert first.status == ItemStatus.LABELLED


def test_it_records_an_empty_answer_as_none(ner, alice):
    judgement = do_record_judgement(ner, item=item(ner, "t1"), user=alice, value={"spans": []})
    judgement.refresh_from_db()
    assert judgement.label == "none" and judgement.value == {"spans": []}


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        ([{"start": 11, "end": 19, "label": "geo-loc"}, {"start": 15, "end": 19, "label": "geo-loc"}], "overlap"),
        ([{"start": 35, "end": 99, "label": "person"}], "outside the text"),
        ([{"start": 5, "end": 5, "label": "person"}], "outside the text"),
        ([{"start": 12, "end": 19, "label": "geo-loc"}], "token boundaries"),
        ([{"start": 25, "end": 30, "label": "city"}], "'city' is not an entity type"),
        ([{"start": "a", "end": 30, "label": "person"}], "whole character offsets"),
        ([{"start": True, "end": 30, "label": "person"}], "whole character offsets"),
        ("New York", "must be a list"),
        (["x"], "must be an object"),
    ],
)
def test_it_refuses_bad_spans_with_a_clear_error_and_keeps_nothing(ner, alice, spans, message):
    with pytest.raises(InvalidValue, match=message):
        do_record_judgement(ner, item=item(ner, "t0"), user=alice, value={"spans": spans})
    assert not Judgement.objects.filter(project=ner).exists()
    assert item(ner, "t0").status == ItemStatus.UNLABELLED


def test_it_refuses_a_class_for_a_sequence_project_and_spans_for_classification(ner, alice, image_project):
    with pytest.raises(InvalidValue, match="is a value"):
        do_record_judgement(ner, item=item(ner, "t0"), user=alice, label="person")
    with pytest.raises(InvalidValue, match="is a class"):
        do_record_judgement(image_project, item=image_project.items.first(), user=alice, label="Cat",
                            value={"spans": []})


def test_it_offers_a_text_only_once_it_is_tokenized(tmp_path, alice):
    from modeling.tasks import tokenize_project

    project = make_sequence_project(tmp_path, tokenize=False)
    assert next_items(project, user=alice, count=5) == []
    tokenize_project(project.pk)
    leased = next_items(project, user=alice, count=5)
    assert sorted(li.item.key for li in leased) == ["t0", "t1", "t2"]


def test_it_tokenizes_only_what_lacks_tokens(ner):
    from modeling.tasks import tokenize_project

    assert tokenize_project(ner.pk) == "tokenized 0 texts"


def test_it_labels_once_even_when_the_project_asks_for_overlap(ner, alice, bob):
    from projects.models import Project

    do_add_member(ner, user=bob, role=Role.ANNOTATOR)
    Project.objects.filter(pk=ner.pk).update(overlap_share=1.0, overlap_k=2)
    ner.refresh_from_db()
    leased = next_items(ner, user=alice, count=3)
    assert leased and all(li.item.labels_wanted == 1 for li in leased)


@pytest.fixture
def api(ner, bob):
    do_add_member(ner, user=bob, role=Role.ANNOTATOR)
    client = APIClient()
    client.force_authenticate(bob)
    return client


def test_it_takes_spans_through_the_api_and_returns_them(api, ner):
    base = f"/api/projects/{ner.pk}"
    leased = api.get(f"{base}/items/next/?count=3").json()
    first = next(i for i in leased if i["path"] == "t0")
    assert first["text"] == TWEETS[0] and [first["text"][a:b] for a, b in first["tokens"]][2:4] == ["New", "York"]
    spans = [span(TWEETS[0], "New York", "geo-loc")]
    created = api.post(f"{base}/judgements/", {"item": first["id"], "spans": spans, "time_taken": 2.0}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["value"] == {"spans": spans} and created.json()["label"] == "1 span"
    listed = api.get(f"{base}/judgements/?item={first['id']}").json()["results"]
    assert listed[0]["value"] == {"spans": spans}

    undone = api.post(f"{base}/judgements/undo/").json()
    assert undone["id"] == first["id"] and undone["answer"] == {"spans": spans}
    assert Judgement.objects.get(pk=created.json()["id"]).undone_at is not None


def test_it_answers_bad_spans_with_json_400(api, ner):
    base = f"/api/projects/{ner.pk}"
    target = item(ner, "t2")
    bad = api.post(f"{base}/judgements/", {"item": target.pk, "spans": [{"start": 0, "end": 3, "label": "company"}]},
                   format="json")
    assert bad.status_code == 400 and "token boundaries" in bad.json()["detail"]
    missing = api.post(f"{base}/judgements/", {"item": target.pk, "label": "company"}, format="json")
    assert missing.status_code == 400 and "is a value" in missing.json()["detail"]
    target.refresh_from_db()
    assert target.status == ItemStatus.UNLABELLED and not Judgement.objects.filter(item=target).exists()


def test_outsiders_get_the_same_404_for_span_judgements(ner, charlie):
    client = APIClient()
    client.force_authenticate(charlie)
    target = item(ner, "t0")
    body = {"item": target.pk, "spans": [span(TWEETS[0], "Alice", "person")]}
    real = client.post(f"/api/projects/{ner.pk}/judgements/", body, format="json")
    missing = client.post("/api/projects/999999/judgements/", body, format="json")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()
    assert not Judgement.objects.filter(item=target).exists()


def test_undo_gives_the_spans_back_to_the_service_caller(ner, alice):
    first = item(ner, "t0")
    next_items(ner, user=alice, count=3)
    do_record_judgement(ner, item=first, user=alice, value={"spans": [span(first.text, "Alice", "person")]},
                        role=Role.OWNER)
    back = do_undo_last_judgement(ner, user=alice)
    back.refresh_from_db()
    assert back.pk == first.pk and back.status == ItemStatus.UNLABELLED


def test_it_serves_the_span_screen_with_x_kept_for_removing(ner, alice, client):
    client.force_login(alice)
    page = client.get(f"/projects/{ner.pk}/label/")
    assert page.status_code == 200
    config = page.context["config"]
    assert config["screen"] == "spans" and b"js/spans.js" in page.content
    keys = {c["label"]: c["keys"] for c in config["classes"]}
    assert keys == {"person": ["1", "p"], "geo-loc": ["2", "g"], "company": ["3", "c"]}
    assert "x" not in config["commands"].values() and config["commands"] == {"skip": "s", "undo": "u"}
    assert b"labeling is not available" not in page.content


def test_it_keeps_x_for_removing_even_when_a_type_starts_with_it(tmp_path, alice, client):
    project = make_sequence_project(tmp_path, tokenize=False)
    project.classes = ["xenon", "sodium", "krypton"]
    project.save(update_fields=["classes"])
    client.force_login(alice)
    config = client.get(f"/projects/{project.pk}/label/").context["config"]
    keys = {c["label"]: c["keys"] for c in config["classes"]}
    assert keys["xenon"] == ["1"] and "x" not in config["commands"].values()
    assert config["commands"]["skip"] == "q"  # s (sodium) and k (krypton) are types' keys; x is the screen's


def test_the_project_page_counts_spans_per_type(ner, alice, client):
    first, third = item(ner, "t0"), item(ner, "t2")
    do_record_judgement(ner, item=first, user=alice, role=Role.OWNER, value={"spans": [
        span(first.text, "New York", "geo-loc"), span(first.text, "Alice", "person")]})
    do_record_judgement(ner, item=third, user=alice, role=Role.OWNER, value={"spans": [
        span(third.text, "Paris", "geo-loc"), span(third.text, "Apple", "company")]})
    client.force_login(alice)
    page = client.get(f"/projects/{ner.pk}/")
    assert page.context["counts"]["per_class"] == [("person", 1), ("geo-loc", 2), ("company", 1)]
    assert b"Entity types" in page.content and b'id="start-labeling"' in page.content
    assert b"picks the texts it is least sure of" in page.content and b'id="try-model"' not in page.content


def test_it_creates_sequence_projects_for_text_and_refuses_images_or_no_types(alice, settings):
    client = APIClient()
    settings.LIGHTBULB_ANYONE_CREATES_PROJECTS = True
    client.force_authenticate(alice)
    made = client.post("/api/projects/", {"title": "NER", "data_type": "text", "label_type": "sequence",
                                          "classes": "person"}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["label_type"] == "sequence" and made.json()["classes"] == ["person"]
    images = client.post("/api/projects/", {"title": "N2", "data_type": "images", "label_type": "sequence",
                                            "classes": "person"}, format="json")
    assert images.status_code == 400 and "spans of text" in images.json()["detail"]
    empty = client.post("/api/projects/", {"title": "N3", "data_type": "json", "label_type": "sequence",
                                           "classes": ""}, format="json")
    assert empty.status_code == 400 and "at least one entity type" in empty.json()["detail"]
    assert list(Project.objects.values_list("title", flat=True)) == ["NER"]
