"""What a person's time goes on in detection (issue 24's cost model): the edits from proposed boxes to the true
ones, the proposal threshold chosen on TEST, an image's uncertainty for the queue, and the review rule."""

from __future__ import annotations

import pytest

from modeling.ml.detection import (
    Detection,
    ReviewCost,
    choose_threshold,
    goes_to_review,
    hand_seconds,
    image_confidence,
    review_bins,
    review_cost,
    review_is_cheaper,
    shown,
)


def b(x1, y1, x2, y2, label="Tree", score=None) -> dict:
    out = {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2, "label": label}
    if score is not None:
        out["score"] = score
    return out


def test_it_counts_each_proposed_box_as_accepted_adjusted_or_removed_and_each_missed_one_as_drawn():
    gold = [b(0, 0, 10, 10), b(20, 20, 30, 30), b(40, 40, 50, 50), b(60, 60, 70, 70, "Bush")]
    proposals = [
        b(0, 0, 10, 10, score=0.9),  # right as it stands
        b(20, 20, 30, 36, score=0.8),  # IoU 100/160 = 0.62: close, not close enough to keep
        b(60, 60, 70, 70, score=0.7),  # the right place, the wrong class: retyped
        b(100, 100, 110, 110, score=0.6),  # nothing there
    ]
    cost = review_cost(proposals, gold)
    assert (cost.accepted, cost.adjusted, cost.removed, cost.drawn) == (1, 2, 1, 1)
    assert cost.seconds == pytest.approx(1.0 + 1.0 + 2 * 3.0 + 1.0 + 7.0) and not cost.clean
    assert hand_seconds(gold) == 1.0 + 4 * 7.0
    assert review_cost([], gold).seconds == hand_seconds(gold)  # nothing proposed: boxing by hand
    perfect = review_cost([b(0, 0, 10, 10, score=0.5)], [b(0.5, 0, 10, 10)])
    assert perfect.clean and perfect.seconds == 2.0
    assert ReviewCost().clean and review_cost([], []).seconds == 1.0  # "no objects here", seen and saved


def test_one_proposal_is_matched_to_one_true_box_the_closest_pair_first():
    gold = [b(0, 0, 10, 10), b(2, 0, 12, 10)]
    cost = review_cost([b(2, 0, 12, 10, score=0.9)], gold)  # overlaps both; exactly the second
    assert (cost.accepted, cost.adjusted, cost.drawn) == (1, 0, 1)


def test_it_chooses_the_threshold_that_saves_the_most_time_on_test_or_none():
    gold = [[b(0, 0, 10, 10), b(20, 20, 30, 30)], [b(0, 0, 10, 10)]]
    found = [Detection([b(0, 0, 10, 10, score=0.9), b(20, 20, 30, 30, score=0.8), b(50, 50, 60, 60, score=0.3)]),
             Detection([b(0, 0, 10, 10, score=0.85), b(30, 30, 40, 40, score=0.2)])]
    choice = choose_threshold(found, gold)
    # At 0.8 every right box is kept and no wrong one: 3 s + 2 s against (1 + 14) + (1 + 7) by hand.
    assert choice["threshold"] == 0.8 and choice["review_seconds"] == 5.0 and choice["hand_seconds"] == 23.0
    assert shown(found[0].boxes, 0.8) == found[0].boxes[:2] and shown(found[0].boxes, None) == []
    useless = [Detection([b(70, 70, 80, 80, score=0.9)]), Detection([b(80, 80, 90, 90, score=0.7)])]
    assert choose_threshold(useless, gold)["threshold"] is None  # removing every box costs more than nothing shown


def test_an_images_uncertainty_is_its_least_confident_decision():
    assert image_confidence([]) == (1.0, 0.0)
    assert image_confidence([b(0, 0, 1, 1, score=0.02)]) == (1.0, 0.0)  # under the floor: a sure "nothing here"
    confidence, entropy = image_confidence([b(0, 0, 1, 1, score=0.95), b(0, 0, 1, 1, score=0.5)])
    assert confidence == 0.5 and 0.5 < entropy < 1.0
    assert image_confidence([b(0, 0, 1, 1, score=0.9), b(0, 0, 1, 1, score=0.2)])[0] == pytest.approx(0.8)


def test_confident_images_go_to_review_only_where_tests_images_held_up_at_the_floor():
    gold = [[b(0, 0, 10, 10)] for _ in range(20)]
    # Ten confident images all right, ten unsure ones all missing their box.
    found = ([Detection([b(0, 0, 10, 10, score=0.95)]) for _ in range(10)]
             + [Detection([b(40, 40, 50, 50, score=0.55)]) for _ in range(10)])
    bins = review_bins(found, gold, threshold=0.9)
    assert [x["images"] for x in bins] == [10, 10] and bins[0]["high"] == 0.55 and bins[1]["low"] == 0.95
    assert bins[1]["clean"] == 10 and bins[1]["clean_share"] == pytest.approx(11 / 12)
    assert bins[0]["mean_review_seconds"] == bins[0]["mean_hand_seconds"] == 8.0  # nothing shown at 0.55
    assert goes_to_review(bins, 0.97, floor=0.8) and review_is_cheaper(bins, 0.97)
    assert not goes_to_review(bins, 0.97, floor=0.95)  # 11/12 is under a 95% floor
    assert not goes_to_review(bins, 0.55, floor=0.0) and not review_is_cheaper(bins, 0.55)
    assert review_bins([], [], threshold=None) == [] and not goes_to_review([], 0.9, floor=0.0)
