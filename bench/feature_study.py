"""Which feature sets to learn from: learning curves per feature set on the real datasets, without the database.

    python manage.py bench_features --dataset fashion_mnist_2k \\
        --sets "mobilenet_v2,efficientnet_lite0,mobilenet_v2+efficientnet_lite0,mobilenet_v2~flip"
    python manage.py bench_features --dataset election_tweets --sets "minilm_l6|text_ngrams|minilm_l6+text_ngrams"

A cheaper stand-in for `simulate` to compare many feature sets: the same head (`modeling.ml.training`:
one-scalar standardiser, L2 chosen by 5-fold CV, L-BFGS logistic regression) and the same queue rule
(margin, a tenth drawn at random), with 20 random labels first (the product's 10 TEST + 10 TRAIN), then
10 labels a step up to 200, on 3 seeds; holdout 20% as simulate's. It trains on every label (simulate
keeps TEST apart), so its numbers compare feature sets with each other, not with simulate's.

Feature sets: encoder names from the catalogue joined by `+` (each block L2-normalised, then
concatenated), `~flip` after an image encoder for the mean of the image's and its mirror's features,
and `a|b|c` for "cross-validation on the labelled items picks one of them at every step from 40 labels".
Features are computed once per dataset with the product's encoders and kept in `.cache/features`.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
from django.conf import settings

from .benchdoc import BenchError

CACHE = Path(settings.BASE_DIR) / ".cache" / "features"
IMAGE_DATASETS = {"fashion_mnist_2k", "emoji"}
SEEDS = 3
BUDGET, STEP, FIRST, CV_FROM = 200, 10, 20, 40


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _items(root: Path, name: str) -> list[tuple[str, str]]:
    with open(root / name / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    key = "path" if "path" in rows[0] else "id"
    return [(row[key], row["label"]) for row in rows]


def _inputs(root: Path, name: str) -> list:
    rows = _items(root, name)
    if name in IMAGE_DATASETS:
        return [(root / name / key).read_bytes() for key, _ in rows]
    if (root / name / "tweets.csv").exists():
        with open(root / name / "tweets.csv", newline="", encoding="utf-8") as fh:
            texts = {row["id"]: row["text"] for row in csv.DictReader(fh)}
        return [texts[key] for key, _ in rows]
    return [(root / name / key).read_text(encoding="utf-8", errors="replace") for key, _ in rows]


def encoder_features(root: Path, name: str, encoder: str, *, flip: bool = False) -> np.ndarray:
    """One encoder's features of every item of a dataset (cached), in labels.csv order."""
    file = CACHE / f"{name}-{encoder}{'-flip' if flip else ''}.npy"
    if file.exists():
        return np.load(file)
    from modeling.ml.encoders import load_encoder

    inputs = _inputs(root, name)
    model = load_encoder(encoder)
    if flip:
        import io

        from PIL import Image, ImageOps

        def mirrored(raw: bytes) -> bytes:
            out = io.BytesIO()
            with Image.open(io.BytesIO(raw)) as im:
                ImageOps.mirror(im).save(out, format="PNG")
            return out.getvalue()

        inputs = [mirrored(raw) for raw in inputs]
    vectors = model.embed(inputs).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(file, vectors)
    return vectors


def features(root: Path, name: str, feature_set: str) -> np.ndarray:
    blocks = []
    for part in feature_set.split("+"):
        if part.endswith("~flip"):
            base = part.removesuffix("~flip")
            blocks.append(_unit(encoder_features(root, name, base) + encoder_features(root, name, base, flip=True)))
        else:
            blocks.append(_unit(encoder_features(root, name, part)))
    return np.concatenate(blocks, axis=1).astype(np.float32)


def _fit(xs: np.ndarray, y: np.ndarray, n: int):
    from modeling.ml.training import choose_l2, fit_logistic

    l2, loss = choose_l2(xs, y, n)
    w, b = fit_logistic(xs, y, n, l2=l2)
    return w, b, loss


