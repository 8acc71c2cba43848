"""Temperature scaling of a head's probabilities, fitted on the TEST stage (numpy only).

A logistic head trained on a few dozen labels is over- or under-confident; one temperature T that
divides the logits (Guo et al. 2017) fixes most of it without changing any prediction (argmax is
invariant), so the reported accuracy is untouched. T is fitted on TEST by minimising log-loss.

To report how well calibration works without scoring T on the labels it was fitted to, the TEST
items are cross-fitted: split into folds, each fold's probabilities use the T fitted on the other
folds. Those out-of-fold numbers are what the model card shows; the T kept with the version is the
one fitted on all of TEST.
"""

from __future__ import annotations

import math

import numpy as np

from .head import softmax

T_MIN, T_MAX = 0.05, 20.0
MIN_ITEMS = 10  # below this, T stays 1.0: a temperature fitted on a handful of labels is noise
FOLDS = 5
ECE_BINS = 10


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    probs = softmax(logits / temperature)
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] with the lowest log-loss (golden-section search on log T; the loss is unimodal)."""
    if len(y) < MIN_ITEMS:
        return 1.0
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(logits, y, math.exp(a)), _nll(logits, y, math.exp(b))
    for _ in range(60):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(logits, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(logits, y, math.exp(b))
    best = math.exp((lo + hi) / 2)
    # Never worse than leaving the head alone (a flat loss can leave the search anywhere).
    return best if _nll(logits, y, best) < _nll(logits, y, 1.0) else 1.0


def cross_fitted_probabilities(logits: np.ndarray, y: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Each item's probabilities under a temperature fitted without it (stratified-free K folds)."""
    n = len(y)
    if n < MIN_ITEMS:
        return softmax(logits)
    folds = np.arange(n) % min(FOLDS, n)
    np.random.default_rng(seed).shuffle(folds)
    out = np.empty_like(logits, dtype=np.float64)
    for k in np.unique(folds):
        held = folds == k
        temperature = fit_temperature(logits[~held], y[~held])
        out[held] = softmax(logits[held] / temperature)
    return out


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """Mean |confidence - accuracy| over equal-width confidence bins, weighted by bin size."""
    if len(y) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(total / len(y))


def calibrate(logits: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """(temperature for the version, report): log-loss and ECE before and after, the latter cross-fitted."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    temperature = fit_temperature(logits, y)
    raw = softmax(logits)
    held_out = cross_fitted_probabilities(logits, y)
    report = {
        "method": "temperature scaling on TEST, cross-fitted" if len(y) >= MIN_ITEMS else "none (too few TEST labels)",
        "temperature": temperature,
        "test_items": int(len(y)),
        "loss_before": _loss(raw, y),
        "loss_after": _loss(held_out, y),
        "ece_before": expected_calibration_error(raw, y),
        "ece_after": expected_calibration_error(held_out, y),
    }
    return temperature, report


def _loss(probs: np.ndarray, y: np.ndarray) -> float | None:
    if len(y) == 0:
        return None
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())
