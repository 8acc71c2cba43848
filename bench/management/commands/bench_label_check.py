"""`manage.py bench_label_check`: its options; the work is `bench/label_check_study.py`."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError
from bench.label_check_study import DEFAULT_DATASETS, LabelCheckBench
from bench.label_efficiency import CACHE, DATASETS


class Command(BaseCommand):
    help = "Plant label errors in simulated labelling and measure how many the label check finds."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--dataset", action="append", choices=sorted(DATASETS),
                            help=f"default: {', '.join(DEFAULT_DATASETS)}")
        parser.add_argument("--seeds", type=int, default=3)
        parser.add_argument("--budget", type=int, default=400)
        parser.add_argument("--step", type=int, default=100, help="holdout accuracy every N labels")
        parser.add_argument("--noise", type=float, default=0.05, help="share of labels given another class")
        parser.add_argument("--resume", action="store_true", help="keep results made with the same settings")
        parser.add_argument("--cache", default=str(CACHE), help="embedding cache kept between runs")
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "docs" / "bench"))
        parser.add_argument("--doc", default="", help="rewrite the bench:label-check block of this markdown file")

    def handle(self, *args, **options) -> None:
        options["command"] = "manage.py bench_label_check " + " ".join(
            f"--{k} {options[k]}" for k in ("seeds", "budget", "noise"))
        try:
            LabelCheckBench(self.stdout, self.stderr).run(options)
        except BenchError as exc:
            raise CommandError(str(exc)) from None
