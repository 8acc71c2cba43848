"""`manage.py bench_detection`: object detection on ../shared/datasets/trees (bench/detection.py).

    python manage.py bench_detection [--seeds 1] [--checkpoints 4,8,12,16,20,24] [--holdout 0.2] \\
        [--out docs/bench] [--doc docs/benchmarks.md] [--resume]

For each seed, `manage.py simulate` runs active and random in throwaway databases, each boxing the whole pool
(the last checkpoint), so both orders give a curve and a label-all time; the results go to OUT/detection/*.json
and the `bench:detection` block of the document.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError, provenance, write_block
from bench.simulation import SimulationError, run_in_throwaway_database

CONFIG = """task: {title: Trees}
dataset: {directory: %s, data_type: images}
label: {type: object_detection, classes: [Tree]}
model: {directory: models}
user: bench
"""


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 3) if values else None


def _cell(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def summary(results: list[dict], checkpoints: list[int]) -> str:
    seeds = sorted({r["seed"] for r in results})
    names = [n for n in ("active", "random") if any(r["strategy"] == n for r in results)]
    by = {(r["strategy"], r["seed"]): r for r in results}
    head = ["labelled tiles", *[f"{n} s{s}" for n in names for s in seeds], *[f"{n} mean" for n in names],
            "TRAIN / TEST", "training s per version", "threshold"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    means: dict[str, dict[int, float | None]] = {n: {} for n in names}
    for n in checkpoints:
        points = {(name, s): next((p for p in by.get((name, s), {}).get("curve", []) if p["labels"] == n), None)
                  for name in names for s in seeds}
        cells = [_cell(p["map50"] if p else None) for p in points.values()]
        for name in names:
            means[name][n] = _mean([p["map50"] for (m, _), p in points.items() if m == name and p])
        present = [p for p in points.values() if p and p.get("version")]
        split = f"{present[0]['train']} / {present[0]['test']}" if present else "—"
        training = _mean([p["training_seconds"] for p in present])
        thresholds = sorted({p["threshold"] for p in present if p.get("threshold") is not None})
        lines.append(f"| {n} | " + " | ".join(cells + [f"**{_cell(means[m][n])}**" for m in names]) + f" | {split} | "
                     f"{_cell(training, 0)} | {', '.join(f'{t:.2f}' for t in thresholds) or 'none'} |")
    first = results[0] if results else {}
    out = [f"Holdout mAP@0.5 ({first.get('holdout', '—')} tiles, {first.get('holdout_boxes', '—')} boxes, never "
           f"shown) by labelled tiles of the {first.get('pool', '—')}-tile pool; TRAIN / TEST is the product's split "
           f"of the labelled tiles (the owner's minimums: {first.get('minimums', {})}); the threshold is the score "
           f"above which the version shows its boxes (chosen on TEST; none: boxes are not shown):", "", *lines, ""]
    if "active" in names and "random" in names:
        ahead = [n for n in checkpoints if (means["active"].get(n) or 0) > (means["random"].get(n) or 0)]
        out.append(f"Active (least confident detection first) ahead of random (mean over seeds) at {len(ahead)} of "
                   f"{len(checkpoints)} checkpoints{': ' + ', '.join(map(str, ahead)) if ahead else ''}.")
    at16 = {name: means[name].get(16) for name in names}
    if any(v is not None for v in at16.values()):
        out.append("At 16 labelled tiles: " + ", ".join(f"{k} {_cell(v)}" for k, v in at16.items())
                   + " (target ≥ 0.5).")
    for name in names:
        runs = [r["label_all"] for r in results if r["strategy"] == name and r.get("label_all")]
        if not runs:
            continue
        la = runs[0]
        out.append(
            f"Labelling the whole pool, {name} order ({la['images']} tiles, {la['boxes']} boxes, {len(runs)} run(s)): "
            f"**{_mean([r['seconds_per_image'] for r in runs])} s per tile** modeled against "
            f"{_mean([r['hand_seconds_per_image'] for r in runs])} s drawing every box by hand: "
            f"**{_mean([r['ratio'] for r in runs])}** of it (target ≤ 0.4). Tiles shown with the model's boxes: "
            f"{_mean([r['reviewed'] for r in runs])} (accepted as they stood: "
            f"{_mean([r['accepted_unchanged'] for r in runs])}); "
            f"boxes accepted {_mean([r['accepted'] for r in runs])}, adjusted {_mean([r['adjusted'] for r in runs])}, "
            f"removed {_mean([r['removed'] for r in runs])}, drawn {_mean([r['drawn'] for r in runs])}.")
    return "\n".join(out)


class Command(BaseCommand):
    help = "Object detection on the trees tiles: mAP by labelled tiles, active vs random, label-all time."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--seeds", type=int, default=1)
        parser.add_argument("--checkpoints", default="4,8,12,16,20,24")
        parser.add_argument("--holdout", type=float, default=0.2)
        parser.add_argument("--strategies", default="active,random")
        parser.add_argument("--out", default="docs/bench")
        parser.add_argument("--doc", default="")
        parser.add_argument("--resume", action="store_true", help="keep finished results of the same settings")

    def handle(self, *args, **options) -> None:
        dataset = Path(options["datasets"]) / "trees"
        if not (dataset / "labels.csv").is_file():
            raise CommandError(f"not found: {dataset / 'labels.csv'}")
        try:
            checkpoints = sorted(int(x) for x in options["checkpoints"].split(",") if x.strip())
        except ValueError:
            raise CommandError("--checkpoints: whole numbers separated by commas") from None
        strategies = [s for s in options["strategies"].split(",") if s]
        if not checkpoints or any(s not in ("active", "random") for s in strategies):
            raise CommandError("--checkpoints needs at least one count; --strategies is active and/or random")
        out = Path(options["out"]) / "detection"
        out.mkdir(parents=True, exist_ok=True)
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
            config = Path(tmp) / "trees.yml"
            config.write_text(CONFIG % (dataset / "images").resolve(), encoding="utf-8")
            for seed in range(options["seeds"]):
                for strategy in strategies:
                    path = out / f"trees-{strategy}-{seed}.json"
                    wanted = {"checkpoints": checkpoints, "holdout": options["holdout"],
                              "iterations": settings.LIGHTBULB_DETECTOR_ITERATIONS}
                    if options["resume"] and path.exists():
                        old = json.loads(path.read_text(encoding="utf-8"))
                        if old.get("bench") == wanted:
                            results.append(old)
                            continue
                    self.stderr.write(f"trees {strategy} seed {seed} ...")
                    try:
                        run_in_throwaway_database({
                            "config": config, "oracle": dataset / "labels.csv", "out": path, "strategy": strategy,
                            "budget": max(checkpoints), "step": 1, "holdout": options["holdout"], "seed": seed,
                            "cache": tmp, "reviewer_miss_rate": 0.0, "label_all": True, "reference": False,
                            "no_progress": False, "checkpoints": ",".join(map(str, checkpoints)),
                        }, stdout=self.stdout, stderr=self.stderr)
                    except SimulationError as exc:
                        raise CommandError(str(exc)) from None
                    result = json.loads(path.read_text(encoding="utf-8"))
                    result["bench"] = wanted
                    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
                    results.append(result)
        text = summary(results, checkpoints)
        self.stdout.write(text)
        if options["doc"]:
            machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
            commits = sorted({r.get("commit", "") for r in results} - {""})
            block = (f"{provenance('manage.py bench_detection', machine)} Results from commit(s) "
                     f"{', '.join(commits) or 'unknown'}; {settings.LIGHTBULB_DETECTOR_ITERATIONS} iterations "
                     f"(batches of two tiles) per version, at most "
                     f"{settings.LIGHTBULB_DETECTOR_TRAIN_SECONDS:.0f} s.\n\n"
                     f"{text}")
            try:
                write_block(Path(options["doc"]), "detection", block, title="Object detection (trees tiles)")
            except BenchError as exc:
                raise CommandError(str(exc)) from None
