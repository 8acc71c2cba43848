from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .autolabels import do_withdraw_auto_labels
from .errors import AutoLabelError
from .models import AutoLabelRun, Judgement, LabelReview, Proposal, ProposalBatch, ProposalPause


@admin.register(Judgement)
class JudgementAdmin(admin.ModelAdmin):
    list_display = [
        "item", "label", "stage", "source", "labelled_by", "time_taken", "is_current", "created_at", "project",
    ]
    list_filter = ["stage", "source", "is_current", "project"]
    search_fields = ["item__key", "label", "labelled_by", "user__username"]
    raw_id_fields = ["item", "user"]
    list_select_related = ["item", "project"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 100


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the services (proposals, batches, pauses): shown in full, never edited by hand,
    so the record of who confirmed what stays true."""

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Proposal)
class ProposalAdmin(ReadOnlyAdmin):
    list_display = [
        "item", "label", "origin", "status", "confidence", "version", "reviewed_by", "audit_status", "project",
    ]
    list_filter = ["status", "origin", "audit_status", "label", "project"]
    search_fields = ["item__key", "label"]
    list_select_related = ["item", "project", "reviewed_by"]
    show_full_result_count = False
    list_per_page = 100


@admin.register(ProposalBatch)
class ProposalBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "label", "origin", "user", "status", "size", "accepted", "rejected", "time_taken",
                    "audit", "created_at"]
    list_filter = ["status", "origin", "audit", "project"]
    list_select_related = ["project", "user"]
    date_hierarchy = "created_at"


@admin.register(LabelReview)
class LabelReviewAdmin(ReadOnlyAdmin):
    list_display = ["annotator_name", "judgement", "verdict", "corrected_label", "reviewer_name", "created_at",
                    "project"]
    list_filter = ["verdict", "project"]
    search_fields = ["annotator_name", "reviewer_name"]
    raw_id_fields = ["judgement"]


@admin.register(ProposalPause)
class ProposalPauseAdmin(ReadOnlyAdmin):
    list_display = ["project", "label", "measured", "seen", "target", "paused_at", "lifted_at", "lifted_by_version"]
    list_filter = ["project", "label"]

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser  # a superuser may lift a pause by hand (set "lifted at")

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        fields = super().get_readonly_fields(request, obj)
        return [f for f in fields if f != "lifted_at"] if request.user.is_superuser else fields


@admin.action(description="Withdraw every auto-label of these runs' model versions")
def withdraw_auto_labels(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AutoLabelRun]) -> None:
    for project, version in sorted(set(queryset.values_list("project", "version"))):
        run = queryset.filter(project=project, version=version).select_related("project").first()
        assert run is not None
        try:
            n = do_withdraw_auto_labels(run.project, user=request.user, version=version)  # type: ignore[arg-type]
        except AutoLabelError as exc:
            modeladmin.message_user(request, f"{run.project}: {exc}.", level="warning")
        else:
            modeladmin.message_user(request, f"{run.project}: withdrew {n:,} auto-label(s) of model v{version}.")


@admin.register(AutoLabelRun)
class AutoLabelRunAdmin(ReadOnlyAdmin):
    list_display = ["project", "version", "labelled", "skipped", "target", "guarantee", "created_by_name", "created_at",
                    "withdrawn_at", "withdrawn"]
    list_filter = ["project"]
    list_select_related = ["project"]
    actions = [withdraw_auto_labels]
