from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from labeling.errors import AutoLabelError
from projects.models import Project

from .autolabels import do_auto_label
from .label_check import request_label_check
from .models import EmbeddingJob, LabelCheck, LabelCheckKept, ModelState, ModelVersion
from .services import request_embedding, request_training


@admin.action(description="Embed items now (the worker fills the embedding cache)")
def embed_items(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Project]) -> None:
    for project in queryset:
        request_embedding(project.pk)
    modeladmin.message_user(request, f"Embedding requested for {queryset.count()} project(s).")


@admin.action(description="Train a new model version now")
def train_model(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Project]) -> None:
    for project in queryset:
        request_training(project.pk, force=True)
    modeladmin.message_user(request, f"Training requested for {queryset.count()} project(s).")


@admin.action(description="Label the rest automatically (above thresholds proven on TEST; nobody sees them)")
def auto_label(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Project]) -> None:
    for project in queryset:
        try:
            run = do_auto_label(project, user=request.user)  # type: ignore[arg-type]  # the admin is signed in
        except AutoLabelError as exc:
            modeladmin.message_user(request, f"{project}: nothing auto-labelled: {exc}.", level="warning")
        else:
            modeladmin.message_user(
                request, f"{project}: model v{run.version} auto-labelled {run.labelled:,} item(s) at "
                f"{run.target:.1%} proven precision."
            )


# The project admin is the projects app's; the model loop adds its actions to the registered one (an
# app above may add to a page of an app below, never the other way round).
_project_admin = admin.site.get_model_admin(Project)
_project_admin.actions = [*(_project_admin.actions or []), embed_items, train_model, auto_label]


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


@admin.action(description="Check the labels now (top losses and likely label errors)")
def check_labels_now(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[LabelCheck]) -> None:
    for check in queryset:
        request_label_check(check.project_id)
    modeladmin.message_user(request, f"A label check was requested for {queryset.count()} project(s).")


@admin.register(LabelCheck)
class LabelCheckAdmin(WrittenByTheWorkerAdmin):
    list_display = ["project", "version", "labels", "estimated_errors", "checked_at", "seconds", "last_error"]
    list_select_related = ["project"]
    actions = [check_labels_now]


@admin.register(LabelCheckKept)
class LabelCheckKeptAdmin(admin.ModelAdmin):
    """Labels a reviewer or owner kept as they are; deleting a row lets the check question that label again."""

    list_display = ["project", "item", "judgement", "kept_by", "created_at"]
    list_filter = ["project"]
    list_select_related = ["project", "item", "judgement"]
    readonly_fields = ["project", "item", "judgement", "user", "kept_by", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False
