"""The object detection head: average precision as COCO and VOC define it, anchors fitted to the boxes, and the
real Faster R-CNN trained for a few steps on real aerial tiles, through the worker's task into a model version
the project page and the API show."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict

import pytest
from rest_framework.test import APIClient

from labeling.models import Judgement, Stage
from modeling.ml.detection import Detection, average_precision, fit_anchors, score_detections
from modeling.models import ModelState, ModelVersion
from projects.models import Project
from tests.conftest import SHARED

TREES = SHARED / "datasets" / "trees"


def b(x1, y1, x2, y2, label="Tree", score=None) -> dict:
    out = {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2, "label": label}
    if score is not None:
        out["score"] = score
    return out


def test_it_scores_a_perfect_detector_one_and_a_blind_one_zero():
    gold = [[b(0, 0, 10, 10), b(20, 20, 30, 30)], [b(5, 5, 15, 15, "Bush")]]
    perfect = [Detection([b(0, 0, 10, 10, score=0.9), b(20, 20, 30, 30, score=0.8)]),
               Detection([b(5, 5, 15, 15, "Bush", score=0.7)])]
    scored = score_detections(gold, perfect, classes=["Tree", "Bush"])
    assert scored["overall"]["map50"] == pytest.approx(1.0) and scored["overall"]["map50_95"] == pytest.approx(1.0)
    assert scored["per_class"]["Tree"]["support"] == 2 and scored["per_class"]["Bush"]["predicted"] == 1
    blind = score_detections(gold, [Detection([b(50, 50, 60, 60, score=0.9)]), Detection()], classes=["Tree", "Bush"])
    assert blind["overall"]["map50"] == 0.0


def test_its_average_precision_follows_the_precision_envelope():
    # Ranked: hit, miss, hit with 3 to find -> recall 1/3 at precision 1, 2/3 at precision 2/3.
    assert average_precision([True, False, True], [0.9, 0.8, 0.7], 3) == pytest.approx(1 / 3 + (1 / 3) * (2 / 3))
    assert average_precision([], [], 2) == 0.0
    assert average_precision([False], [0.5], 0) is None


def test_a_box_shifted_half_its_width_counts_at_no_iou_threshold():
    gold = [[b(0, 0, 10, 10)]]
    shifted = [Detection([b(5, 0, 15, 10, score=0.9)])]  # IoU 1/3
    assert score_detections(gold, shifted, classes=["Tree"])["overall"]["map50"] == 0.0
    close = [Detection([b(1, 0, 11, 10, score=0.9)])]  # IoU 9/11: a hit at 0.5 … 0.8, not at 0.85 … 0.95
    scored = score_detections(gold, close, classes=["Tree"])["overall"]
    assert scored["map50"] == 1.0 and scored["map50_95"] == pytest.approx(0.7)


def test_it_fits_anchors_to_the_boxes_sizes_and_shapes():
    boxes = [b(0, 0, s, 2 * s) for s in range(10, 70)]  # tall boxes, sqrt(w*h) from 14 to 98
    sizes, ratios = fit_anchors(boxes)
    flat = [s for level in sizes[:3] for s in level]
    assert flat == sorted(flat) and 14 < flat[0] < 20 and 90 < flat[-1] < 99
    assert sizes[3] == tuple(round(2 * s, 1) for s in sizes[2])  # the pool level: twice the largest
    assert ratios == (2.0, 2.0, 2.0)
    assert fit_anchors([])[1] == (0.5, 1.0, 2.0)  # too few boxes: sizes and shapes of typical objects


def tree_boxes() -> dict[str, list[dict]]:
    by_tile: dict[str, list[dict]] = defaultdict(list)
    with open(TREES / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            by_tile[row["path"].split("/")[-1]].append(
                b(int(row["xmin"]), int(row["ymin"]), int(row["xmax"]), int(row["ymax"])))
    return by_tile


TILES = ["s0_00_01.png", "s0_01_01.png", "s0_02_01.png", "s0_03_01.png", "s0_04_03.png", "s0_05_04.png"]


def test_it_trains_a_detector_on_real_tiles_and_loads_it_back(tmp_path):
    from modeling.ml.detection import detect, load_detector, train_detector

    boxes = tree_boxes()
    examples = [(TREES / "images" / t, boxes[t]) for t in TILES]
    out = tmp_path / "v1.detector.pt"
    steps: list[int] = []
    result = train_detector(classes=["Tree"], train=examples[:4], test=examples[4:], out_path=out, iterations=10,
                            seconds=300, on_step=steps.append)
    assert result.iterations == 10 and steps == [10] and out.is_file()
    assert result.metrics["kind"] == "object_detection" and result.metrics["network_size"] == 400
    overall = result.metrics["boxes"]["overall"]
    assert overall["support"] == len(boxes[TILES[4]]) + len(boxes[TILES[5]]) and overall["images"] == 2
    assert 0.0 <= result.map50 <= 1.0 and result.map50 == overall["map50"]
    model, meta = load_detector(out)
    assert meta["classes"] == ["Tree"] and meta["size"] == 400
    [found] = detect(model, [examples[4][0]], classes=["Tree"])
    assert all(0 <= d["xmin"] < d["xmax"] <= 400 and 0 <= d["ymin"] < d["ymax"] <= 400 and d["label"] == "Tree"
               for d in found.boxes)
    assert [d["score"] for d in found.boxes] == sorted((d["score"] for d in found.boxes), reverse=True)


@pytest.mark.django_db
def test_the_worker_trains_a_version_the_project_page_and_api_show(tmp_path, alice, settings, client):
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
    Project.objects.filter(pk=project.pk).update(min_train_judgements=3, test_min_judgements=2)
    project.refresh_from_db()

    labels = tmp_path / "labels.csv"
    rows = [(t, box) for t in TILES[:3] for box in tree_boxes()[t]]
    labels.write_text("path,xmin,ymin,xmax,ymax,label,stage\n" + "".join(
        f"{t},{x['xmin']},{x['ymin']},{x['xmax']},{x['ymax']},Tree,TRAIN\n" for t, x in rows))
    do_import_box_records(project, records=read_box_file(project, labels)[0])
    assert train_project(project.pk) == "needs 2 more TEST image(s)"
    state = ModelState.objects.get(project=project)
    assert state.waiting_for == "needs 2 more TEST image(s)" and state.current_version is None

    more = tmp_path / "more.csv"
    more.write_text("path,xmin,ymin,xmax,ymax,label,stage\n" + "".join(
        f"{t},{x['xmin']},{x['ymin']},{x['xmax']},{x['ymax']},Tree,TEST\n" for t in TILES[4:] for x in tree_boxes()[t]))
    do_import_box_records(project, records=read_box_file(project, more)[0])
    assert Judgement.objects.filter(project=project, stage=Stage.TEST).count() == 2
    message = train_project(project.pk)
    assert message.startswith("v1: 3 train, 2 test, mAP@0.5 "), message
    version = ModelVersion.objects.get(project=project)
    assert version.metrics["kind"] == "object_detection" and version.metrics["iterations"] == 4
    assert (project.model_path / version.file).is_file() and version.encoder.startswith("torchvision:")
    state.refresh_from_db()
    assert state.current_version == version and state.waiting_for == ""
    assert train_project(project.pk) == "up to date"

    # The version ranked the one unlabelled tile for the queue: its uncertainty, and what it proposes by the
    # threshold TEST chose (the cost model) and whether it goes to review (the rule at the project's floor).
    from modeling.ml.detection import goes_to_review, review_is_cheaper
    from modeling.models import ItemPrediction
    from modeling.tasks import rank_project

    review = version.metrics["review"]
    assert review["images"] == 2 and len(review["bins"]) == 1 and review["bins"][0]["images"] == 2
    assert state.ranked_version == 1
    [prediction] = ItemPrediction.objects.filter(project=project)
    assert prediction.item.key == TILES[3] and prediction.version == 1
    assert prediction.uncertainty == pytest.approx(1 - prediction.confidence)
    threshold = review["threshold"]
    assert all(p["score"] >= threshold for p in prediction.value["boxes"]) if threshold is not None else (
        prediction.value["boxes"] == [])
    assert prediction.value["review"] == (threshold is not None and goes_to_review(
        review["bins"], prediction.confidence, floor=project.review_precision_floor))
    assert prediction.value["prefill"] == (threshold is not None and review_is_cheaper(review["bins"],
                                                                                        prediction.confidence))
    assert rank_project(project.pk) == "ranked 1 images with v1"

    client.force_login(alice)
    page = client.get(f"/projects/{project.pk}/")
    assert page.status_code == 200 and b'id="box-model-card"' in page.content and b'id="per-class-ap"' in page.content
    assert page.context["box_card"]["overall"]["map50"] == version.metrics["boxes"]["overall"]["map50"]
    assert b'id="box-proposals"' in page.content
    assert page.context["box_card"]["review"]["proposed_images"] == int(prediction.value["prefill"])
    api = APIClient()
    api.force_authenticate(alice)
    model = api.get(f"/api/projects/{project.pk}/model/").json()
    assert model["current_version"]["boxes"]["overall"]["support"] == sum(len(tree_boxes()[t]) for t in TILES[4:])
    assert model["encoder"]["name"] == "torchvision:fasterrcnn_mobilenet_v2_fpn"
