"""Which unlabelled items go into review batches: chosen by expected human time, kept above a precision floor.

A review batch is checked by a person tile by tile, so it needs no statistical guarantee (that is for
labels nobody checks, `thresholds.py`); it needs to save time and not flood reviewers with mistakes.
With an item's calibrated probability p of being its predicted class (the head's temperature is
cross-fitted on TEST):

- reviewing it in a batch costs `0.3 + (1 - p) * 2.0` seconds (seen, plus a correction in the grid
  when wrong) against 2.5 s for labelling it alone; it goes to a batch only when that is cheaper.
  With correction in the grid the rule admits every p above -0.1, so in practice the floor decides;
  it stays the first rule because a costlier fix (an untick and a later single label, 3.5 s) would
  make it bite at p < 0.37.
- the class's batches must be expected to be at least `floor` precise: items are taken most confident
  first while the mean p of those taken stays at or above the floor. Batches are drawn at random
  within the class, so that mean is what a reviewer meets in each batch.
- what reviews measure feeds back: each class's confidences are lowered by its measured
  overconfidence (expected minus confirmed, over the proposals people reviewed, shrunk towards zero
  by `PRIOR_REVIEWS` pseudo-reviews), so a class whose batches held fewer right items than predicted
  needs more confidence next time, and one that held more needs less.

Numpy only: the propose task calls it with the current version's predictions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SECONDS_SINGLE_LABEL = 2.5
SECONDS_SEEN_IN_BATCH = 0.3
SECONDS_TO_CORRECT = 2.0
# Reviews of a class count against this many imaginary reviews with no gap before the offset moves:
# one unlucky batch of 20 shifts it by half its gap, five batches by most of it.
PRIOR_REVIEWS = 20


@dataclass
class ReviewThreshold:
    label: str
    threshold: float | None  # batches hold items predicted `label` with calibrated confidence >= this
    expected_precision: float | None  # mean adjusted confidence of the unlabelled items above it
    items: int  # unlabelled items above it
    offset: float  # measured overconfidence subtracted from the class's confidences
    reason: str  # why there is no threshold, or ""

    def as_dict(self) -> dict:
        return asdict(self)


def review_seconds(p: np.ndarray) -> np.ndarray:
    """Expected seconds to review items of probability p in a batch (seen, corrected when wrong)."""
    return SECONDS_SEEN_IN_BATCH + (1.0 - p) * SECONDS_TO_CORRECT


def overconfidence(*, seen: int, confirmed: int, expected: float) -> float:
    """How much more the model expected people to confirm than they did, per proposal (shrunk)."""
    if seen <= 0:
        return 0.0
    return (expected - confirmed) / (seen + PRIOR_REVIEWS)


def review_thresholds(
    classes: list[str], predicted: np.ndarray, confidence: np.ndarray, *, floor: float, offsets: dict[str, float]
) -> dict[str, ReviewThreshold]:
    """Per class, the confidence from which its unlabelled items go to review batches.

    `predicted` holds each unlabelled item's predicted class index, `confidence` its calibrated
    probability; `offsets` each class's measured overconfidence (see `overconfidence`).
    """
    out: dict[str, ReviewThreshold] = {}
    for index, label in enumerate(classes):
        offset = float(offsets.get(label, 0.0))
        raw = np.sort(np.asarray(confidence, dtype=np.float64)[np.asarray(predicted) == index])[::-1]
        if raw.size == 0:
            out[label] = ReviewThreshold(label, None, None, 0, offset, "no unlabelled item is predicted as it")
            continue
        adjusted = np.clip(raw - offset, 0.0, 1.0)
        worth = review_seconds(adjusted) < SECONDS_SINGLE_LABEL
        mean = np.cumsum(adjusted) / np.arange(1, adjusted.size + 1)
        # Most confident first, the running mean only falls: take the longest run that holds the floor.
        taken = int(np.count_nonzero((mean >= floor) & np.cumprod(worth).astype(bool)))
        if taken == 0:
            out[label] = ReviewThreshold(
                label, None, None, 0, offset,
                f"its most confident item is expected {adjusted[0]:.0%} right, below the {floor:.0%} floor",
            )
            continue
        out[label] = ReviewThreshold(
            label, float(raw[taken - 1]), round(float(mean[taken - 1]), 4), taken, round(offset, 4), ""
        )
    return out
