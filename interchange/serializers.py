from __future__ import annotations

from rest_framework import serializers

from .models import DuplicatePolicy, ImportJob


class ImportJobSerializer(serializers.ModelSerializer):
    state_display = serializers.CharField(source="get_state_display", read_only=True)
    created_by = serializers.SerializerMethodField()
    finished = serializers.BooleanField(read_only=True)

    class Meta:
        model = ImportJob
        fields = [
            "id", "kind", "state", "state_display", "finished", "duplicates", "files_received", "bytes_received",
            "phase", "progress_done", "progress_total", "items_added", "items_rejected", "items_existing",
            "duplicates_found", "problems", "problems_more", "error", "created_by", "created_at", "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_created_by(self, obj: ImportJob) -> str | None:
        return obj.created_by.username if obj.created_by else None


class ImportOpenSerializer(serializers.Serializer):
    duplicates = serializers.ChoiceField(
        choices=DuplicatePolicy.choices, default=DuplicatePolicy.DROP,
        help_text="identical content (same bytes, same text): drop (kept as rejected items naming the item they "
        "repeat) or keep",
    )


class ServerFolderSerializer(ImportOpenSerializer):
    server_folder = serializers.CharField(max_length=4096, help_text="a folder inside LIGHTBULB_SERVER_FOLDER_ROOTS")


class ReceivedSerializer(serializers.Serializer):
    stored = serializers.ListField(child=serializers.CharField(), help_text="names kept (cleaned)")
    refused = serializers.ListField(child=serializers.CharField(), help_text="files not kept, each with the reason")
    job = ImportJobSerializer()


class FolderCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    path = serializers.CharField(allow_null=True)
    files = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()
