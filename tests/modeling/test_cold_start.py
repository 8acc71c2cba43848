"""Before the first model, TRAIN starts with typical items (TypiClust); TEST stays uniformly random."""

from __future__ import annotations

import random

import numpy as np
import pytest

from labeling.services import do_record_judgement, next_items
from modeling.ml.coldstart import typical_picks
from modeling.models import ModelState
from tests.modeling.conftest import make_text_project

pytestmark = pytest.mark.django_db


def _blobs(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    sizes = [50, 30, 20]
    parts = [centre + rng.normal(0, 1.0, (size, 2)) for centre, size in zip(centres, sizes, strict=True)]
    return np.concatenate(parts), [np.arange(sum(sizes[:i]), sum(sizes[: i + 1])) for i in range(3)]


def test_it_takes_the_most_typical_item_of_the_largest_groups_without_a_label():
    x, groups = _blobs(np.random.default_rng(0))
    # A label in the middle group: K = 1 labelled + 2 wanted = 3 groups; the two uncovered ones are picked,
    # the largest first, each at its densest point (nearest its centre among its members).
    picks = typical_picks(x, np.array([groups[1][0]]), 2)
    assert [p in groups[0] for p in picks] == [True, False] and picks[1] in groups[2]
    for pick, group in zip(picks, (groups[0], groups[2]), strict=True):
        distance_to_centre = np.linalg.norm(x[group] - x[group].mean(axis=0), axis=1)
        assert distance_to_centre[list(group).index(pick)] <= np.quantile(distance_to_centre, 0.2)
    # Nothing labelled: one pick per group, largest first; never a labelled row; nothing asked, nothing given.
    first = typical_picks(x, np.array([], dtype=np.int64), 3)
    assert [next(i for i, g in enumerate(groups) if p in g) for p in first] == [0, 1, 2]
    assert typical_picks(x, np.array([0]), 0) == [] and typical_picks(x[:0], np.array([]), 3) == []


def test_train_starts_with_the_typical_items_and_the_margin_queue_takes_over(
    tmp_path, alice, loop_on, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the import embeds the pool, then picks
        project, truth = make_text_project(tmp_path, n=40)
    typical = ModelState.objects.get(project=project).cold_start
    assert len(typical) == 10 + 5  # the 10 TRAIN labels the first model needs, and spares
    project.random_share = 0.0  # this test follows the typical picks alone (the share is tested elsewhere)
    project.save()
    rng = random.Random(0)
    seen = []
    for _ in range(20):
        offered = ModelState.objects.get(project=project).cold_start
        with django_capture_on_commit_callbacks(execute=True):
            leased = next_items(project, user=alice, rng=rng)[0]
            seen.append((leased.stage, leased.picked_by, leased.item.pk, offered))
            do_record_judgement(project, item=leased.item, user=alice, label=truth[leased.item.key])
    # TEST first, uniformly random whatever the ordering says; then every TRAIN item is the first of the
    # typical items not labelled yet (recomputed as labels arrive: K = labelled + still needed).
    assert [s for s, *_ in seen[:10]] == ["TEST"] * 10 and {p for _, p, *_ in seen[:10]} == {"random"}
    labelled: set[int] = set()
    for stage, picked_by, item_id, offered in seen:
        if stage == "TRAIN":
            assert picked_by == "typical" and item_id == next(i for i in offered if i not in labelled)
        labelled.add(item_id)
    assert sum(stage == "TRAIN" for stage, *_ in seen) == 10
    state = ModelState.objects.get(project=project)
    assert state.current_version is not None  # 10 TEST + 10 TRAIN: the first model, and the margin queue
    leased = next_items(project, user=alice, rng=rng)[0]
    assert (leased.stage, leased.picked_by) in (("TRAIN", "active"), ("TEST", "random"))
