"""`manage.py bench_team`: the team simulation (bench/team.py) on the shared datasets, and its table.

    python manage.py bench_team [--dataset spam_assassin_2k --dataset emoji] [--seeds 3] [--budget 1500] \\
        [--annotators 3] [--annotator-error 0.1] [--k 2 --k 3] [--doc docs/benchmarks.md]

Each run is `manage.py simulate --annotators ...` in its own throwaway database; the results go to
OUT/team/*.json and the `bench:team` block of the document.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError, provenance, write_block
from bench.label_efficiency import DATASETS, dataset_config
from bench.simulation import SimulationError, run_in_throwaway_database


def _interval(e: dict) -> str:
    if e.get("value") is None:
        return "—"
    if e.get("low") is None:
        return f"{e['value']:.3f}"
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def table(results: list[dict]) -> str:
    lines = [
        "| dataset | k | seed | labels | TEST items (overlapped) | true kappa | Krippendorff's alpha [95%] "
        "| pairs' kappa within their interval | TEST accuracy, one label | after adjudication | decided |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pairs = [p for p in r["pairs"] if p["within"] is not None]
        lines.append(
            f"| {r['dataset']} | {r['overlap_k']} | {r['seed']} | {r['labels']} | {r['test_items']} "
            f"({r['test_overlapped']}) | {r['true_kappa']:.3f} | {_interval(r['alpha'])} "
            f"{'✓' if r['alpha']['within'] else '✗'} | {sum(p['within'] for p in pairs)} of {len(pairs)} "
            f"| {r['test_accuracy_single']:.1%} | **{r['test_accuracy_final']:.1%}** | {r['disputes_decided']} |"
        )
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Simulate teams of fallible annotators with overlap on the shared datasets: agreement and TEST accuracy."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--dataset", action="append", choices=sorted(DATASETS),
                            help="default: spam_assassin_2k and emoji")
        parser.add_argument("--seeds", type=int, default=3)
        parser.add_argument("--budget", type=int, default=1500)
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--annotator-error", type=float, default=0.1)
        parser.add_argument("--overlap-share", type=float, default=0.25)
        parser.add_argument("--k", type=int, action="append", help="people per overlap item (default: 2 and 3)")
        parser.add_argument("--reviewer-error", type=float, default=0.0)
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "docs" / "bench"))
        parser.add_argument("--doc", default="", help="rewrite the bench:team block of this markdown file")

    def handle(self, *args, **options) -> None:
        root = Path(options["datasets"])
        if not root.is_dir():
            raise CommandError(f"datasets folder not found: {root}")
        out = Path(options["out"]) / "team"
        out.mkdir(parents=True, exist_ok=True)
        results = []
        with tempfile.TemporaryDirectory(prefix="lightbulb-bench-team-") as tmp:
            for name in options["dataset"] or ["spam_assassin_2k", "emoji"]:
                config = dataset_config(name, root, Path(tmp))
                for k in options["k"] or [2, 3]:
                    for seed in range(options["seeds"]):
                        target = out / f"{name}-k{k}-seed{seed}.json"
                        try:
                            run_in_throwaway_database(
                                {"config": config, "oracle": root / name / "labels.csv", "out": target,
                                 "strategy": "random", "budget": options["budget"], "step": 10, "holdout": 0.0,
                                 "seed": seed, "cache": Path(tmp) / "cache", "reviewer_miss_rate": 0.0,
                                 "label_all": False, "reference": False, "no_progress": True,
                                 "annotators": options["annotators"], "annotator_error": options["annotator_error"],
                                 "overlap_share": options["overlap_share"], "overlap_k": k,
                                 "reviewer_error": options["reviewer_error"]},
                                stdout=self.stdout, stderr=self.stderr,
                            )
                        except (SimulationError, BenchError) as exc:
                            raise CommandError(str(exc)) from None
                        result = json.loads(target.read_text(encoding="utf-8"))
                        results.append({"dataset": name, **result})
        markdown = (
            f"{options['annotators']} simulated annotators, each wrong with probability "
            f"{options['annotator_error']} independently; overlap share {options['overlap_share']:.0%} (every TEST "
            f"item in it); {options['budget']} labels per run; a reviewer who errs with probability "
            f"{options['reviewer_error']} decides every disagreement.\n\n{table(results)}\n"
        )
        self.stdout.write(markdown)
        if options["doc"]:
            machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
            write_block(Path(options["doc"]), "team", f"{provenance('make bench', machine)}\n{markdown}",
                        title="Teams: overlap, agreement and adjudication")
