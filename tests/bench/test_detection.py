"""`simulate` for object detection: the oracle reader, the `simulate` command's dispatch, and a small real run on
trees tiles through the real queue, services, detector training and ranking (bench/detection.py)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bench.detection import DetectionOracleError, DetectionSimulation, read_oracle
from bench.management.commands.bench_detection import summary
from tests.conftest import SHARED, write_config

TREES = SHARED / "datasets" / "trees"


def test_it_reads_boxes_by_image_name_and_refuses_a_wrong_header(tmp_path):
    oracle = tmp_path / "labels.csv"
    oracle.write_text("path,xmin,ymin,xmax,ymax,label\nimages/a.png,1,2,30,40,Tree\nimages/a.png,5,5,9,9,Bush\n"
                      "b.png,0,0,10,10,Tree\n", encoding="utf-8")
    assert read_oracle(oracle, classes=["Tree"]) == {
        "a.png": [{"xmin": 1.0, "ymin": 2.0, "xmax": 30.0, "ymax": 40.0, "label": "Tree"}],
        "b.png": [{"xmin": 0.0, "ymin": 0.0, "xmax": 10.0, "ymax": 10.0, "label": "Tree"}],
    }
    oracle.write_text("path,label\na.png,Tree\n", encoding="utf-8")
    with pytest.raises(DetectionOracleError, match="header must be path,xmin,ymin,xmax,ymax,label"):
        read_oracle(oracle, classes=["Tree"])
    oracle.write_text("path,xmin,ymin,xmax,ymax,label\na.png,1,2,three,4,Tree\n", encoding="utf-8")
    with pytest.raises(DetectionOracleError, match="line 2: coordinates must be numbers"):
        read_oracle(oracle, classes=["Tree"])


def _trees_subset(tmp_path, n: int):
    if not (TREES / "labels.csv").exists():
        pytest.skip("../shared/datasets/trees is not here")
    names = sorted(p.name for p in (TREES / "images").glob("*.png"))[:n]
    (tmp_path / "images").mkdir()
    for name in names:
        shutil.copyfile(TREES / "images" / name, tmp_path / "images" / name)
    with open(TREES / "labels.csv", newline="", encoding="utf-8") as src, \
            open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as dst:
        rows = [r for r in csv.DictReader(src) if r["path"].split("/")[-1] in names]
        writer = csv.DictWriter(dst, fieldnames=["path", "xmin", "ymin", "xmax", "ymax", "label"])
        writer.writeheader()
        writer.writerows(rows)
    config = write_config(tmp_path / "trees.yml", "task: {title: Trees}\n"
                          "dataset: {directory: images, data_type: images}\n"
                          "label: {type: object_detection, classes: [Tree]}\nmodel: {directory: out}\nuser: bench\n")
    return config, tmp_path / "labels.csv", len(rows)


@pytest.mark.django_db
def test_it_boxes_the_pool_trains_at_checkpoints_and_costs_every_image(tmp_path, settings):
    settings.LIGHTBULB_DETECTOR_ITERATIONS = 4
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False  # the simulation trains at its checkpoints
    config, oracle, boxes = _trees_subset(tmp_path, 8)
    work = tmp_path / "work"
    work.mkdir()
    result = DetectionSimulation(config=config, oracle=oracle, strategy="active", seed=0, holdout=0.25,
                                 checkpoints=[4], label_all=True, work=work).run()
    assert (result.pool, result.holdout) == (6, 2) and result.pool_boxes + result.holdout_boxes == boxes
    assert [p["labels"] for p in result.curve] == [4, 6] and [p["version"] for p in result.curve] == [1, 2]
    # The product's split under the owner's minimums (2 TEST first, then TEST at 0.15 of TRAIN).
    assert [(p["train"], p["test"]) for p in result.curve] == [(2, 2), (4, 2)]
    assert all(p["map50"] is not None and 0.0 <= p["map50"] <= 1.0 for p in result.curve)
    la = result.label_all
    assert la["images"] == 6 and la["reviewed"] + la["by_hand"] == 6 and la["boxes"] == result.pool_boxes
    # Every true box is accepted, adjusted or drawn; the seconds are the cost model's sum of what was done.
    assert la["accepted"] + la["adjusted"] + la["drawn"] == la["boxes"]
    assert la["seconds"] == pytest.approx(6 * 1.0 + 1.0 * la["accepted"] + 3.0 * la["adjusted"]
                                          + 1.0 * la["removed"] + 7.0 * la["drawn"], abs=0.1)
    assert la["hand_seconds"] == pytest.approx(6 * 1.0 + 7.0 * la["boxes"])
    from labeling.models import Judgement

    saved = Judgement.objects.filter(item__project__slug__endswith="active-0")
    assert saved.count() == 6 and sum(len(j.value["boxes"]) for j in saved) == result.pool_boxes
    text = summary([json.loads(json.dumps(result.__dict__))], [4, 6])
    assert "| 4 | " in text and "Labelling the whole pool, active order (6 tiles" in text


@pytest.mark.django_db
def test_it_reports_a_bad_oracle_through_the_simulate_command(tmp_path, capfd):
    config, oracle, _ = _trees_subset(tmp_path, 2)
    oracle.write_text("path,xmin,ymin,xmax,ymax,label\nimages/not-there.png,1,1,5,5,Tree\n", encoding="utf-8")
    with pytest.raises(CommandError, match="the simulation failed"):
        call_command("simulate", config=str(config), oracle=str(oracle), out=str(tmp_path / "r.json"),
                     no_progress=True)
    assert "the oracle names images that are not in" in capfd.readouterr().err
    assert not (tmp_path / "r.json").exists()
