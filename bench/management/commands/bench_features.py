"""`manage.py bench_features`: its options; the work is `bench/feature_study.py`."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.benchdoc import BenchError
from bench.feature_study import study
from bench.label_efficiency import DATASETS


class Command(BaseCommand):
    help = "Learning curves per feature set (encoders, concatenations, flip averaging, CV choice) on a dataset."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datasets", default=str(Path(settings.BASE_DIR).parent / "shared" / "datasets"))
        parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
        parser.add_argument("--sets", required=True,
                            help="comma-separated feature sets: encoder names joined by + (concatenated), "
                                 "~flip after an image encoder, a|b for cross-validation's choice")
        parser.add_argument("--cold-start", choices=["random", "typiclust"], default="random",
                            help="how the 10 TRAIN items before the first model are picked")
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "docs" / "bench" / "feature-sets"))

    def handle(self, *args, **options) -> None:
        from projects.encoders import REGISTRY

        sets = [s.strip() for s in options["sets"].split(",") if s.strip()]
        for fs in sets:
            for part in fs.replace("|", "+").split("+"):
                if part.removesuffix("~flip") not in REGISTRY:
                    raise CommandError(f"unknown encoder {part!r} in {fs!r} (known: {', '.join(sorted(REGISTRY))})")
        try:
            study(Path(options["datasets"]), options["dataset"], sets, out=Path(options["out"]),
                  cold_start=options["cold_start"], log=lambda line: self.stdout.write(line))
        except BenchError as exc:
            raise CommandError(str(exc)) from None
