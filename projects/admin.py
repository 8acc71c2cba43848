from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q

from .models import Item, ItemStatus, Membership, Project
from .services import ProjectError, do_ingest_directory, sync_judgements_file


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "data_type", "label_type", "n_items", "n_unlabelled", "n_rejected", "n_members"]
    list_filter = ["data_type", "label_type"]
    search_fields = ["title", "slug", "description"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [MembershipInline]
    readonly_fields = ["created_at", "updated_at", "config_path"]
    actions = ["rescan_dataset", "write_judgements_file", "embed_items", "train_model"]
    fieldsets = [
        (None, {"fields": ["title", "slug", "description", "data_type", "label_type", "classes", "default_class"]}),
        ("Files", {"fields": ["dataset_directory", "judgements_file", "model_directory", "config_path"]}),
        ("Model", {"fields": ["encoder", "test_min_judgements", "test_ratio", "min_train_judgements", "sampling", "random_share",
                              "lease_seconds"]}),
        ("Proposals", {"fields": ["target_precision", "proposal_guarantee", "audit_share"]}),
        ("Advanced", {"fields": ["template", "dataset_options", "model_options"],
                      "classes": ["collapse"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _n_items=Count("items", distinct=True),
                _n_unlabelled=Count("items", filter=Q(items__status=ItemStatus.UNLABELLED), distinct=True),
                _n_rejected=Count("items", filter=Q(items__status=ItemStatus.REJECTED), distinct=True),
                _n_members=Count("memberships", distinct=True),
            )
        )

    @admin.display(description="items", ordering="_n_items")
    def n_items(self, obj: Project) -> int:
        return obj._n_items

    @admin.display(description="unlabelled", ordering="_n_unlabelled")
    def n_unlabelled(self, obj: Project) -> int:
        return obj._n_unlabelled

    @admin.display(description="rejected", ordering="_n_rejected")
    def n_rejected(self, obj: Project) -> int:
        return obj._n_rejected

    @admin.display(description="members", ordering="_n_members")
    def n_members(self, obj: Project) -> int:
        return obj._n_members

    def save_model(self, request, obj: Project, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and {"target_precision", "proposal_guarantee", "audit_share", "classes", "encoder"} & set(form.changed_data):
            from modeling.services import request_proposals

            # Thresholds depend on the target: the current model re-proposes once this commits.
            transaction.on_commit(lambda: request_proposals(obj.pk))
        if change and "sampling" in form.changed_data:
            from modeling.services import request_ranking

            # The queue reads a stored ranking: re-rank with the new rule (proposals follow it).
            transaction.on_commit(lambda: request_ranking(obj.pk))

    @admin.action(description="Rescan dataset directory for new files")
    def rescan_dataset(self, request, queryset) -> None:
        for project in queryset:
            try:
                result = do_ingest_directory(project)
            except ProjectError as exc:
                self.message_user(request, f"{project.slug}: {exc}", level=messages.ERROR)
                continue
            self.message_user(
                request,
                f"{project.slug}: {result.items_added} new item(s), {result.items_rejected} rejected",
                level=messages.SUCCESS,
            )

    @admin.action(description="Write judgements file from the database")
    def write_judgements_file(self, request, queryset) -> None:
        for project in queryset:
            rows = sync_judgements_file(project)
            if rows is None:
                self.message_user(request, f"{project.slug}: no judgements file configured", level=messages.WARNING)
            else:
                self.message_user(request, f"{project.slug}: wrote {rows} judgement(s) to {project.judgements_file}")


    @admin.action(description="Embed items now (the worker fills the embedding cache)")
    def embed_items(self, request, queryset) -> None:
        from modeling.services import request_embedding

        for project in queryset:
            request_embedding(project.pk)
        self.message_user(request, f"Embedding requested for {queryset.count()} project(s).")

    @admin.action(description="Train a new model version now")
    def train_model(self, request, queryset) -> None:
        from modeling.services import request_training

        for project in queryset:
            request_training(project.pk, force=True)
        self.message_user(request, f"Training requested for {queryset.count()} project(s).")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__title", "project__slug"]
    autocomplete_fields = ["user", "project"]
    list_select_related = ["project", "user"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["key", "project", "kind", "status", "rejection_reason", "created_at"]
    list_filter = ["status", "kind", "project"]
    search_fields = ["key", "text", "content_hash", "rejection_reason"]
    list_select_related = ["project"]
    readonly_fields = ["content_hash", "created_at", "meta"]
    show_full_result_count = False  # 100k-item projects: skip the extra COUNT(*)
    list_per_page = 100
