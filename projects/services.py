"""Write paths for projects: every multi-row write goes through a `do_*` function here.

Services take model instances and keyword-only arguments and raise domain exceptions (never Http404);
the management commands, admin actions, HTML views and API all call these same functions.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from tqdm import tqdm

from labeling.models import Judgement, JudgementSource, Stage
from lightbulb_site.atomic import atomic_write

from .config import ProjectConfig
from .ingest import DatasetReader, ItemRecord, decode_text
from .models import Item, ItemStatus, Membership, Project, ProposalGuarantee, Role

logger = logging.getLogger(__name__)
User = get_user_model()

BULK_BATCH = 2000
EXPORT_CSV_COLUMNS = ["path", "label", "labelled_by", "stage", "time_taken"]


class ProjectError(Exception):
    """A domain error with a message fit to show a person."""


class ImportConflict(ProjectError):
    """The config disagrees with what the database already holds for this project."""


class MembershipError(ProjectError):
    pass


@dataclass
class ImportResult:
    project: Project
    created_project: bool = False
    created_user: bool = False
    items_added: int = 0
    items_rejected: int = 0
    items_existing: int = 0
    judgements_imported: int = 0
    judgements_unimported: int = 0
    backup_path: Path | None = None
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------------


def do_import_config(config: ProjectConfig, *, progress: bool = False) -> ImportResult:
    """Create or update the project a config describes, ingest new files, import judgements.

    Idempotent: re-running adds only what is new. Files are read before the transaction opens, so the
    database write lock is held only for the inserts; any failure inside rolls the whole import back.
    """
    existing = Project.objects.filter(slug=config.slug).first()
    if existing is not None:
        _check_compatible(existing, config)

    reader = _reader_for(
        root=config.dataset_directory,
        data_type=config.data_type,
        options=config.dataset_options,
        existing_keys=set(existing.items.values_list("key", flat=True)) if existing else set(),
        exclude={config.judgements_file} if config.judgements_file else set(),
    )
    records = _read_records(reader, progress=progress)
    judgement_rows = _read_judgement_rows(config.judgements_file) if config.judgements_file else []

    with transaction.atomic():
        owner, created_user = _get_or_create_owner(config.user)
        project, created_project = Project.objects.update_or_create(
            slug=config.slug,
            defaults={
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
            },
        )
        Membership.objects.update_or_create(project=project, user=owner, defaults={"role": Role.OWNER})
        added, rejected = _insert_records(project, records)
        result = ImportResult(
            project=project,
            created_project=created_project,
            created_user=created_user,
            items_added=added,
            items_rejected=rejected,
            items_existing=reader.report.skipped_existing,
            warnings=list(reader.report.warnings),
        )
        if judgement_rows:
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
            result.backup_path = _backup(config.judgements_file)
        revision = Project.objects.values_list("judgement_revision", flat=True).get(pk=project.pk)
        sync_judgements_file(project)
        Project.objects.filter(pk=project.pk).update(judgements_file_revision=revision)
    project.model_path.mkdir(parents=True, exist_ok=True)
    _after_items_changed(project)
    return result


def _after_items_changed(project: Project) -> None:
    """New items: have the worker embed them (imported lazily; modeling's services are torch-free)."""
    from modeling.services import request_embedding

    if project.labeling_supported:
        transaction.on_commit(lambda: request_embedding(project.pk))


def do_ingest_directory(project: Project, *, progress: bool = False) -> ImportResult:
    """Scan the project's dataset again and add files that appeared since the last import."""
    reader = _reader_for(
        root=project.dataset_path,
        data_type=project.data_type,
        options=project.dataset_options,
        existing_keys=set(project.items.values_list("key", flat=True)),
        exclude={Path(project.judgements_file)} if project.judgements_file else set(),
    )
    if not project.dataset_path.exists():
        raise ProjectError(f"dataset directory no longer exists: {project.dataset_directory}")
    records = _read_records(reader, progress=progress)
    with transaction.atomic():
        added, rejected = _insert_records(project, records)
    if added:
        _after_items_changed(project)
    return ImportResult(
        project=project,
        items_added=added,
        items_rejected=rejected,
        items_existing=reader.report.skipped_existing,
        warnings=list(reader.report.warnings),
    )


def _check_compatible(project: Project, config: ProjectConfig) -> None:
    if project.data_type != config.data_type and project.items.exists():
        raise ImportConflict(
            f"project '{project.slug}' holds {project.data_type} items; data_type cannot change to {config.data_type}"
        )
    removed = [c for c in project.classes if c not in config.classes]
    if removed:
        used = (
            Judgement.objects.filter(project=project, label__in=removed)
            .values("label")
            .annotate(n=Count("id"))
            .order_by("label")
        )
        if used:
            detail = ", ".join(f"{row['label']} ({row['n']})" for row in used)
            raise ImportConflict(f"cannot remove classes that have judgements: {detail}")


def _reader_for(
    *, root: Path, data_type: str, options: dict, existing_keys: set[str], exclude: set[Path]
) -> DatasetReader:
    return DatasetReader(
        root=root,
        data_type=data_type,
        options=options,
        existing_keys=existing_keys,
        exclude=exclude,
        max_image_pixels=settings.LIGHTBULB_MAX_IMAGE_PIXELS,
        max_text_bytes=settings.LIGHTBULB_MAX_TEXT_BYTES,
    )


def _read_records(reader: DatasetReader, *, progress: bool) -> list[ItemRecord]:
    files = reader.candidate_files()
    records: list[ItemRecord] = []
    for record in reader.records(
        tqdm(files, desc="Reading files", unit="file", disable=not progress or len(files) < 2, leave=False)
    ):
        records.append(record)
    return records


def _insert_records(project: Project, records: list[ItemRecord]) -> tuple[int, int]:
    objects = [
        Item(
            project=project,
            key=r.key,
            kind=r.kind,
            source=r.source,
            text=r.text,
            data=r.data,
            content_hash=r.content_hash,
            status=ItemStatus.REJECTED if r.rejection_reason else ItemStatus.UNLABELLED,
            rejection_reason=r.rejection_reason[:500],
            meta=r.meta,
        )
        for r in records
    ]
    for start in range(0, len(objects), BULK_BATCH):
        Item.objects.bulk_create(objects[start : start + BULK_BATCH])
    rejected = sum(1 for r in records if r.rejection_reason)
    return len(objects), rejected


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


# --------------------------------------------------------------------------------------------------
# Judgements file (Light Bulb CSV): import rows, export, keep in sync
# --------------------------------------------------------------------------------------------------


def _read_judgement_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text, _ = decode_text(path.read_bytes())
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "path" not in fields or "label" not in fields:
        raise ProjectError(f"judgements file {path} needs 'path' and 'label' columns, found {fields}")
    return [{(k or "").strip(): (v or "") for k, v in row.items()} | {"_line": reader.line_num} for row in reader]


def _key_for_path(raw: str, *, keys: set[str], dataset_root: Path, config_dir: Path) -> str | None:
    raw = raw.strip()
    if raw in keys:
        return raw
    p = Path(raw)
    candidates = [p] if p.is_absolute() else [config_dir / p, Path.cwd() / p, dataset_root / p]
    for candidate in candidates:
        try:
            rel = Path(os.path.normpath(candidate)).relative_to(dataset_root).as_posix()
        except ValueError:
            continue
        if rel in keys:
            return rel
    return None


def do_import_judgement_rows(project: Project, *, rows: list[dict], config_dir: Path) -> tuple[int, list[str]]:
    """Import Light Bulb CSV rows as judgements. Returns (imported, problems).

    Only items with no judgement in the database yet take a row: the database is the source of
    truth, so a stale file can never overwrite newer labels, and re-running imports nothing twice.
    Rows for one path import in file order, the last one becoming the current judgement.
    """
    dataset_root = Path(os.path.normpath(project.dataset_root))
    items = {key: pk for key, pk in project.items.exclude(status=ItemStatus.REJECTED).values_list("key", "id")}
    keys = set(items)
    already = set(Judgement.objects.filter(project=project).values_list("item_id", flat=True).distinct())
    by_lower = {c.lower(): c for c in project.classes}
    usernames = {u.username: u for u in User.objects.filter(username__in={r.get("labelled_by", "") for r in rows})}

    problems: list[str] = []
    per_item: dict[int, list[Judgement]] = {}
    for row in rows:
        line = row.get("_line")
        key = _key_for_path(row.get("path", ""), keys=keys, dataset_root=dataset_root, config_dir=config_dir)
        if key is None:
            problems.append(f"line {line}: unknown path {row.get('path')!r}")
            continue
        label = row.get("label", "").strip()
        label = label if label in project.classes else by_lower.get(label.lower(), "")
        if not label:
            problems.append(
                f"line {line}: label {row.get('label')!r} is not a class (allowed: {', '.join(project.classes)})"
            )
            continue
        raw_stage = (row.get("stage") or "").strip().upper()
        if raw_stage in ("", Stage.TRAIN):
            stage, source = Stage.TRAIN, JudgementSource.IMPORTED
        elif raw_stage == Stage.TEST:
            stage, source = Stage.TEST, JudgementSource.IMPORTED
        elif raw_stage == "MODEL_LABELLED":
            # Light Bulb wrote batch-confirmed model labels with this stage: a person confirmed them.
            stage, source = Stage.TRAIN, JudgementSource.CONFIRMED_PROPOSAL
        else:
            problems.append(f"line {line}: unknown stage {row.get('stage')!r} (TRAIN, TEST or MODEL_LABELLED)")
            continue
        item_id = items[key]
        if item_id in already:
            continue
        try:
            time_taken = float(row["time_taken"]) if row.get("time_taken", "").strip() else None
        except ValueError:
            time_taken = None
        who = (row.get("labelled_by") or "").strip()
        per_item.setdefault(item_id, []).append(
            Judgement(
                project=project,
                item_id=item_id,
                label=label,
                user=usernames.get(who),
                labelled_by=who,
                stage=stage,
                source=source,
                time_taken=time_taken,
                is_current=False,
            )
        )
    to_create: list[Judgement] = []
    for judgements in per_item.values():
        judgements[-1].is_current = True
        to_create.extend(judgements)
    with transaction.atomic():
        for start in range(0, len(to_create), BULK_BATCH):
            Judgement.objects.bulk_create(to_create[start : start + BULK_BATCH])
        ids = list(per_item)
        for start in range(0, len(ids), BULK_BATCH):
            Item.objects.filter(pk__in=ids[start : start + BULK_BATCH]).update(status=ItemStatus.LABELLED)
        if to_create:
            Project.objects.filter(pk=project.pk).update(judgement_revision=F("judgement_revision") + 1)
    return len(to_create), problems


def current_judgements(project: Project, *, history: bool = False):
    qs = Judgement.objects.filter(project=project).select_related("item", "user")
    if not history:
        qs = qs.filter(is_current=True)
    return qs.order_by("created_at", "id")


def write_judgements(project: Project, *, fmt: str, out: TextIO, history: bool = False) -> int:
    """Write judgements as Light Bulb CSV or provenance JSONL. Returns the number of rows."""
    rows = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_CSV_COLUMNS)
        for j in current_judgements(project, history=history).iterator(chunk_size=2000):
            writer.writerow([j.item.key, j.label, j.labelled_by, j.stage, "" if j.time_taken is None else j.time_taken])
            rows += 1
    elif fmt == "jsonl":
        for j in current_judgements(project, history=history).iterator(chunk_size=2000):
            out.write(
                json.dumps(
                    {
                        "path": j.item.key,
                        "label": j.label,
                        "labelled_by": j.labelled_by,
                        "user_id": j.user_id,
                        "stage": j.stage,
                        "source": j.source,
                        "time_taken": j.time_taken,
                        "created_at": j.created_at.isoformat(),
                        "is_current": j.is_current,
                        "judgement_id": j.pk,
                        "item_id": j.item_id,
                        "content_hash": j.item.content_hash,
                        "project": project.slug,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
            rows += 1
    else:
        raise ProjectError(f"unknown export format {fmt!r} (csv or jsonl)")
    return rows


def atomic_write_text(path: Path, writer) -> int:
    """Write a text file through a temporary sibling and os.replace, so readers never see half a file."""
    return atomic_write(path, writer, text=True)


def sync_judgements_file(project: Project) -> int | None:
    """Rewrite the config's judgements_file from the database (the source of truth)."""
    if not project.judgements_file:
        return None
    return atomic_write_text(Path(project.judgements_file), lambda fh: write_judgements(project, fmt="csv", out=fh))


def _backup(path: Path) -> Path | None:
    if not path.exists():
        return None
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    backup.write_bytes(path.read_bytes())
    return backup


# --------------------------------------------------------------------------------------------------
# Members
# --------------------------------------------------------------------------------------------------


def do_add_member(project: Project, *, user: User, role: str) -> Membership:
    if role not in Role.values:
        raise MembershipError(f"unknown role {role!r} (owner, annotator or viewer)")
    with transaction.atomic():
        previous = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
        membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
        if previous == Role.OWNER and role != Role.OWNER:
            _ensure_an_owner(project)
    return membership


def do_remove_member(project: Project, *, user: User) -> None:
    with transaction.atomic():
        deleted = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
        if deleted is None:
            raise MembershipError(f"{user.username} is not a member of this project")
        Membership.objects.filter(project=project, user=user).delete()
        if deleted == Role.OWNER:
            _ensure_an_owner(project)


def _ensure_an_owner(project: Project) -> None:
    # A project nobody owns cannot be managed from the pages; refuse to get there.
    if not Membership.objects.filter(project=project, role=Role.OWNER).exists():
        raise MembershipError("a project needs at least one owner")


# --------------------------------------------------------------------------------------------------
# Read helpers shared by pages and API
# --------------------------------------------------------------------------------------------------


def project_counts(project: Project) -> dict:
    items = project.items.aggregate(
        total=Count("id"),
        unlabelled=Count("id", filter=Q(status=ItemStatus.UNLABELLED)),
        labelled=Count("id", filter=Q(status=ItemStatus.LABELLED)),
        rejected=Count("id", filter=Q(status=ItemStatus.REJECTED)),
    )
    judgements = Judgement.objects.filter(project=project, is_current=True).aggregate(
        train=Count("id", filter=Q(stage=Stage.TRAIN)),
        test=Count("id", filter=Q(stage=Stage.TEST)),
        confirmed=Count("id", filter=Q(source=JudgementSource.CONFIRMED_PROPOSAL)),
    )
    per_class = dict(
        Judgement.objects.filter(project=project, is_current=True)
        .values_list("label")
        .annotate(n=Count("id"))
        .values_list("label", "n")
    )
    return {
        **items,
        **judgements,
        "per_class": [(c, per_class.get(c, 0)) for c in project.classes],
    }


def do_set_proposal_settings(project: Project, *, target: float | None = None, guarantee: str | None = None) -> Project:
    """Owners choose how precise proposals must be proven, and for what (each class or all proposals
    together); None leaves a setting as it is. The current model re-proposes at once."""
    changes: dict = {}
    if target is not None:
        try:
            target = float(target)
        except (TypeError, ValueError):
            raise ProjectError("target precision must be a number") from None
        if not 0.5 <= target <= 0.999:
            raise ProjectError("target precision must be between 50% and 99.9%")
        changes["target_precision"] = target
    if guarantee is not None:
        if guarantee not in ProposalGuarantee.values:
            choices = " or ".join(f"'{value}'" for value in ProposalGuarantee.values)
            raise ProjectError(f"the proposal guarantee must be {choices}, not {str(guarantee)[:40]!r}")
        changes["proposal_guarantee"] = guarantee
    if not changes:
        return project
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(**changes)
        for field, value in changes.items():
            setattr(project, field, value)
        from modeling.services import request_proposals

        transaction.on_commit(lambda: request_proposals(project.pk))
    return project
