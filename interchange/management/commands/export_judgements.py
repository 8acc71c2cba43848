from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from interchange.judgements_file import atomic_write_text, write_judgements
from projects.models import Project
from projects.services import ProjectError


def project_from_arg(value: str) -> Project:
    """A project named on the command line by id or slug."""
    project = Project.objects.by_key(value)
    if project is None:
        raise CommandError(f"no project with id or slug {value!r}")
    return project


class Command(BaseCommand):
    help = "Export a project's judgements as Light Bulb CSV or provenance JSONL (auto-labels marked, or left out)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("--format", choices=["csv", "jsonl"], default="csv")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument("--history", action="store_true", help="include superseded judgements too")
        parser.add_argument(
            "--no-auto", action="store_true",
            help="leave out auto-labels (source auto: the model labelled them and nobody saw them)",
        )

    def handle(self, *args, **options) -> None:
        project = project_from_arg(options["project"])
        fmt, history, auto = options["format"], options["history"], not options["no_auto"]
        try:
            if options.get("output"):
                path = Path(options["output"])
                rows = atomic_write_text(
                    path, lambda fh: write_judgements(project, fmt=fmt, out=fh, history=history, include_auto=auto)
                )
                self.stderr.write(f"wrote {rows} judgement(s) to {path}")
            else:
                self.stdout.ending = ""  # rows carry their own newlines
                write_judgements(project, fmt=fmt, out=self.stdout, history=history, include_auto=auto)
        except ProjectError as exc:
            raise CommandError(str(exc)) from exc
