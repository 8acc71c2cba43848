"""/score, /predict and Light Bulb's POST /score against a real inference worker process.

The worker runs the real encoders (MiniLM, MobileNetV2) on tiny data; the web side is Django's test
client with token or session auth. URLs are fetched from a real local HTTP server that the SSRF guard
lets through only because the test names its address.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from django.core.cache import cache
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from modeling.inference.client import InferenceClient
from modeling.inference.protocol import derive_key, parse_address
from modeling.ml.bundle import Bundle
from modeling.models import ModelState
from projects.models import Project, Role
from projects.services import do_add_member
from tests.conftest import png_bytes
from tests.modeling.conftest import BLUE_IMAGE, IMAGE, bundle_bytes, make_proposing_project, serving_images

pytestmark = pytest.mark.django_db

SPORTY = "The striker scored twice and the team won the final"
FOODY = "Fry the garlic in butter, then add the tomatoes and basil"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()  # throttle counters live in the cache; every test starts with a full allowance
    yield
    cache.clear()


def client_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def rows_sum_to_one(scores) -> bool:
    return all(abs(sum(row) - 1.0) < 1e-5 for row in scores if row is not None)


# --------------------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------------------


def test_it_scores_texts_in_light_bulbs_shape_and_matches_the_exported_bundle(topics, alice):
    version = ModelState.objects.get(project=topics).current_version
    texts = [SPORTY, FOODY, "Our goalkeeper saved a penalty in the last minute"]
    response = client_for(alice).post(f"/api/projects/{topics.pk}/score/", {"type": "text", "texts": texts},
                                      format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"labels", "scores", "model_version", "errors"}
    assert body["labels"] == ["sport", "food"] and body["model_version"] == version.number
    assert body["errors"] == [] and len(body["scores"]) == 3 and rows_sum_to_one(body["scores"])
    assert [body["labels"][int(np.argmax(row))] for row in body["scores"]] == ["sport", "food", "sport"]

    # The exported bundle, loaded without the server, gives the same numbers for the same batch.
    data = bundle_bytes(topics)
    local = Bundle.load(io.BytesIO(data)).predict_proba(texts)
    assert np.allclose(np.array(body["scores"]), local, atol=1e-6), np.abs(np.array(body["scores"]) - local).max()


def test_it_predicts_the_argmax_label_with_its_probability(topics, alice):
    client = client_for(alice)
    texts = [FOODY, SPORTY]
    scores = client.post(f"/api/projects/{topics.pk}/score/", {"type": "text", "texts": texts}, format="json").json()
    response = client.post(f"/api/projects/{topics.pk}/predict/", {"type": "sequence", "texts": texts}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["predictions"] == ["food", "sport"]
    assert body["confidences"] == pytest.approx([max(row) for row in scores["scores"]], abs=1e-6)
    assert body["labels"] == ["sport", "food"] and body["model_version"] == scores["model_version"]


def test_it_accepts_json_records_scored_as_the_encoder_reads_json_items(topics, alice):
    record = {"title": "Match report", "body": SPORTY}
    client = client_for(alice)
    as_json = client.post(f"/api/projects/{topics.pk}/score/", {"type": "json", "texts": [record, '{"body": "x"', 7]},
                          format="json").json()
    as_text = client.post(f"/api/projects/{topics.pk}/score/",
                          {"type": "text", "texts": [f"title: Match report\nbody: {SPORTY}"]}, format="json").json()
    assert np.allclose(as_json["scores"][0], as_text["scores"][0], atol=1e-6)
    assert as_json["scores"][1] is None and "not valid JSON" in as_json["errors"][0]["detail"]
    assert as_json["errors"][0]["index"] == 1 and as_json["scores"][2] is not None  # 7 is valid JSON


def test_light_bulbs_score_endpoint_takes_an_id_a_slug_or_nothing_for_a_single_project(topics, alice, bob, tmp_path):
    client = client_for(alice)
    body = {"type": "text", "texts": [SPORTY]}
    by_id = client.post("/score", {**body, "project": topics.pk}, format="json")
    by_slug = client.post("/score", {**body, "project": topics.slug}, format="json")
    by_nothing = client.post("/score", body, format="json")
    for response in (by_id, by_slug, by_nothing):
        assert response.status_code == 200, response.content
        assert response.json()["labels"] == ["sport", "food"]
    assert by_id.json()["scores"] == by_slug.json()["scores"] == by_nothing.json()["scores"]

    other = Project.objects.create(slug="other", title="Other", data_type="text", classes=["a", "b"],
                                   dataset_directory=str(tmp_path))
    do_add_member(other, user=alice, role=Role.OWNER)
    ambiguous = client.post("/score", body, format="json")
    assert ambiguous.status_code == 400 and "say which project" in ambiguous.json()["detail"]
    # bob sees only the first project once he joins it, so he may leave "project" out.
    do_add_member(topics, user=bob, role=Role.VIEWER)
    assert client_for(bob).post("/score/", body, format="json").status_code == 200


@pytest.mark.parametrize("url", ["/score", "/api/projects/{pk}/score/", "/api/projects/{pk}/predict/"])
def test_anonymous_callers_get_401_and_outsiders_404(topics, charlie, bob, url):
    body = {"type": "text", "texts": [SPORTY], "project": topics.slug}
    path = url.format(pk=topics.pk)
    anonymous = APIClient().post(path, body, format="json")
    assert anonymous.status_code == 401 and "detail" in anonymous.json()
    outsider = client_for(charlie).post(path, body, format="json")
    assert outsider.status_code == 404 and "detail" in outsider.json()
    do_add_member(topics, user=bob, role=Role.VIEWER)  # scoring is reading: viewers may
    assert client_for(bob).post(path, body, format="json").status_code == 200


def test_an_outsider_cannot_learn_a_slug_or_an_id_exists(topics, charlie):
    client = client_for(charlie)
    for project in (topics.slug, topics.pk, "no-such-project", 999999):
        response = client.post("/score", {"type": "text", "texts": ["x"], "project": project}, format="json")
        assert response.status_code == 404 and response.json() == {"detail": "No such project"}


def test_malformed_requests_get_json_4xx_and_score_nothing(topics, alice, settings):
    client = client_for(alice)
    url = f"/api/projects/{topics.pk}/score/"
    cases = [
        ({"type": "images", "urls": ["http://example.com/x.png"]}, 400, "scores text"),
        ({"type": "text", "texts": "not a list"}, 400, '"texts" must be a list'),
        ({"type": "text", "texts": []}, 400, "nothing to score"),
        ({"type": "text", "texts": [{"a": 1}]}, 400, "must be a string"),
        ({"type": "text", "texts": ["x"] * 65}, 413, "at most 64"),
    ]
    for body, code, words in cases:
        response = client.post(url, body, format="json")
        assert response.status_code == code, (body, response.content)
        assert words in response.json()["detail"]
    broken = client.post(url, b"{not json", content_type="application/json")
    assert broken.status_code == 400 and "JSON parse error" in broken.json()["detail"]
    settings.LIGHTBULB_SCORE_MAX_TEXT_CHARS = 20
    long_text = client.post(url, {"type": "text", "texts": ["x" * 21, SPORTY[:20]]}, format="json").json()
    assert long_text["scores"][0] is None and "longer than 20 characters" in long_text["errors"][0]["detail"]
    settings.LIGHTBULB_SCORE_MAX_REQUEST_BYTES = 100
    too_big = client.post(url, {"type": "text", "texts": ["y" * 200]}, format="json")
    assert too_big.status_code == 413 and "exceeds the 100-byte limit" in too_big.json()["detail"]


def test_it_says_409_before_a_model_exists_and_503_when_the_worker_is_down(tmp_path, alice, settings, scoring):
    fresh = Project.objects.create(slug="fresh", title="Fresh", data_type="text", classes=["a", "b"],
                                   dataset_directory=str(tmp_path))
    do_add_member(fresh, user=alice, role=Role.OWNER)
    client = client_for(alice)
    body = {"type": "text", "texts": [SPORTY]}
    no_model = client.post(f"/api/projects/{fresh.pk}/score/", body, format="json")
    assert no_model.status_code == 409 and "no trained model yet" in no_model.json()["detail"]

    trained, _ = make_proposing_project(tmp_path / "t", alice, settings, n=40, test=10, train=10)
    settings.LIGHTBULB_INFERENCE_ADDRESS = "127.0.0.1:9"  # nothing listens there
    down = client.post(f"/api/projects/{trained.pk}/score/", body, format="json")
    assert down.status_code == 503 and "not reachable" in down.json()["detail"]


def test_requests_are_throttled_per_token(topics, alice, bob, settings):
    settings.LIGHTBULB_SCORE_RATE = "2/min"
    do_add_member(topics, user=bob, role=Role.VIEWER)
    body = {"type": "text", "texts": [SPORTY]}
    url = f"/api/projects/{topics.pk}/score/"
    alices = client_for(alice)
    assert [alices.post(url, body, format="json").status_code for _ in range(2)] == [200, 200]
    third = alices.post(url, body, format="json")
    assert third.status_code == 429 and "throttled" in third.json()["detail"] and third["Retry-After"]
    assert client_for(bob).post(url, body, format="json").status_code == 200  # bob's allowance is his own


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def bomb_png() -> bytes:
    """8,000 x 8,000 pixels in a few kilobytes: 64 million pixels, over the 50 million default."""
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_it_scores_uploaded_images_and_reports_each_bad_file(colours, alice, settings):
    version = ModelState.objects.get(project=colours).current_version
    red, blue = png_bytes((210, 30, 30), seed=99), png_bytes((30, 40, 210), seed=98)
    files = [("red.png", red), ("blue.png", blue), ("corrupt.png", red[: len(red) // 2]), ("bomb.png", bomb_png()),
             ("notes.txt", b"hello")]
    from django.core.files.uploadedfile import SimpleUploadedFile

    uploads = [SimpleUploadedFile(name, data, content_type="image/png") for name, data in files]
    response = client_for(alice).post(f"/api/projects/{colours.pk}/score/", {"images": uploads}, format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["labels"] == ["red", "blue"] and body["model_version"] == version.number
    assert [row is None for row in body["scores"]] == [False, False, True, True, True]
    assert body["scores"][0][0] > 0.5 and body["scores"][1][1] > 0.5 and rows_sum_to_one(body["scores"])
    errors = {e["index"]: e for e in body["errors"]}
    assert errors[2]["input"] == "corrupt.png" and "corrupt" in errors[2]["detail"]
    assert "64,000,000 pixels exceeds the 50,000,000 limit" in errors[3]["detail"]
    assert "not a recognisable image" in errors[4]["detail"]

    # The bundle gives the server's numbers for the same images.
    data = bundle_bytes(colours)
    local = Bundle.load(io.BytesIO(data)).predict_proba([red, blue])
    assert np.allclose(np.array(body["scores"][:2]), local, atol=1e-6), (
        np.abs(np.array(body["scores"][:2]) - local).max()
    )

    settings.LIGHTBULB_FETCH_MAX_BYTES = 200
    small = client_for(alice).post(f"/api/projects/{colours.pk}/score/",
                                   {"images": [SimpleUploadedFile("red.png", red)]}, format="multipart")
    assert small.status_code == 422 and "larger than 200 bytes" in small.json()["errors"][0]["detail"]


def test_image_urls_are_fetched_safely_with_an_error_per_refused_url(colours, alice):
    with serving_images() as server:
        urls = [
            f"{server}/cat.png",  # red, from the allowed test server
            f"{server}/blue.png",
            "http://127.0.0.1/cat.png",
            "http://10.0.0.8/cat.png",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/cat.png",
            f"{server}/to-loopback",  # a redirect into loopback
            "http://localhost/cat.png",  # a name resolving to loopback
            "file:///etc/passwd",
            f"{server}/corrupt.png",
            f"{server}/missing.png",
        ]
        response = client_for(alice).post(f"/api/projects/{colours.pk}/score/", {"type": "images", "urls": urls},
                                          format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scores"][0][0] > 0.5 and body["scores"][1][1] > 0.5
    assert all(row is None for row in body["scores"][2:])
    errors = {e["index"]: e["detail"] for e in body["errors"]}
    assert sorted(errors) == list(range(2, 11))
    for i in range(2, 8):
        assert "non-public address" in errors[i] and "refused" in errors[i], (urls[i], errors[i])
    assert "only http and https" in errors[8]
    assert "corrupt image" in errors[9] and errors[10] == "HTTP 404"
    assert body["errors"][0]["input"] == "http://127.0.0.1/cat.png"


def test_a_batch_where_every_input_fails_is_a_422_with_the_reasons(colours, alice):
    response = client_for(alice).post(
        f"/api/projects/{colours.pk}/score/", {"type": "images", "urls": ["http://127.0.0.1/x.png"]}, format="json"
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"index": 0, "input": "http://127.0.0.1/x.png", "detail": "127.0.0.1 is a non-public address: refused"}
    ]


def test_an_image_project_refuses_texts_and_a_text_project_refuses_uploads(colours, topics, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_for(alice)
    texts = client.post(f"/api/projects/{colours.pk}/score/", {"type": "text", "texts": ["x"]}, format="json")
    assert texts.status_code == 400 and "scores images" in texts.json()["detail"]
    upload = client.post(f"/api/projects/{topics.pk}/score/", {"images": [SimpleUploadedFile("a.png", IMAGE)]},
                         format="multipart")
    assert upload.status_code == 400 and "not uploaded images" in upload.json()["detail"]


# --------------------------------------------------------------------------------------------------
# The worker itself
# --------------------------------------------------------------------------------------------------


def test_the_worker_batches_concurrent_requests_and_refuses_a_wrong_key(colours, scoring):
    from modeling.inference.protocol import InferenceFailed

    version = ModelState.objects.get(project=colours).current_version
    head = colours.model_path / version.file
    address = parse_address(scoring.LIGHTBULB_INFERENCE_ADDRESS)
    client = InferenceClient(address, key=derive_key(scoring.LIGHTBULB_INFERENCE_SECRET), timeout=120)
    before = client.status()
    barrier, results = threading.Barrier(8), []

    def one(i: int) -> None:
        barrier.wait()
        image = IMAGE if i % 2 == 0 else BLUE_IMAGE
        results.append(client.score(encoder=version.encoder, encoder_version=version.encoder_version,
                                    head_path=head, inputs=[image]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = client.status()
    assert len(results) == 8 and all(len(r.scores) == 1 and r.scores[0] is not None for r in results)
    assert after["requests"] - before["requests"] == 8
    # Eight single-image requests arrived together: fewer encoder runs than requests.
    assert after["batches"] - before["batches"] < 8 and max(r.batch_inputs for r in results) > 1

    wrong = InferenceClient(address, key=derive_key("another secret"), timeout=10)
    with pytest.raises(InferenceFailed, match="wrong key"):
        wrong.status()
