from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from interchange.judgements_file import do_import_judgement_rows, read_judgement_rows
from interchange.management.commands.export_judgements import project_from_arg
from interchange.span_formats import do_import_span_records, read_span_file
from labeling.signals import announce_judgements_changed
from projects.label_kinds import kind_for
from projects.services import ProjectError


class Command(BaseCommand):
    help = ("Import a labels file as judgements for items nobody has labelled yet: Light Bulb CSV (classification), "
            "or spans JSONL, CoNLL (.conll/.bio/.iob) or spaCy DocBin (.spacy) for sequence tagging.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("file", help="the labels file; its extension says its format")

    def handle(self, *args, **options) -> None:
        project = project_from_arg(options["project"])
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"no file {path}")
        try:
            if kind_for(project).structured:
                records, problems = read_span_file(project, path)
                imported, more = do_import_span_records(project, records=records)
                problems += more
            else:
                imported, problems = do_import_judgement_rows(
                    project, rows=read_judgement_rows(path), config_dir=path.resolve().parent)
        except ProjectError as exc:
            raise CommandError(str(exc)) from exc
        if imported:
            announce_judgements_changed(project)
        for problem in problems[:20]:
            self.stderr.write(f"  {problem}")
        if len(problems) > 20:
            self.stderr.write(f"  ... and {len(problems) - 20} more")
        self.stdout.write(f"imported {imported} judgement(s); {len(problems)} not imported")
