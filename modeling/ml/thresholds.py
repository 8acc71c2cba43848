"""Per-class confidence thresholds with a precision guarantee (numpy only).

Light Bulb proposed labels above a point estimate of precision, read off the wrong class's curve. Here a
class gets a threshold only when the TEST stage (uniformly random items, never trained on) shows, with
95% confidence, that proposals above it are at least `target` precise:

- Evidence for class c: the TEST items the model predicts as c, sorted by confidence, most confident
  first. Proposing above the m-th of them is backed by k of those m being truly c; the one-sided
  Clopper-Pearson lower bound on precision must reach the target (equivalently, the exact binomial
  test of "precision < target" rejects at level alpha).
- Choosing the threshold by looking at many m would overstate the evidence (the best of many noisy
  looks). The looks are made a *fixed sequence*: m grows one confidence level at a time from a start
  fixed before any label is read, and stops at the first m that fails; this keeps the chance of
  proposing with precision below target at alpha (Angelopoulos et al., "Learn then Test", 2021).
- One early mistake ends a sequence that starts at the smallest possible m (59 items at 0.95). When the
  class has enough TEST items (decided from their count, before any label is read), alpha is split
  between two sequences (Bonferroni): one starting at the smallest m that can pass with no mistake, one
  at the smallest m that can pass with three; the larger m that passes wins. Measured on synthetic
  scores (as in tests/modeling/test_thresholds.py): with 400-1000 TEST items this proposes 30-40%
  more items than one sequence; with 150 it would propose fewer, hence one sequence there.
- No class gets a threshold until the model's TEST accuracy beats chance by Light Bulb's margin
  (accuracy >= 1.35 / number of classes).

With the project's `all_proposals` guarantee the same test runs once over every TEST item (sorted by
the confidence of its predicted class; evidence = the prediction was right), and every class proposes
above that one threshold: the proposals as a whole are `target` precise with 95% confidence, after
59 TEST items in all instead of 59 predicted as each class. It promises nothing about one class's
share, which is why it is a setting and not the default.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from projects.models import ProposalGuarantee

ALPHA = 0.05
CHANCE_MARGIN = 1.35
# Mistakes tolerated at the start of each fixed sequence (alpha is split evenly between them).
SEQUENCE_STARTS = (0, 3)


@dataclass
class ClassThreshold:
    label: str
    threshold: float | None  # propose c for items predicted c with confidence >= this; None = not yet
    evidence: int  # TEST items predicted c at or above the threshold (or the most there could be)
    correct: int  # of which truly c
    lower_bound: float | None  # one-sided 95% lower bound on precision above the threshold
    predicted: int  # TEST items predicted c at all
    needed: int  # the fewest TEST items predicted c that could ever give a threshold at this target
    reason: str  # why there is no threshold, or "" when there is one
    # "each_class", or "all_proposals": the threshold is shared and proven on every TEST item together;
    # then `lower_bound` is None and `pooled` holds the shared {"evidence", "correct", "lower_bound"}.
    guarantee: str = ProposalGuarantee.EACH_CLASS
    pooled: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _log_binomial_sf(k: int, n: int, p: float, log_fact: np.ndarray) -> float:
    """log P(X >= k) for X ~ Binomial(n, p), summed in log space (exact, stable for n in the thousands)."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return 0.0
    i = np.arange(k, n + 1)
    terms = log_fact[n] - log_fact[i] - log_fact[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = terms.max()
    return float(top + math.log(np.exp(terms - top).sum()))


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])


def passes(k: int, n: int, target: float, alpha: float, log_fact: np.ndarray | None = None) -> bool:
    """Exact one-sided binomial test: k of n correct rejects "precision < target" at level alpha."""
    if n == 0:
        return False
    log_fact = _log_factorials(n) if log_fact is None else log_fact
    return _log_binomial_sf(k, n, target, log_fact) <= math.log(alpha)


