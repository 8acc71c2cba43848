"""`simulate` for sequence tagging: its cost model and snapping, and a small real run on WNUT-16 tweets through the
real queue, services and NER training (bench/sequence.py)."""

from __future__ import annotations

import json

import pytest

from bench.sequence import SequenceSimulation, hand_seconds, review_seconds, snap
from modeling.ml.ner import edits
from tests.conftest import SHARED, write_config

WNUT = SHARED / "datasets" / "wnut16_ner" / "labels.jsonl"


def span(start, end, label="person"):
    return {"start": start, "end": end, "label": label}


def test_edits_count_a_wrong_span_over_a_missing_one_as_one_fix():
    gold = [span(0, 5), span(10, 15, "geo-loc")]
    assert edits(gold, gold) == 0
    assert edits([], gold) == 2  # two added
    assert edits([span(0, 5), span(20, 25)], gold) == 2  # one removed, one added
    assert edits([span(0, 5), span(10, 12, "geo-loc")], gold) == 1  # a wrong boundary is one fix
    assert edits([span(0, 5), span(10, 15, "company")], gold) == 1  # so is a wrong type
    assert hand_seconds(gold) == 2.5 + 2 * 2.0 and review_seconds(gold, gold) == 1.0
    assert review_seconds([], gold) == 1.0 + 2 * 2.0


def test_snap_widens_to_the_tokens_and_drops_what_would_overlap():
    tokens = [[0, 4], [5, 9], [10, 14]]
    spans, widened, dropped = snap("abcd efgh ijkl", [span(1, 4), span(6, 12), span(11, 14, "geo-loc")], tokens)
    assert spans == [span(0, 4), span(5, 14)] and (widened, dropped) == (2, 1)


@pytest.mark.django_db
def test_a_small_real_run_learns_and_costs_the_pool(tmp_path, settings):
    if not WNUT.exists():
        pytest.skip("../shared/datasets/wnut16_ner is not here")
    settings.LIGHTBULB_NER_EPOCHS = 2
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False  # the simulation trains at its checkpoints
    oracle = tmp_path / "labels.jsonl"
    oracle.write_text("".join(line + "\n" for line in WNUT.read_text(encoding="utf-8").splitlines()[:80]),
                      encoding="utf-8")
    (tmp_path / "data").mkdir()
    config = write_config(tmp_path / "ner.yml", "task: {title: NER}\ndataset: {directory: data, data_type: text}\n"
                          "label: {type: sequence, classes: [person, geo-loc, company, other]}\n"
                          "model: {directory: out}\nuser: bench\n")
    result = SequenceSimulation(config=config, oracle=oracle, strategy="active", seed=0, holdout=0.25,
                                checkpoints=[30], reference=True, label_all=True, work=tmp_path).run()
    assert (result.pool, result.holdout) == (60, 20)
    assert [p["labels"] for p in result.curve] == [30] and result.curve[0]["version"] == 1
    assert result.curve[0]["train"] + result.curve[0]["test"] == 30
    la = result.label_all
    assert la["texts"] == 60 and la["reviewed"] + la["by_hand"] == 60 and la["reviewed"] > 0
    assert 0 < la["seconds_per_text"] and la["hand_seconds_per_text"] >= 2.5
    assert result.reference["labels"] == 60 and 0.0 <= result.reference["f1"] <= 1.0
    json.dumps(result.__dict__)  # what the bench writes
