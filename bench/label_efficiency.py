"""Label efficiency on the real datasets: `simulate` for active vs random, several seeds, plus the cost of
labeling everything; writes the raw results, PNG plots and a markdown summary.

    python manage.py bench_simulate [--dataset NAME ...] [--seeds 3] [--budget 200] [--jobs N] [--out docs/bench]
    python manage.py bench_simulate --summarise-only [--out docs/bench]   # plots and tables from the JSON there
    python manage.py bench_simulate --resume [...]   # keep finished runs made with the same settings

Each dataset gets a config written to a temporary folder that points at ../shared/datasets (the
datasets themselves are never changed), then `manage.py simulate` runs for every strategy and seed.
The active run with seed 0 also fits the all-labels reference. Unless `--no-label-all`, each dataset
gets two more runs that label everything (`--label-all`) the way a team would: one by one until the
first model (20 labels), then review batches whenever there are any; one of the two has the owner take
"label the rest automatically" whenever a version can (`--auto-label`), so time can be weighed against
accuracy.

Every run is independent (its own throwaway database), so `--jobs N` runs N at once, each a
`manage.py simulate` process with cpus/N torch threads: one at a time on a 2-core laptop, a dozen on
a big machine. The results are the same either way (each run is deterministic for its seed).

The full default is hours on a laptop, so every result records the settings and commit it was made with
(`"bench"`), and `--resume` keeps a finished result whose settings match instead of running it again;
the summary lists the commits its results came from, so a resumed report cannot hide a mix.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from .benchdoc import Bench, BenchError, provenance, write_block
from .simulation import SECONDS_PER_BATCH_ITEM, SECONDS_PER_CORRECTION, SECONDS_PER_LABEL, SECONDS_PER_REJECTION

# name -> (data type, items folder or file inside the dataset, extra dataset keys)
DATASETS = {
    "fashion_mnist_2k": ("images", "images", ""),
    "emoji": ("images", "images", ""),
    "spam_assassin_2k": ("text", "docs", ""),
    "election_tweets": ("text", "tweets.csv", ", id_column: id, text_column: text"),
}
STRATEGIES = ("active", "random")
GOAL_LABELS = 80
# The whole-curve comparison starts here: the first model exists at 20 labels (10 TEST + 10 TRAIN),
# and up to it both orders have shown the same items.
CURVE_FROM = 30
CACHE = Path(settings.BASE_DIR) / ".cache" / "simulate"  # embeddings kept between bench runs
# Label-all runs label one by one only until the first model exists (10 TEST + 10 TRAIN), then take
# review batches whenever there are any: forcing 200 single labels first would charge 500 s that no
# team using the product spends.
LABEL_ALL_FROM = 20


@dataclass(frozen=True)
class Run:
    dataset: str
    strategy: str
    seed: int
    label_all: bool
    guarantee: str = ""  # the projects' proposal guarantee; "" = the product default
    miss_rate: float = 0.0  # the simulated reviewer misses this share of wrong proposals in batches
    auto_label: bool = False  # the owner auto-labels whenever a version can (a label-all run beside the plain one)

    @property
    def name(self) -> str:
        if self.label_all:
            return f"{self.dataset}-labelall-{self.seed}{'-auto' if self.auto_label else ''}"
        return f"{self.dataset}-{self.strategy}-{self.seed}"

    @property
    def reference(self) -> bool:
        # The all-labels yardstick (one more fit) goes with every dataset's first active curve.
        return self.strategy == "active" and self.seed == 0 and not self.label_all

    def budget_for(self, budget: int) -> int:
        """The single labels before anything else: the curve's budget, or just the first model's."""
        return LABEL_ALL_FROM if self.label_all else budget

    def settings(self, *, budget: int, step: int) -> dict:
        """What decides this run's result besides the code: compared by --resume."""
        return {"budget": self.budget_for(budget), "step": step, "label_all": self.label_all,
                "reference": self.reference, "proposal_guarantee": self.guarantee,
                "reviewer_miss_rate": self.miss_rate, "auto_label": self.auto_label}


