"""Fit a head on cached embeddings (torch) and measure it on the TEST stage (numpy).

Multinomial logistic regression, fitted full-batch with L-BFGS: with tens to thousands of labels on
fixed pretrained features it is as accurate as a small MLP, needs no learning-rate schedule, and is
deterministic, so a model version can be reproduced from its labels and recorded choices. The L2
strength is chosen by cross-validation on TRAIN (never on TEST, which only reports).

Features are standardised with the mean and spread of *every* embedded item, labelled or not: a cheap
use of the unlabelled pool that makes one L2 strength fit encoders of very different scales. From 40
TRAIN labels the pool is also used through label spreading (`semisupervised.py`), when cross-validation
on TRAIN shows it helps. Those choices are cross-validated again once TRAIN has changed by a tenth
(`Validation`); fits in between reuse them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .calibration import calibrate
from .head import Head, softmax
from .semisupervised import MIN_LABELS, SampledRows, knn_graph, spread

L2_CANDIDATES = (1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_L2 = 1e-2
CV_MAX_ITEMS = 1500  # cross-validate on at most this many TRAIN items (a sample above it)
CV_FOLDS = 4
# Cross-validation (the L2 strength, label spreading or not) is most of a training's time: on
# fashion_mnist_2k 2.6-3.5 s of 3.3-4.3 s at 45-75 TRAIN labels, 3.7 s of 5.4 s at 1,200. Its choices
# move slowly with the labels, so a fit reuses the last ones until TRAIN has grown or shrunk by this
# share since they were made (every label below 10 TRAIN labels, every 5 at 50, every 100 at 1,000).
REVALIDATE_CHANGE = 0.1


@dataclass(frozen=True)
class Validation:
    """What cross-validation on TRAIN chose, and on how many TRAIN labels; kept in a version's metrics
    (`metrics["validation"]`) so the next training can reuse it (`covers`)."""

    train_count: int
    l2: float
    cv_loss: float | None  # the plain head's cross-validated log-loss (None: too few labels to validate)
    semi_supervised: dict = field(default_factory=dict)  # semi_supervised_fit's report at the time

    def covers(self, train_count: int) -> bool:
        """True while TRAIN is within REVALIDATE_CHANGE of the validated size and on the same side of
        the label-spreading limits (so spreading gets its first trial at MIN_LABELS, its last below
        CV_MAX_ITEMS, and an unvalidated choice is never carried over)."""
        if self.cv_loss is None:
            return False
        for limit in (MIN_LABELS, CV_MAX_ITEMS + 1):
            if (self.train_count >= limit) != (train_count >= limit):
                return False
        return abs(train_count - self.train_count) <= REVALIDATE_CHANGE * self.train_count

    def as_json(self) -> dict:
        return {"train_count": self.train_count, "l2": self.l2, "cv_loss": self.cv_loss,
                "semi_supervised": self.semi_supervised}

    @classmethod
    def from_metrics(cls, metrics: dict) -> Validation | None:
        """The validation a version's metrics carry (None for versions from before it was stored)."""
        data = metrics.get("validation")
        if not isinstance(data, dict):
            return None
        try:
            return cls(train_count=int(data["train_count"]), l2=float(data["l2"]),
                       cv_loss=None if data.get("cv_loss") is None else float(data["cv_loss"]),
                       semi_supervised=dict(data.get("semi_supervised") or {}))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class TrainingResult:
    head: Head
    metrics: dict
    accuracy: float | None
    loss: float | None
    seconds: float


