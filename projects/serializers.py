from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from .models import Project, Role


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id", "slug", "title", "description", "data_type", "label_type", "classes", "default_class",
            "review_precision_floor", "auto_label_precision", "proposal_guarantee", "test_min_judgements", "test_ratio",
            "lease_seconds", "show_model_guesses", "overlap_share", "overlap_k", "role", "created_at",
        ]
        read_only_fields = fields

    def get_role(self, obj: Project) -> str | None:
        roles = self.context.get("roles") or {}
        return roles.get(obj.pk)


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    count = serializers.IntegerField(read_only=True)
    median_seconds = serializers.FloatField(read_only=True, allow_null=True)


class MemberWriteSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)

    def validate_username(self, value: str):
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError(f"no active user named '{value}'")
        return user


class GuidelinesSerializer(serializers.Serializer):
    guidelines = serializers.CharField(
        max_length=100_000, allow_blank=True, trim_whitespace=False,
        help_text="Markdown (HTML allowed, sanitised when shown); empty removes them",
    )
    html = serializers.CharField(read_only=True, help_text="as the screens show them, sanitised")
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)


class ProjectCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=300)
    data_type = serializers.ChoiceField(choices=["images", "text", "json"])
    label_type = serializers.ChoiceField(choices=["classification", "binary", "sequence", "object_detection"],
                                         default="classification")
    classes = serializers.JSONField(
        required=False,
        help_text="a list of names, or text with one per line or comma-separated (binary: YES and NO, fixed)",
    )
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    template = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=100_000,
        help_text="json items: an HTML template with {{field}} placeholders",
    )
