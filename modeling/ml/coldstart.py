"""Which items to label first, before there is a model: TypiClust (Hacohen, Dekel and Weinshall, "Active
Learning on a Budget", ICML 2022).

With no model there is no uncertainty to rank by, and a few uniformly random items often miss whole
classes. TypiClust clusters the embeddings into K = (labelled + wanted) groups with k-means, and from
the largest groups that hold no label yet takes each one's most *typical* item: the highest
1 / (mean distance to its 20 nearest neighbours inside the group). Measured on the benchmark datasets
(docs/benchmarks.md, "Feature sets"), 10 such TRAIN items instead of 10 random ones raised the whole
30-200-label curve. TEST stays uniformly random (the queue never asks this for TEST items), and the
margin queue takes over as soon as a model exists.

Workers only (scikit-learn's k-means and neighbour search).
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 20
# Above this many items, mini-batch k-means (same objective, a fraction of the time on 100k items).
FULL_KMEANS_MAX = 20_000
# Typicality is measured on at most this many members of a group (a random sample of a huge one).
TYPICALITY_SAMPLE = 5_000


def typical_picks(vectors: np.ndarray, labelled: np.ndarray, count: int, *, seed: int = 0) -> list[int]:
    """Row numbers of up to `count` items to label next, most useful first.

    `vectors`: every candidate's (standardised) embedding, one row each; `labelled`: the rows that
    already have a label (TRAIN or TEST). Groups holding a labelled row are covered already.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.neighbors import NearestNeighbors

    n = len(vectors)
    if n == 0 or count <= 0:
        return []
    k = min(n, len(labelled) + count)
    if n <= FULL_KMEANS_MAX:
        model = KMeans(n_clusters=k, n_init=1, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=k, n_init=1, random_state=seed, batch_size=4096)
    groups = model.fit_predict(np.asarray(vectors, dtype=np.float32))
    covered = set(groups[np.asarray(labelled, dtype=np.int64)].tolist()) if len(labelled) else set()
    taken = set(np.asarray(labelled, dtype=np.int64).tolist())
    sizes = np.bincount(groups, minlength=k)
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for group in np.argsort(-sizes, kind="stable"):
        if len(picks) >= count:
            break
        if int(group) in covered:
            continue
        members = np.flatnonzero(groups == group)
        members = np.asarray([m for m in members if m not in taken])
        if members.size == 0:
            continue
        if members.size > TYPICALITY_SAMPLE:
            members = rng.choice(members, TYPICALITY_SAMPLE, replace=False)
        if members.size == 1:
            picks.append(int(members[0]))
            continue
        neighbours = min(NEIGHBOURS, members.size - 1)
        distances, _ = NearestNeighbors(n_neighbors=neighbours + 1).fit(vectors[members]).kneighbors(vectors[members])
        typicality = 1.0 / (distances[:, 1:].mean(axis=1) + 1e-12)  # column 0 is the point itself
        picks.append(int(members[int(np.argmax(typicality))]))
    return picks
