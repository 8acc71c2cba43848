from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from projects.models import Project

from .judgements_file import sync_judgements_file
from .models import ImportJob


@admin.action(description="Write judgements file from the database")
def write_judgements_file(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Project]) -> None:
    for project in queryset:
        rows = sync_judgements_file(project)
        if rows is None:
            modeladmin.message_user(request, f"{project.slug}: no judgements file configured", level=messages.WARNING)
        else:
            modeladmin.message_user(request, f"{project.slug}: wrote {rows} judgement(s) to {project.judgements_file}")


# Added to the registered project admin (see modeling/admin.py for why).
_project_admin = admin.site.get_model_admin(Project)
_project_admin.actions = [*(_project_admin.actions or []), write_judgements_file]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Imports started in the browser or the API: what came in and what became of it. Read-only: an import is
    a record of what happened; the pages and the API start them."""

    list_display = ("id", "project", "kind", "state", "created_by", "created_at", "items_added", "items_rejected",
                    "duplicates_found")
    list_filter = ("state", "kind")
    search_fields = ("project__title", "project__slug", "created_by__username")
    list_select_related = ("project", "created_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ImportJob | None = None) -> bool:
        return False
