"""Simulate labeling a dataset with known labels and measure label efficiency (see modeling/simulation.py).

    python manage.py simulate --config CONFIG.yml --oracle labels.csv --out result.json \\
        [--strategy active|random] [--budget 200] [--step 10] [--holdout 0.2] [--seed 0] [--label-all]

It never touches your database or your data folders: the command runs itself again in a child process
with a throwaway SQLite database and data folder (deleted afterwards), where the real services and
django-q2 tasks (synchronous) do the work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

INNER = "LIGHTBULB_SIMULATE_INNER"


class Command(BaseCommand):
    help = "Measure label efficiency on a dataset with known labels (active vs random, label-everything cost)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--config", required=True, help="a Light Bulb YAML config")
        parser.add_argument("--oracle", required=True, help="ground truth CSV: path,label or id,label")
        parser.add_argument("--out", required=True, help="write the result JSON here")
        parser.add_argument("--strategy", choices=["active", "random"], default="active",
                            help="queue order: the model's uncertainty (active) or uniformly random")
        parser.add_argument("--budget", type=int, default=200, help="human labels for the accuracy curve")
        parser.add_argument("--step", type=int, default=10, help="measure holdout accuracy every N labels")
        parser.add_argument("--holdout", type=float, default=0.2, help="share of items never shown, for accuracy")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--label-all", action="store_true",
                            help="then go on until every item has a label (single labels and proposal batches)")
        parser.add_argument("--reference", action="store_true",
                            help="also report the holdout accuracy of the same head trained on every pool label")
        parser.add_argument("--cache", default=str(Path(settings.DATA_ROOT) / "simulate-cache"),
                            help="embedding cache kept between runs (by content), so repeated runs are fast")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        if options["budget"] < 1 or options["step"] < 1:
            raise CommandError("--budget and --step must be at least 1")
        if not 0 <= options["holdout"] < 1:
            raise CommandError("--holdout must be at least 0 and below 1")
        for name in ("config", "oracle"):
            if not Path(options[name]).is_file():
                raise CommandError(f"--{name}: file not found: {options[name]}")
        if os.environ.get(INNER) == "1":
            self._simulate(options)
        else:
            self._in_throwaway_database(options)

    def _in_throwaway_database(self, options: dict) -> None:
        """Run the simulation in a child process whose database and data folder are temporary."""
        with tempfile.TemporaryDirectory(prefix="lightbulb-simulate-") as tmp:
            env = {
                **os.environ,
                INNER: "1",
                "DATABASE_URL": f"sqlite:///{tmp}/simulate.sqlite3",
                "LIGHTBULB_DATA_ROOT": tmp,
                "LIGHTBULB_MODEL_ROOT": f"{tmp}/models",
                "LIGHTBULB_Q_SYNC": "1",  # the real tasks, run inline
                "LIGHTBULB_MODEL_IN_THE_LOOP": "0",  # the simulation switches it on once it is set up
                "LIGHTBULB_TRAIN_DEBOUNCE_SECONDS": "0",
                "LIGHTBULB_EMBED_TASK_SECONDS": "0",
                "LOG_LEVEL": "WARNING",  # a line per task would drown the progress bar
            }
            if not env.get("SECRET_KEY"):
                env["LIGHTBULB_INSECURE_DEV_KEY"] = "1"  # a private child process that serves nothing
            manage = str(Path(settings.BASE_DIR) / "manage.py")
            migrate = subprocess.run([sys.executable, manage, "migrate", "--noinput", "-v", "0"], env=env,
                                     capture_output=True, text=True)
            if migrate.returncode != 0:
                raise CommandError(f"cannot create the throwaway database:\n{migrate.stderr[-2000:]}")
            argv = [
                sys.executable, manage, "simulate",
                "--config", str(Path(options["config"]).resolve()),
                "--oracle", str(Path(options["oracle"]).resolve()),
                "--out", str(Path(options["out"]).resolve()),
                "--strategy", options["strategy"], "--budget", str(options["budget"]), "--step", str(options["step"]),
                "--holdout", str(options["holdout"]), "--seed", str(options["seed"]),
                "--cache", str(Path(options["cache"]).resolve()),
            ]
            if options["label_all"]:
                argv.append("--label-all")
            if options["reference"]:
                argv.append("--reference")
            if options["no_progress"]:
                argv.append("--no-progress")
            done = subprocess.run(argv, env=env, stdout=sys.stdout, stderr=sys.stderr)
            if done.returncode != 0:
                raise CommandError(f"the simulation failed (exit {done.returncode})")

    def _simulate(self, options: dict) -> None:
        from modeling.simulation import Options, Simulation, SimulationError, text_progress, write_result
        from projects.config import ConfigError
        from projects.services import ProjectError

        opts = Options(
            config=Path(options["config"]), oracle=Path(options["oracle"]), strategy=options["strategy"],
            budget=options["budget"], step=options["step"], holdout=options["holdout"], seed=options["seed"],
            label_all=options["label_all"], reference=options["reference"], cache=Path(options["cache"]) if options["cache"] else None,
            progress=None if options["no_progress"] else text_progress(),
        )
        started = time.monotonic()
        try:
            result = Simulation(opts, work=Path(settings.DATA_ROOT)).run()
        except (SimulationError, ConfigError, ProjectError) as exc:
            self.stderr.write(f"simulate: {exc}")
            raise SystemExit(2) from None
        write_result(result, Path(options["out"]))
        last = result.curve[-1] if result.curve else {}
        summary = f"{result.strategy}, seed {result.seed}: {last.get('labels', 0)} labels -> holdout accuracy {last.get('accuracy')}"
        if result.reference:
            summary += f" (all {result.reference['labels']} labels: {result.reference['accuracy']})"
        if result.label_all:
            la = result.label_all
            summary += (f"; label-all: {la['single_labels']} single labels, {la['batch_items_seen']} batch items "
                        f"({la['batch_rejections']} rejected), {la['seconds_per_item']} s/item modeled")
        self.stdout.write(f"{summary} ({time.monotonic() - started:.0f} s)")
