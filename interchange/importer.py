"""Light Bulb YAML configs into projects: create or update the project, ingest its files, import its
judgements file (`do_import_config`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count

from labeling.models import Judgement
from projects.label_kinds import kind_for
from projects.models import LabelType, Membership, Project, Role
from projects.services import IngestResult, do_add_items, scan_dataset
from projects.signals import announce_items_added, announce_settings_changed

from .box_formats import do_import_box_records, read_box_file
from .config import ProjectConfig
from .judgements_file import (
    InterchangeError,
    backup,
    do_import_judgement_rows,
    read_judgement_rows,
    sync_judgements_file,
)
from .span_formats import do_import_span_records, read_span_file


class ImportConflict(InterchangeError):
    """The config disagrees with what the database already holds for this project."""


@dataclass
class ImportResult(IngestResult):
    created_project: bool = False
    created_user: bool = False
    judgements_imported: int = 0
    judgements_unimported: int = 0
    backup_path: Path | None = None


def do_import_config(config: ProjectConfig, *, progress: bool = False) -> ImportResult:
    """Create or update the project a config describes, ingest new files, import judgements.

    Idempotent: re-running adds only what is new. Files are read before the transaction opens, so the
    database write lock is held only for the inserts; any failure inside rolls the whole import back.
    """
    existing = Project.objects.filter(slug=config.slug).first()
    if existing is not None:
        _check_compatible(existing, config)

    scan = scan_dataset(
        root=config.dataset_directory,
        data_type=config.data_type,
        options=config.dataset_options,
        existing_keys=set(existing.items.values_list("key", flat=True)) if existing else set(),
        exclude={config.judgements_file} if config.judgements_file else set(),
        progress=progress,
    )
    sequence = config.label_type == LabelType.SEQUENCE
    boxes = config.label_type == LabelType.OBJECT_DETECTION
    structured = sequence or boxes
    judgement_rows = (read_judgement_rows(config.judgements_file)
                      if config.judgements_file and not structured else [])

    with transaction.atomic():
        owner, created_user = _get_or_create_owner(config.user)
        values = {
            "title": config.title,
            "description": config.description,
            "template": config.template,
            "data_type": config.data_type,
            "label_type": config.label_type,
            "classes": config.classes,
            "default_class": config.default_class,
            "dataset_directory": str(config.dataset_directory),
            "judgements_file": str(config.judgements_file) if config.judgements_file else "",
            "model_directory": str(config.model_directory),
            "config_path": str(config.path),
            "dataset_options": config.dataset_options,
            "model_options": config.model_options,
            "encoder": config.encoder,
            **({"sampling": config.sampling} if config.sampling else {}),
            **({"proposal_guarantee": config.proposal_guarantee} if config.proposal_guarantee else {}),
            **(
                {"auto_label_precision": config.auto_label_precision}
                if config.auto_label_precision is not None else {}
            ),
        }
        project, created_project = Project.objects.update_or_create(slug=config.slug, defaults=values)
        if existing is not None:
            # A re-import that changes how the model ranks or proposes must re-rank / re-propose now,
            # as the admin and the project page do, not wait for the next training.
            announce_settings_changed(
                project, fields=[name for name, value in values.items() if getattr(existing, name) != value]
            )
        Membership.objects.update_or_create(project=project, user=owner, defaults={"role": Role.OWNER})
        ingested = do_add_items(project, scan=scan)
        result = ImportResult(**vars(ingested), created_project=created_project, created_user=created_user)
        if structured and config.judgements_file and config.judgements_file.exists():
            # Read once the items exist: a CoNLL file without ids finds its items by their text, a box file
            # checks each box against its image's size.
            if boxes:
                box_records, problems = read_box_file(project, config.judgements_file)
                imported, more = do_import_box_records(project, records=box_records)
            else:
                records, problems = read_span_file(project, config.judgements_file)
                imported, more = do_import_span_records(project, records=records)
            problems += more
            result.judgements_imported = imported
            result.judgements_unimported = len(problems)
            result.warnings.extend(_summarise(problems, "judgements file"))
        elif judgement_rows:
            imported, problems = do_import_judgement_rows(
                project, rows=judgement_rows, config_dir=config.path.parent
            )
            result.judgements_imported = imported
            result.judgements_unimported = len(problems)
            result.warnings.extend(_summarise(problems, "judgements file"))

    if config.judgements_file:
        # A judgements file holding rows we could not import is copied aside before we rewrite it,
        # so nothing a person wrote is ever lost.
        if result.judgements_unimported:
            result.backup_path = backup(config.judgements_file)
        revision = Project.objects.values_list("judgement_revision", flat=True).get(pk=project.pk)
        sync_judgements_file(project)
        Project.objects.filter(pk=project.pk).update(judgements_file_revision=revision)
    project.model_path.mkdir(parents=True, exist_ok=True)
    announce_items_added(project)
    return result


def _check_compatible(project: Project, config: ProjectConfig) -> None:
    if project.data_type != config.data_type and project.items.exists():
        raise ImportConflict(
            f"project '{project.slug}' holds {project.data_type} items; data_type cannot change to {config.data_type}"
        )
    removed = [c for c in project.classes if c not in config.classes]
    kind = kind_for(project)
    if removed and kind.structured:
        counts: dict[str, int] = {}
        for value in Judgement.objects.filter(project=project).values_list("value", flat=True):
            for label in kind.part_labels(value):
                if label in removed:
                    counts[label] = counts.get(label, 0) + 1
        if counts:
            parts = "boxes" if kind.name == "object_detection" else "spans"
            detail = ", ".join(f"{label} ({n} {parts})" for label, n in sorted(counts.items()))
            raise ImportConflict(f"cannot remove entity types that spans use: {detail}")
    elif removed:
        used = (
            Judgement.objects.filter(project=project, label__in=removed)
            .values("label")
            .annotate(n=Count("id"))
            .order_by("label")
        )
        if used:
            detail = ", ".join(f"{row['label']} ({row['n']})" for row in used)
            raise ImportConflict(f"cannot remove classes that have judgements: {detail}")


def _get_or_create_owner(username: str) -> tuple[User, bool]:
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, False
    user = User(username=username)
    user.set_unusable_password()
    user.save()
    return user, True


def _summarise(problems: list[str], what: str, limit: int = 5) -> list[str]:
    if not problems:
        return []
    lines = [f"{what}: {len(problems)} row(s) not imported"]
    lines.extend(f"  {p}" for p in problems[:limit])
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return lines
