"""Write paths for projects: every multi-row write goes through a `do_*` function here.

Services take model instances and keyword-only arguments and raise domain exceptions (never Http404);
the management commands, admin actions, HTML views and API all call these same functions. Changes the
apps above care about are announced through `projects.signals`; this app imports nothing above it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from lightbulb_site.errors import DomainError

from .ingest import DatasetReader, ItemRecord
from .models import (
    BINARY_CLASSES,
    SUPPORTED_LABEL_TYPES,
    DataType,
    Item,
    ItemStatus,
    LabelType,
    Membership,
    Project,
    ProposalGuarantee,
    Role,
)
from .signals import announce_items_added, announce_members_changed, announce_settings_changed

BULK_BATCH = 2000


class ProjectError(DomainError):
    """A domain error with a message fit to show a person."""


class MembershipError(ProjectError):
    pass


@dataclass
class IngestResult:
    project: Project
    items_added: int = 0
    items_rejected: int = 0
    items_existing: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class DatasetScan:
    """What reading a dataset found: the new files' records and what was passed over."""

    records: list[ItemRecord]
    skipped_existing: int
    warnings: list[str]


# --------------------------------------------------------------------------------------------------
# Projects
# --------------------------------------------------------------------------------------------------

TITLE_MAX = 300
DESCRIPTION_MAX = 20_000
CLASS_NAME_MAX = 200
CLASSES_MAX = 1000


def parse_classes(raw: object) -> list[str]:
    """Class names as a person types or pastes them: a list, or text with one per line or separated by
    commas (a line holding commas is split at them). Blank entries are dropped, spaces trimmed, order kept."""
    if isinstance(raw, (list, tuple)):
        parts = [str(entry) for entry in raw]
    else:
        parts = [piece for line in str(raw or "").splitlines() for piece in line.split(",")]
    return [part.strip() for part in parts if part.strip()]


def check_classes(classes: list[str], *, label_type: str) -> list[str]:
    """The classes a project of this label type gets, or ProjectError saying what is wrong with them."""
    if label_type == LabelType.BINARY:
        return list(BINARY_CLASSES)
    if label_type == LabelType.SEQUENCE:
        # One entity type is a real project ("mark every person"); no spans is always an answer.
        if not classes:
            raise ProjectError("a sequence tagging project needs at least one entity type")
    elif label_type == LabelType.OBJECT_DETECTION:
        # One class is the common case (trees, cars); "no objects here" is always an answer.
        if not classes:
            raise ProjectError("an object detection project needs at least one class")
    elif len(classes) < 2:
        raise ProjectError("a classification project needs at least two classes")
    if len(classes) > CLASSES_MAX:
        raise ProjectError(f"a project may have at most {CLASSES_MAX:,} classes, not {len(classes):,}")
    long = [c for c in classes if len(c) > CLASS_NAME_MAX]
    if long:
        raise ProjectError(f"class names may be at most {CLASS_NAME_MAX} characters ({long[0][:40]}...)")
    seen: dict[str, str] = {}
    for name in classes:
        # "Cat" and "cat" would be two buttons nobody can tell apart, and one key.
        if name.casefold() in seen:
            raise ProjectError(f"the class {name!r} is listed twice")
        seen[name.casefold()] = name
    return classes


def unique_slug(title: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80] or "project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def can_create_projects(user: User) -> bool:
    """Who may start a project in the browser or the API: the "Can add project" permission (superusers, and
    whoever an admin grants it to), or every signed-in user where LIGHTBULB_ANYONE_CREATES_PROJECTS is on."""
    if not user.is_authenticated or not user.is_active:
        return False
    return settings.LIGHTBULB_ANYONE_CREATES_PROJECTS or user.has_perm("projects.add_project")


class ProjectCreationRefused(ProjectError):
    status_code = 403


