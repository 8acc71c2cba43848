"""`manage.py bench_simulate`: its options; the work is `bench/label_efficiency.py`."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError
from bench.label_efficiency import CACHE, DATASETS, LabelEfficiencyBench
from projects.models import ProposalGuarantee


class Command(BaseCommand):
    help = "Run simulate on ../shared/datasets (active vs random, several seeds) and plot label efficiency."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--dataset", action="append", choices=sorted(DATASETS), help="default: all four")
        parser.add_argument("--seeds", type=int, default=3)
        parser.add_argument("--budget", type=int, default=200)
        parser.add_argument("--step", type=int, default=10)
        parser.add_argument("--no-label-all", action="store_true", help="skip the label-everything runs")
        parser.add_argument("--proposal-guarantee", choices=ProposalGuarantee.values, default="",
                            help="the simulated projects' proposal guarantee (default: the product's, each_class)")
        parser.add_argument("--reviewer-miss-rate", type=float, default=0.05,
                            help="share of wrong proposals the simulated reviewer misses in batches (default 0.05)")
        parser.add_argument("--jobs", type=int, default=1,
                            help="simulations at once, each with cpus/jobs torch threads (default 1)")
        parser.add_argument("--resume", action="store_true",
                            help="keep results in OUT/simulate made with the same settings; run only the rest")
        parser.add_argument("--cache", default=str(CACHE), help="embedding cache kept between runs")
        parser.add_argument("--summarise-only", action="store_true",
                            help="run nothing: rebuild the plots, tables and simulate.json from OUT/simulate/*.json")
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "docs" / "bench"),
                            help="results go to OUT/simulate/*.json, plots to OUT/plots/*.png")
        parser.add_argument("--doc", default="", help="rewrite the bench:simulate block of this markdown file")

    def handle(self, *args, **options) -> None:
        try:
            LabelEfficiencyBench(self.stdout, self.stderr).run(options)
        except BenchError as exc:
            raise CommandError(str(exc)) from None
