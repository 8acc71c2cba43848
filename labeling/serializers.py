from __future__ import annotations

from rest_framework import serializers

from lightbulb_site.ids import ID_MAX

from .models import Judgement, JudgementSource, Stage

# Fields named label, source, data or errors are the API's own names; DRF's stubs type those names as
# attributes of Field and Serializer, hence the `type: ignore[assignment]` on them.


class JudgementCreateSerializer(serializers.Serializer):
    item = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=200, required=False, allow_blank=True, default="",
        help_text="classification: the class (required); sequence tagging and object detection: leave out and "
        "send spans or boxes",
    )
    spans = serializers.JSONField(
        required=False, default=None,
        help_text='sequence tagging: [{"start", "end", "label"}], character offsets into the text (end '
        "exclusive) on token boundaries, no overlaps; [] says the text has no entities",
    )
    boxes = serializers.JSONField(
        required=False, default=None,
        help_text='object detection: [{"xmin", "ymin", "xmax", "ymax", "label"}], pixels of the original image '
        "(x right, y down from its top-left corner), inside it, at least a pixel wide and high; [] says the "
        "image has no objects",
    )
    time_taken = serializers.FloatField(required=False, allow_null=True, min_value=0)
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=1000,
        help_text="reviewers and owners: why they change someone else's label (required then)",
    )


class JudgementSerializer(serializers.ModelSerializer):
    path = serializers.CharField(source="item.key", read_only=True)
    user = serializers.CharField(source="labelled_by", read_only=True)
    seen_by_a_person = serializers.SerializerMethodField(
        help_text="false for auto-labels: the model labelled the item and nobody looked at it"
    )
    model_version = serializers.IntegerField(
        source="auto_run.version", read_only=True, allow_null=True, default=None,
        help_text="auto-labels: the model version that made it",
    )

    class Meta:
        model = Judgement
        fields = [
            "id", "item", "path", "label", "value", "stage", "source", "seen_by_a_person", "user", "time_taken",
            "is_current", "undone_at", "picked_by", "picked_probability", "confidence", "model_version",
            "reason", "created_at",
        ]
        read_only_fields = fields

    def get_seen_by_a_person(self, judgement: Judgement) -> bool:
        return judgement.source != JudgementSource.AUTO


class JudgementFilterSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=Stage.choices, required=False)
    source = serializers.ChoiceField(choices=JudgementSource.choices, required=False)  # type: ignore[assignment]
    label = serializers.CharField(required=False)  # type: ignore[assignment]
    user = serializers.CharField(required=False)
    item = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)
    current = serializers.BooleanField(required=False, allow_null=True, default=None)


class NextItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    path = serializers.CharField()
    kind = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]
    html = serializers.CharField(required=False)
    media_url = serializers.CharField(required=False)
    email = serializers.JSONField(
        required=False, allow_null=True,
        help_text="texts that are e-mails: subject, from, to, date, headers and body, for display (data is the "
        "whole text, as the model reads it)",
    )
    stage = serializers.CharField()
    prediction = serializers.JSONField(allow_null=True)
    picked_by = serializers.CharField(
        allow_null=True,
        help_text="active (most uncertain first), typical (before a model), random or audit",
    )


class StatsSerializer(serializers.Serializer):
    labelled = serializers.DictField(child=serializers.IntegerField())
    unlabelled = serializers.IntegerField()
    overlap = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="overlap items with no label yet: partial (waiting for more labels), disputed (for a reviewer)",
    )
    training = serializers.BooleanField()
    accuracy = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True, help_text="sequence tagging: entity F1 on TEST")
    model_version = serializers.IntegerField(allow_null=True)
    updating = serializers.BooleanField(help_text="A training run is going on now")
    model_detail = serializers.CharField(help_text="What is still needed before the first model, if anything")
    proposals = serializers.DictField(help_text="ready/pending per class, accepted, rejected, measured precision")
    you = serializers.DictField(required=False)


class ProposalQuerySerializer(serializers.Serializer):
    count = serializers.IntegerField(required=False, min_value=1, max_value=100)
    label = serializers.CharField(  # type: ignore[assignment]
        required=False, max_length=200, help_text="a class (default: the one with most waiting)"
    )
    q = serializers.CharField(
        required=False, max_length=300, help_text="text projects: words to search for; needs `label`"
    )

    def validate(self, attrs):
        if attrs.get("q") and not attrs.get("label"):
            raise serializers.ValidationError({"label": "a text search needs the class to propose"})
        return attrs


class ProposalBatchSerializer(serializers.Serializer):
    batch = serializers.IntegerField(allow_null=True)
    label = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    origin = serializers.CharField(allow_null=True, help_text="model (above the class threshold) or search")
    query = serializers.CharField(allow_blank=True)
    lease_expires = serializers.DateTimeField(allow_null=True)
    items = serializers.ListField(child=serializers.DictField())
    ready = serializers.DictField(child=serializers.IntegerField(), help_text="proposals waiting per class")


class ConfirmBatchSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=200)  # type: ignore[assignment]
    accepted = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), allow_empty=True, max_length=100
    )
    rejected = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), allow_empty=True, max_length=100
    )
    corrected = serializers.DictField(
        child=serializers.CharField(max_length=200), required=False, allow_empty=True,
        help_text="item id -> the class it really is (another class of the project): a human label",
    )
    time_taken = serializers.FloatField(required=False, allow_null=True, min_value=0)

    def validate_corrected(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 100:
            raise serializers.ValidationError("at most 100 corrections")
        return value


class ConfirmResultSerializer(serializers.Serializer):
    batch = serializers.IntegerField()
    label = serializers.CharField()  # type: ignore[assignment]
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    corrected = serializers.IntegerField(help_text="items given another class in the grid")
    skipped = serializers.ListField(child=serializers.IntegerField(), help_text="labelled by someone else meanwhile")
    audit = serializers.BooleanField(help_text="drawn for an item-by-item check")
    paused = serializers.BooleanField(help_text="the class's measured batch precision is clearly below the floor")


MAX_REVIEW_DECISIONS = 500


class LabelReviewQuerySerializer(serializers.Serializer):
    annotator = serializers.CharField(max_length=150)


class LabelReviewDecisionSerializer(serializers.Serializer):
    judgement = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=200, help_text="the label itself to accept it, another class to change it"
    )


class LabelReviewCreateSerializer(serializers.Serializer):
    annotator = serializers.CharField(max_length=150)
    decisions = LabelReviewDecisionSerializer(many=True, allow_empty=False)
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True)

    def validate_decisions(self, value: list) -> list:
        if len(value) > MAX_REVIEW_DECISIONS:
            raise serializers.ValidationError(f"at most {MAX_REVIEW_DECISIONS} decisions at a time")
        return value


class VoteSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    labelled_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    time_taken = serializers.FloatField(allow_null=True)


class DisputeSerializer(serializers.Serializer):
    item = serializers.DictField(help_text="the item, as items/next gives it")
    stage = serializers.CharField()
    votes = VoteSerializer(many=True)
