from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from interchange.box_formats import do_import_box_records, read_box_file
from interchange.judgements_file import do_import_judgement_rows, read_judgement_rows
from interchange.management.commands.export_judgements import project_from_arg
from interchange.span_formats import do_import_span_records, read_span_file
from labeling.signals import announce_judgements_changed
from projects.label_kinds import kind_for
from projects.services import ProjectError


class Command(BaseCommand):
    help = ("Import a labels file as judgements for items nobody has labelled yet: Light Bulb CSV (classification), "
            "spans JSONL, CoNLL (.conll/.bio/.iob) or spaCy DocBin (.spacy) for sequence tagging, or boxes as CSV, "
            "COCO (.json), a Pascal VOC or YOLO zip, or a folder of VOC .xml / YOLO .txt files for object detection.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("file", help="the labels file (or a folder of VOC / YOLO files); its extension says "
                                         "its format")

    def handle(self, *args, **options) -> None:
        project = project_from_arg(options["project"])
        path = Path(options["file"])
        kind = kind_for(project)
        if not path.is_file() and not (kind.name == "object_detection" and path.is_dir()):
            raise CommandError(f"no file {path}")
        try:
            if kind.name == "object_detection":
                box_records, problems = read_box_file(project, path)
                imported, more = do_import_box_records(project, records=box_records)
                problems += more
            elif kind.structured:
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
