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
    help = "Export a project's judgements as Light Bulb CSV or provenance JSONL."

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("--format", choices=["csv", "jsonl"], default="csv")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument("--history", action="store_true", help="include superseded judgements too")

    def handle(self, *args, **options) -> None:
        project = project_from_arg(options["project"])
        fmt, history = options["format"], options["history"]
        try:
            if options.get("output"):
                path = Path(options["output"])
                rows = atomic_write_text(path, lambda fh: write_judgements(project, fmt=fmt, out=fh, history=history))
                self.stderr.write(f"wrote {rows} judgement(s) to {path}")
            else:
                self.stdout.ending = ""  # rows carry their own newlines
                write_judgements(project, fmt=fmt, out=self.stdout, history=history)
        except ProjectError as exc:
            raise CommandError(str(exc)) from exc
