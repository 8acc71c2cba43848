"""Data from the browser or the API into a project's items: uploads (files, a folder, zips, a CSV / JSONL) and
server folders inside an allowed root.

Receiving runs in the web process and is quick: `do_open_upload` starts an import, `do_receive_files` cleans
each file's name, checks its type and the limits and writes it atomically into the import's staging folder,
`do_queue_import` hands it to the worker. Importing runs on the worker (`do_run_import`): zips are unpacked
(names cleaned, sizes counted as they are read, not as the zip claims), every file is read and checked exactly
as a scanned dataset is (projects.ingest), identical content is found, the files move into the project's folder
and the items are inserted in one transaction. A failure at any point imports nothing and takes the files back.
"""

from __future__ import annotations

import os
import shutil
import time
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from projects.ingest import (
    IMAGE_EXTENSIONS,
    JSON_EXTENSIONS,
    TABULAR_EXTENSIONS,
    TEXT_FILE_EXTENSIONS,
    DatasetReader,
    ItemRecord,
    iter_files,
)
from projects.models import DataType, Item, Project
from projects.services import DatasetScan, do_add_items, uploads_folder
from projects.signals import announce_items_added

from .judgements_file import InterchangeError
from .models import PROBLEMS_MAX, DuplicatePolicy, ImportJob, ImportKind, ImportState

ZIP_EXTENSION = ".zip"
# What operating systems put into folders and zips on their own; skipped without a word.
OS_LITTER = frozenset({"__macosx", ".ds_store", "thumbs.db", "desktop.ini"})
NAME_PART_MAX = 200
NAME_MAX = 900  # item keys are at most 1024 characters
PROGRESS_EVERY_SECONDS = 0.5
COPY_CHUNK = 1024 * 1024
ABANDONED_AFTER = timedelta(days=1)


class UploadError(InterchangeError):
    """An upload or folder refused, with the reason; nothing of it was kept."""


class UploadTooLarge(UploadError):
    status_code = 413


class ImportStateError(UploadError):
    status_code = 409


# --------------------------------------------------------------------------------------------------
# Names, types, limits
# --------------------------------------------------------------------------------------------------


def data_extensions(data_type: str) -> frozenset[str]:
    """The file types a project of this data type reads (a scan reads the same)."""
    if data_type == DataType.IMAGES:
        return IMAGE_EXTENSIONS
    if data_type == DataType.TEXT:
        return TEXT_FILE_EXTENSIONS | TABULAR_EXTENSIONS
    return JSON_EXTENSIONS


def accepted_extensions(data_type: str) -> frozenset[str]:
    return data_extensions(data_type) | {ZIP_EXTENSION}


def describe_types(data_type: str) -> str:
    return ", ".join(sorted(data_extensions(data_type))) + ", or a .zip of them"


def clean_name(raw: str) -> str:
    """A relative path safe to keep under a folder: no absolute paths, no `..`, no hidden parts, no control
    characters; backslashes (Windows zips) are separators. UploadError says why a name cannot be used."""
    text = unicodedata.normalize("NFC", str(raw or "")).replace("\\", "/")
    parts = []
    for part in text.split("/"):
        part = "".join(ch for ch in part if unicodedata.category(ch)[0] != "C").strip()
        if part in ("", "."):
            continue
        if part == "..":
            raise UploadError(f"{raw!r}: a name may not climb out of its folder (..)")
        if part.startswith("."):
            raise UploadError(f"{raw!r}: hidden files and folders are not imported")
        for bad in '<>:"|?*':
            part = part.replace(bad, "_")
        if len(part.encode("utf-8")) > NAME_PART_MAX:
            # Filesystems count bytes (255 on Linux), not characters.
            raise UploadError(f"{raw!r}: a file or folder name may be at most {NAME_PART_MAX} bytes long")
        parts.append(part)
    if not parts:
        raise UploadError(f"{raw!r}: not a usable file name")
    name = "/".join(parts)
    if len(name.encode("utf-8")) > NAME_MAX:
        raise UploadError(f"{raw!r}: the path may be at most {NAME_MAX} bytes long")
    return name


