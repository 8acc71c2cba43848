"""`manage.py bench_model`: its options; the work is `bench/model_loop.py`."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError
from bench.model_loop import SCENARIOS, ModelLoopBench


class Command(BaseCommand):
    help = "Measure embedding throughput and judgement-to-new-version latency (see docs/benchmarks.md)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all")
        parser.add_argument("--repeats", type=int, default=5, help="judgement→version measurements per scenario")
        parser.add_argument("--finetune-beside", action="store_true",
                            help="measure judgement→version again while a real fine-tune runs at the deep worker's "
                            "priority")
        parser.add_argument("--out", default="", help="write the results as JSON here")
        parser.add_argument("--doc", default="", help="rewrite the bench:model block of this markdown file")

    def handle(self, *args, **options) -> None:
        try:
            ModelLoopBench(self.stdout, self.stderr).run(options)
        except BenchError as exc:
            raise CommandError(str(exc)) from None
