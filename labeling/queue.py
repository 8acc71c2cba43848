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

    def candidates(self, pool: QuerySet, *, limit: int, rng: random.Random) -> list[Candidate]: ...


class RandomOrdering:
    """Uniformly random among the pool."""

    name = "random"

    def candidates(self, pool: QuerySet, *, limit: int, rng: random.Random) -> list[Candidate]:
        ids = list(pool.values_list("id", flat=True))
        if not ids:
            return []
        chosen = rng.sample(ids, min(limit, len(ids)))
        probability = 1.0 / len(ids)
        return [Candidate(item_id=i, picked_by="random", probability=probability) for i in chosen]


@dataclass(frozen=True)
class ModelStatus:
    training: bool = False  # the model is in the loop (minimums met), as Light Bulb's "Training: yes"
    accuracy: float | None = None
    model_version: int | None = None
    updating: bool = False  # a training run is going on right now
    detail: str = ""  # e.g. what is still needed before the first model


class ModelHooks(Protocol):
    def ordering(self, project) -> Ordering | None: ...

    def predictions(self, project, item_ids: list[int]) -> dict[int, dict]: ...

    def status(self, project) -> ModelStatus: ...


class NoModel:
    """What the queue knows before any model exists."""

    def ordering(self, project) -> Ordering | None:
        return None

    def predictions(self, project, item_ids: list[int]) -> dict[int, dict]:
        return {}

    def status(self, project) -> ModelStatus:
        return ModelStatus()


_hooks: ModelHooks = NoModel()


def set_model_hooks(hooks: ModelHooks) -> None:
    """Called once by the modeling app at start-up."""
    global _hooks
    _hooks = hooks


def model_hooks() -> ModelHooks:
    return _hooks

