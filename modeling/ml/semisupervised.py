"""Label spreading over the project's unlabelled items (numpy only).

With a few dozen labels, a linear head sees each class through a handful of points. The unlabelled
pool shows how the encoder groups items, and label spreading (Zhou et al. 2004, "Learning with local
and global consistency") carries the TRAIN labels along that structure: a k-nearest-neighbour graph
over labelled and unlabelled items, soft labels iterated as F <- alpha * S F + (1 - alpha) * Y. The
head is then fitted on the TRAIN labels plus the spread soft labels of the unlabelled items.

Measured on cached embeddings (random label sets, mean of 3-5 seeds, 60 TRAIN labels): fashion_mnist_2k
0.703 -> 0.748, election_tweets 0.780 -> 0.812, emoji 0.595 -> 0.613, spam_assassin_2k 0.871 -> 0.877.
It can also cost a point (spam with 15 labels, fashion with 225), so `training.train_head` keeps it
only when cross-validation on TRAIN says it helps. TEST labels never enter: TEST items are unlabelled
nodes like any other, so TEST still measures the head as it will be used on the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

NEIGHBOURS = 30
ALPHA = 0.8  # weight of the neighbours against an item's own seed label
ITERATIONS = 30  # alpha^30 ~ 0.001: converged for the purpose
# Below this many TRAIN labels cross-validation cannot tell when spreading hurts: spam_assassin_2k with
# 15 TRAIN labels had a CV log-loss of 0.10-0.24 with spreading vs 0.21-0.42 without, and lost 7.7
# points on the holdout (0.728 vs 0.805), while election_tweets gained 5. With 60 TRAIN labels the gate
# kept it for fashion_mnist_2k (+3.4), election_tweets (+2.6), emoji (+2.0), spam (-0.3).
MIN_LABELS = 40
MAX_UNLABELLED = 5000  # a deterministic sample of the pool above this: the graph costs O(n^2 d) to build
CHUNK = 1024


@dataclass
class Graph:
    """Symmetric kNN graph as an edge list with the normalised weights D^-1/2 W D^-1/2."""

    n: int
    rows: np.ndarray
    cols: np.ndarray
    coefficients: np.ndarray


def knn_graph(z: np.ndarray, *, neighbours: int = NEIGHBOURS) -> Graph:
    """Cosine kNN graph over the rows of `z` (already standardised), weights cos^3 of the positive part.

    Built in row chunks so memory stays O(n * chunk), not O(n^2). Cubing the similarity favours the
    closest neighbours without a bandwidth to tune.
    """
    n = len(z)
    k = min(neighbours, n - 1)
    if k < 1:
        return Graph(n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    unit = unit.astype(np.float32)
    rows, cols, weights = [], [], []
    for start in range(0, n, CHUNK):
        sims = unit[start:start + CHUNK] @ unit.T
        local = np.arange(len(sims))
        sims[local, start + local] = -np.inf  # never its own neighbour
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(start + local, k))
        cols.append(nearest.ravel())
        weights.append(np.maximum(sims[np.repeat(local, k), nearest.ravel()], 0.0) ** 3)
    r, c, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights).astype(np.float64)
    # Symmetrise with max(W, W^T): both directions, then one edge per (i, j) keeping the larger weight.
    r, c, w = np.concatenate([r, c]), np.concatenate([c, r]), np.concatenate([w, w])
    key = r * n + c
    order = np.lexsort((-w, key))
    key, r, c, w = key[order], r[order], c[order], w[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    r, c, w = r[first], c[first], w[first]
    degree = np.bincount(r, weights=w, minlength=n)
    degree[degree == 0] = 1.0
    coefficients = w / np.sqrt(degree[r] * degree[c])
    return Graph(n, r, c, coefficients)


def spread(graph: Graph, labelled: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Soft labels (n, n_classes) for every node; rows sum to 1 (uniform where nothing reached)."""
    seeds = np.zeros((graph.n, n_classes), dtype=np.float64)
    seeds[labelled, labels] = 1.0
    # Every class starts with the same total mass, so a frequent class does not flood its neighbours.
    # Measured against rescaling to the labels' frequencies instead (class mass normalisation), 80
    # random labels: fashion_mnist_2k 0.747 vs 0.736, election_tweets 0.809 vs 0.804, emoji equal;
    # spam with 15 labels is where it loses (0.728 vs 0.772), and the cross-validation gate catches it.
    seeds /= np.maximum(seeds.sum(axis=0, keepdims=True), 1.0)
    f = seeds.copy()
    for _ in range(ITERATIONS):
        propagated = np.empty_like(f)
        for c in range(n_classes):
            propagated[:, c] = np.bincount(
                graph.rows, weights=graph.coefficients * f[graph.cols, c], minlength=graph.n
            )
        f = ALPHA * propagated + (1.0 - ALPHA) * seeds
    f = np.maximum(f, 0.0)
    total = f.sum(axis=1, keepdims=True)
    return np.where(total > 1e-12, f / np.maximum(total, 1e-12), 1.0 / n_classes)


class SampledRows:
    """Rows of a (memory-mapped) matrix, picked but not read: `len()` costs nothing and
    `np.asarray(rows)` copies them as float32. A training hands the unlabelled pool over like this
    because most fits never read it (under 40 TRAIN labels, or a reused decision not to spread)."""

    def __init__(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        self.vectors, self.rows = vectors, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.vectors[self.rows], dtype=dtype or np.float32)


@overload
def sample_rows(
    vectors: np.ndarray, *, keep: np.ndarray | None = ..., limit: int = ..., seed: int = ...,
    lazy: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def sample_rows(
    vectors: np.ndarray, *, keep: np.ndarray | None = ..., limit: int = ..., seed: int = ...,
    lazy: Literal[True],
) -> SampledRows: ...


@overload
def sample_rows(
    vectors: np.ndarray, *, keep: np.ndarray | None = ..., limit: int = ..., seed: int = ..., lazy: bool,
) -> np.ndarray | SampledRows: ...


def sample_rows(
    vectors: np.ndarray, *, keep: np.ndarray | None = None, limit: int = MAX_UNLABELLED, seed: int = 0,
    lazy: bool = False,
) -> np.ndarray | SampledRows:
    """float32 copies of at most `limit` rows (of those where `keep` is true), chosen the same way every
    time for the same rows. Rows are picked before they are read, so a memory-mapped matrix of a big
    project is never copied whole; with `lazy` they are read only when used (`SampledRows`)."""
    rows = np.arange(len(vectors)) if keep is None else np.flatnonzero(keep)
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    return SampledRows(vectors, rows) if lazy else np.asarray(vectors[rows], dtype=np.float32)