def standardiser(pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre on the pool's mean and divide by one overall spread (the same for every dimension).

    One scalar keeps the encoder's geometry: per-dimension standardisation blew up near-constant
    dimensions of the sentence encoder and lost accuracy with few labels (2-topic texts, 10 labels:
    0.3-0.8 instead of 0.9-1.0; fashion_mnist_2k, 20-80 labels: 1-2 points lower).
    """
    mean = pool.mean(axis=0).astype(np.float32)
    spread = float(np.sqrt(((pool - mean) ** 2).sum(axis=1).mean() / pool.shape[1])) if len(pool) else 1.0
    scale = np.full(pool.shape[1], spread if spread > 1e-8 else 1.0, dtype=np.float32)
    return mean, scale


def fit_logistic(
    x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float, max_iter: int = 100, balanced: bool = False,
    soft: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise cross-entropy + l2 * ||W||^2 on standardised features; returns (W, b).

    `balanced`: every class weighs the same in the loss, and the label frequencies go back into the
    bias afterwards (a Bayes prior correction). Off by default: on fashion_mnist_2k with 20-80 random
    labels it measured 0.5-1 point below the plain loss.

    `soft`: extra rows (x, target distributions, weights) added to the loss, the unlabelled items with
    the soft labels of `semisupervised.spread`; the loss is then the weighted mean over all rows.
    """
    import torch

    from .encoders import configure_torch

    configure_torch()
    torch.manual_seed(0)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    weight = torch.zeros((n_classes, x.shape[1]), dtype=torch.float32, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-9,
        history_size=20, line_search_fn="strong_wolfe",
    )

    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    class_weight = None
    if balanced:
        present = counts > 0
        w = np.zeros(n_classes)
        w[present] = counts.sum() / (present.sum() * counts[present])
        class_weight = torch.from_numpy(w.astype(np.float32))

    if soft is not None:
        sx = torch.from_numpy(np.ascontiguousarray(soft[0], dtype=np.float32))
        sq = torch.from_numpy(np.ascontiguousarray(soft[1], dtype=np.float32))
        sw = torch.from_numpy(np.ascontiguousarray(soft[2], dtype=np.float32))
        total_weight = float(len(y)) + float(sw.sum())

    def closure():
        optimiser.zero_grad()
        logits = xt @ weight.T + bias
        if soft is None:
            data = torch.nn.functional.cross_entropy(logits, yt, weight=class_weight)
        else:
            hard = torch.nn.functional.cross_entropy(logits, yt, reduction="sum")
            pseudo = -(sw * (sq * torch.log_softmax(sx @ weight.T + bias, dim=1)).sum(dim=1)).sum()
            data = (hard + pseudo) / total_weight
        loss = data + l2 * (weight * weight).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    b = bias.detach().numpy().copy()
    if balanced:
        b += np.log((counts + 1.0) / (counts.sum() + n_classes)).astype(np.float32)  # Laplace-smoothed prior
    return weight.detach().numpy().copy(), b


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def stratified_folds(y: np.ndarray, n_classes: int, *, seed: int = 0) -> np.ndarray | None:
    """Fold number per item (each class dealt round-robin over the folds), or None if CV can't work."""
    counts = np.bincount(y, minlength=n_classes)
    if len(y) < 2 * CV_FOLDS or (counts[counts > 0] < 2).any():
        return None
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        folds[idx] = np.arange(len(idx)) % CV_FOLDS
    return folds


def _cv_loss(x: np.ndarray, y: np.ndarray, folds: np.ndarray, n_classes: int, *, l2: float) -> float:
    losses = []
    for k in range(CV_FOLDS):
        train, held = folds != k, folds == k
        if not held.any() or len(np.unique(y[train])) < 2:
            continue
        w, b = fit_logistic(x[train], y[train], n_classes, l2=l2, max_iter=50)
        losses.append(_log_loss(softmax(x[held] @ w.T + b), y[held]))
    return float(np.mean(losses)) if losses else math.inf


def choose_l2(x: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int = 0) -> tuple[float, float]:
    """(L2 strength with the lowest cross-validated log-loss on TRAIN, that loss; inf if not validated)."""
    rng = np.random.default_rng(seed)
    if len(y) > CV_MAX_ITEMS:
        keep = rng.choice(len(y), CV_MAX_ITEMS, replace=False)
        x, y = x[keep], y[keep]
    folds = stratified_folds(y, n_classes, seed=seed)
    if folds is None:
        return DEFAULT_L2, math.inf
    best, best_loss = DEFAULT_L2, math.inf
    for l2 in L2_CANDIDATES:
        loss = _cv_loss(x, y, folds, n_classes, l2=l2)
        if loss < best_loss:
            best, best_loss = l2, loss
    return best, best_loss


def _spread_fit(
    xs: np.ndarray, y: np.ndarray, unlabelled: np.ndarray, graph, n_classes: int, *, l2: float,
    labelled: np.ndarray, max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Head fitted on the labelled rows of `xs` plus soft labels spread to every other node.

    Nodes are xs's rows then unlabelled's; rows of xs not in `labelled` (a held-out fold) are treated
    as unlabelled, exactly like the pool. The unlabelled nodes together weigh as much as the labels.
    """
    nodes = np.concatenate([xs, unlabelled])
    soft = spread(graph, labelled, y[labelled], n_classes)
    others = np.setdiff1d(np.arange(len(nodes)), labelled)
    weights = np.full(len(others), len(labelled) / max(len(others), 1), dtype=np.float32)
    return fit_logistic(
        xs[labelled], y[labelled], n_classes, l2=l2, max_iter=max_iter, soft=(nodes[others], soft[others], weights)
    )


def semi_supervised_fit(
    xs: np.ndarray, y: np.ndarray, unlabelled: np.ndarray | SampledRows, n_classes: int, *, l2: float,
    plain_loss: float, mean: np.ndarray, scale: np.ndarray, validated: dict | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, dict]:
    """Label spreading over the pool, kept only if it beats the plain head in cross-validation on TRAIN.

    `unlabelled` is raw (read and standardised here with mean/scale, only when it is tried). Returns ((W, b) or
    None to fit the plain head, a report for the model card). Both sides of the comparison use the same
    folds and L2; the spread side re-spreads without the held fold's labels.

    `validated`: the report of an earlier cross-validation that still holds (`Validation.covers`):
    its decision is followed without validating again.
    """
    report = {"method": "label spreading", "unlabelled": int(len(unlabelled)), "used": False,
              "validated_at": int(len(y))}
    folds = None
    if validated:
        report = {**validated, "unlabelled": int(len(unlabelled))}
        if not validated.get("used"):
            return None, report
        if len(unlabelled) == 0:
            return None, {**report, "used": False, "reason": "no unlabelled items"}
    else:
        if len(y) < MIN_LABELS:
            report["reason"] = f"starts at {MIN_LABELS} TRAIN labels"
            return None, report
        if len(y) > CV_MAX_ITEMS:
            report["reason"] = f"not needed above {CV_MAX_ITEMS} TRAIN labels"
            return None, report
        folds = stratified_folds(y, n_classes)
        if folds is None or not math.isfinite(plain_loss) or len(unlabelled) == 0:
            report["reason"] = "too few TRAIN labels to cross-validate" if len(unlabelled) else "no unlabelled items"
            return None, report
    unlabelled_xs = (np.asarray(unlabelled, dtype=np.float32) - mean) / scale
    graph = knn_graph(np.concatenate([xs, unlabelled_xs]))
    if folds is not None:
        losses = []
        for k in range(CV_FOLDS):
            held = np.flatnonzero(folds == k)
            kept = np.flatnonzero(folds != k)
            if not len(held) or len(np.unique(y[kept])) < 2:
                continue
            w, b = _spread_fit(xs, y, unlabelled_xs, graph, n_classes, l2=l2, labelled=kept, max_iter=50)
            losses.append(_log_loss(softmax(xs[held] @ w.T + b), y[held]))
        spread_loss = float(np.mean(losses)) if losses else math.inf
        report.update({"cv_loss_plain": plain_loss, "cv_loss_spread": spread_loss})
        if not spread_loss < plain_loss:
            report["reason"] = "did not beat the labels alone in cross-validation on TRAIN"
            return None, report
        report["used"] = True
    return _spread_fit(xs, y, unlabelled_xs, graph, n_classes, l2=l2, labelled=np.arange(len(y))), report


def evaluate(head: Head, x_test: np.ndarray, y_test: np.ndarray) -> dict:
    """Accuracy, log-loss, per-class precision/recall/F1 and the confusion matrix (rows: true class)."""
    n = len(head.classes)
    if len(y_test) == 0:
        return {"accuracy": None, "loss": None, "per_class": {}, "confusion": [[0] * n for _ in range(n)]}
    probs = head.predict_proba(x_test)
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_test, predicted), 1)
    per_class = {}
    for i, name in enumerate(head.classes):
        tp = int(confusion[i, i])
        predicted_i = int(confusion[:, i].sum())
        actual_i = int(confusion[i, :].sum())
        precision = tp / predicted_i if predicted_i else None
        recall = tp / actual_i if actual_i else None
        f1 = (2 * precision * recall / (precision + recall)) if precision and recall else (0.0 if actual_i else None)
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual_i}
    return {
        "accuracy": float((predicted == y_test).mean()),
        "loss": _log_loss(probs, y_test),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def train_head(
    *,
    classes: list[str],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    pool: np.ndarray,
    encoder: str,
    encoder_version: str,
    unlabelled: np.ndarray | SampledRows | None = None,
    validation: Validation | None = None,
) -> TrainingResult:
    """Fit the head on TRAIN, measure it on TEST and calibrate it there.

    `unlabelled`: embeddings of items without a TRAIN label (TEST items may be among them: only their
    labels must stay out). With up to CV_MAX_ITEMS TRAIN labels they feed label spreading, which is
    kept when cross-validation on TRAIN says it helps (`metrics["semi_supervised"]` says which).

    `validation`: an earlier cross-validation to reuse (the caller checked `Validation.covers`); without
    it the L2 strength and label spreading are cross-validated here, and `metrics["validation"]`
    records the outcome for the next fit.
    """
    started = time.perf_counter()
    mean, scale = standardiser(pool if len(pool) else x_train)
    xs = (x_train - mean) / scale
    n = len(classes)
    if validation is not None and unlabelled is not None and not validation.semi_supervised:
        validation = None  # validated without an unlabelled pool: label spreading was never tried
    if validation is None:
        l2, plain_loss = choose_l2(xs, y_train, n)
        validated = None
    else:
        l2 = validation.l2
        plain_loss = validation.cv_loss if validation.cv_loss is not None else math.inf
        validated = validation.semi_supervised or None
    fitted, semi_report = None, None
    if unlabelled is not None:
        fitted, semi_report = semi_supervised_fit(
            xs, y_train, unlabelled, n, l2=l2, plain_loss=plain_loss, mean=mean, scale=scale, validated=validated
        )
    if validated is None:
        validation = Validation(
            train_count=int(len(y_train)), l2=l2, cv_loss=plain_loss if math.isfinite(plain_loss) else None,
            semi_supervised={k: v for k, v in (semi_report or {}).items() if k != "unlabelled"},
        )
    weight, bias = fitted if fitted is not None else fit_logistic(xs, y_train, n, l2=l2)
    head = Head(
        classes=list(classes), weight=weight, bias=bias, mean=mean, scale=scale, encoder=encoder,
        encoder_version=encoder_version,
        info={"l2": l2, "train_count": int(len(y_train)), "test_count": int(len(y_test)),
              "semi_supervised": bool(fitted is not None)},
    )
    metrics = evaluate(head, x_test, y_test)  # temperature 1: accuracy and confusion do not depend on it
    metrics["l2"] = l2
    if validation is None:  # impossible: made above when `validated` is None, else `validated` came from it
        raise RuntimeError("train_head: no validation to record")
    metrics["validation"] = validation.as_json()
    if semi_report is not None:
        metrics["semi_supervised"] = semi_report
    # Calibrate on TEST. The reported loss is the cross-fitted one (each TEST item scored with a
    # temperature fitted without it), so calibration never flatters the numbers it is judged by.
    temperature, report = calibrate(head.logits(x_test), y_test)
    head.temperature = temperature
    metrics["calibration"] = report
    metrics["loss_uncalibrated"] = metrics["loss"]
    if report["loss_after"] is not None:
        metrics["loss"] = report["loss_after"]
    return TrainingResult(
        head=head, metrics=metrics, accuracy=metrics["accuracy"], loss=metrics["loss"],
        seconds=time.perf_counter() - started,
    )
