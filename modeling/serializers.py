from __future__ import annotations

from rest_framework import serializers

# Fields named label, source, data or errors are the API's own names; DRF's stubs type those names as
# attributes of Field and Serializer, hence the `type: ignore[assignment]` on them.


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
    entities = serializers.DictField(
        allow_null=True, help_text="sequence tagging: entity-level precision, recall, F1 on TEST (exact span and "
        "type), overall (micro) and per_type; null for classification")


class ModelSummarySerializer(serializers.Serializer):
    encoder = serializers.DictField()
    embedding = serializers.DictField(help_text="total, embedded, failed, percent, complete, running, items_per_second")
    training = serializers.DictField(help_text="in_the_loop, running, waiting_for, last_error, ranked_version")
    current_version = CurrentVersionSerializer(allow_null=True)
    versions = VersionSerializer(many=True)


class ScoreRequestSerializer(serializers.Serializer):
    """For the schema: the views read the body themselves (JSON or multipart), see modeling/serving.py."""

    type = serializers.ChoiceField(choices=["images", "text", "json", "sequence"])
    urls = serializers.ListField(child=serializers.URLField(), required=False, help_text="type images: http(s) URLs")
    texts = serializers.ListField(
        child=serializers.JSONField(), required=False, help_text="type text/sequence: strings; type json: objects"
    )
    project = serializers.CharField(required=False, help_text="/score only: project id or slug")
    min_score = serializers.FloatField(required=False, min_value=0.0, max_value=1.0,
                                       help_text="object detection: boxes scoring at least this (default: the "
                                                 "threshold the version chose on TEST, else 0.5)")


class ScoreErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="position of the input in the request")
    input = serializers.CharField(help_text="the URL, file name or start of the text")
    detail = serializers.CharField()


class ScoreResponseSerializer(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField(), help_text="the classes, in score order")
    scores = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(), allow_null=True),
        help_text="one row per input (null where it failed); each row sums to 1",
    )
    model_version = serializers.IntegerField()
    errors = ScoreErrorSerializer(many=True)  # type: ignore[assignment]
    spans = serializers.ListField(child=serializers.ListField(child=serializers.DictField(), allow_null=True),
                                  required=False, help_text='sequence tagging: per input [{"start", "end", "label", '
                                                            '"text"}] (null where it failed)')
    boxes = serializers.ListField(child=serializers.ListField(child=serializers.DictField(), allow_null=True),
                                  required=False, help_text='object detection: per input [{"xmin", "ymin", "xmax", '
                                                            '"ymax", "label", "score"}], pixels, best first')
    min_score = serializers.FloatField(required=False, help_text="object detection: the score the boxes reach")


class PredictResponseSerializer(serializers.Serializer):
    predictions = serializers.ListField(child=serializers.CharField(allow_null=True))
    confidences = serializers.ListField(child=serializers.FloatField(allow_null=True))
    labels = serializers.ListField(child=serializers.CharField())
    model_version = serializers.IntegerField()
    errors = ScoreErrorSerializer(many=True)  # type: ignore[assignment]


class AutoLabelClassSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]
    threshold = serializers.FloatField(allow_null=True, help_text="proven on TEST; None: not yet")
    evidence = serializers.IntegerField(help_text="TEST items predicted this class at or above the threshold")
    correct = serializers.IntegerField(help_text="of which right")
    lower_bound = serializers.FloatField(allow_null=True, help_text="one-sided 95% lower bound on their precision")
    reason = serializers.CharField(allow_blank=True, help_text="why the class has no threshold yet")
    items = serializers.IntegerField(help_text="unlabelled items it would auto-label now")


class AutoLabelRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField(help_text="the model version that labelled")
    labelled = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="above the threshold, but someone was working on them")
    current = serializers.IntegerField(help_text="still current: not withdrawn, not relabelled by a person")
    target = serializers.FloatField(help_text="the auto-label precision TEST proved")
    guarantee = serializers.CharField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    withdrawn_at = serializers.DateTimeField(allow_null=True)
    withdrawn = serializers.IntegerField()


