"""Planted label noise: does the product's label check find a team's own mistakes?

    python manage.py bench_label_check [--dataset NAME ...] [--seeds 3] [--budget 400] [--noise 0.05]

For each dataset and seed, `manage.py simulate` (its own throwaway database) labels `budget` items through the
active queue with an annotator who gives another class to `noise` of them (uniformly among the other classes),
the model training after every label as in production; then the real label check runs
(`modeling.tasks.check_labels`: out-of-fold probabilities, confident learning). Reported: precision and recall
of its top N label-error candidates for the planted errors at N = 2 x planted, the same for the top N losses,
and the check's time. Raw results: OUT/label-check/*.json; the `bench:label-check` block of the document.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from .benchdoc import Bench, BenchError, provenance, write_block
from .label_efficiency import DATASETS, dataset_config, git_commit
from .simulation import run_in_throwaway_database

DEFAULT_DATASETS = ("fashion_mnist_2k", "spam_assassin_2k")


class LabelCheckBench(Bench):
    def run(self, options: dict) -> dict:
        root = self.datasets_folder(options)
        names = options["dataset"] or list(DEFAULT_DATASETS)
        for name in names:
            if name not in DATASETS:
                raise BenchError(f"unknown dataset {name!r}")
        out = Path(options["out"]) / "label-check"
        out.mkdir(parents=True, exist_ok=True)
        results: dict[str, list[dict]] = {}
        with tempfile.TemporaryDirectory(prefix="lightbulb-label-check-") as tmp:
            for name in names:
                config = dataset_config(name, root, Path(tmp))
                for seed in range(options["seeds"]):
                    file = out / f"{name}-{seed}.json"
                    settings_now = {"budget": options["budget"], "noise": options["noise"]}
                    if options["resume"] and file.exists():
                        kept = json.loads(file.read_text(encoding="utf-8"))
                        if kept.get("bench", {}).get("settings") == settings_now:
                            results.setdefault(name, []).append(kept)
                            continue
                    self.stdout.write(f"{name} seed {seed}: {options['budget']} labels, {options['noise']:.0%} wrong")
                    run_in_throwaway_database({
                        "config": config, "oracle": root / name / "labels.csv", "out": file, "strategy": "active",
                        "budget": options["budget"], "step": options["step"], "holdout": 0.2, "seed": seed,
                        "cache": Path(options["cache"]), "reviewer_miss_rate": 0.0, "label_all": False,
                        "reference": False, "no_progress": True, "label_noise": options["noise"],
                    }, stdout=self.stdout, stderr=self.stderr)
                    result = json.loads(file.read_text(encoding="utf-8"))
                    result["bench"] = {"settings": settings_now, "commit": git_commit()}
                    file.write_text(json.dumps(result, indent=1), encoding="utf-8")
                    results.setdefault(name, []).append(result)
        from .benchdoc import torch_machine

        report = {"results": results, "budget": options["budget"], "noise": options["noise"],
                  "machine": torch_machine()}
        (out.parent / "label-check.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        if options["doc"]:
            write_block(Path(options["doc"]), "label-check", markdown(report, command=options["command"]),
                        title="Finding label errors (issue 22)")
        return report


def _mean(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    whole = all(float(v).is_integer() for v in vals)
    text = f"{statistics.mean(vals):.{0 if whole and len(vals) == 1 else 1 if whole else 2}f}"
    return f"{text} ({min(vals):.2f}–{max(vals):.2f})" if len(vals) > 1 else text


def markdown(report: dict, *, command: str) -> str:
    lines = [provenance(command, report["machine"]), "",
             f"{report['budget']} labels through the active queue, {report['noise']:.0%} of them given another class; "
             "mean over seeds (lowest–highest).", "",
             "| dataset | seeds | planted | N | candidates: precision | recall | top losses: precision | recall "
             "| flagged | check (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in report["results"].items():
        checks = [r["label_check"] for r in runs if r.get("label_check")]
        if not checks:
            continue
        lines.append(
            f"| {name} | {len(checks)} | {_mean([c['planted'] for c in checks])} | {_mean([c['n'] for c in checks])} "
            f"| {_mean([c['candidates']['precision'] for c in checks])} "
            f"| {_mean([c['candidates']['recall'] for c in checks])} "
            f"| {_mean([c['top_losses']['precision'] for c in checks])} "
            f"| {_mean([c['top_losses']['recall'] for c in checks])} "
            f"| {_mean([c['flagged'] for c in checks])} | {_mean([c['seconds'] for c in checks])} |"
        )
    return "\n".join(lines)