# Settings added after results were first stamped: what an older stamp without them was made with. Results
# from before the reviewer corrected tiles in the grid (and could miss) match no run: they are made again.
SETTING_DEFAULTS: dict[str, object] = {"proposal_guarantee": "", "reviewer_miss_rate": None, "auto_label": False}


def reusable(result: dict, run: Run, *, budget: int, step: int) -> bool:
    """A finished result made with exactly this run's settings (the same dataset, strategy and seed)."""
    made = result.get("bench") or {}
    wanted = run.settings(budget=budget, step=step)
    return (result.get("strategy"), result.get("seed")) == (run.strategy, run.seed) and all(
        made.get(key, SETTING_DEFAULTS.get(key)) == value for key, value in wanted.items()
    )


def git_commit() -> str:
    """The checkout's commit (with "+changes" when its code differs), or "" outside git.

    docs/ is left out: `make bench` itself rewrites the results and the doc there as it goes."""
    git = shutil.which("git")
    if not git:
        return ""
    cwd = settings.BASE_DIR
    head = subprocess.run([git, "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True)
    if head.returncode != 0:
        return ""
    dirty = subprocess.run([git, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs"], cwd=cwd,
                           capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


@contextmanager
def figure(path: Path, size: tuple[float, float]):
    """A matplotlib axes (headless backend) saved to `path` when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110)
    try:
        yield ax
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


class LabelEfficiencyBench(Bench):
    def run(self, options: dict) -> None:
        out = Path(options["out"])
        (out / "simulate").mkdir(parents=True, exist_ok=True)
        (out / "plots").mkdir(parents=True, exist_ok=True)
        names = options["dataset"] or list(DATASETS)
        guarantee, miss = options["proposal_guarantee"], options["reviewer_miss_rate"]
        runs = [
            Run(name, strategy, seed, False, guarantee, miss)
            for name in names for strategy in STRATEGIES for seed in range(options["seeds"])
        ]
        if not options["no_label_all"]:
            runs += [Run(name, "active", 0, True, guarantee, miss, auto_label=auto)
                     for name in names for auto in (False, True)]
        if options["summarise_only"]:
            machine = read_machine(out)
        else:
            root = self.datasets_folder(options)
            if options["jobs"] < 1:
                raise BenchError("--jobs must be at least 1")
            with tempfile.TemporaryDirectory(prefix="lightbulb-bench-sim-") as tmp:
                configs = {name: dataset_config(name, root, Path(tmp), guarantee=options["proposal_guarantee"])
                           for name in names}
                self.run_all(runs, configs=configs, root=root, out=out, options=options)
            import torch

            machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                       "jobs": options["jobs"]}
        results = {}
        for run in runs:
            target = out / "simulate" / f"{run.name}.json"
            if not target.exists():
                raise BenchError(f"missing result {target} (run without --summarise-only first)")
            results[run.name] = json.loads(target.read_text(encoding="utf-8"))
        summary = {}
        for name in names:
            summary[name] = summarise([results[run.name] for run in runs if run.dataset == name])
            plot(name, summary[name], out / "plots" / f"{name}.png")
        plot_costs(summary, out / "plots" / "label-all.png")
        report = {
            "machine": machine, "budget": options["budget"], "step": options["step"], "seeds": options["seeds"],
            "commits": commits(results), "datasets": summary,
        }
        (out / "simulate.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        text = markdown(report)
        self.stdout.write(text)
        if options["doc"]:
            doc = Path(options["doc"])
            guarantee = options["proposal_guarantee"]
            command = (f"manage.py bench_simulate --seeds {options['seeds']} --budget {options['budget']} "
                       f"--step {options['step']}{' --no-label-all' if options['no_label_all'] else ''}"
                       f"{' --proposal-guarantee ' + guarantee if guarantee else ''}"
                       f" --reviewer-miss-rate {options['reviewer_miss_rate']:g}"
                       f"{' --resume' if options['resume'] else ''}")
            plots = [out / "plots" / f"{name}.png" for name in names]
            if any(s.get("label_all") for s in summary.values()):
                plots.append(out / "plots" / "label-all.png")
            images = "\n".join(
                f"![{path.stem}: {'modeled time' if path.stem == 'label-all' else 'active vs random'}]"
                f"({os.path.relpath(path, doc.resolve().parent)})" for path in plots if path.exists()
            )
            write_block(doc, "simulate", f"{provenance(command, machine)}\n{text}\n{images}",
                        title="Label efficiency: latest `make bench`")

    def run_all(self, runs: list[Run], *, configs: dict[str, Path], root: Path, out: Path, options: dict) -> None:
        jobs = options["jobs"]
        threads = max(1, (os.cpu_count() or 1) // jobs)
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        budget, step = options["budget"], options["step"]
        commit = git_commit()
        if options["resume"]:
            kept = [run for run in runs if finished(out, run, budget=budget, step=step)]
            for run in kept:
                self.stdout.write(f"== {run.name}: kept (finished with these settings)")
            runs = [run for run in runs if run not in kept]

        def one(run: Run) -> None:
            target = out / "simulate" / f"{run.name}.json"
            argv = [
                "--config", str(configs[run.dataset]), "--oracle", str(root / run.dataset / "labels.csv"),
                "--out", str(target), "--strategy", run.strategy, "--seed", str(run.seed),
                "--budget", str(run.budget_for(budget)), "--step", str(step), "--cache", options["cache"],
                *(["--reference"] if run.reference else []),
                *(["--label-all"] if run.label_all else []),
                *(["--auto-label"] if run.auto_label else []),
                "--reviewer-miss-rate", str(run.miss_rate),
            ]
            self.stdout.write(
                f"== {run.dataset} {run.strategy} seed {run.seed}{' (label all)' if run.label_all else ''}"
                f"{' with auto-labels' if run.auto_label else ''}"
            )
            started = time.monotonic()
            if jobs == 1:
                call_command("simulate", *argv, stdout=self.stdout, stderr=self.stderr)
            else:
                # Separate processes; their progress would interleave, so only the summary line is shown.
                env = {**os.environ, "LIGHTBULB_TORCH_THREADS": str(threads)}
                done = subprocess.run([sys.executable, manage, "simulate", *argv, "--no-progress"], env=env,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise BenchError(f"{run.name} failed:\n{done.stderr[-2000:]}")
                self.stdout.write(f"{run.name}: {done.stdout.strip()}")
            result = json.loads(target.read_text(encoding="utf-8"))
            result["wall_seconds"] = round(time.monotonic() - started, 1)
            result["bench"] = {**run.settings(budget=budget, step=step), "commit": commit}
            target.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")

        if jobs == 1:
            for run in runs:
                one(run)
            return
        # The long label-all runs start first, so they do not finish last on their own. One short run
        # per dataset fills the embedding cache; that dataset's other short runs wait for it and then
        # read the cache instead of embedding the same items again.
        first: dict[str, Run] = {}
        for run in runs:
            if not run.label_all:
                first.setdefault(run.dataset, run)
        cached = {name: threading.Event() for name in first}

        def scheduled(run: Run) -> None:
            if first.get(run.dataset) is run:
                try:
                    one(run)
                finally:
                    cached[run.dataset].set()
                return
            if not run.label_all and run.dataset in cached:
                cached[run.dataset].wait()
            one(run)

        order = ([r for r in runs if r.label_all] + list(first.values())
                 + [r for r in runs if not r.label_all and first.get(r.dataset) is not r])
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(scheduled, run) for run in order]:
                future.result()


def commits(results: dict[str, dict]) -> dict[str, list[str]]:
    """Commit -> the runs whose results it made (one key when nothing was resumed across commits)."""
    made: dict[str, list[str]] = {}
    for name, result in results.items():
        made.setdefault((result.get("bench") or {}).get("commit") or "unknown", []).append(name)
    return made


def read_machine(out: Path) -> dict:
    try:
        return json.loads((out / "simulate.json").read_text(encoding="utf-8"))["machine"]
    except (OSError, ValueError, KeyError):
        return {}


def finished(out: Path, run: Run, *, budget: int, step: int) -> bool:
    try:
        result = json.loads((out / "simulate" / f"{run.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return reusable(result, run, budget=budget, step=step)


def dataset_config(name: str, root: Path, tmp: Path, *, guarantee: str = "") -> Path:
    data_type, items, extra = DATASETS[name]
    with open(root / name / "labels.csv", newline="", encoding="utf-8") as fh:
        classes = sorted({row["label"] for row in csv.DictReader(fh)})
    config = tmp / f"{name}.yml"
    config.write_text(
        f"task: {{title: {name}}}\ndataset: {{directory: {json.dumps(str(root / name / items))}, "
        f"data_type: {data_type}{extra}}}\nlabel: {{type: classification, classes: {json.dumps(classes)}}}\n"
        f"model: {{directory: models{', proposal_guarantee: ' + guarantee if guarantee else ''}}}\nuser: bench\n",
        encoding="utf-8",
    )
    return config


def summarise(runs: list[dict]) -> dict:
    out: dict = {"items": runs[0]["items"], "holdout": runs[0]["holdout"], "strategies": {}}
    for r in runs:
        if r.get("label_all"):
            out["auto_label_all" if r["label_all"].get("auto_label") else "label_all"] = r["label_all"]
    # The label-all runs' few single labels are no learning curve: the curves are the other runs'.
    runs = [r for r in runs if not r.get("label_all")]
    for strategy in STRATEGIES:
        mine = [r for r in runs if r["strategy"] == strategy]
        if not mine:
            continue
        points: dict[int, list[float]] = {}  # labels -> holdout accuracy of each run
        for r in mine:
            for p in r["curve"]:
                if p["accuracy"] is not None:
                    points.setdefault(p["labels"], []).append(p["accuracy"])
        curve = [
            {"labels": n, "mean": round(statistics.fmean(a), 4), "min": round(min(a), 4), "max": round(max(a), 4),
             "runs": len(a)}
            for n, a in sorted(points.items())
        ]
        out["strategies"][strategy] = {"curve": curve, "wall_seconds": [r.get("wall_seconds") for r in mine]}
        for r in mine:
            if "reference" in r:
                out["reference"] = r["reference"]
    return out


def share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def point_at(curve: list[dict], labels: int) -> dict | None:
    return next((p for p in curve if p["labels"] == labels), None)


def plot(name: str, summary: dict, path: Path) -> None:
    colours = {"active": "#1d4ed8", "random": "#9ca3af"}
    with figure(path, (6.4, 4.0)) as ax:
        for strategy, data in summary["strategies"].items():
            xs = [p["labels"] for p in data["curve"]]
            ax.plot(xs, [p["mean"] for p in data["curve"]],
                    label=f"{strategy} (mean of {data['curve'][-1]['runs']})", color=colours[strategy], linewidth=2)
            ax.fill_between(xs, [p["min"] for p in data["curve"]], [p["max"] for p in data["curve"]],
                            color=colours[strategy], alpha=0.18, linewidth=0)
        reference = summary.get("reference")
        if reference and reference.get("accuracy") is not None:
            ax.axhline(reference["accuracy"], color="#059669", linestyle="--", linewidth=1,
                       label=f"all {reference['labels']:,} labels")
            ax.axhline(0.98 * reference["accuracy"], color="#059669", linestyle=":", linewidth=1,
                       label="98% of that")
        ax.axvline(GOAL_LABELS, color="#d1d5db", linewidth=1)
        ax.set_title(f"{name}: holdout accuracy vs human labels")
        ax.set_xlabel("human labels (TRAIN and TEST)")
        ax.set_ylabel("accuracy on held-out items")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)


def plot_costs(summary: dict, path: Path) -> None:
    rows = [(name, s["label_all"]) for name, s in summary.items() if s.get("label_all")]
    if not rows:
        return
    names = [n for n, _ in rows]
    singles = [la["single_labels"] * SECONDS_PER_LABEL / 60 for _, la in rows]
    seen = [la["batch_items_seen"] * SECONDS_PER_BATCH_ITEM / 60 for _, la in rows]
    rejections = [la["batch_rejections"] * SECONDS_PER_REJECTION / 60 for _, la in rows]
    corrections = [la.get("corrections", 0) * SECONDS_PER_CORRECTION / 60 for _, la in rows]
    with figure(path, (6.4, 3.2)) as ax:
        ax.barh(names, singles, color="#1d4ed8", label=f"single labels ({SECONDS_PER_LABEL} s)")
        ax.barh(names, seen, left=singles, color="#60a5fa", label=f"batch items seen ({SECONDS_PER_BATCH_ITEM} s)")
        left = [a + b for a, b in zip(singles, seen, strict=True)]
        ax.barh(names, rejections, left=left, color="#f87171", label=f"rejections ({SECONDS_PER_REJECTION} s)")
        left = [a + b for a, b in zip(left, rejections, strict=True)]
        ax.barh(names, corrections, left=left, color="#f59e0b", label=f"corrections ({SECONDS_PER_CORRECTION} s)")
        ax.set_xlabel("modeled human minutes to label every item")
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)


def markdown(report: dict) -> str:
    commits = report.get("commits") or {}
    if len(commits) == 1:
        lines = [f"Every run below was made at commit `{next(iter(commits))}`."]
    elif commits:
        lines = ["Runs by commit (kept by `--resume` from earlier runs with the same settings): " + "; ".join(
            f"`{commit}`: {', '.join(names) if len(names) <= 6 else f'{len(names)} runs (listed in simulate.json)'}"
            for commit, names in commits.items()) + "."]
    else:
        lines = []
    lines += ["", f"| dataset | items (holdout) | active @ {GOAL_LABELS} labels | random @ {GOAL_LABELS} | "
                  f"active @ {report['budget']} | random @ {report['budget']} | all labels | "
                  f"active @ {GOAL_LABELS} / all |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in report["datasets"].items():
        cells = []
        for labels in (GOAL_LABELS, report["budget"]):
            for strategy in STRATEGIES:
                p = point_at(s["strategies"].get(strategy, {}).get("curve", []), labels)
                cells.append(f"{p['mean']:.3f} ({p['min']:.3f}–{p['max']:.3f})" if p else "—")
        ref = (s.get("reference") or {}).get("accuracy")
        a80 = point_at(s["strategies"].get("active", {}).get("curve", []), GOAL_LABELS)
        ratio = f"{a80['mean'] / ref:.3f}" if ref and a80 else "—"
        lines.append(f"| {name} | {s['items']:,} ({s['holdout']:,}) | {' | '.join(cells)} | "
                     f"{f'{ref:.3f}' if ref is not None else '—'} | {ratio} |")
    lines += ["", f"| dataset | mean over {CURVE_FROM}–{report['budget']} labels: active | random | active ahead at |",
              "|---|---|---|---|"]
    for name, s in report["datasets"].items():
        active = {p["labels"]: p["mean"] for p in s["strategies"].get("active", {}).get("curve", [])}
        random = {p["labels"]: p["mean"] for p in s["strategies"].get("random", {}).get("curve", [])}
        steps = [n for n in sorted(active) if n in random and CURVE_FROM <= n <= report["budget"]]
        if steps:
            ahead = sum(active[n] > random[n] for n in steps)
            lines.append(f"| {name} | {statistics.fmean(active[n] for n in steps):.3f} | "
                         f"{statistics.fmean(random[n] for n in steps):.3f} | {ahead} of {len(steps)} steps |")
    if any(s.get("label_all") for s in report["datasets"].values()):
        lines += ["", "| dataset | single labels | batch items seen | rejections | corrections | missed | "
                      "auto-labels (right) | proposal precision | final label accuracy | first batch at (labels) | "
                      "modeled time | per item |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in report["datasets"].items():
        for title, la in ((name, s.get("label_all")), (f"{name} + auto-labels", s.get("auto_label_all"))):
            if not la:
                continue
            autos = la.get("auto_labels", 0)
            auto_cell = f"{autos:,} ({share(la.get('auto_label_accuracy'))})" if autos else "0"
            lines.append(
                f"| {title} | {la['single_labels']:,} | {la['batch_items_seen']:,} | {la['batch_rejections']:,} | "
                f"{la.get('corrections', 0):,} | {la.get('missed', 0):,} | "
                f"{auto_cell} | "
                f"{share(la['proposal_precision'])} | {share(la['final_label_accuracy'])} | "
                f"{la.get('first_batch_at') if la.get('first_batch_at') is not None else '—'} | "
                f"{la['seconds'] / 60:.0f} min | {la['seconds_per_item']:.2f} s |"
            )
    return "\n".join(lines) + "\n"