class AutoLabelPlanSerializer(serializers.Serializer):
    version = serializers.IntegerField(allow_null=True)
    target = serializers.FloatField(help_text="the project's auto-label precision")
    guarantee = serializers.CharField()
    ready = serializers.BooleanField(help_text="an owner can auto-label now")
    reason = serializers.CharField(allow_blank=True, help_text="why not, when not")
    items = serializers.IntegerField(help_text="unlabelled items it would label (nobody will see them)")
    per_class = AutoLabelClassSerializer(many=True)
    pooled = serializers.DictField(allow_null=True, help_text="shared evidence when proven for all classes together")
    auto_labelled = serializers.IntegerField(help_text="current auto-labels in the project")
    runs = AutoLabelRunSerializer(many=True)


class WithdrawAutoLabelsSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="the model version whose auto-labels go"
    )


class WithdrawnSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    withdrawn = serializers.IntegerField(help_text="auto-labels taken back; their items are unlabelled again")


class LabelCheckQuerySerializer(serializers.Serializer):
    show = serializers.ChoiceField(choices=["candidates", "losses"], required=False, default="candidates",
                                   help_text="candidates: confident learning's likely label errors; losses: top losses")
    actual = serializers.CharField(required=False, help_text="with `predicted`: the TEST items of one confusion cell")
    predicted = serializers.CharField(required=False)


class FindingSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    key = serializers.CharField()
    judgement = serializers.IntegerField(help_text="the label questioned (still the item's current one)")
    stage = serializers.CharField()
    labelled_by = serializers.CharField()
    given = serializers.CharField(help_text="the human label")
    suggested = serializers.CharField(help_text="the out-of-fold model's likeliest class")
    p_given = serializers.FloatField()
    p_suggested = serializers.FloatField()


class LabelCheckSerializer(serializers.Serializer):
    checked_at = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField(allow_null=True, help_text="the model version whose features it used")
    labels = serializers.IntegerField(help_text="human labels checked")
    flagged = serializers.IntegerField(help_text="labels confident learning flagged in that check")
    stale = serializers.BooleanField(help_text="labels or model changed since; a new check was requested")
    findings = FindingSerializer(many=True)


class LabelCheckItemSerializer(serializers.Serializer):
    item = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    judgement = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, required=False,
        help_text="keep: the label you looked at (a finding's `judgement`); refused (409) if it changed since")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000,
                                   help_text="exclude: why (kept with the item)")


class LabelCheckDoneSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    status = serializers.CharField(help_text="kept, or excluded")


class FineTuneRunSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    state = serializers.CharField(help_text="queued, running, done, failed or cancelled")
    trigger = serializers.CharField(help_text="auto (TRAIN grew by half) or owner")
    encoder = serializers.CharField()
    encoder_version = serializers.CharField(help_text="the fine-tuned encoder's version")
    train_count = serializers.IntegerField()
    test_count = serializers.IntegerField()
    phase = serializers.CharField()
    epoch = serializers.IntegerField()
    epochs = serializers.IntegerField()
    loss = serializers.FloatField(allow_null=True)
    progress = serializers.FloatField(help_text="0..1")
    seconds_left = serializers.FloatField(allow_null=True)
    cancel_requested = serializers.BooleanField()
    decision = serializers.CharField(help_text="adopted, kept (not better on TEST) or empty")
    reason = serializers.CharField()
    set_aside_at = serializers.DateTimeField(allow_null=True, help_text="when an owner went back to the pretrained "
                                             "encoder after this run had been adopted")
    comparison = serializers.DictField(help_text="the paired comparison on TEST (exact McNemar, one-sided)")
    training_seconds = serializers.FloatField()
    embedding_seconds = serializers.FloatField()
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class FineTuneListSerializer(serializers.Serializer):
    supported = serializers.BooleanField(help_text="the project's encoder can be fine-tuned")
    adopted = serializers.IntegerField(allow_null=True, help_text="the run whose encoder the model reads, if any")
    runs = FineTuneRunSerializer(many=True)


class FineTuneCancelSerializer(serializers.Serializer):
    run = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
