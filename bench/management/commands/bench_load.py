"""`manage.py bench_load`: its options; the work is `bench/load.py`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError
from bench.load import LoadBench


class Command(BaseCommand):
    help = "N concurrent annotators (real HTTP to gunicorn) on a 100,000-item project, on SQLite and PostgreSQL."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--annotators", type=int, default=20)
        parser.add_argument("--items", type=int, default=100_000)
        parser.add_argument("--seconds", type=float, default=60.0, help="how long each run lasts")
        parser.add_argument("--warmup", type=float, default=5.0,
                            help="seconds of load before the measured run (each server thread connects then)")
        parser.add_argument("--connection-per-request", action="store_true",
                            help="a new connection for every request, as a proxy without upstream keep-alive makes "
                                 "them (default: one per annotator, kept open, as docs/deploy.md's proxy keeps them)")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--think", type=float, default=2.5,
                            help="seconds each annotator looks at an item before the next lease (2.5: the cost "
                                 "model's single label; 0: as fast as the server answers)")
        parser.add_argument("--backend", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
        parser.add_argument("--postgres-url", default="postgres://lightbulb:lightbulb@127.0.0.1:5432/lightbulb",
                            help="a PostgreSQL database whose role may create databases (make services)")
        parser.add_argument("--kill", action="store_true",
                            help="also a PostgreSQL run with the model loop on, killing gunicorn, the qcluster and "
                                 "the inference worker with SIGKILL during it")
        parser.add_argument("--out", default="", help="write the results as JSON here")
        parser.add_argument("--doc", default="", help="rewrite the bench:load block of this markdown file")

    def handle(self, *args, **options) -> None:
        if options["annotators"] < 1 or options["items"] < 1 or options["seconds"] <= 0 or options["warmup"] < 0:
            raise CommandError("--annotators, --items and --seconds must be positive, --warmup not negative")
        try:
            LoadBench(self.stdout, self.stderr).run(options)
        except BenchError as exc:
            raise CommandError(str(exc)) from None