def curve(root: Path, name: str, feature_set: str, seed: int, *, cold_start: str = "random") -> list[dict]:
    """Holdout accuracy every STEP labels up to BUDGET, the margin queue choosing (and, for `a|b`, cross-
    validation choosing the feature set from CV_FROM labels). `cold_start`: how the 10 TRAIN items after
    the 10 random TEST ones are picked, "random" or "typiclust" (the product's, modeling/ml/coldstart.py)."""
    from modeling.ml.head import softmax
    from modeling.ml.training import standardiser

    labels = [label for _, label in _items(root, name)]
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    n = len(classes)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    hold, pool = order[: round(0.2 * len(y))], order[round(0.2 * len(y)) :]
    sets = feature_set.split("|")
    scaled = {}
    for fs in sets:
        x = features(root, name, fs)
        mean, scale = standardiser(x[pool])
        scaled[fs] = (x - mean) / scale
    if cold_start == "typiclust":
        from modeling.ml.coldstart import typical_picks

        labelled = [int(i) for i in rng.choice(pool, FIRST // 2, replace=False)]  # TEST: uniformly random
        at = {int(item): row for row, item in enumerate(pool)}
        rows = typical_picks(scaled[sets[0]][pool], np.array([at[i] for i in labelled]), FIRST - len(labelled),
                             seed=seed)
        labelled += [int(pool[r]) for r in rows]
    else:
        labelled = [int(i) for i in rng.choice(pool, FIRST, replace=False)]
    out, chosen = [], sets[0]
    while True:
        yl = y[labelled]
        if len(sets) > 1 and len(labelled) >= CV_FROM:
            losses = {fs: _fit(scaled[fs][labelled], yl, n)[2] for fs in sets}
            chosen = min(losses, key=lambda fs: losses[fs])
        xs = scaled[chosen]
        accuracy = None
        if len(set(yl.tolist())) >= 2:
            w, b, _ = _fit(xs[labelled], yl, n)
            accuracy = float((softmax(xs[hold] @ w.T + b).argmax(1) == y[hold]).mean())
        out.append({"labels": len(labelled), "accuracy": accuracy, "feature_set": chosen})
        if len(labelled) >= BUDGET:
            return out
        free = np.ones(len(y), bool)
        free[labelled] = False
        free[hold] = False
        candidates = np.flatnonzero(free)
        if candidates.size < STEP:
            return out  # a small dataset: every pool item is labelled
        if accuracy is None:
            labelled += [int(i) for i in rng.choice(candidates, STEP, replace=False)]
            continue
        p = np.sort(softmax(xs[candidates] @ w.T + b), axis=1)
        picked = candidates[np.argsort(p[:, -1] - p[:, -2])[: STEP - 1]].tolist()
        rest = np.setdiff1d(candidates, picked)
        labelled += [int(i) for i in picked] + [int(rng.choice(rest))]


def all_labels(root: Path, name: str, feature_set: str) -> float:
    """Holdout accuracy (seed 0's holdout) of the head fitted on every pool label: the yardstick."""
    from modeling.ml.head import softmax
    from modeling.ml.training import standardiser

    if "|" in feature_set:
        return max(all_labels(root, name, fs) for fs in feature_set.split("|"))
    labels = [label for _, label in _items(root, name)]
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    order = np.random.default_rng(0).permutation(len(y))
    hold, pool = order[: round(0.2 * len(y))], order[round(0.2 * len(y)) :]
    x = features(root, name, feature_set)
    mean, scale = standardiser(x[pool])
    xs = (x - mean) / scale
    w, b, _ = _fit(xs[pool], y[pool], len(classes))
    return float((softmax(xs[hold] @ w.T + b).argmax(1) == y[hold]).mean())


def study(root: Path, name: str, feature_sets: list[str], *, out: Path, cold_start: str = "random", log=print) -> dict:
    if not (root / name / "labels.csv").exists():
        raise BenchError(f"no dataset {name!r} in {root}")
    results = {}
    for fs in feature_sets:
        started = time.monotonic()
        runs = [curve(root, name, fs, seed, cold_start=cold_start) for seed in range(SEEDS)]
        points: dict[int, list[float]] = {}
        for run in runs:
            for p in run:
                if p["accuracy"] is not None:
                    points.setdefault(p["labels"], []).append(p["accuracy"])
        mean = {n: round(float(np.mean(a)), 4) for n, a in sorted(points.items())}
        reference = round(all_labels(root, name, fs), 4)
        whole = round(float(np.mean([a for n, a in mean.items() if 30 <= n <= BUDGET] or [np.nan])), 4)
        key = fs if cold_start == "random" else f"{fs} ({cold_start} start)"
        results[key] = {"mean_30_200": whole, "at_80": mean.get(80), "at_200": mean.get(BUDGET),
                       "all_labels": reference, "ratio_80": round(mean[80] / reference, 3) if 80 in mean else None,
                       "curve": mean, "runs": runs, "seconds": round(time.monotonic() - started, 1)}
        log(f"{name} {key}: mean over 30-{BUDGET} labels {whole:.4f}, @80 {mean.get(80)}, @{BUDGET} "
            f"{mean.get(BUDGET)}, all labels {reference:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.json"
    known = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
    target.write_text(json.dumps(known | results, indent=1) + "\n", encoding="utf-8")
    return results