def clopper_pearson_lower(k: int, n: int, alpha: float = ALPHA) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a proportion: the p with P(X >= k | p) = alpha."""
    if n == 0 or k == 0:
        return 0.0
    if k == n:
        return alpha ** (1.0 / n)
    log_fact = _log_factorials(n)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _log_binomial_sf(k, n, mid, log_fact) > math.log(alpha):
            hi = mid
        else:
            lo = mid
    return lo


def minimum_evidence(target: float, alpha: float, mistakes: int = 0) -> int:
    """The fewest items that can pass the test with this many mistakes among them."""
    n = mistakes + 1
    log_fact = _log_factorials(n)
    while not passes(n - mistakes, n, target, alpha, log_fact):
        n += 1
        if n > 1_000_000:
            raise ValueError("target precision too close to 1")
        log_fact = _log_factorials(n) if n >= len(log_fact) else log_fact
    return n


def beats_chance(accuracy: float | None, n_classes: int) -> bool:
    return accuracy is not None and n_classes > 0 and accuracy >= CHANCE_MARGIN / n_classes


def class_threshold(
    label: str, confidence: np.ndarray, correct: np.ndarray, *, target: float, alpha: float = ALPHA,
    which: str | None = None,
) -> ClassThreshold:
    """The lowest confidence threshold whose proposals are proven `target` precise, or why there is none.

    `confidence` and `correct` describe the TEST items predicted as `label` (any order); `which` names
    them in reasons (default "predicted LABEL").
    """
    which = f"predicted {label}" if which is None else which
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")
    conf = np.asarray(confidence, dtype=np.float64)[order]
    hits = np.asarray(correct, dtype=bool)[order]
    total = len(conf)
    cumulative = np.cumsum(hits)
    # Which sequences to run depends only on how many TEST items are predicted c, never on their labels.
    starts: tuple[int, ...] = SEQUENCE_STARTS
    if total < minimum_evidence(target, alpha / len(SEQUENCE_STARTS), max(SEQUENCE_STARTS)):
        starts = (0,)
    share = alpha / len(starts)
    needed = minimum_evidence(target, alpha, 0)
    # Prefixes that end at a change of confidence: a threshold at conf[m-1] takes in exactly m items.
    boundaries = [m for m in range(1, total + 1) if m == total or conf[m] < conf[m - 1]]
    log_fact = _log_factorials(max(total, 1))

    best_m = 0
    for mistakes in starts:
        start = minimum_evidence(target, share, mistakes)
        for m in boundaries:
            if m < start:
                continue
            if not passes(int(cumulative[m - 1]), m, target, share, log_fact):
                break  # fixed sequence: the first failure ends this sequence
            best_m = max(best_m, m)

    if best_m:
        k = int(cumulative[best_m - 1])
        return ClassThreshold(
            label=label, threshold=float(conf[best_m - 1]), evidence=best_m, correct=k,
            lower_bound=clopper_pearson_lower(k, best_m, share), predicted=total, needed=needed, reason="",
        )
    if total < needed:
        reason = f"needs {needed} TEST items {which} (has {total})"
    else:
        m = min(total, needed)
        reason = (
            f"the {m} most confident TEST items {which} are not precise enough "
            f"({int(cumulative[m - 1])} correct)"
        )
    return ClassThreshold(
        label=label, threshold=None, evidence=min(total, needed),
        correct=int(cumulative[min(total, needed) - 1]) if total else 0,
        lower_bound=None, predicted=total, needed=needed, reason=reason,
    )


def choose_thresholds(
    classes: list[str], probs: np.ndarray, y_true: np.ndarray, *, target: float, alpha: float = ALPHA,
    guarantee: str = ProposalGuarantee.EACH_CLASS,
) -> tuple[dict[str, ClassThreshold], str]:
    """Thresholds for every class from TEST probabilities, and a project-wide reason when there are none."""
    if guarantee not in ProposalGuarantee.values:
        raise ValueError(f"unknown proposal guarantee {guarantee!r}")
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    accuracy = float((predicted == y_true).mean()) if len(y_true) else None
    out = {}
    if guarantee == ProposalGuarantee.EACH_CLASS:
        for index, label in enumerate(classes):
            mask = predicted == index
            out[label] = class_threshold(label, confidence[mask], y_true[mask] == index, target=target, alpha=alpha)
    else:
        shared = class_threshold("", confidence, predicted == y_true, target=target, alpha=alpha, which="in all")
        pooled = {"evidence": shared.evidence, "correct": shared.correct, "lower_bound": shared.lower_bound}
        for index, label in enumerate(classes):
            mask = predicted == index
            # What this class contributes above the shared threshold (shown, not tested on its own).
            above = mask & (confidence >= shared.threshold) if shared.threshold is not None else np.zeros_like(mask)
            out[label] = ClassThreshold(
                label=label, threshold=shared.threshold, evidence=int(above.sum()),
                correct=int((y_true[above] == index).sum()), lower_bound=None, predicted=int(mask.sum()),
                needed=shared.needed, reason=shared.reason, guarantee=ProposalGuarantee.ALL_PROPOSALS, pooled=pooled,
            )
    if not beats_chance(accuracy, len(classes)):
        needed = CHANCE_MARGIN / max(len(classes), 1)
        shown = "–" if accuracy is None else f"{accuracy:.0%}"
        reason = f"TEST accuracy {shown} does not beat chance by Light Bulb's margin (needs {needed:.0%})"
        for value in out.values():
            value.threshold, value.lower_bound, value.reason = None, None, reason
            if value.pooled:
                value.pooled = {**value.pooled, "lower_bound": None}
        return out, reason
    return out, ""
