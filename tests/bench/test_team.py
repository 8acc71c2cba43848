"""`manage.py simulate --annotators N`: a team of fallible simulated annotators on the real queue, with
overlap and a reviewer deciding disagreements (bench/team.py)."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from bench.team import true_kappa
from tests.bench.test_simulate import simulate, write_dataset

pytestmark = pytest.mark.django_db


def test_true_kappa_matches_a_hand_computed_value():
    # Two classes at 50/50, E = 0.1: po = 0.81 + 0.01 = 0.82, pe = 0.5, kappa = 0.32 / 0.5 = 0.64.
    assert true_kappa({"a": 0.5, "b": 0.5}, error=0.1) == pytest.approx(0.64)
    # Three classes 0.5/0.3/0.2, E = 0.2: q = (0.45, 0.31, 0.24), pe = 0.3562, po = 0.64 + 0.04 / 2 = 0.66.
    assert true_kappa({"a": 0.5, "b": 0.3, "c": 0.2}, error=0.2) == pytest.approx((0.66 - 0.3562) / (1 - 0.3562))
    assert true_kappa({"a": 0.5, "b": 0.5}, error=0.0) == pytest.approx(1.0)


def test_a_team_run_overlaps_test_items_and_adjudication_fixes_disagreements(tmp_path):
    config, oracle = write_dataset(tmp_path / "data", n=40)
    result = simulate(config, oracle, tmp_path / "team.json", "--annotators", "3", "--annotator-error", "0.3",
                      "--overlap-share", "1", "--overlap-k", "2", "--budget", "200", "--seed", "4")
    assert result["annotators"] == 3 and result["overlap_k"] == 2
    assert result["items_labelled"] == 40 and result["partial_left"] == 0  # every round finished
    assert result["test_items"] > 0 and result["test_overlapped"] == result["test_items"]
    assert result["overlap_items"] == 40  # share 1: every item labelled by two people
    assert result["labels"] == 80
    assert result["disputes_decided"] > 0  # at E = 0.3 two people disagree on about 42% of items
    # A perfect reviewer decides the disagreements: only items both got wrong stay wrong.
    assert result["test_accuracy_final"] >= result["test_accuracy_single"]
    assert result["alpha"]["items"] == 40 and result["alpha"]["low"] <= result["alpha"]["value"]
    assert {(p["a"], p["b"]) for p in result["pairs"]} <= {
        ("annotator-1", "annotator-2"), ("annotator-1", "annotator-3"), ("annotator-2", "annotator-3")}


def test_team_options_are_checked(tmp_path):
    config, oracle = write_dataset(tmp_path / "data", n=10)
    with pytest.raises(CommandError, match="single-annotator"):
        simulate(config, oracle, tmp_path / "x.json", "--annotators", "3", "--label-all")
    with pytest.raises(CommandError, match="exit 2"):
        simulate(config, oracle, tmp_path / "y.json", "--annotators", "2", "--overlap-k", "3")
