"""Review batches chosen by expected human time (modeling/ml/review.py), and what reviews feed back."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.ml.review import (
    PRIOR_REVIEWS,
    SECONDS_SINGLE_LABEL,
    overconfidence,
    review_seconds,
    review_thresholds,
)

CLASSES = ["cat", "dog"]


def test_it_takes_the_most_confident_items_while_the_expected_precision_holds_the_floor():
    confidence = np.array([0.99, 0.95, 0.9, 0.7, 0.5, 0.45, 0.98, 0.6])
    predicted = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    out = review_thresholds(CLASSES, predicted, confidence, floor=0.8, offsets={})
    cat = out["cat"]
    # Running means 0.99, 0.97, 0.947, 0.885, 0.808, 0.748: five items hold 80%.
    assert (cat.threshold, cat.items, cat.expected_precision) == (0.5, 5, pytest.approx(0.808, abs=1e-3))
    dog = out["dog"]  # (0.98 + 0.6) / 2 = 0.79 would fall below the floor: the 0.98 alone
    assert (dog.threshold, dog.items, dog.expected_precision) == (0.98, 1, 0.98)


def test_a_class_below_the_floor_or_without_items_has_no_batches_and_says_why():
    out = review_thresholds(CLASSES, np.array([0, 0]), np.array([0.6, 0.55]), floor=0.8, offsets={})
    assert out["cat"].threshold is None and "below the 80% floor" in out["cat"].reason
    assert out["dog"].threshold is None and out["dog"].reason == "no unlabelled item is predicted as it"


def test_a_batch_item_costs_less_than_a_single_label_whatever_its_confidence():
    # With correction in the grid the worst case is 0.3 + 2.0 s: the cost rule admits every item and the
    # floor decides (the module says so); the rule itself is what the cost model asks.
    worst = float(review_seconds(np.array([0.0]))[0])
    assert worst == pytest.approx(2.3) and worst < SECONDS_SINGLE_LABEL
    assert review_seconds(np.array([1.0]))[0] == pytest.approx(0.3)


def test_measured_overconfidence_raises_the_threshold_and_measured_underconfidence_lowers_it():
    confidence = np.linspace(0.99, 0.5, 50)
    predicted = np.zeros(50, dtype=int)
    plain = review_thresholds(CLASSES, predicted, confidence, floor=0.8, offsets={})["cat"]
    # 40 reviewed proposals the model expected 36 right of; people confirmed 28.
    gap = overconfidence(seen=40, confirmed=28, expected=36.0)
    assert gap == pytest.approx(8 / (40 + PRIOR_REVIEWS))
    stricter = review_thresholds(CLASSES, predicted, confidence, floor=0.8, offsets={"cat": gap})["cat"]
    assert stricter.threshold > plain.threshold and stricter.items < plain.items
    assert stricter.offset == pytest.approx(gap, abs=1e-4)
    # Batches that held more than expected: the class needs less confidence next time.
    laxer = review_thresholds(CLASSES, predicted, confidence, floor=0.8,
                              offsets={"cat": overconfidence(seen=40, confirmed=40, expected=34.0)})["cat"]
    assert laxer.threshold < plain.threshold and laxer.items > plain.items
    assert overconfidence(seen=0, confirmed=0, expected=0.0) == 0.0


def test_a_calibrated_model_meets_the_floor_it_is_held_to_by_repeated_simulation():
    """Items drawn with true probabilities p: batches chosen at a floor are at least that precise on average."""
    rng = np.random.default_rng(0)
    precisions = []
    for _ in range(200):
        p = rng.beta(5, 1.5, size=400)
        truth = rng.random(400) < p
        t = review_thresholds(["a"], np.zeros(400, dtype=int), p, floor=0.85, offsets={})["a"]
        chosen = p >= t.threshold
        precisions.append(truth[chosen].mean())
    assert np.mean(precisions) >= 0.85 - 0.005
    assert np.quantile(precisions, 0.1) >= 0.80  # and rarely far below it
