"""Simulate labeling a dataset with known labels and measure label efficiency (see bench/simulation.py).

    python manage.py simulate --config CONFIG.yml --oracle labels.csv --out result.json \\
        [--strategy active|random] [--budget 200] [--step 10] [--holdout 0.2] [--seed 0] [--label-all] \\
        [--reviewer-miss-rate 0.05] [--auto-label]
    python manage.py simulate --config ner.yml --oracle labels.jsonl --out result.json [--checkpoints 50,100,400]
        # a sequence tagging config: the oracle is {"id", "text", "spans"} lines (bench/sequence.py)
    python manage.py simulate --config trees.yml --oracle labels.csv --out result.json [--checkpoints 4,8,16,24]
        # a detection config: the oracle is path,xmin,ymin,xmax,ymax,label rows (bench/detection.py)
    python manage.py simulate --config CONFIG.yml --oracle labels.csv --out result.json \
        --annotators 3 --annotator-error 0.1 [--overlap-share 0.25] [--overlap-k 2] [--reviewer-error 0]

It never touches your database or your data folders: the command runs itself again in a child process
with a throwaway SQLite database and data folder (deleted afterwards), where the real services and
django-q2 tasks (synchronous) do the work.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.simulation import SimulationError, run_in_throwaway_database, simulate_here
from bench.team import team_here


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
        parser.add_argument("--auto-label", action="store_true",
                            help="with --label-all: the owner takes 'label the rest automatically' whenever a model "
                                 "version can (0 s per item), people label what is left")
        parser.add_argument("--reviewer-miss-rate", type=float, default=0.0,
                            help="chance that the reviewer misses a wrong proposal in a batch (it stays ticked)")
        parser.add_argument("--label-noise", type=float, default=0.0,
                            help="the annotator gives another class to this share of the curve's labels; the run "
                                 "ends with a label check that looks for them")
        parser.add_argument("--sampling", choices=["margin", "entropy"], default=None,
                            help="sequence tagging: the uncertainty rule of the active order (default: the "
                                 "project's, margin = 1 - the least sure decision)")
        parser.add_argument("--checkpoints", default="",
                            help="sequence tagging and detection: train and score at these labelled counts "
                                 "(default 50,100,200,300,400 texts; 4,8,12,16,20,24 images)")
        parser.add_argument("--reference", action="store_true",
                            help="also report the holdout accuracy of the same head trained on every pool label")
        parser.add_argument("--cache", default=str(Path(settings.DATA_ROOT) / "simulate-cache"),
                            help="embedding cache kept between runs (by content), so repeated runs are fast")
        parser.add_argument("--no-progress", action="store_true")
        team = parser.add_argument_group("a team (bench/team.py): overlap, agreement and adjudication")
        team.add_argument("--annotators", type=int, default=1,
                          help="simulated annotators taking turns (2 or more: a team run instead of the curve)")
        team.add_argument("--annotator-error", type=float, default=0.1,
                          help="with --annotators: each answer is wrong with this probability, independently")
        team.add_argument("--overlap-share", type=float, default=0.25,
                          help="with --annotators: the project's overlap share (0.25 puts every TEST item in it)")
        team.add_argument("--overlap-k", type=int, default=2, help="with --annotators: people per overlap item")
        team.add_argument("--reviewer-error", type=float, default=0.0,
                          help="with --annotators: the reviewer who decides disagreements errs this often")

    def handle(self, *args, **options) -> None:
        if options["budget"] < 1 or options["step"] < 1:
            raise CommandError("--budget and --step must be at least 1")
        if not 0 <= options["holdout"] < 1:
            raise CommandError("--holdout must be at least 0 and below 1")
        if not 0 <= options["reviewer_miss_rate"] <= 1:
            raise CommandError("--reviewer-miss-rate must be between 0 and 1")
        if options["annotators"] < 1:
            raise CommandError("--annotators must be at least 1")
        if options["annotators"] > 1 and (options["label_all"] or options["auto_label"] or options["reference"]):
            raise CommandError("--label-all, --auto-label and --reference are single-annotator runs; "
                               "a team run (--annotators 2 or more) measures agreement and TEST label accuracy")
        for name in ("config", "oracle"):
            if not Path(options[name]).is_file():
                raise CommandError(f"--{name}: file not found: {options[name]}")
        if settings.LIGHTBULB_SIMULATE_INNER:
            if options["annotators"] > 1:
                team_here(options, stdout=self.stdout, stderr=self.stderr)
            else:
                simulate_here(options, stdout=self.stdout, stderr=self.stderr)
            return
        try:
            run_in_throwaway_database(options, stdout=self.stdout, stderr=self.stderr)
        except SimulationError as exc:
            raise CommandError(str(exc)) from None

