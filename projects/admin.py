from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q

from .models import Item, ItemStatus, Membership, Project
from .services import ProjectError, do_ingest_directory
from .signals import announce_settings_changed


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
    # The apps above add their own actions (interchange: the judgements file; modeling: embed, train).
    actions = ["rescan_dataset"]
    fieldsets = [
        (None, {"fields": ["title", "slug", "description", "data_type", "label_type", "classes", "default_class"]}),
        ("Files", {"fields": ["dataset_directory", "judgements_file", "model_directory", "config_path"]}),
        ("Model", {"fields": ["encoder", "test_min_judgements", "test_ratio", "min_train_judgements", "sampling",
                              "random_share", "lease_seconds", "show_model_guesses", "overlap_share", "overlap_k"]}),
        ("Proposals and auto-labels", {
            "fields": ["review_precision_floor", "auto_label_precision", "proposal_guarantee", "audit_share"]
        }),
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
        return obj._n_items  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="unlabelled", ordering="_n_unlabelled")
    def n_unlabelled(self, obj: Project) -> int:
        return obj._n_unlabelled  # type: ignore[attr-defined]

    @admin.display(description="rejected", ordering="_n_rejected")
    def n_rejected(self, obj: Project) -> int:
        return obj._n_rejected  # type: ignore[attr-defined]

    @admin.display(description="members", ordering="_n_members")
    def n_members(self, obj: Project) -> int:
        return obj._n_members  # type: ignore[attr-defined]

    def save_model(self, request, obj: Project, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change:
            # The model loop follows (re-proposes, re-ranks) through the one event path.
            announce_settings_changed(obj, fields=form.changed_data)

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
