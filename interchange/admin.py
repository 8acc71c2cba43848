from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from projects.models import Project

from .judgements_file import sync_judgements_file


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
