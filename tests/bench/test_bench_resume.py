"""`bench_simulate --resume`: finished runs made with the same settings are kept, the rest run for real.

The runs are real `manage.py simulate` processes on a tiny generated text dataset laid out like
../shared/datasets/spam_assassin_2k (the plots need matplotlib, which only `make bench` installs, so
this drives the run step and the commit summary, not the PNGs)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bench.label_efficiency import (
    LabelEfficiencyBench,
    Run,
    commits,
    dataset_config,
    git_commit,
    markdown,
    reusable,
    summarise,
)
from tests.modeling.conftest import topic_rows

pytestmark = pytest.mark.django_db

NAME = "spam_assassin_2k"  # the layout bench_simulate expects for this name: docs/*.txt + labels.csv


def write_dataset(root: Path) -> Path:
    folder = root / NAME
    (folder / "docs").mkdir(parents=True)
    rows = topic_rows(40, seed=5)
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for item_id, text, label in rows:
            (folder / "docs" / f"{item_id}.txt").write_text(text, encoding="utf-8")
            writer.writerow([f"docs/{item_id}.txt", label])
    return root


def run_all(bench: LabelEfficiencyBench, runs: list[Run], *, root: Path, out: Path, resume: bool) -> None:
    options = {"budget": 25, "step": 5, "jobs": 1, "resume": resume, "cache": str(out / "cache"),
               "reviewer_miss_rate": 0.0}
    configs = {NAME: dataset_config(NAME, root, out)}
    bench.run_all(runs, configs=configs, root=root, out=out, options=options)


def test_it_keeps_finished_runs_and_runs_only_the_rest(tmp_path):
    root = write_dataset(tmp_path / "datasets")
    out = tmp_path / "bench"
    (out / "simulate").mkdir(parents=True)
    runs = [Run(NAME, "active", 0, False), Run(NAME, "random", 0, False)]
    command = LabelEfficiencyBench(io.StringIO(), io.StringIO())

    run_all(command, runs, root=root, out=out, resume=False)
    active_path, random_path = (out / "simulate" / f"{run.name}.json" for run in runs)
    active, first_random = json.loads(active_path.read_text()), json.loads(random_path.read_text())
    assert active["bench"] == {"budget": 25, "step": 5, "label_all": False, "reference": True,
                               "proposal_guarantee": "", "reviewer_miss_rate": 0.0, "auto_label": False,
                               "commit": git_commit()}
    assert first_random["bench"]["reference"] is False and "reference" not in first_random
    assert [p["labels"] for p in active["curve"]] == [5, 10, 15, 20, 25]

    # Mark the active result so we can tell it was kept, and lose the random one.
    active["wall_seconds"] = -1.0
    active_path.write_text(json.dumps(active))
    random_path.unlink()
    run_all(command, runs, root=root, out=out, resume=True)
    assert json.loads(active_path.read_text())["wall_seconds"] == -1.0  # kept, not run again
    again = json.loads(random_path.read_text())
    assert again["curve"] == first_random["curve"]  # run again, deterministic for its seed
    results = {run.name: json.loads((out / "simulate" / f"{run.name}.json").read_text()) for run in runs}
    assert commits(results) == {git_commit() or "unknown": [run.name for run in runs]}

    # Without --resume everything runs again, whatever is there.
    run_all(command, runs[:1], root=root, out=out, resume=False)
    assert json.loads(active_path.read_text())["wall_seconds"] >= 0


def test_only_results_made_with_the_same_settings_are_reusable():
    run = Run(NAME, "active", 0, False)
    result = {"strategy": "active", "seed": 0,
              "bench": {"budget": 200, "step": 10, "label_all": False, "reference": True, "reviewer_miss_rate": 0.0,
                        "commit": "abc"}}
    assert reusable(result, run, budget=200, step=10)
    # A reviewer who misses 5% is another run; one stamped before misses and corrections existed matches none.
    assert not reusable(result, Run(NAME, "active", 0, False, "", 0.05), budget=200, step=10)
    before = {**result, "bench": {k: v for k, v in result["bench"].items() if k != "reviewer_miss_rate"}}
    assert not reusable(before, run, budget=200, step=10)
    assert not reusable(result, run, budget=100, step=10)
    assert not reusable(result, run, budget=200, step=5)
    assert not reusable(result, Run(NAME, "active", 0, True), budget=200, step=10)  # a label-all run is another
    assert not reusable(result, Run(NAME, "active", 1, False), budget=200, step=10)  # another seed's file
    assert not reusable({"strategy": "active", "seed": 0}, run, budget=200, step=10)  # made before "bench"
    # A stamp from before the guarantee setting was made with the default; it is no all_proposals run.
    assert not reusable(result, Run(NAME, "active", 0, False, "all_proposals"), budget=200, step=10)
    pooled = {**result, "bench": {**result["bench"], "proposal_guarantee": "all_proposals"}}
    assert reusable(pooled, Run(NAME, "active", 0, False, "all_proposals"), budget=200, step=10)
    assert not reusable(pooled, run, budget=200, step=10)
    # A label-all run made after 200 forced single labels (before label-all started at the first model)
    # is not one of today's.
    old_label_all = {**result, "bench": {**result["bench"], "label_all": True, "reference": True}}
    assert not reusable(old_label_all, Run(NAME, "active", 0, True, "", 0.0), budget=200, step=10)


def test_the_configs_carry_the_proposal_guarantee(tmp_path):
    root = write_dataset(tmp_path / "datasets")
    plain = dataset_config(NAME, root, tmp_path)
    assert "proposal_guarantee" not in plain.read_text()
    (tmp_path / "pooled").mkdir()
    pooled = dataset_config(NAME, root, tmp_path / "pooled", guarantee="all_proposals")
    from interchange.config import load_config

    assert load_config(pooled).proposal_guarantee == "all_proposals"


def test_the_report_names_the_commits_its_runs_came_from():
    point = {"labels": 80, "mean": 0.8, "min": 0.75, "max": 0.85}
    summary = {"items": 100, "holdout": 20, "strategies": {"active": {"curve": [point]}}}
    one = markdown({"budget": 80, "commits": {"abc": ["x-active-0"]}, "datasets": {"x": summary}})
    assert "Every run below was made at commit `abc`." in one
    mixed = markdown(
        {"budget": 80, "commits": {"abc": ["x-active-0"], "def": ["x-random-0"]}, "datasets": {"x": summary}}
    )
    assert "`abc`: x-active-0; `def`: x-random-0." in mixed


def test_the_auto_label_run_is_its_own_run_and_its_own_row():
    plain, auto = Run(NAME, "active", 0, True, "", 0.05), Run(NAME, "active", 0, True, "", 0.05, auto_label=True)
    assert (plain.name, auto.name) == (f"{NAME}-labelall-0", f"{NAME}-labelall-0-auto")
    assert not plain.reference and not auto.reference  # the all-labels fit goes with the curve run
    # Both label everything from the first model on, whatever the curves' budget.
    assert plain.settings(budget=200, step=10)["budget"] == auto.settings(budget=200, step=10)["budget"] == 20
    stamped = {"strategy": "active", "seed": 0,
               "bench": {**plain.settings(budget=200, step=10), "commit": "abc"}}
    assert reusable(stamped, plain, budget=200, step=10) and not reusable(stamped, auto, budget=200, step=10)
    older = {**stamped, "bench": {k: v for k, v in stamped["bench"].items() if k != "auto_label"}}
    assert reusable(older, plain, budget=200, step=10)  # stamped before the setting existed: made without it

    curve = [{"labels": 80, "accuracy": 0.8}]
    base = {"strategy": "active", "seed": 0, "items": 100, "holdout": 20, "curve": curve}
    people = {"single_labels": 30, "batch_items_seen": 50, "batch_rejections": 0, "corrections": 2, "missed": 1,
              "auto_labels": 0, "auto_label": False, "proposal_precision": 0.96, "final_label_accuracy": 0.99,
              "first_batch_at": 22, "seconds": 94.0, "seconds_per_item": 1.175}
    with_auto = {**people, "single_labels": 25, "batch_items_seen": 20, "auto_labels": 35, "auto_label": True,
                 "auto_label_accuracy": 0.98, "final_label_accuracy": 0.985, "seconds": 70.5, "seconds_per_item": 0.88}
    curve_run = {**base, "curve": [{"labels": 80, "accuracy": 0.82}]}
    summary = summarise([curve_run, {**base, "label_all": people}, {**base, "label_all": with_auto}])
    assert summary["label_all"] == people and summary["auto_label_all"] == with_auto
    # The curves are the curve runs' alone.
    assert summary["strategies"]["active"]["curve"] == [
        {"labels": 80, "mean": 0.82, "min": 0.82, "max": 0.82, "runs": 1}
    ]
    text = markdown({"budget": 80, "commits": {}, "datasets": {NAME: summary}})
    assert f"| {NAME} + auto-labels | 25 | 20 | 0 | 2 | 1 | 35 (98.0%) | 96.0% | 98.5% | 22 | 1 min | 0.88 s |" in text
    assert f"| {NAME} | 30 | 50 | 0 | 2 | 1 | 0 | 96.0% | 99.0% | 22 | 2 min | 1.18 s |" in text
