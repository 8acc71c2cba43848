from __future__ import annotations

from rest_framework import serializers


class VersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    labels = serializers.IntegerField(help_text="TRAIN + TEST labels it was made from")
    train_count = serializers.IntegerField()
    test_count = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True, help_text="On the TEST stage")
    loss = serializers.FloatField(allow_null=True)
    training_seconds = serializers.FloatField()
    created_at = serializers.DateTimeField()


class CurrentVersionSerializer(VersionSerializer):
    encoder = serializers.CharField()
    encoder_version = serializers.CharField()
    classes = serializers.ListField(child=serializers.CharField())
    per_class = serializers.DictField(help_text="class → precision, recall, f1, support on TEST")
    confusion = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), help_text="rows: true class, columns: predicted"
    )


class ModelSummarySerializer(serializers.Serializer):
    encoder = serializers.DictField()
    embedding = serializers.DictField(help_text="total, embedded, failed, percent, complete, running, items_per_second")
    training = serializers.DictField(help_text="in_the_loop, running, waiting_for, last_error, ranked_version")
    current_version = CurrentVersionSerializer(allow_null=True)
    versions = VersionSerializer(many=True)
