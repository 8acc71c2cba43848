"""Finding a team's own labelling mistakes: out-of-fold probabilities, top losses and confident learning.

Every human label (TRAIN and TEST alike) is scored by a head fitted without it: the labelled items are dealt
into folds, and each fold is predicted by the product's head (`training.fit_logistic` on the project's
standardised features, the current version's L2 strength) fitted on the others. A model never judges a
label it learnt from.

- **Top losses** (fastbook's `plot_top_losses`): the labels the out-of-fold model finds least likely,
  -log p(given label), largest first.
- **Label-error candidates**: confident learning (Northcutt, Jiang and Chuang, "Confident Learning:
  Estimating Uncertainty in Dataset Labels", JAIR 2021), written here from the paper: a per-class
  threshold t_j (the mean out-of-fold probability of class j over the items labelled j); an item labelled i
  is counted as confidently j when p_j >= t_j (the likeliest such j); the counts (the confident joint),
  calibrated to the label counts, estimate how many items of label i are really j; of the items labelled i,
  that many with the largest margin p_j - p_i are candidates ("prune by noise rate"), except items whose
  likeliest class is their label. Candidates are ranked by self-confidence, p(given label), lowest first.

numpy only, apart from the head fits (torch, through `training`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .head import softmax

FOLDS = 5


def out_of_fold_probs(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float, seed: int = 0) -> np.ndarray:
    """Probabilities for each labelled row from a head fitted on the other folds (stratified, FOLDS folds;
    fewer when a class has fewer items). `x` is standardised. A fold whose training part lacks a class
    still predicts every class (that class just gets little probability)."""
    from .training import fit_logistic

    n = len(y)
    probs = np.full((n, n_classes), 1.0 / n_classes, dtype=np.float64)
    if n < 2:
        return probs
    rng = np.random.default_rng(seed)
    folds = np.empty(n, dtype=np.int64)
    k = min(FOLDS, max(2, n // 2))
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        folds[idx] = (np.arange(len(idx)) + rng.integers(k)) % k
    for fold in range(k):
        held = folds == fold
        kept = ~held
        if not held.any() or len(np.unique(y[kept])) < 2:
            continue
        w, b = fit_logistic(x[kept], y[kept], n_classes, l2=l2, max_iter=100)
        probs[held] = softmax(x[held] @ w.T + b)
    return probs


@dataclass(frozen=True)
class Finding:
    row: int  # index into the arrays given
    given: int
    suggested: int  # the out-of-fold model's likeliest class
    p_given: float
    p_suggested: float
    loss: float  # -log p(given)


def top_losses(probs: np.ndarray, y: np.ndarray, *, limit: int) -> list[Finding]:
    """The `limit` labels with the highest out-of-fold loss, highest first."""
    p_given = probs[np.arange(len(y)), y]
    loss = -np.log(np.clip(p_given, 1e-12, 1.0))
    order = np.argsort(-loss, kind="stable")[:limit]
    best = probs.argmax(axis=1)
    return [Finding(row=int(r), given=int(y[r]), suggested=int(best[r]), p_given=float(p_given[r]),
                    p_suggested=float(probs[r, best[r]]), loss=float(loss[r])) for r in order]


def per_class_thresholds(probs: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """t_j: the mean probability of class j over the items labelled j (inf for a class with no labels, so
    nothing is ever confidently counted as it)."""
    out = np.full(n_classes, np.inf)
    for j in range(n_classes):
        mask = y == j
        if mask.any():
            out[j] = float(probs[mask, j].mean())
    return out


def confident_joint(probs: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, confident class per row or -1): C[i][j] counts items labelled i confidently in class j."""
    t = per_class_thresholds(probs, y, n_classes)
    above = probs >= t[None, :] - 1e-12
    masked = np.where(above, probs, -np.inf)
    confident = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    has = confident >= 0
    np.add.at(joint, (y[has], confident[has]), 1)
    return joint, confident


def calibrate_joint(joint: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Scale each row of the confident joint to the number of items with that label (the paper's
    calibration), so the off-diagonal cells estimate counts of wrong labels."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    rows = joint.sum(axis=1).astype(np.float64)
    scaled = np.zeros_like(joint, dtype=np.float64)
    nonzero = rows > 0
    scaled[nonzero] = joint[nonzero] / rows[nonzero, None] * counts[nonzero, None]
    return scaled


def label_error_candidates(probs: np.ndarray, y: np.ndarray, n_classes: int) -> list[Finding]:
    """Confident learning's label issues (prune by noise rate), ranked by p(given label), lowest first."""
    n = len(y)
    if n == 0:
        return []
    joint, _ = confident_joint(probs, y, n_classes)
    estimate = calibrate_joint(joint, y, n_classes)
    flagged = np.zeros(n, dtype=bool)
    for i in range(n_classes):
        rows = np.flatnonzero(y == i)
        if not len(rows):
            continue
        for j in range(n_classes):
            if i == j:
                continue
            count = int(round(estimate[i, j]))
            if count <= 0:
                continue
            # Of the items labelled i, those with the most evidence for j over i.
            margin = probs[rows, j] - probs[rows, i]
            flagged[rows[np.argsort(-margin, kind="stable")[:count]]] = True
    best = probs.argmax(axis=1)
    flagged &= best != y  # the model agrees with the label: not an issue, whatever the counts say
    p_given = probs[np.arange(n), y]
    order = [int(r) for r in np.flatnonzero(flagged)[np.argsort(p_given[flagged], kind="stable")]]
    return [Finding(row=r, given=int(y[r]), suggested=int(best[r]), p_given=float(p_given[r]),
                    p_suggested=float(probs[r, best[r]]), loss=float(-np.log(max(p_given[r], 1e-12))))
            for r in order]
