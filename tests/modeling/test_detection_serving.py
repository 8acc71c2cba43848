"""Serving a detector (issue 24, D6): `/score` and `/predict` answer boxes from the real inference worker, *Try the
model* draws them over the uploaded image, and the `.lbmodel` bundle carries the detector and finds the same
boxes. A real Faster R-CNN trained for a few steps on real trees tiles."""

from __future__ import annotations

import io
import shutil

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from modeling.models import ModelVersion
from projects.models import Project
from tests.modeling.test_detection_head import TILES, TREES, tree_boxes

pytestmark = pytest.mark.django_db


@pytest.fixture
def trees(tmp_path, alice, settings):
    """A detection project with a first detector version (four steps: real weights, poor boxes, many scores)."""
    if not (TREES / "labels.csv").exists():
        pytest.skip("../shared/datasets/trees is not here")
    from interchange.box_formats import do_import_box_records, read_box_file
    from interchange.config import load_config
    from interchange.importer import do_import_config
    from modeling.tasks import train_project

    settings.LIGHTBULB_DETECTOR_ITERATIONS = 4
    settings.LIGHTBULB_TRAIN_DEBOUNCE_SECONDS = 0
    (tmp_path / "tiles").mkdir()
    for tile in TILES:
        shutil.copy(TREES / "images" / tile, tmp_path / "tiles" / tile)
    cfg = tmp_path / "trees.yml"
    cfg.write_text("task: {title: Trees}\ndataset: {directory: tiles, data_type: images}\n"
                   "label: {type: object_detection, classes: [Tree]}\nmodel: {directory: out}\nuser: alice\n")
    project = do_import_config(load_config(cfg)).project
    Project.objects.filter(pk=project.pk).update(min_train_judgements=2, test_min_judgements=2)
    project.refresh_from_db()
    labels = tmp_path / "labels.csv"
    rows = [(t, x, "TRAIN" if n < 2 else "TEST") for n, t in enumerate(TILES[:4]) for x in tree_boxes()[t]]
    labels.write_text("path,xmin,ymin,xmax,ymax,label,stage\n" + "".join(
        f"{t},{x['xmin']},{x['ymin']},{x['xmax']},{x['ymax']},Tree,{stage}\n" for t, x, stage in rows))
    do_import_box_records(project, records=read_box_file(project, labels)[0])
    assert train_project(project.pk).startswith("v1: 2 train, 2 test")
    return project


def tile_bytes(name: str = TILES[5]) -> bytes:
    return (TREES / "images" / name).read_bytes()


def local_boxes(project: Project, raw: bytes) -> list[dict]:
    """What the version finds, run here in the test process (the worker must answer the same)."""
    from modeling.ml.detection import detect, load_detector

    version = ModelVersion.objects.get(project=project)
    model, meta = load_detector(project.model_path / version.file)
    return detect(model, [raw], classes=meta["classes"])[0].boxes


def same_boxes(a: list[dict], b: list[dict]) -> bool:
    """Equal up to float noise between two processes' thread counts."""
    return len(a) == len(b) and all(
        x["label"] == y["label"] and abs(x["score"] - y["score"]) < 2e-3
        and all(abs(x[k] - y[k]) < 0.1 for k in ("xmin", "ymin", "xmax", "ymax")) for x, y in zip(a, b, strict=True))


