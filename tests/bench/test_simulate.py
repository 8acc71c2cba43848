"""`manage.py simulate` end to end on a tiny generated dataset: the real command, in its own throwaway
database, with the real encoder and tasks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.modeling.conftest import topic_rows

pytestmark = pytest.mark.django_db


def write_dataset(root: Path, n: int = 40, *, model: str = "", flip_every: int = 0) -> tuple[Path, Path]:
    """A two-topic text dataset and its oracle; `flip_every` k > 0 gives every k-th text the other topic's
    label in the oracle, so confident proposals are sometimes wrong; `model` adds keys to the model section."""
    rows = topic_rows(n, seed=3)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "texts.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows((i, t) for i, t, _ in rows)
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "label"])
        other = {"sport": "food", "food": "sport"}
        writer.writerows(
            (i, other[label] if flip_every and n % flip_every == 0 else label) for n, (i, _, label) in enumerate(rows)
        )
    config = root / "topics.yml"
    config.write_text(
        "task: {title: Topics}\ndataset: {directory: texts.csv, data_type: text, id_column: id, text_column: text}\n"
        "label: {type: classification, classes: [sport, food]}\n"
        f"model: {{directory: must-not-be-written{model}}}\nuser: owner\n",
        encoding="utf-8",
    )
    return config, root / "labels.csv"


def simulate(config: Path, oracle: Path, out: Path, *extra: str) -> dict:
    call_command("simulate", "--config", str(config), "--oracle", str(oracle), "--out", str(out),
                 "--no-progress", "--cache", str(out.parent / "cache"), *extra)
    return json.loads(out.read_text())


def test_it_measures_a_curve_labels_everything_and_is_deterministic(tmp_path):
    config, oracle = write_dataset(tmp_path / "data")
    args = ("--budget", "25", "--step", "5", "--holdout", "0.25", "--seed", "7", "--label-all")
    first = simulate(config, oracle, tmp_path / "a.json", *args)
    assert set(first) == {"strategy", "seed", "items", "holdout", "curve", "label_all"}
    assert (first["strategy"], first["seed"], first["items"], first["holdout"]) == ("active", 7, 40, 10)
    assert [p["labels"] for p in first["curve"]] == [5, 10, 15, 20, 25]
    # Minimums: 10 TEST and 10 TRAIN labels before the first version; then the curve has accuracies.
    assert first["curve"][0]["accuracy"] is None and first["curve"][1]["accuracy"] is None
    assert first["curve"][-1]["accuracy"] >= 0.8  # two topics the encoder separates well
    la = first["label_all"]
    assert set(la) >= {"single_labels", "batch_items_seen", "batch_rejections", "corrections", "missed",
                       "first_batch_at", "final_label_accuracy", "proposal_precision", "seconds"}
    # A truthful annotator and a reviewer who misses nothing: every wrong tile is corrected in the grid.
    assert la["unlabelled_left"] == 0 and la["final_label_accuracy"] == 1.0 and la["missed"] == 0
    assert la["batch_rejections"] == 0
    assert la["single_labels"] + la["batch_items_seen"] >= 30
    assert la["seconds"] == pytest.approx(2.5 * la["single_labels"] + 0.3 * la["batch_items_seen"]
                                          + 2.0 * la["corrections"], abs=0.1)
    # Labels before the first review batch existed: none here (40 items never give 59 TEST items a class).
    assert (la["first_batch_at"] is None) == (la["batches"] == 0)

    # The same seed gives the same result; the cache made the second run skip the encoder.
    assert (tmp_path / "cache").is_dir() and any((tmp_path / "cache").iterdir())
    second = simulate(config, oracle, tmp_path / "b.json", *args)
    assert second == first
    # The user's folders and database were not touched.
    assert not (tmp_path / "data" / "must-not-be-written").exists()
    from projects.models import Project

    assert not Project.objects.exists()


def _accounted(result: dict) -> dict:
    """The label-all block, checked against the cost model: every pool item got exactly one label."""
    la = result["label_all"]
    pool = result["items"] - result["holdout"]
    assert la["unlabelled_left"] == 0 and la["batch_rejections"] == 0
    # Random audits of confirmed batches are single labels of items labelled already.
    assert la["single_labels"] + la["batch_items_seen"] + la["auto_labels"] == pool + la["audit_labels"]
    assert la["seconds"] == pytest.approx(2.5 * la["single_labels"] + 0.3 * la["batch_items_seen"]
                                          + 2.0 * la["corrections"], abs=0.1)  # auto-labels and misses: 0 s
    assert la["seconds_per_item"] == pytest.approx(la["seconds"] / pool, abs=1e-3)
    return la


def test_a_reviewer_who_misses_wrong_proposals_is_accounted_for_miss_by_miss(tmp_path):
    # The oracle gives every fourth text the other topic: the model, which reads the topic, proposes some
    # of those with confidence, and they are wrong.
    config, oracle = write_dataset(tmp_path / "data", n=60, flip_every=4)
    # Seed 2: the queue's draws on this small pool lead to 8 wrong proposals (seed 7 to none since the
    # draws became rejection sampling); the assertions below need some.
    args = ("--budget", "25", "--step", "25", "--holdout", "0.25", "--seed", "2", "--label-all")
    careful = _accounted(simulate(config, oracle, tmp_path / "careful.json", *args, "--reviewer-miss-rate", "0"))
    blind = _accounted(simulate(config, oracle, tmp_path / "blind.json", *args, "--reviewer-miss-rate", "1"))
    pool = 60 - 15
    # A careful reviewer corrects every wrong tile: single labels are truthful, so every label is right.
    assert careful["missed"] == 0 and careful["corrections"] > 0 and careful["final_label_accuracy"] == 1.0
    # One who misses every wrong tile leaves exactly those wrong, and pays nothing for them.
    assert blind["corrections"] == 0 and blind["missed"] > 0
    assert blind["final_label_accuracy"] == round((pool - blind["missed"]) / pool, 6)
    assert blind["proposal_precision"] == round(1 - blind["missed"] / blind["batch_items_seen"], 6)


def test_the_simulated_owner_auto_labels_when_a_version_can_and_people_do_the_rest(tmp_path):
    # 50% proven for all classes together needs 5 flawless TEST items: reachable on 40 items.
    config, oracle = write_dataset(
        tmp_path / "data", model=", auto_label_precision: 0.5, proposal_guarantee: all_proposals"
    )
    args = ("--budget", "20", "--step", "20", "--holdout", "0.25", "--seed", "7", "--label-all")
    result = simulate(config, oracle, tmp_path / "auto.json", *args, "--auto-label")
    la = _accounted(result)
    assert la["auto_label"] is True and la["auto_labels"] > 0
    assert la["auto_labels"] == sum(run["labelled"] for run in la["auto_label_runs"])
    assert all(run["target"] == 0.5 and run["labels_by_people_before"] >= 20 for run in la["auto_label_runs"])
    assert la["auto_label_accuracy"] is not None and la["final_label_accuracy"] >= 0.9
    without = _accounted(simulate(config, oracle, tmp_path / "people.json", *args))
    assert without["auto_labels"] == 0 and without["auto_label_accuracy"] is None
    assert la["seconds"] < without["seconds"]  # the trade: time saved, labels nobody saw


def test_random_strategy_changes_only_the_queue_order(tmp_path):
    config, oracle = write_dataset(tmp_path / "data")
    args = ("--budget", "20", "--step", "10", "--holdout", "0.25", "--seed", "7")
    active = simulate(config, oracle, tmp_path / "active.json", *args)
    random_ = simulate(config, oracle, tmp_path / "random.json", *args, "--strategy", "random")
    assert random_["strategy"] == "random" and active["strategy"] == "active"
    assert (random_["items"], random_["holdout"]) == (active["items"], active["holdout"])  # same holdout
    assert [p["labels"] for p in random_["curve"]] == [10, 20]
    assert random_["curve"][-1]["accuracy"] is not None and "label_all" not in random_


def test_bad_oracles_get_clear_errors_and_write_nothing(tmp_path, capfd):
    config, oracle = write_dataset(tmp_path / "data")
    rows = oracle.read_text().splitlines()
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(rows[:-3]) + "\n")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(oracle.read_text().replace(",food", ",cooking"))
    headless = tmp_path / "headless.csv"
    headless.write_text("t000,sport\n")
    for bad, message in [(partial, "3 item(s) have no ground-truth label"),
                         (unknown, "labels that are not classes of the project: cooking"),
                         (headless, "needs a `path,label` or `id,label` header")]:
        out = tmp_path / f"{bad.stem}.json"
        with pytest.raises(CommandError, match="the simulation failed"):
            simulate(config, bad, out)
        assert message in capfd.readouterr().err
        assert not out.exists()
    with pytest.raises(CommandError, match="--oracle: file not found"):
        simulate(config, tmp_path / "nope.csv", tmp_path / "x.json")
