"""`manage.py bench_score`: its options; the work is `bench/serving.py`."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError
from bench.serving import ServingBench


class Command(BaseCommand):
    help = "Measure /score throughput (batch 1, batch 32, concurrent clients) against the raw encoder."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--out", default="", help="write the results as JSON here")
        parser.add_argument("--doc", default="", help="rewrite the bench:score block of this markdown file")

    def handle(self, *args, **options) -> None:
        try:
            ServingBench(self.stdout, self.stderr).run(options)
        except BenchError as exc:
            raise CommandError(str(exc)) from None
