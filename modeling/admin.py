from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from .models import EmbeddingJob, ModelState, ModelVersion


class WrittenByTheWorkerAdmin(admin.ModelAdmin):
    """Rows the worker writes: shown in full, never added or edited by hand."""

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(EmbeddingJob)
class EmbeddingJobAdmin(WrittenByTheWorkerAdmin):
    list_display = ["project", "encoder", "progress", "failed", "speed", "running", "finished_at", "last_error"]
    list_filter = ["encoder", "project"]
    list_select_related = ["project"]

    @admin.display(description="embedded")
    def progress(self, obj: EmbeddingJob) -> str:
        return format_html(
            '<progress max="{}" value="{}"></progress> {} / {} ({}%)',
            obj.total or 1, obj.embedded + obj.failed, obj.embedded, obj.total, f"{obj.percent:.0f}",
        )

    @admin.display(description="items/s")
    def speed(self, obj: EmbeddingJob) -> str:
        return f"{obj.items_per_second:.0f}" if obj.items_per_second else "–"

    @admin.display(description="running", boolean=True)
    def running(self, obj: EmbeddingJob) -> bool:
        return bool(obj.claimed_by)


@admin.register(ModelVersion)
class ModelVersionAdmin(WrittenByTheWorkerAdmin):
    list_display = ["project", "number", "labels", "train_count", "test_count", "accuracy_pct", "loss", "created_at"]
    list_filter = ["project", "encoder"]
    list_select_related = ["project"]

    @admin.display(description="labels")
    def labels(self, obj: ModelVersion) -> int:
        return obj.labels_count

    @admin.display(description="accuracy (TEST)", ordering="accuracy")
    def accuracy_pct(self, obj: ModelVersion) -> str:
        return "–" if obj.accuracy is None else f"{obj.accuracy:.1%}"


@admin.register(ModelState)
class ModelStateAdmin(WrittenByTheWorkerAdmin):
    list_display = ["project", "current_version", "requested_revision", "trained_revision", "ranked_version",
                    "waiting_for", "claimed_by", "last_error"]
    list_select_related = ["project", "current_version"]