def do_create_project(
    *,
    creator: User,
    title: str,
    data_type: str,
    label_type: str,
    classes: list[str],
    description: str = "",
    template: str = "",
    dataset_directory: Path | None = None,
) -> Project:
    """A new project owned by its creator, its data to come (an upload, or the server folder given here,
    which the caller has checked is inside an allowed root). Without a server folder the project's data
    folder is its own under LIGHTBULB_UPLOAD_ROOT, made now.

    Preconditions: `can_create_projects(creator)`; otherwise ProjectCreationRefused (403)."""
    if not can_create_projects(creator):
        raise ProjectCreationRefused("you may not create projects here; an administrator can allow it")
    title = str(title or "").strip()
    if not title:
        raise ProjectError("a project needs a title")
    if len(title) > TITLE_MAX:
        raise ProjectError(f"the title may be at most {TITLE_MAX} characters")
    if data_type not in DataType.values:
        raise ProjectError(f"the data type must be one of {', '.join(DataType.values)}, not {str(data_type)[:40]!r}")
    if label_type not in SUPPORTED_LABEL_TYPES:
        choices = ", ".join(sorted(str(t) for t in SUPPORTED_LABEL_TYPES))
        raise ProjectError(f"the label type must be one of {choices}, not {str(label_type)[:40]!r}")
    if label_type == LabelType.SEQUENCE and data_type == DataType.IMAGES:
        raise ProjectError("sequence tagging marks spans of text: its data type is text or json (a \"text\" field)")
    if label_type == LabelType.OBJECT_DETECTION and data_type != DataType.IMAGES:
        raise ProjectError("object detection draws boxes on images: its data type is images")
    classes = check_classes(classes, label_type=label_type)
    description = str(description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        raise ProjectError(f"the description may be at most {DESCRIPTION_MAX:,} characters")
    with transaction.atomic():
        slug = unique_slug(title)
        folder = dataset_directory if dataset_directory is not None else settings.LIGHTBULB_UPLOAD_ROOT / slug
        project = Project.objects.create(
            slug=slug, title=title, description=description, template=str(template or ""), data_type=data_type,
            label_type=label_type, classes=classes, dataset_directory=str(folder),
        )
        Membership.objects.create(project=project, user=creator, role=Role.OWNER)
    if dataset_directory is None:
        folder.mkdir(parents=True, exist_ok=True)
    project.model_path.mkdir(parents=True, exist_ok=True)
    return project


def uploads_folder(project: Project) -> bool:
    """Whether the project's data folder is one Light Bulb made for uploads (so uploads may be written there)."""
    try:
        return project.dataset_path.resolve().is_relative_to(Path(settings.LIGHTBULB_UPLOAD_ROOT).resolve())
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------------


def scan_dataset(
    *, root: Path, data_type: str, options: dict, existing_keys: set[str], exclude: set[Path], progress: bool = False
) -> DatasetScan:
    """Read every file of a dataset that is not an item yet (outside any transaction: reading is slow)."""
    reader = DatasetReader(
        root=root,
        data_type=data_type,
        options=options,
        existing_keys=existing_keys,
        exclude=exclude,
        max_image_pixels=settings.LIGHTBULB_MAX_IMAGE_PIXELS,
        max_text_bytes=settings.LIGHTBULB_MAX_TEXT_BYTES,
    )
    files = reader.candidate_files()
    records: list[ItemRecord] = []
    for record in reader.records(
        tqdm(files, desc="Reading files", unit="file", disable=not progress or len(files) < 2, leave=False)
    ):
        records.append(record)
    return DatasetScan(records=records, skipped_existing=reader.report.skipped_existing,
                       warnings=list(reader.report.warnings))


def do_add_items(project: Project, *, scan: DatasetScan) -> IngestResult:
    """Insert a scan's records as items (rejected files too, with their reason).

    Runs inside the caller's transaction; the caller announces `items_added` once it knows the whole
    write stands."""
    records = scan.records
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
    return IngestResult(project=project, items_added=len(objects), items_rejected=rejected,
                        items_existing=scan.skipped_existing, warnings=list(scan.warnings))


def do_ingest_directory(project: Project, *, progress: bool = False) -> IngestResult:
    """Scan the project's dataset again and add files that appeared since the last import."""
    if not project.dataset_path.exists():
        raise ProjectError(f"dataset directory no longer exists: {project.dataset_directory}")
    scan = scan_dataset(
        root=project.dataset_path,
        data_type=project.data_type,
        options=project.dataset_options,
        existing_keys=set(project.items.values_list("key", flat=True)),
        exclude={Path(project.judgements_file)} if project.judgements_file else set(),
        progress=progress,
    )
    with transaction.atomic():
        result = do_add_items(project, scan=scan)
        if result.items_added:
            announce_items_added(project)
    return result


def duplicate_hashes(project: Project):
    """Content hashes that more than one of the project's items share (a queryset of hashes)."""
    from django.db.models import Count

    return (Item.objects.filter(project=project).exclude(content_hash="").values("content_hash")
            .annotate(n=Count("id")).filter(n__gt=1).values("content_hash"))


@dataclass
class DuplicatesDropped:
    dropped: int
    labelled_kept: int


def do_drop_duplicates(project: Project, *, now: datetime | None = None) -> DuplicatesDropped:
    """Of items with identical content, the first (lowest id) stays and every other unlabelled one that nobody
    is labelling becomes a rejected item saying which one it repeats (it is kept, so an owner can bring it back
    with `do_keep_duplicate`). Duplicates that already have labels stay as they are: dropping them would throw
    away a person's work."""
    now = now or timezone.now()
    dropped = labelled = 0
    with transaction.atomic():
        rows = (Item.objects.filter(project=project, content_hash__in=duplicate_hashes(project))
                .order_by("content_hash", "id").values_list("id", "content_hash", "key", "status", "leased_until"))
        first: dict[str, str] = {}
        drop: dict[str, list[int]] = {}
        # Copies an owner chose to keep stay kept.
        kept = set(Item.objects.filter(project=project, meta__duplicate_kept=True).values_list("id", flat=True))
        for pk, digest, key, status, leased_until in rows:
            if digest not in first:
                if status != ItemStatus.REJECTED:
                    first[digest] = key
                continue
            if status == ItemStatus.UNLABELLED and not (leased_until and leased_until > now) and pk not in kept:
                drop.setdefault(first[digest], []).append(pk)
            elif status in (ItemStatus.LABELLED, ItemStatus.PARTIAL, ItemStatus.DISPUTED):
                labelled += 1
        for twin, ids in drop.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                # Conditional: an item leased or labelled since it was read stays.
                reason = f"duplicate of {twin}"[:500]
                dropped += (Item.objects.filter(pk__in=chunk, status=ItemStatus.UNLABELLED)
                            .exclude(leased_until__gt=now)
                            .update(status=ItemStatus.REJECTED, rejection_reason=reason))
                for item in Item.objects.filter(pk__in=chunk, rejection_reason=reason).only("meta"):
                    if item.meta.get("duplicate_of") != twin:
                        item.meta = {**item.meta, "duplicate_of": twin}
                        item.save(update_fields=["meta"])
    return DuplicatesDropped(dropped=dropped, labelled_kept=labelled)


def do_keep_duplicate(project: Project, *, item: Item) -> Item:
    """Bring a dropped duplicate back as an item to label. Preconditions: it was rejected as a duplicate (a
    file that cannot be read stays rejected)."""
    if item.project_id != project.pk:
        raise ProjectError("that item belongs to another project")
    with transaction.atomic():
        changed = Item.objects.filter(
            pk=item.pk, status=ItemStatus.REJECTED, rejection_reason__startswith="duplicate of "
        ).update(status=ItemStatus.UNLABELLED, rejection_reason="")
        if not changed:
            raise ProjectError("only an item dropped as a duplicate can be kept; this one is not")
        item.refresh_from_db()
        item.meta = {**item.meta, "duplicate_kept": True}  # "drop duplicates" leaves it alone from now on
        item.save(update_fields=["meta"])
        announce_items_added(project)
    item.refresh_from_db()
    return item


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
        if previous is not None and previous != role:
            announce_members_changed(project)
    return membership


def do_remove_member(project: Project, *, user: User) -> None:
    with transaction.atomic():
        deleted = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
        if deleted is None:
            raise MembershipError(f"{user.username} is not a member of this project")
        Membership.objects.filter(project=project, user=user).delete()
        if deleted == Role.OWNER:
            _ensure_an_owner(project)
        announce_members_changed(project)


def _ensure_an_owner(project: Project) -> None:
    # A project nobody owns cannot be managed from the pages; refuse to get there.
    if not Membership.objects.filter(project=project, role=Role.OWNER).exists():
        raise MembershipError("a project needs at least one owner")


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


def _share(value: object, *, what: str, low: float, high: float) -> float:
    """A setting given as a share (0.8 for 80%), checked against its range, or ProjectError saying why."""
    try:
        share = float(value)  # type: ignore[arg-type]  # anything a form or a script sends; float() decides
    except (TypeError, ValueError):
        raise ProjectError(f"{what} must be a number") from None
    if not low <= share <= high:
        raise ProjectError(f"{what} must be between {low * 100:g}% and {high * 100:g}%")
    return share


GUIDELINES_MAX = 100_000


def do_set_guidelines(project: Project, *, text: str, now: datetime | None = None) -> Project:
    """Owners write how to label (Markdown; HTML is sanitised when shown). Empty removes them."""
    text = str(text or "").replace("\r\n", "\n").strip()
    if len(text) > GUIDELINES_MAX:
        raise ProjectError(f"guidelines may be at most {GUIDELINES_MAX:,} characters, not {len(text):,}")
    stamp = (now or timezone.now()) if text else None
    Project.objects.filter(pk=project.pk).update(guidelines=text, guidelines_updated_at=stamp)
    project.guidelines, project.guidelines_updated_at = text, stamp
    return project


def do_set_class_keys(project: Project, *, keys: dict[str, str]) -> Project:
    """Owners choose a class's key ({class: key}: one letter or digit; empty gives the class its automatic keys
    back). A class with a chosen key has that key alone on every screen that does not reserve it (the batch
    grid keeps s, u, x and a). Bad input raises ProjectError and changes nothing."""
    cleaned: dict[str, str] = {}
    for name, raw in keys.items():
        if name not in project.classes:
            raise ProjectError(f"{str(name)[:40]!r} is not a class of this project")
        key = str(raw or "").strip().lower()
        if not key:
            continue
        if len(key) != 1 or not key.isalnum():
            raise ProjectError(f"the key for {name!r} must be one letter or digit, not {str(raw)[:10]!r}")
        twin = next((other for other, k in cleaned.items() if k == key), None)
        if twin is not None:
            raise ProjectError(f"{key!r} is chosen for both {twin!r} and {name!r}")
        cleaned[name] = key
    Project.objects.filter(pk=project.pk).update(class_keys=cleaned)
    project.class_keys = cleaned
    return project


def do_set_labelling_settings(
    project: Project, *, show_model_guesses: bool, overlap_share: float | None = None, overlap_k: int | None = None
) -> Project:
    """Owners choose whether annotators see the model's guess on TRAIN items while labelling (TEST items
    never show one: labeling.blind), and the overlap: the share of items labelled by `overlap_k` people
    independently (0-1; 2-10 people). A new share applies to items leased from now on; items already in
    an overlap round keep theirs. Bad values raise ProjectError and change nothing."""
    values: dict[str, object] = {"show_model_guesses": bool(show_model_guesses)}
    if overlap_share is not None:
        if not 0.0 <= float(overlap_share) <= 1.0:
            raise ProjectError(f"the overlap share is between 0% and 100%, not {float(overlap_share):.0%}")
        values["overlap_share"] = float(overlap_share)
    if overlap_k is not None:
        if not 2 <= int(overlap_k) <= 10:
            raise ProjectError(f"overlap items are labelled by 2 to 10 people, not {overlap_k}")
        values["overlap_k"] = int(overlap_k)
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(**values)
        for name, value in values.items():
            setattr(project, name, value)
        announce_settings_changed(project, fields=values)
    return project


def do_set_proposal_settings(
    project: Project, *, floor: float | None = None, target: float | None = None, guarantee: str | None = None
) -> Project:
    """Owners choose how precise review batches are expected to be (the floor), and the precision the TEST
    stage must prove before anything is auto-labelled (`target`, for each class or all together); None
    leaves a setting as it is. The current model re-proposes (and re-proves) at once."""
    changes: dict = {}
    if floor is not None:
        changes["review_precision_floor"] = _share(floor, what="the review precision floor", low=0.5, high=0.99)
    if target is not None:
        changes["auto_label_precision"] = _share(target, what="the auto-label precision", low=0.5, high=0.999)
    if guarantee is not None:
        if guarantee not in ProposalGuarantee.values:
            choices = " or ".join(f"'{value}'" for value in ProposalGuarantee.values)
            raise ProjectError(f"the proposal guarantee must be {choices}, not {str(guarantee)[:40]!r}")
        changes["proposal_guarantee"] = guarantee
    if not changes:
        return project
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(**changes)
        for name, value in changes.items():
            setattr(project, name, value)
        announce_settings_changed(project, fields=changes)
    return project