def _is_litter(name: str) -> bool:
    return any(part.lower() in OS_LITTER for part in name.replace("\\", "/").split("/"))


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def upload_limits() -> dict[str, int]:
    return {
        "max_bytes": settings.LIGHTBULB_UPLOAD_MAX_BYTES,
        "max_files": settings.LIGHTBULB_UPLOAD_MAX_FILES,
        "max_file_bytes": settings.LIGHTBULB_UPLOAD_MAX_FILE_BYTES,
        "files_per_request": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
    }


def staging_dir(job: ImportJob) -> Path:
    # Under the upload root (so moving a file into a project's folder is a rename on the same disk), in a
    # hidden folder that no scan reads.
    return Path(settings.LIGHTBULB_UPLOAD_ROOT) / ".incoming" / str(job.pk)


def _link_exclusive(source: Path, target: Path) -> None:
    """Hard-link `source` at `target`, or copy it where links are impossible (another disk); either way
    FileExistsError if `target` is taken, never an overwrite."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        with open(target, "xb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, COPY_CHUNK)


def _place_new(source: Path, folder: Path, name: str) -> Path:
    """Link (or copy) `source` to folder/name, or to "name (2)" and so on when that name is taken; the
    link fails instead of overwriting, so two writers never take the same name."""
    stem, dot, ext = name.rpartition(".") if "." in Path(name).name else (name, "", "")
    for n in range(1, 10_000):
        candidate = name if n == 1 else f"{stem} ({n}){dot}{ext}"
        target = folder / candidate
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _link_exclusive(source, target)
        except FileExistsError:
            continue
        return target
    raise UploadError(f"{name}: too many files of this name")


# --------------------------------------------------------------------------------------------------
# Receiving (web process)
# --------------------------------------------------------------------------------------------------


def do_open_upload(project: Project, *, user: User | None, duplicates: str = DuplicatePolicy.DROP) -> ImportJob:
    """Start an upload into the project's own folder; files follow with `do_receive_files`.

    Preconditions: the project reads a folder Light Bulb made for uploads (not a server folder)."""
    if duplicates not in DuplicatePolicy.values:
        raise UploadError(f"duplicates are either 'drop' or 'keep', not {str(duplicates)[:40]!r}")
    if not uploads_folder(project):
        raise UploadError(
            f"this project reads the server folder {project.dataset_directory}; put new files there and scan it "
            "again instead of uploading"
        )
    # Uploads opened and never started (a closed tab) hold their files in staging: a day later they go.
    for stale in ImportJob.objects.filter(state=ImportState.OPEN, created_at__lt=timezone.now() - ABANDONED_AFTER):
        try:
            do_cancel_import(stale)
        except ImportStateError:
            continue  # started meanwhile
    return ImportJob.objects.create(project=project, created_by=user, kind=ImportKind.UPLOAD, duplicates=duplicates)


@dataclass
class Received:
    stored: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def do_receive_files(job: ImportJob, *, files: list[tuple[str, UploadedFile]]) -> Received:
    """Store files (name, content) in the upload's staging folder.

    A file whose name or type cannot be used, that is empty or larger than the per-file limit is refused with
    the reason (the others are kept). If the accepted files would take the upload past its limits in files or
    bytes, nothing of this request is kept (UploadTooLarge). Preconditions: the upload is still open."""
    if job.state != ImportState.OPEN:
        raise ImportStateError(f"this import is {job.get_state_display().lower()}; files can no longer be added")
    allowed = accepted_extensions(job.project.data_type)
    max_file = settings.LIGHTBULB_UPLOAD_MAX_FILE_BYTES
    result = Received()
    accepted: list[tuple[str, UploadedFile]] = []
    for raw_name, content in files:
        if _is_litter(str(raw_name)):
            continue
        try:
            name = clean_name(raw_name)
        except UploadError as exc:
            result.refused.append(str(exc))
            continue
        ext = Path(name).suffix.lower()
        size = int(content.size or 0)
        if ext not in allowed:
            types = describe_types(job.project.data_type)
            result.refused.append(f"{name}: not a file type this project imports ({types})")
        elif size == 0:
            result.refused.append(f"{name}: empty file")
        elif size > max_file:
            result.refused.append(f"{name}: {_size(size)} exceeds the {_size(max_file)} limit for one file")
        else:
            accepted.append((name, content))
    n_bytes = sum(int(content.size or 0) for _, content in accepted)
    if accepted:
        _reserve(job, n_files=len(accepted), n_bytes=n_bytes)
    folder = staging_dir(job)
    written: list[Path] = []
    try:
        for name, content in accepted:
            written.append(_write_staged(folder, name, content))
            result.stored.append(name)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        ImportJob.objects.filter(pk=job.pk).update(
            files_received=F("files_received") - len(accepted), bytes_received=F("bytes_received") - n_bytes
        )
        reason = exc.strerror or exc
        raise UploadError(f"the server could not store the files ({reason}); nothing of them was kept") from exc
    if written and not ImportJob.objects.filter(pk=job.pk, state=ImportState.OPEN).exists():
        # Cancelled or started while these were being written: they are not part of it.
        for path in written:
            path.unlink(missing_ok=True)
        raise ImportStateError("this import was cancelled or started while the files arrived; they were not kept")
    if result.refused:
        _add_problems(job, result.refused)
    job.refresh_from_db(fields=["files_received", "bytes_received", "problems", "problems_more"])
    return result


def _reserve(job: ImportJob, *, n_files: int, n_bytes: int) -> None:
    """Count the files in before writing them: one conditional UPDATE, so concurrent requests cannot pass a
    limit together."""
    max_files, max_bytes = settings.LIGHTBULB_UPLOAD_MAX_FILES, settings.LIGHTBULB_UPLOAD_MAX_BYTES
    claimed = ImportJob.objects.filter(
        pk=job.pk, state=ImportState.OPEN,
        files_received__lte=max_files - n_files, bytes_received__lte=max_bytes - n_bytes,
    ).update(files_received=F("files_received") + n_files, bytes_received=F("bytes_received") + n_bytes)
    if claimed:
        return
    job.refresh_from_db()
    if job.state != ImportState.OPEN:
        raise ImportStateError(f"this import is {job.get_state_display().lower()}; files can no longer be added")
    if job.files_received + n_files > max_files:
        raise UploadTooLarge(
            f"one import holds at most {max_files:,} files; these {n_files:,} would make "
            f"{job.files_received + n_files:,}"
            " (nothing of them was kept; start another import for the rest)"
        )
    raise UploadTooLarge(
        f"one import holds at most {_size(max_bytes)}; these files would make {_size(job.bytes_received + n_bytes)}"
        " (nothing of them was kept; start another import for the rest)"
    )


def _write_staged(folder: Path, name: str, content: UploadedFile) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".part-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as out:
            for chunk in content.chunks():
                out.write(chunk)
        return _place_new(tmp, folder, name)
    finally:
        tmp.unlink(missing_ok=True)


def _add_problems(job: ImportJob, messages: list[str]) -> None:
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        room = max(0, PROBLEMS_MAX - len(locked.problems))
        locked.problems = [*locked.problems, *messages[:room]]
        locked.problems_more += max(0, len(messages) - room)
        locked.save(update_fields=["problems", "problems_more"])


def do_queue_import(job: ImportJob) -> ImportJob:
    """Hand a received upload to the worker. Preconditions: open, with at least one file."""
    if not uploads_folder(Project.objects.get(pk=job.project_id)):
        raise UploadError("this project now reads a server folder; uploads cannot go there (cancel this one)")
    with transaction.atomic():
        claimed = ImportJob.objects.filter(pk=job.pk, state=ImportState.OPEN, files_received__gt=0).update(
            state=ImportState.QUEUED
        )
        if not claimed:
            job.refresh_from_db()
            if job.state != ImportState.OPEN:
                raise ImportStateError(f"this import is already {job.get_state_display().lower()}")
            raise UploadError("no files were received; choose files first")
        _enqueue(job)
    job.refresh_from_db()
    return job


def do_cancel_import(job: ImportJob) -> ImportJob:
    """Throw away an import the worker has not started, or one whose worker went silent (killed mid-import:
    its files are taken back). Preconditions: open, queued, or running without a heartbeat for the claim
    timeout."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LIGHTBULB_CLAIM_STALE_SECONDS)
    claimed = ImportJob.objects.filter(
        Q(state__in=[ImportState.OPEN, ImportState.QUEUED]) | Q(state=ImportState.RUNNING, heartbeat_at__lt=stale),
        pk=job.pk,
    ).update(state=ImportState.CANCELLED, finished_at=now)
    job.refresh_from_db()
    if not claimed:
        raise ImportStateError(f"this import is {job.get_state_display().lower()}; it can no longer be cancelled")
    _take_back(job)
    shutil.rmtree(staging_dir(job), ignore_errors=True)
    return job


