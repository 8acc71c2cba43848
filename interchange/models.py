"""Imports started in the browser or the API: one row per upload (or server-folder scan), its progress and
what it found. The files themselves wait in a staging folder until the worker reads them
(interchange/uploads.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from projects.models import Project


class ImportKind(models.TextChoices):
    UPLOAD = "upload", "Upload"
    FOLDER = "folder", "Server folder"


class ImportState(models.TextChoices):
    OPEN = "open", "Receiving files"
    QUEUED = "queued", "Waiting for the worker"
    RUNNING = "running", "Importing"
    DONE = "done", "Imported"
    FAILED = "failed", "Failed; nothing imported"
    CANCELLED = "cancelled", "Cancelled; nothing imported"


class DuplicatePolicy(models.TextChoices):
    """What an item with the same content as another gets (same bytes for a file, same text for a row)."""

    DROP = "drop", "Drop them (kept as rejected items saying which item they repeat)"
    KEEP = "keep", "Keep them as items to label"


PROBLEMS_MAX = 1000  # per-file messages kept on a job; the count of the rest is kept too


class ImportJob(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=8, choices=ImportKind.choices, default=ImportKind.UPLOAD)
    state = models.CharField(max_length=12, choices=ImportState.choices, default=ImportState.OPEN)
    duplicates = models.CharField(max_length=8, choices=DuplicatePolicy.choices, default=DuplicatePolicy.DROP)

    # What arrived (uploads): counted before a file is written, so two requests cannot both pass a limit.
    files_received = models.PositiveIntegerField(default=0)
    bytes_received = models.PositiveBigIntegerField(default=0)

    # Progress while the worker runs it: the phase, and files done of files to read.
    phase = models.CharField(max_length=32, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    # The summary.
    items_added = models.PositiveIntegerField(default=0)
    items_rejected = models.PositiveIntegerField(default=0)
    items_existing = models.PositiveIntegerField(default=0)
    duplicates_found = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True, help_text="Per-file messages: what was not imported and why")
    problems_more = models.PositiveIntegerField(default=0, help_text="Messages beyond the ones kept")
    error = models.TextField(blank=True, help_text="Why a failed import failed")
    # Files moved into the project's folder before the items' transaction; a run that died before its commit
    # removes them again when it is retried, so a file is never left without its item.
    placed = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "state"], name="importjob_project_state_idx")]

    def __str__(self) -> str:
        return f"{self.project} · {self.get_kind_display()} #{self.pk} · {self.get_state_display()}"

    @property
    def finished(self) -> bool:
        return self.state in (ImportState.DONE, ImportState.FAILED, ImportState.CANCELLED)
