"""`bench_features` on a tiny generated dataset laid out like ../shared/datasets/election_tweets."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import bench.feature_study as feature_study
from tests.modeling.conftest import topic_rows


def write_tweets(root: Path, n: int = 64) -> Path:
    folder = root / "election_tweets"
    folder.mkdir(parents=True)
    rows = topic_rows(n, seed=5)
    with open(folder / "tweets.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("id", "text"), *((i, t) for i, t, _ in rows)])
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("id", "label"), *((i, label) for i, _, label in rows)])
    return root


def test_it_compares_feature_sets_and_the_cross_validated_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_study, "CACHE", tmp_path / "cache")
    root = write_tweets(tmp_path / "datasets")
    out = tmp_path / "out"
    log = io.StringIO()
    call_command("bench_features", "--datasets", str(root), "--dataset", "election_tweets",
                 "--sets", "text_ngrams,text_ngrams|minilm_l6", "--out", str(out), stdout=log)
    results = json.loads((out / "election_tweets.json").read_text())
    assert set(results) == {"text_ngrams", "text_ngrams|minilm_l6"}
    plain = results["text_ngrams"]
    # 64 items, a 13-item holdout: 20 random labels, then the margin queue 10 at a time while it can.
    assert [p["labels"] for p in plain["runs"][0]] == [20, 30, 40, 50]
    assert len(plain["runs"]) == 3 and 0.5 <= plain["all_labels"] <= 1.0
    assert plain["mean_30_200"] == pytest.approx(sum(plain["curve"][k] for k in ("30", "40", "50")) / 3, abs=1e-4)
    chosen = [p["feature_set"] for run in results["text_ngrams|minilm_l6"]["runs"] for p in run]
    assert set(chosen) <= {"text_ngrams", "minilm_l6"} and chosen[0] == "text_ngrams"  # the first until 40
    assert "election_tweets text_ngrams: mean over 30-200 labels" in log.getvalue()
    assert (tmp_path / "cache" / "election_tweets-text_ngrams.npy").exists()  # the features are kept

    # The product's cold start for the 10 TRAIN items before the first model: a result of its own.
    call_command("bench_features", "--datasets", str(root), "--dataset", "election_tweets", "--sets", "text_ngrams",
                 "--cold-start", "typiclust", "--out", str(out), stdout=io.StringIO())
    both = json.loads((out / "election_tweets.json").read_text())
    assert "text_ngrams (typiclust start)" in both and "text_ngrams" in both  # added beside, nothing lost
    assert [p["labels"] for p in both["text_ngrams (typiclust start)"]["runs"][0]] == [20, 30, 40, 50]

    with pytest.raises(CommandError, match="unknown encoder 'resnet' in 'resnet'"):
        call_command("bench_features", "--datasets", str(root), "--dataset", "election_tweets", "--sets", "resnet")
