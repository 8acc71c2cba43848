"""`manage.py bench_finetune`: its options; the work is `bench/finetune_study.py`."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError
from bench.finetune_study import FineTuneBench
from bench.label_efficiency import DATASETS


class Command(BaseCommand):
    help = "Holdout accuracy of the fine-tuned model against the head on the real datasets, and its time."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--dataset", action="append", choices=sorted(DATASETS), help="default: all four")
        parser.add_argument("--labels", default="200,500,all", help="labelled items per run (a quarter TEST)")
        parser.add_argument("--seeds", type=int, default=1)
        parser.add_argument("--background", action="store_true",
                            help="run at the deep worker's priority (modeling.priority.run_in_background)")
        parser.add_argument("--resume", action="store_true", help="keep the runs OUT/finetune.json already has")
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "docs" / "bench"))
        parser.add_argument("--doc", default="", help="rewrite the bench:finetune block of this markdown file")

    def handle(self, *args, **options) -> None:
        try:
            FineTuneBench(self.stdout, self.stderr).run(options)
        except BenchError as exc:
            raise CommandError(str(exc)) from None
