from __future__ import annotations

from django.contrib import admin

from .models import Judgement


@admin.register(Judgement)
class JudgementAdmin(admin.ModelAdmin):
    list_display = ["item", "label", "stage", "source", "labelled_by", "time_taken", "is_current", "created_at", "project"]
    list_filter = ["stage", "source", "is_current", "project"]
    search_fields = ["item__key", "label", "labelled_by", "user__username"]
    raw_id_fields = ["item", "user"]
    list_select_related = ["item", "project"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 100
