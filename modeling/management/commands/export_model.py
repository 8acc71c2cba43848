"""Write a project's model as one self-contained `.lbmodel` file (see modeling/ml/bundle.py to load it)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from lightbulb_site.atomic import atomic_write
from modeling.services import NoModelYet, export_bundle
from projects.models import Project


class Command(BaseCommand):
    help = "Export a project's current (or a given) model version as a .lbmodel bundle."

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("out", help="file to write, e.g. digits.lbmodel")
        parser.add_argument(
            "--model-version", type=int, default=None, help="version number (default: the current one)"
        )

    def handle(self, *args, **options) -> None:
        key = options["project"]
        project = Project.objects.by_key(key)
        if project is None:
            raise CommandError(f"no project with id or slug '{key}'")
        out = Path(options["out"])
        try:
            name = atomic_write(out, lambda fh: export_bundle(project, out=fh, number=options["model_version"]))
        except NoModelYet as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"the model file cannot be read or written: {exc}") from None
        self.stdout.write(f"Wrote {name} ({out.stat().st_size:,} bytes) to {out}")