def is_stalled(job: ImportJob) -> bool:
    """Running, but its worker has not been heard of for the claim timeout (it was killed or timed out)."""
    stale = timezone.now() - timedelta(seconds=settings.LIGHTBULB_CLAIM_STALE_SECONDS)
    return job.state == ImportState.RUNNING and job.heartbeat_at is not None and job.heartbeat_at < stale


def _enqueue(job: ImportJob) -> None:
    job_id = job.pk

    def send() -> None:
        from django_q.tasks import async_task

        async_task("interchange.tasks.run_import_task", job_id, group=f"import-{job_id}")

    transaction.on_commit(send)


# --------------------------------------------------------------------------------------------------
# Server folders
# --------------------------------------------------------------------------------------------------


@dataclass
class FolderCheck:
    path: Path
    files: int
    capped: bool

    @property
    def message(self) -> str:
        more = "+" if self.capped else ""
        return f"{self.path}: {self.files:,}{more} file(s) to import"


FOLDER_COUNT_CAP = 100_000


def check_server_folder(raw: str, *, data_type: str) -> FolderCheck:
    """A folder on the server an owner names as a project's data: it must exist, lie inside one of
    LIGHTBULB_SERVER_FOLDER_ROOTS (after following links) and hold files of the project's type."""
    roots = [Path(r) for r in settings.LIGHTBULB_SERVER_FOLDER_ROOTS]
    if not roots:
        raise UploadError("server folders are turned off on this site (LIGHTBULB_SERVER_FOLDER_ROOTS is empty)")
    text = str(raw or "").strip()
    if not text:
        raise UploadError("type the folder's full path")
    if "\x00" in text or not Path(text).is_absolute():
        raise UploadError("the folder must be a full path, starting with /")
    try:
        path = Path(text).resolve()
    except (OSError, RuntimeError) as exc:
        raise UploadError(f"{text}: cannot be read ({exc})") from None
    if not any(path == root or path.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise UploadError(f"{text} is outside the folders this site allows ({allowed})")
    uploads = Path(settings.LIGHTBULB_UPLOAD_ROOT).resolve()
    if path == uploads or path.is_relative_to(uploads) or uploads.is_relative_to(path):
        # Other projects' uploads and the staging folders are never a project's server folder.
        raise UploadError(f"{text} holds uploaded files of projects; name a folder of your own data")
    if any(part.startswith(".") for part in path.parts):
        raise UploadError(f"{text}: hidden folders are not imported")
    if not path.exists():
        raise UploadError(f"{text} does not exist")
    if not path.is_dir():
        raise UploadError(f"{text} is not a folder")
    count = 0
    try:
        for _ in iter_files(path, data_extensions(data_type)):
            count += 1
            if count >= FOLDER_COUNT_CAP:
                break
    except OSError as exc:
        raise UploadError(f"{text}: cannot be read ({exc.strerror or exc})") from None
    if count == 0:
        raise UploadError(f"{text} holds no {describe_types(data_type).removesuffix(', or a .zip of them')} files")
    return FolderCheck(path=path, files=count, capped=count >= FOLDER_COUNT_CAP)


def do_use_server_folder(
    project: Project, *, user: User | None, path: str, duplicates: str = DuplicatePolicy.DROP
) -> ImportJob:
    """Read a server folder into the project (the first time it becomes the project's data folder; again, it
    adds the files that appeared since). Preconditions: the folder passes `check_server_folder`; the project
    has no items yet, or already reads this folder."""
    if duplicates not in DuplicatePolicy.values:
        raise UploadError(f"duplicates are either 'drop' or 'keep', not {str(duplicates)[:40]!r}")
    checked = check_server_folder(path, data_type=project.data_type)
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        same = Path(locked.dataset_directory).resolve() == checked.path
        if not same and Item.objects.filter(project=locked).exists():
            raise UploadError(
                f"this project already has items from {locked.dataset_directory}; its data folder cannot change"
            )
        busy = ImportJob.objects.filter(project=locked, kind=ImportKind.UPLOAD, state__in=[
            ImportState.OPEN, ImportState.QUEUED, ImportState.RUNNING])
        if not same and busy.exists():
            # Its files would land in the server folder: finish or cancel the upload first.
            raise UploadError("an upload into this project is not finished; wait for it or cancel it first")
        if not same:
            Project.objects.filter(pk=project.pk).update(dataset_directory=str(checked.path))
            project.dataset_directory = str(checked.path)
        job = ImportJob.objects.create(
            project=project, created_by=user, kind=ImportKind.FOLDER, duplicates=duplicates, state=ImportState.QUEUED,
            progress_total=checked.files,
        )
        _enqueue(job)
    return job


# --------------------------------------------------------------------------------------------------
# Importing (worker)
# --------------------------------------------------------------------------------------------------


def claim_import(job_id: int) -> ImportJob | None:
    """Take a queued import (or one whose worker went silent) with a conditional UPDATE; None if another
    worker has it, it is finished, or it is gone."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LIGHTBULB_CLAIM_STALE_SECONDS)
    claimed = ImportJob.objects.filter(
        Q(state=ImportState.QUEUED) | Q(state=ImportState.RUNNING, heartbeat_at__lt=stale), pk=job_id
    ).update(state=ImportState.RUNNING, heartbeat_at=now, started_at=now)
    return ImportJob.objects.select_related("project").filter(pk=job_id).first() if claimed else None


class _Progress:
    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.last = 0.0

    def phase(self, name: str, *, total: int = 0) -> None:
        ImportJob.objects.filter(pk=self.job.pk).update(
            phase=name, progress_done=0, progress_total=total, heartbeat_at=timezone.now()
        )
        self.last = time.monotonic()

    def beat(self) -> None:
        if time.monotonic() - self.last >= PROGRESS_EVERY_SECONDS:
            ImportJob.objects.filter(pk=self.job.pk).update(heartbeat_at=timezone.now())
            self.last = time.monotonic()

    def tick(self, done: int) -> None:
        if time.monotonic() - self.last >= PROGRESS_EVERY_SECONDS:
            ImportJob.objects.filter(pk=self.job.pk).update(progress_done=done, heartbeat_at=timezone.now())
            self.last = time.monotonic()


@dataclass
class _Limits:
    files: int
    bytes: int
    max_files: int = field(default_factory=lambda: settings.LIGHTBULB_UPLOAD_MAX_FILES)
    max_bytes: int = field(default_factory=lambda: settings.LIGHTBULB_UPLOAD_MAX_BYTES)
    max_file: int = field(default_factory=lambda: settings.LIGHTBULB_UPLOAD_MAX_FILE_BYTES)


def do_run_import(job: ImportJob) -> ImportJob:
    """Import a claimed job. Whatever fails, nothing is half-imported: the job ends FAILED with the reason,
    the files placed in the project's folder are taken back, no item is written."""
    project = job.project
    problems: list[str] = []
    placed: list[Path] = []
    try:
        _take_back(job)
        if job.kind == ImportKind.UPLOAD:
            records, existing, warnings, placed = _import_upload(job, problems)
        else:
            records, existing, warnings = _read_folder(job, project.dataset_path, problems)
        problems.extend(warnings)
        duplicates = _mark_duplicates(project, records, policy=job.duplicates, problems=problems)
        with transaction.atomic():
            result = do_add_items(project, scan=DatasetScan(records=records, skipped_existing=existing, warnings=[]))
            dropped = duplicates if job.duplicates == DuplicatePolicy.DROP else 0
            job.state = ImportState.DONE
            job.items_added = result.items_added - result.items_rejected
            job.items_rejected = result.items_rejected - dropped  # files that cannot be read; duplicates apart
            job.items_existing = existing
            job.duplicates_found = duplicates
            job.placed = []
            _finish(job, problems)
            if result.items_added:
                announce_items_added(project)
    except BaseException as exc:
        # Anything, including the database refusing the insert and django-q2's timeout (a SystemExit): the
        # import is reported failed with its reason and its files go back, so that a retry (or a new upload)
        # starts clean. Re-raised for the worker's log.
        for path in placed:
            path.unlink(missing_ok=True)
        job.state = ImportState.FAILED
        if isinstance(exc, UploadError):
            job.error = str(exc)[:2000]
        elif isinstance(exc, Exception):
            job.error = f"{type(exc).__name__}: {str(exc)[:2000]}"
        else:
            job.error = "the worker stopped the import (it ran past its time limit, or the worker was stopped)"
        job.placed = []
        _finish(job, problems)
        if not isinstance(exc, UploadError):
            raise
    finally:
        if job.kind == ImportKind.UPLOAD and job.state in (ImportState.DONE, ImportState.FAILED):
            shutil.rmtree(staging_dir(job), ignore_errors=True)
    return job


def _finish(job: ImportJob, problems: list[str]) -> None:
    combined = [*job.problems, *problems]
    job.problems = combined[:PROBLEMS_MAX]
    job.problems_more += max(0, len(combined) - PROBLEMS_MAX)
    job.finished_at = timezone.now()
    job.phase = ""
    job.save(update_fields=["state", "items_added", "items_rejected", "items_existing", "duplicates_found",
                            "problems", "problems_more", "error", "placed", "finished_at", "phase"])


def _take_back(job: ImportJob) -> None:
    """A run that died after placing files but before its commit left them without items: remove them."""
    if not job.placed:
        return
    root = job.project.dataset_root
    keys = set(Item.objects.filter(project=job.project, key__in=job.placed).values_list("key", flat=True))
    for rel in job.placed:
        if rel not in keys:
            (root / rel).unlink(missing_ok=True)
    ImportJob.objects.filter(pk=job.pk).update(placed=[])
    job.placed = []


def _import_upload(
    job: ImportJob, problems: list[str]
) -> tuple[list[ItemRecord], int, list[str], list[Path]]:
    project = job.project
    if not uploads_folder(project):
        raise UploadError("this project now reads a server folder; an upload cannot be written there")
    staging = staging_dir(job)
    if not staging.is_dir():
        raise UploadError("the uploaded files are gone from the server (was the upload folder cleaned?)")
    progress = _Progress(job)
    limits = _Limits(files=0, bytes=0)
    staged = [p for p in iter_files(staging, accepted_extensions(project.data_type))]
    for path in staged:
        limits.files += 1
        limits.bytes += path.stat().st_size
    zips = [p for p in staged if p.suffix.lower() == ZIP_EXTENSION]
    if zips:
        progress.phase("unpacking", total=len(zips))
        for n, archive in enumerate(zips, start=1):
            _unpack(archive, staging, project.data_type, limits, problems, progress)
            progress.tick(n)
    _rename_taken(project, staging)
    records, existing, warnings = _read_folder(job, staging, problems, progress=progress)
    # The files that became items (a CSV with no usable row did not) move into the project's folder, under
    # their keys' names; the rest go with the staging folder.
    sources = sorted({r.source for r in records if r.source})
    ImportJob.objects.filter(pk=job.pk).update(placed=sources)
    root = project.dataset_root
    root.mkdir(parents=True, exist_ok=True)
    placed: list[Path] = []
    progress.phase("saving", total=len(sources))
    try:
        for n, rel in enumerate(sources, start=1):
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                _link_exclusive(staging / rel, target)
            except FileExistsError:
                raise UploadError(f"{rel}: another import placed a file of this name at the same time") from None
            placed.append(target)
            progress.tick(n)
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    return records, existing, warnings, placed


def _unpack(
    archive: Path, staging: Path, data_type: str, limits: _Limits, problems: list[str],
    progress: _Progress | None = None,
) -> None:
    """Unpack a zip next to where it was uploaded, then remove it. Bad members are reported and skipped; going
    past the import's limits fails the import (UploadTooLarge), since half of a zip is not what was asked."""
    label = archive.relative_to(staging).as_posix()
    allowed = data_extensions(data_type)
    limits.files -= 1
    limits.bytes -= archive.stat().st_size
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        problems.append(f"{label}: not a readable zip file ({exc}); nothing in it was imported")
        archive.unlink(missing_ok=True)
        return
    with zf:
        entries = zf.infolist()
        if len(entries) > limits.max_files:
            raise UploadTooLarge(f"{label} holds {len(entries):,} entries, more than one import may "
                                 f"({limits.max_files:,}); nothing was imported")
        for info in entries:
            if progress is not None:
                progress.beat()  # a heartbeat per member: a big zip is not a silent worker
            if info.is_dir() or _is_litter(info.filename):
                continue
            where = f"{label}: {info.filename}"
            try:
                name = clean_name(info.filename)
            except UploadError as exc:
                problems.append(f"{label}: {exc}")
                continue
            ext = Path(name).suffix.lower()
            if ext == ZIP_EXTENSION:
                problems.append(f"{where}: zips inside zips are not unpacked; upload it on its own")
                continue
            if ext not in allowed:
                problems.append(f"{where}: not a file type this project imports ({describe_types(data_type)})")
                continue
            if info.file_size > limits.max_file:
                problems.append(
                    f"{where}: {_size(info.file_size)} exceeds the {_size(limits.max_file)} limit for one file"
                )
                continue
            if limits.files + 1 > limits.max_files:
                raise UploadTooLarge(f"{label} holds more files than one import may ({limits.max_files:,}); "
                                     "nothing was imported")
            if info.flag_bits & 0x1:
                problems.append(f"{where}: encrypted; not imported")
                continue
            written = _extract(zf, info, staging / f".part-{uuid.uuid4().hex}", limits, where, problems)
            if written is None:
                continue
            try:
                _place_new(written, archive.parent, name)
            except OSError as exc:
                # A name the filesystem refuses, a file where the member wants a folder: that member only.
                problems.append(f"{where}: cannot be stored ({exc.strerror or exc})")
                continue
            finally:
                written.unlink(missing_ok=True)
            limits.files += 1
    archive.unlink(missing_ok=True)


def _extract(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, tmp: Path, limits: _Limits, where: str, problems: list[str]
) -> Path | None:
    """Copy one member out, counting the bytes as they come (a zip's stated sizes can lie)."""
    size = 0
    try:
        with zf.open(info) as src, open(tmp, "wb") as out:
            while chunk := src.read(COPY_CHUNK):
                size += len(chunk)
                if limits.bytes + size > limits.max_bytes:
                    raise UploadTooLarge(f"unpacked, this import would hold more than {_size(limits.max_bytes)}; "
                                         "nothing was imported")
                if size > limits.max_file:
                    # What was inflated counts against the import all the same (zipfile never reads past a
                    # member's stated size, but overlapping members could each state a large one).
                    limits.bytes += size
                    problems.append(f"{where}: larger than the {_size(limits.max_file)} limit for one file")
                    break
                out.write(chunk)
            else:
                if size == 0:
                    problems.append(f"{where}: empty file")
                else:
                    limits.bytes += size
                    return tmp
    except UploadTooLarge:
        tmp.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
        # A CRC mismatch, a truncated member, an unsupported compression method: that member only.
        problems.append(f"{where}: cannot be unpacked ({exc})")
    tmp.unlink(missing_ok=True)
    return None


def _rename_taken(project: Project, staging: Path) -> None:
    """A staged file whose name an item or a file of the project already has gets "name (2)" and so on, so
    its key is new (uploading cats/1.jpg twice keeps both; identical content is found as a duplicate)."""
    root = project.dataset_root
    names = [p.relative_to(staging).as_posix() for p in iter_files(staging, accepted_extensions(project.data_type))]
    taken = set(Item.objects.filter(project=project, key__in=names).values_list("key", flat=True))
    staged = set(names)
    for rel in names:
        if rel not in taken and not (root / rel).exists():
            continue
        stem, dot, ext = rel.rpartition(".") if "." in Path(rel).name else (rel, "", "")
        n = 2
        while True:
            candidate = f"{stem} ({n}){dot}{ext}"
            if candidate not in staged and not (root / candidate).exists() and not Item.objects.filter(
                project=project, key=candidate
            ).exists():
                break
            n += 1
        os.rename(staging / rel, staging / candidate)
        staged.discard(rel)
        staged.add(candidate)


def _read_folder(
    job: ImportJob, root: Path, problems: list[str], *, progress: _Progress | None = None
) -> tuple[list[ItemRecord], int, list[str]]:
    """Every file under root read and checked as a scan reads it (projects.ingest), with progress."""
    project = job.project
    progress = progress or _Progress(job)
    reader = DatasetReader(
        root=root, data_type=project.data_type, options=project.dataset_options,
        existing_keys=set(project.items.values_list("key", flat=True)),
        exclude={Path(project.judgements_file)} if project.judgements_file else set(),
        max_image_pixels=settings.LIGHTBULB_MAX_IMAGE_PIXELS, max_text_bytes=settings.LIGHTBULB_MAX_TEXT_BYTES,
    )
    files = reader.candidate_files()
    progress.phase("reading", total=len(files))
    records: list[ItemRecord] = []
    for n, path in enumerate(files, start=1):
        records.extend(reader.records([path]))
        progress.tick(n)
    for record in records:
        if record.rejection_reason:
            problems.append(f"{record.key}: {record.rejection_reason}; kept as a rejected item")
    return records, reader.report.skipped_existing, list(reader.report.warnings)


def _mark_duplicates(project: Project, records: list[ItemRecord], *, policy: str, problems: list[str]) -> int:
    """Records whose content an item or an earlier record already has: noted on the item (meta
    `duplicate_of`), and with the drop policy kept as rejected items naming the one they repeat."""
    hashes = sorted({r.content_hash for r in records if r.content_hash and not r.rejection_reason})
    first: dict[str, str] = {}
    for start in range(0, len(hashes), 500):
        rows = (Item.objects.filter(project=project, content_hash__in=hashes[start : start + 500])
                .order_by("id").values_list("content_hash", "key"))
        for digest, key in rows:
            first.setdefault(digest, key)
    found = 0
    for record in records:
        if not record.content_hash or record.rejection_reason:
            continue
        twin = first.get(record.content_hash)
        if twin is None:
            first[record.content_hash] = record.key
            continue
        found += 1
        record.meta["duplicate_of"] = twin
        if policy == DuplicatePolicy.DROP:
            record.rejection_reason = f"duplicate of {twin}"
            problems.append(f"{record.key}: same content as {twin}; dropped (kept as a rejected item)")
    return found
