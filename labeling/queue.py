"""The queue's pluggable parts: how candidates are ordered, and what the model knows.

The labeling service owns leases and stages; it asks an `Ordering` which unlabelled items to try
first. Until a model exists that is uniformly random; the modeling app registers a provider that
returns its ranking (most uncertain first: margin or entropy) once a model version exists. TEST items are always drawn
uniformly at random, whatever the provider says, so accuracy is measured on an unbiased sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from django.db.models import QuerySet


@dataclass(frozen=True)
class Candidate:
    item_id: int
    picked_by: str  # "random" or "active"
    probability: float | None = None  # chance the random share picked it, for unbiased estimates


class Ordering(Protocol):
    name: str

    def candidates(
        self, pool: QuerySet, *, limit: int, rng: random.Random, size: int | None = None,
        id_range: tuple[int, int] | None = None,
    ) -> list[Candidate]:
        """Up to `limit` items of `pool` to try, best first. `size` is the pool's size and `id_range` its
        lowest and highest id (or a range around them) where the caller has them already (the queue reads
        both in one query, labeling.services.queue_counts); None: count and look them up."""
        ...


class RandomOrdering:
    """Uniformly random among the pool.

    Reading every id of a 100,000-item pool for each lease cost more than everything else `items/next`
    does, so ids are drawn uniformly from the pool's id range and kept when they are in the pool
    (rejection sampling: each kept id is equally likely, whatever the gaps). Where the pool is too sparse
    in its range for that to find enough in a few rounds, its ids are read after all.
    """

    name = "random"
    ROUNDS = 4
    MAX_DRAWS = 2000  # ids looked up per round

    def candidates(
        self, pool: QuerySet, *, limit: int, rng: random.Random, size: int | None = None,
        id_range: tuple[int, int] | None = None,
    ) -> list[Candidate]:
        """Up to `limit` distinct items of `pool`, each equally likely (see `Ordering` for the rest)."""
        n = pool.count() if size is None else size
        if n <= 0:
            return []
        if id_range is None:
            # The ends of the id range from the id order: two index lookups (an aggregate MIN and MAX
            # would read the pool as a count does).
            lo = pool.order_by("id").values_list("id", flat=True).first()
            hi = pool.order_by("-id").values_list("id", flat=True).first()
            if lo is None or hi is None:  # emptied since the count
                return []
        else:
            lo, hi = id_range
        probability = 1.0 / n
        want = min(limit, n)
        chosen: dict[int, None] = {}  # drawn ids in draw order, kept once each
        if n > 4 * want:
            density = n / (hi - lo + 1)
            for _ in range(self.ROUNDS):
                draws = list(dict.fromkeys(
                    rng.randint(lo, hi) for _ in range(min(self.MAX_DRAWS, int(3 * (want - len(chosen)) / density) + 8))
                ))
                found = set(pool.filter(pk__in=draws).values_list("id", flat=True))
                fresh = [i for i in draws if i in found and i not in chosen]
                chosen.update(dict.fromkeys(fresh[: want - len(chosen)]))
                if len(chosen) >= want:
                    break
        if len(chosen) < want:  # a small or sparse pool: read it whole
            ids = [i for i in pool.values_list("id", flat=True) if i not in chosen]
            chosen.update(dict.fromkeys(rng.sample(ids, min(want - len(chosen), len(ids)))))
        return [Candidate(item_id=i, picked_by="random", probability=probability) for i in chosen]


@dataclass(frozen=True)
class ModelStatus:
    training: bool = False  # the model is in the loop (minimums met), as Light Bulb's "Training: yes"
    accuracy: float | None = None
    f1: float | None = None  # sequence tagging: entity-level F1 on TEST (accuracy has no meaning there)
    model_version: int | None = None
    updating: bool = False  # a training run is going on right now
    detail: str = ""  # e.g. what is still needed before the first model


class ModelHooks(Protocol):
    def ordering(self, project) -> Ordering | None: ...

    def predictions(self, project, item_ids: list[int]) -> dict[int, dict]: ...

    def status(self, project) -> ModelStatus: ...

    def review_items(self, project, *, exclude: QuerySet | None = None) -> QuerySet: ...


class NoModel:
    """What the queue knows before any model exists."""

    def ordering(self, project) -> Ordering | None:
        return None

    def predictions(self, project, item_ids: list[int]) -> dict[int, dict]:
        return {}

    def status(self, project) -> ModelStatus:
        return ModelStatus()

    def review_items(self, project, *, exclude: QuerySet | None = None) -> QuerySet:
        from projects.models import Item

        return Item.objects.none()


_hooks: ModelHooks = NoModel()


def set_model_hooks(hooks: ModelHooks) -> None:
    """Called once by the modeling app at start-up."""
    global _hooks
    _hooks = hooks


def model_hooks() -> ModelHooks:
    return _hooks

