from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from interchange.judgements_file import (
    atomic_write_text,
    current_judgements,
    export_chunks,
    export_formats,
    write_judgements,
)
from interchange.span_formats import write_docbin
from lightbulb_site.atomic import atomic_write
from projects.label_kinds import kind_for
from projects.models import Project
from projects.services import ProjectError


def project_from_arg(value: str) -> Project:
    """A project named on the command line by id or slug."""
    project = Project.objects.by_key(value)
    if project is None:
        raise CommandError(f"no project with id or slug {value!r}")
    return project


class Command(BaseCommand):
    help = ("Export a project's judgements (auto-labels marked, or left out): classification as Light Bulb CSV or "
            "provenance JSONL; sequence tagging as spans JSONL, CoNLL (BIO) or spaCy's DocBin (--format docbin -o F); "
            "object detection as COCO JSON, CSV, or Pascal VOC / YOLO zips (-o F).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("--format", choices=["csv", "jsonl", "conll", "docbin", "coco", "voc", "yolo"],
                            help="default: csv (classification), jsonl (sequence tagging) or coco (detection)")
        parser.add_argument("--output", "-o", help="file to write (default: standard output; DocBin needs one)")
        parser.add_argument("--history", action="store_true", help="include superseded judgements too")
        parser.add_argument(
            "--no-auto", action="store_true",
            help="leave out auto-labels (source auto: the model labelled them and nobody saw them)",
        )

    def handle(self, *args, **options) -> None:
        project = project_from_arg(options["project"])
        fmt = options["format"] or export_formats(project)[0]
        history, auto = options["history"], not options["no_auto"]
        try:
            if fmt == "docbin":
                if not kind_for(project).structured:
                    raise CommandError("DocBin holds spans: it is a sequence tagging project's format")
                if not options.get("output"):
                    raise CommandError("a DocBin is binary: name the file to write with --output")
                path = Path(options["output"])
                chosen = current_judgements(project, history=history, include_auto=auto)
                self.stderr.write(f"wrote {write_docbin(project, path, chosen=chosen)} text(s) to {path}")
            elif fmt in ("voc", "yolo"):
                if not options.get("output"):
                    raise CommandError(f"a {fmt.upper()} export is a zip archive: name the file to write with --output")
                path = Path(options["output"])
                chunks = export_chunks(project, fmt=fmt, history=history, include_auto=auto)

                def write(fh) -> None:
                    for chunk in chunks:
                        fh.write(chunk)

                atomic_write(path, write)
                rows = current_judgements(project, history=history, include_auto=auto).count()
                self.stderr.write(f"wrote {rows} image(s) to {path}")
            elif fmt not in export_formats(project):
                raise CommandError(f"{fmt} is not a format of this project: {', '.join(export_formats(project))}")
            elif options.get("output"):
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