def test_it_scores_uploaded_images_with_boxes_from_the_inference_worker(trees, scoring, alice, charlie):
    api = APIClient()
    api.force_authenticate(alice)
    url = f"/api/projects/{trees.pk}/score/"
    uploads = [SimpleUploadedFile("tile.png", tile_bytes(), content_type="image/png"),
               SimpleUploadedFile("broken.png", b"not an image", content_type="image/png")]
    answer = api.post(url, {"images": uploads, "min_score": "0"}, format="multipart")
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert data["labels"] == ["Tree"] and data["model_version"] == 1 and data["min_score"] == 0.0
    assert data["scores"] == [None, None] and data["boxes"][1] is None
    assert [e["index"] for e in data["errors"]] == [1] and data["errors"][0]["input"] == "broken.png"
    found = data["boxes"][0]
    assert found and same_boxes(found, local_boxes(trees, tile_bytes()))
    assert all(0 <= b["xmin"] < b["xmax"] <= 400 and 0 <= b["ymin"] < b["ymax"] <= 400 for b in found)

    # The default minimum is the version's own threshold (or 0.5 where TEST chose none): the boxes the
    # labelling screen would show.
    version = ModelVersion.objects.get(project=trees)
    expected = version.metrics["review"]["threshold"]
    expected = 0.5 if expected is None else expected
    plain = api.post(url, {"images": [SimpleUploadedFile("t.png", tile_bytes())]}, format="multipart").json()
    assert plain["min_score"] == pytest.approx(expected)
    assert plain["boxes"][0] == [b for b in found if b["score"] >= expected]
    high = api.post(url, {"images": [SimpleUploadedFile("t.png", tile_bytes())], "min_score": "0.2"},
                    format="multipart").json()
    assert high["boxes"][0] == [b for b in found if b["score"] >= 0.2]
    predicted = api.post(f"/api/projects/{trees.pk}/predict/", {"images": [SimpleUploadedFile("t.png", tile_bytes())],
                                                                "min_score": "0.2"}, format="multipart").json()
    assert predicted["predictions"] == high["boxes"] and predicted["confidences"] == [None]

    for bad in ("-0.1", "1.5", "many"):
        refused = api.post(url, {"images": [SimpleUploadedFile("t.png", tile_bytes())], "min_score": bad},
                           format="multipart")
        assert refused.status_code == 400 and "min_score" in refused.json()["detail"]
    text = api.post(url, {"type": "text", "texts": ["a tree"]}, format="json")
    assert text.status_code == 400 and "scores images" in text.json()["detail"]
    nothing = api.post(url, {"images": [SimpleUploadedFile("x.png", b"junk")]}, format="multipart")
    assert nothing.status_code == 422 and nothing.json()["errors"][0]["input"] == "x.png"

    # A worker with another torchvision than the version's says so (503), rather than guessing.
    ModelVersion.objects.filter(pk=version.pk).update(encoder_version="0.0.1")
    stale = api.post(url, {"images": [SimpleUploadedFile("t.png", tile_bytes())]}, format="multipart")
    assert stale.status_code == 503 and "torchvision@0.0.1" in stale.json()["detail"]

    api.force_authenticate(charlie)
    real = api.post(url, {"images": [SimpleUploadedFile("t.png", tile_bytes())]}, format="multipart")
    missing = api.post("/api/projects/999999/score/", {"images": [SimpleUploadedFile("t.png", tile_bytes())]},
                       format="multipart")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()


def test_it_draws_the_boxes_over_the_image_in_try_the_model(trees, scoring, alice, client, charlie):
    client.force_login(alice)
    assert b'id="try-model"' in client.get(f"/projects/{trees.pk}/").content
    page = client.get(f"/projects/{trees.pk}/classify/")
    assert page.status_code == 200 and b'id="classify-min-score"' in page.content
    assert b"TEST mAP@0.5" in page.content and b"js/classify.js" not in page.content
    shown = client.post(f"/projects/{trees.pk}/classify/",
                        {"images": SimpleUploadedFile("tile.png", tile_bytes(), content_type="image/png"),
                         "min_score": "0.05"})
    assert shown.status_code == 200
    [result] = shown.context["results"]
    assert (result["width"], result["height"]) == (400, 400) and result["preview"].startswith("data:image/png")
    wanted = [b for b in local_boxes(trees, tile_bytes()) if b["score"] >= 0.05]
    assert same_boxes([{k: v for k, v in b.items() if k not in ("w", "h", "tint")} for b in result["boxes"]], wanted)
    html = shown.content.decode()
    assert 'viewBox="0 0 400 400"' in html and html.count('<g class="detected') == len(wanted)
    assert f"{len(wanted)} box" in html or "Nothing found" in html
    bad = client.post(f"/projects/{trees.pk}/classify/", {"images": SimpleUploadedFile("t.png", tile_bytes()),
                                                          "min_score": "2"})
    assert bad.status_code == 400 and "min_score" in bad.content.decode()
    client.force_login(charlie)
    assert client.get(f"/projects/{trees.pk}/classify/").status_code == 404


def test_it_bundles_the_detector_to_find_the_same_boxes(trees, alice, client, charlie):
    from modeling.ml.bundle import BoxBundle, Bundle, BundleError, SpanBundle, load_bundle

    client.force_login(alice)
    assert b'id="export-model"' in client.get(f"/projects/{trees.pk}/").content
    response = client.get(f"/projects/{trees.pk}/model/export/")
    assert response.status_code == 200
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    bundle = load_bundle(io.BytesIO(raw))
    assert isinstance(bundle, BoxBundle) and bundle.classes == ["Tree"]
    version = ModelVersion.objects.get(project=trees)
    assert bundle.meta["model_version"] == 1 and bundle.meta["kind"] == "object_detection"
    assert bundle.meta["metrics"]["boxes"] == version.metrics["boxes"]
    assert bundle.meta["threshold"] == version.metrics["review"]["threshold"]
    found = bundle.predict([TREES / "images" / TILES[5]], min_score=0.0)[0]
    assert found == local_boxes(trees, tile_bytes())  # the same weights in the same process: identical
    assert bundle.predict([tile_bytes()])[0] == [b for b in found if b["score"] >= bundle.threshold]
    with pytest.raises(BundleError, match="BoxBundle.load"):
        Bundle.load(io.BytesIO(raw))
    with pytest.raises(BundleError, match="not a sequence tagging bundle"):
        SpanBundle.load(io.BytesIO(raw))
    client.force_login(charlie)
    assert client.get(f"/projects/{trees.pk}/model/export/").status_code == 404
