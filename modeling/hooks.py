"""The model's side of the labeling queue (registered with `labeling.queue.set_model_hooks`).

Torch-free: the queue reads the ranking the worker stored in `ItemPrediction`, never a model.
"""

from __future__ import annotations

import random
from typing import cast

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from labeling.models import Proposal, ProposalStatus
from labeling.queue import Candidate, ModelStatus
from projects.models import ItemStatus, Project

from .models import ItemPrediction, ModelState
from .services import loop_flags, predictions_for

# How many ranked items beyond the request to look at when spreading picks over buckets.
LOOKAHEAD = 4


def uniform_pick(ordered_pool, size: int, seen: set[int], rng: random.Random, share: float) -> Candidate | None:
    """One uniformly random item of the pool not picked yet (a few tries), recorded with its probability."""
    for _attempt in range(5):
        try:
            item_id = ordered_pool[rng.randrange(size)]
        except IndexError:  # the pool shrank since it was counted (others leased meanwhile): draw again
            continue
        if item_id not in seen:
            return Candidate(item_id, "random", share / size)
    return None


class UncertaintyOrdering:
    """Most uncertain first (the project's sampling rule: margin or entropy), with a uniformly random
    share, spread over embedding buckets.

    - Each pick is, with probability `random_share`, a uniformly random item of the pool (recorded as
      picked_by="random" with probability random_share / pool size, so TRAIN-side estimates can be
      de-biased); otherwise the most uncertain remaining item (picked_by="active", probability
      1 - random_share: the chance the active rule made this pick).
    - Items whose proposal was rejected in a batch come first among the active picks.
    - Diversity: among the top of the ranking, items whose bucket (a random-projection hash of the
      embedding) is already held by a live lease or already picked come after the others, so
      concurrent annotators are not handed ten near-duplicates at once.
    """

    def __init__(self, project: Project, *, version: int, random_share: float) -> None:
        self.project = project
        self.name = project.sampling  # what the ranking was computed with (rank_version)
        self.version = version
        self.random_share = max(0.0, min(1.0, random_share))

    def candidates(
        self, pool: QuerySet, *, limit: int, rng: random.Random, size: int | None = None,
        id_range: tuple[int, int] | None = None,
    ) -> list[Candidate]:
        size = pool.count() if size is None else size  # the queue counts it from the tallies
        if size == 0:
            return []
        ranked = list(
            pool.filter(prediction__version=self.version)
            .order_by("-prediction__uncertainty", "id")
            .values_list("id", "prediction__bucket")[: limit * LOOKAHEAD + 10]
        )
        busy = set(
            ItemPrediction.objects.filter(
                project=self.project, item__status=ItemStatus.UNLABELLED, item__leased_until__gt=timezone.now()
            ).values_list("bucket", flat=True)
        )
        fresh, repeats = [], []
        for item_id, bucket in ranked:
            if bucket in busy:
                repeats.append(item_id)
            else:
                busy.add(bucket)
                fresh.append(item_id)
        # Items whose proposal a person rejected are the model's confident mistakes: they teach it most,
        # so they come first among the active picks (their true class is still unknown).
        # One now proposed as its next-likeliest class waits in that class's batches instead.
        rejected = list(
            pool.filter(Exists(Proposal.objects.filter(item=OuterRef("pk"), status=ProposalStatus.REJECTED)))
            .exclude(Exists(Proposal.objects.filter(item=OuterRef("pk"), status=ProposalStatus.PENDING)))
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        taken = set(rejected)
        active = iter(rejected + [i for i in fresh + repeats if i not in taken])

        chosen: list[Candidate] = []
        seen: set[int] = set()
        ordered_pool = pool.order_by("id").values_list("id", flat=True)
        for _ in range(min(limit, size)):
            candidate = None
            if rng.random() >= self.random_share:
                for item_id in active:
                    if item_id not in seen:
                        candidate = Candidate(item_id, "active", 1.0 - self.random_share)
                        break
            if candidate is None:
                # The random share, or no ranked item left (new items not embedded yet): uniform.
                candidate = uniform_pick(ordered_pool, size, seen, rng, self.random_share if ranked else 1.0)
            if candidate is None:
                continue
            seen.add(candidate.item_id)
            chosen.append(candidate)
        return chosen


class TypicalOrdering:
    """Before the first model: the typical items the worker chose (TypiClust, modeling/ml/coldstart.py),
    in order, with the same uniformly random share as the model's queue; uniform once they are used up.
    Only TRAIN picks ask an ordering (TEST is always uniformly random)."""

    name = "typical"

    def __init__(self, item_ids: list[int], *, random_share: float) -> None:
        self.item_ids = item_ids
        self.random_share = max(0.0, min(1.0, random_share))

    def candidates(
        self, pool: QuerySet, *, limit: int, rng: random.Random, size: int | None = None,
        id_range: tuple[int, int] | None = None,
    ) -> list[Candidate]:
        size = pool.count() if size is None else size  # the queue counts it from the tallies
        if size == 0:
            return []
        free = set(pool.filter(pk__in=self.item_ids).values_list("id", flat=True))
        typical = iter([i for i in self.item_ids if i in free])
        ordered_pool = pool.order_by("id").values_list("id", flat=True)
        chosen: list[Candidate] = []
        seen: set[int] = set()
        for _ in range(min(limit, size)):
            candidate = None
            if rng.random() >= self.random_share:
                candidate = next((Candidate(i, "typical", 1.0 - self.random_share) for i in typical if i not in seen),
                                 None)
            if candidate is None:
                candidate = uniform_pick(ordered_pool, size, seen, rng, self.random_share if free else 1.0)
            if candidate is not None:
                seen.add(candidate.item_id)
                chosen.append(candidate)
        return chosen


class ModelInTheLoop:
    def ordering(self, project: Project) -> UncertaintyOrdering | TypicalOrdering | None:
        state = ModelState.objects.filter(project=project).values_list("ranked_version", "cold_start").first()
        if not state:
            return None
        ranked, cold_start = state
        if ranked:
            return UncertaintyOrdering(project, version=ranked, random_share=project.random_share)
        if cold_start:
            return TypicalOrdering(list(cold_start), random_share=project.random_share)
        return None

    def review_items(self, project: Project, *, exclude: QuerySet | None = None) -> QuerySet:
        """Sequence tagging: the unlabelled texts the current ranking sends to review (`goes_to_review`: the
        cost rule at the project's floor), most confident first, as a queryset of items."""
        from projects.models import Item

        ranked = ModelState.objects.filter(project=project).values_list("ranked_version", flat=True).first()
        if not ranked:
            return Item.objects.none()
        flagged = ItemPrediction.objects.filter(project=project, version=ranked, value__review=True,
                                                item=OuterRef("pk"))
        items = Item.objects.filter(project=project, status=ItemStatus.UNLABELLED).filter(Exists(flagged))
        if exclude is not None:
            items = items.exclude(pk__in=exclude)
        return items.order_by("-prediction__confidence", "pk")

    def predictions(self, project: Project, item_ids: list[int]) -> dict[int, dict]:
        # The queue's ModelHooks protocol (labeling.queue) declares plain dicts; each of these is one.
        return cast(dict[int, dict], predictions_for(project, item_ids))

    def status(self, project: Project) -> ModelStatus:
        state = ModelState.objects.select_related("current_version").filter(project=project).first()
        if state is None:
            return ModelStatus()
        current = state.current_version
        in_the_loop, updating = loop_flags(state)
        return ModelStatus(
            training=in_the_loop,
            accuracy=current.accuracy if current else None,
            f1=(current.metrics.get("overall") or {}).get("f1") if current else None,
            model_version=current.number if current else None,
            updating=updating,
            detail=state.waiting_for or state.last_error,
        )
