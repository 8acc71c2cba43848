"""`manage.py bench_sequence`: sequence tagging on ../shared/datasets/wnut16_ner (bench/sequence.py).

    python manage.py bench_sequence [--seeds 3] [--checkpoints 50,100,200,300,400] [--holdout 0.25] \\
        [--out docs/bench] [--doc docs/benchmarks.md] [--resume]

For each seed, `manage.py simulate` runs active and random in throwaway databases (the active run of seed 0
also trains the all-labels reference and labels the whole pool for the time model); the results go to
OUT/sequence/*.json and the `bench:sequence` block of the document.
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

CONFIG = """task: {title: WNUT-16 tweets NER}
dataset: {directory: %s, data_type: text, exclude: [labels.jsonl, labels.conll]}
label:
  type: sequence
  classes: [person, geo-loc, company, facility, product, musicartist, movie, sportsteam, tvshow, other]
model: {directory: models}
user: bench
"""


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 4) if values else None


def run_name(result: dict) -> str:
    """active (margin: 1 - the least sure decision), entropy (active, mean entropy of the decisions) or random."""
    if result["strategy"] == "active" and result.get("sampling") == "entropy":
        return "entropy"
    return result["strategy"]


def summary(results: list[dict], checkpoints: list[int]) -> str:
    by = {(run_name(r), r["seed"]): r for r in results}
    seeds = sorted({r["seed"] for r in results})
    names = [n for n in ("active", "entropy", "random") if any(run_name(r) == n for r in results)]
    lines = ["| labelled texts | " + " | ".join(
        " | ".join(f"{name} s{s}" for s in seeds) + f" | {name} mean" for name in names) + " |",
             "|---" * ((len(seeds) + 1) * len(names) + 1) + "|"]
    means: dict[str, dict[int, float | None]] = {name: {} for name in ("active", "entropy", "random")}
    for n in checkpoints:
        cells = []
        for strategy in names:
            row = []
            for s in seeds:
                point = next((p for p in by.get((strategy, s), {}).get("curve", []) if p["labels"] == n), None)
                row.append(point["f1"] if point else None)
            means[strategy][n] = _mean(row)
            cells += [("—" if v is None else f"{v:.3f}") for v in row]
            cells.append("—" if means[strategy][n] is None else f"**{means[strategy][n]:.3f}**")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    reference = next((r["reference"] for r in results if r.get("reference")), None)
    last = max(checkpoints)
    out = ["Holdout entity F1 (exact span and type; the holdout is a quarter of the 1,600 tweets, never shown), "
           "by labelled texts, per seed:", "", *lines, ""]
    if reference:
        ratio = (means["active"][last] / reference["f1"]) if means["active"].get(last) and reference["f1"] else None
        out.append(f"With all {reference['labels']} pool texts labelled: holdout F1 **{reference['f1']:.3f}** "
                   f"(precision {reference['precision']:.3f}, recall {reference['recall']:.3f}); active at {last} "
                   f"texts is {'—' if ratio is None else f'{ratio:.2f}'} of it (target ≥ 0.9).")
    ahead = []
    for n in checkpoints:
        active, rand = means["active"].get(n), means["random"].get(n)
        if active is not None and rand is not None and active > rand:
            ahead.append(n)
    out.append(f"Active (margin) ahead of random (mean over seeds) at {len(ahead)} of {len(checkpoints)} checkpoints"
               f"{': ' + ', '.join(map(str, ahead)) if ahead else ''}.")
    if "entropy" in names:
        better = [n for n in checkpoints if (means["entropy"].get(n) or 0) > (means["random"].get(n) or 0)]
        out.append(f"Active by mean entropy ahead of random at {len(better)} of {len(checkpoints)} checkpoints"
                   f"{': ' + ', '.join(map(str, better)) if better else ''}.")
    label_all = [r["label_all"] for r in results if r.get("label_all")]
    if label_all:
        ratio = _mean([la["ratio"] for la in label_all])
        per_text = _mean([la["seconds_per_text"] for la in label_all])
        hand = _mean([la["hand_seconds_per_text"] for la in label_all])
        out.append(f"Labelling the whole pool ({label_all[0]['texts']} texts, {len(label_all)} run(s)): "
                   f"**{per_text} s per text** modeled, against {hand} s labelling every text by hand: "
                   f"**{ratio}** of it (target ≤ 0.6). Reviewed with the model's spans pre-filled: "
                   f"{_mean([la['reviewed'] for la in label_all])} texts; by hand (TEST, or before a model): "
                   f"{_mean([la['by_hand'] for la in label_all])}.")
    snapping = results[0].get("snapping") if results else None
    if snapping:
        out.append(f"The oracle's {snapping['spans']} spans on spaCy's tokens: {snapping['widened']} widened, "
                   f"{snapping['dropped']} dropped.")
    return "\n".join(out)


class Command(BaseCommand):
    help = "Sequence tagging label efficiency on WNUT-16 tweets: active vs random, all labels, label-all time."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--seeds", type=int, default=3)
        parser.add_argument("--checkpoints", default="50,100,200,300,400")
        parser.add_argument("--holdout", type=float, default=0.25)
        parser.add_argument("--no-label-all", action="store_true")
        parser.add_argument("--entropy", action="store_true",
                            help="also the active order by the mean entropy of the decisions (one more run per seed)")
        parser.add_argument("--out", default="docs/bench")
        parser.add_argument("--doc", default="")
        parser.add_argument("--resume", action="store_true", help="keep finished results of the same settings")

    def handle(self, *args, **options) -> None:
        dataset = Path(options["datasets"]) / "wnut16_ner"
        if not (dataset / "labels.jsonl").is_file():
            raise CommandError(f"not found: {dataset / 'labels.jsonl'}")
        checkpoints = sorted(int(x) for x in options["checkpoints"].split(",") if x.strip())
        out = Path(options["out"]) / "sequence"
        out.mkdir(parents=True, exist_ok=True)
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-sequence-") as tmp:
            config = Path(tmp) / "wnut16_ner.yml"
            config.write_text(CONFIG % dataset.resolve(), encoding="utf-8")
            runs = ["active", "random"] + (["entropy"] if options["entropy"] else [])
            for seed in range(options["seeds"]):
                for name in runs:
                    strategy = "random" if name == "random" else "active"
                    path = out / f"wnut16_ner-{name}-{seed}.json"
                    label_all = name == "active" and seed == 0 and not options["no_label_all"]
                    wanted = {"checkpoints": checkpoints, "holdout": options["holdout"], "label_all": label_all,
                              "epochs": settings.LIGHTBULB_NER_EPOCHS}
                    if options["resume"] and path.exists():
                        old = json.loads(path.read_text(encoding="utf-8"))
                        if old.get("bench") == wanted:
                            results.append(old)
                            continue
                    self.stderr.write(f"wnut16_ner {name} seed {seed} ...")
                    try:
                        run_in_throwaway_database({
                            "config": config, "oracle": dataset / "labels.jsonl", "out": path, "strategy": strategy,
                            "budget": max(checkpoints), "step": 10, "holdout": options["holdout"], "seed": seed,
                            "cache": tmp, "reviewer_miss_rate": 0.0, "label_all": label_all,
                            "reference": name == "active" and seed == 0, "no_progress": False,
                            "sampling": "entropy" if name == "entropy" else None,
                            "checkpoints": ",".join(map(str, checkpoints)),
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
            block = (f"{provenance('manage.py bench_sequence', machine)} Results from commit(s) "
                     f"{', '.join(commits) or 'unknown'}; {settings.LIGHTBULB_NER_EPOCHS} epochs per version.\n\n"
                     f"{text}")
            try:
                write_block(Path(options["doc"]), "sequence", block, title="Sequence tagging (WNUT-16 tweets)")
            except BenchError as exc:
                raise CommandError(str(exc)) from None
