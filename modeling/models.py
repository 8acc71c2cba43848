"""What the model side of a project keeps in the database.

Files (embedding matrices, model heads) are derived and written atomically under the project's model
directory; these rows say which files are current, how far background work has got, and who is doing it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class EmbeddingJob(models.Model):
    """Progress of embedding one project's items with one encoder version (one row per pair)."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="embedding_jobs")
    encoder = models.CharField(max_length=64)
    encoder_version = models.CharField(max_length=128)
    total = models.PositiveIntegerField(default=0, help_text="Items to embed (every readable item)")
    embedded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Items whose file could not be read at embed time")
    # A worker holds the job while `claimed_by` is set and its heartbeat is recent; a crashed worker's
    # claim goes stale and the next run takes over from the last chunk written.
    claimed_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    items_per_second = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "encoder", "encoder_version"], name="embeddingjob_unique_project_encoder"
            )
        ]

    def __str__(self) -> str:
        return f"{self.project} · {self.encoder}@{self.encoder_version}: {self.embedded}/{self.total}"

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.embedded + self.failed >= self.total

    @property
    def percent(self) -> float:
        return 100.0 * (self.embedded + self.failed) / self.total if self.total else 0.0


class ModelState(models.Model):
    """One row per project: the current model version and the training bookkeeping."""

    project = models.OneToOneField(
        "projects.Project", on_delete=models.CASCADE, primary_key=True, related_name="model_state"
    )
    current_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Judgement revision the newest training request saw, and the one the last finished run used.
    requested_revision = models.PositiveBigIntegerField(default=0)
    requested_at = models.DateTimeField(null=True, blank=True)
    # A training task is in the queue (set when one is enqueued, cleared when it starts): a burst of labels
    # enqueues one task, not one per label. Older than the claim timeout, it is taken for lost.
    train_queued_at = models.DateTimeField(null=True, blank=True)
    trained_revision = models.PositiveBigIntegerField(default=0)
    # Which version's scores the queue's ranking holds (the ranking lags a new version by one task).
    ranked_version = models.PositiveIntegerField(null=True, blank=True)
    # Which version's thresholds the pending proposals reflect.
    proposed_version = models.PositiveIntegerField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    waiting_for = models.CharField(max_length=300, blank=True, help_text="Why no model yet (minimums not met)")
    # Before the first model: the typical items (modeling/ml/coldstart.py) TRAIN picks start with, in order.
    cold_start = models.JSONField(default=list, blank=True)
    # The fine-tuned encoder the project's model reads (adopted because it did better on TEST); None: the
    # pretrained one.
    finetune = models.ForeignKey("FineTuneRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"model state of {self.project}"


class ModelVersion(models.Model):
    """A trained head, numbered per project; its file is written before this row exists."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    encoder = models.CharField(max_length=64)
    encoder_version = models.CharField(max_length=128)
    classes = models.JSONField(default=list)
    file = models.CharField(max_length=300, help_text="Relative to the project's model directory")
    judgement_revision = models.PositiveBigIntegerField(default=0)
    train_count = models.PositiveIntegerField(default=0)
    test_count = models.PositiveIntegerField(default=0)
    accuracy = models.FloatField(null=True, blank=True, help_text="On the TEST stage (uniformly random items)")
    loss = models.FloatField(null=True, blank=True, help_text="Mean cross-entropy on TEST")
    # {"per_class": {class: {"precision", "recall", "f1", "support"}}, "confusion": [[...]], "l2": ...}
    metrics = models.JSONField(default=dict, blank=True)
    training_seconds = models.FloatField(default=0.0)
    # Calibration: the head file holds the temperature too; kept here for the admin and the API.
    temperature = models.FloatField(default=1.0)
    # Per class: {"threshold", "evidence", "correct", "lower_bound", "predicted", "needed", "reason",
    # "guarantee", "pooled"} (modeling.ml.thresholds.ClassThreshold), computed from TEST for
    # `thresholds_target` and the project's guarantee (recomputed when the owner changes either).
    thresholds = models.JSONField(default=dict, blank=True)
    thresholds_target = models.FloatField(null=True, blank=True)
    # {label: modeling.ml.review.ReviewThreshold}: from which confidence the class's items go to review
    # batches, at the project's review precision floor.
    review_thresholds = models.JSONField(default=dict, blank=True)
    proposal_note = models.CharField(max_length=300, blank=True, help_text="Why no class has a threshold, if so")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="modelversion_unique_number")]
        ordering = ["project", "-number"]

    def __str__(self) -> str:
        return f"{self.project} v{self.number}"

    @property
    def labels_count(self) -> int:
        return self.train_count + self.test_count


class ItemPrediction(models.Model):
    """The current model's scores for one item; the queue serves the most uncertain first."""

    item = models.OneToOneField("projects.Item", on_delete=models.CASCADE, primary_key=True, related_name="prediction")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField(help_text="ModelVersion.number these scores come from")
    label = models.CharField(max_length=200)
    confidence = models.FloatField()
    entropy = models.FloatField(help_text="Normalised to 0..1 (divided by log of the number of classes)")
    uncertainty = models.FloatField(
        default=0.0, help_text="What the queue orders by, 0..1: margin or entropy, as the project's sampling says"
    )
    scores = models.JSONField(default=list, help_text="Probabilities in class order")
    # A structured kind's predicted answer ({"spans": [...]} for sequence tagging); null for classification.
    value = models.JSONField(null=True, blank=True)
    # Coarse locality-sensitive hash of the embedding: near-duplicates share a bucket, so concurrent
    # annotators are not all handed the same kind of uncertain item at once.
    bucket = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["project", "-uncertainty"], name="itemprediction_uncertain_idx"),
            models.Index(fields=["project", "version"], name="itemprediction_version_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(entropy__gte=0) & Q(confidence__gte=0) & Q(uncertainty__gte=0),
                name="itemprediction_scores_nonnegative",
            )
        ]

    def __str__(self) -> str:
        return f"{self.item_id}: {self.label} ({self.confidence:.2f})"


class LabelCheck(models.Model):
    """The latest search for a team's own labelling mistakes (modeling/ml/label_errors.py): one row per project,
    replaced whole by each check.

    Each finding is {"item", "judgement", "given", "suggested", "p_given", "p_suggested", "loss", "stage"}: the
    judgement it questions (a finding whose judgement is no longer the item's current one is moot), the human
    label, the out-of-fold model's likeliest class and both probabilities.
    """

    project = models.OneToOneField(
        "projects.Project", on_delete=models.CASCADE, primary_key=True, related_name="label_check"
    )
    version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Model version whose features and L2 it used"
    )
    judgement_revision = models.PositiveBigIntegerField(default=0, help_text="The labels as of this revision")
    labels = models.PositiveIntegerField(default=0, help_text="Human labels checked (TRAIN and TEST)")
    estimated_errors = models.PositiveIntegerField(default=0, help_text="Confident learning's estimate of wrong labels")
    candidates = models.JSONField(default=list, blank=True, help_text="Label-error candidates, most likely first")
    top_losses = models.JSONField(default=list, blank=True, help_text="Labels the out-of-fold model finds least likely")
    thresholds = models.JSONField(default=dict, blank=True, help_text="Per class: confident learning's threshold")
    seconds = models.FloatField(default=0.0)
    checked_at = models.DateTimeField(null=True, blank=True)
    # A check is in the queue (set when one is enqueued, cleared when it starts): requests coalesce.
    queued_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"label check of {self.project}: {len(self.candidates)} candidates over {self.labels} labels"


class LabelCheckKept(models.Model):
    """"Keep as is": a reviewer or owner looked at a questioned label and kept it. The label is not shown as a
    candidate again while it is the item's current one (a new label is a new question)."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey("projects.Item", on_delete=models.CASCADE, related_name="+")
    judgement = models.OneToOneField("labeling.Judgement", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kept_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.item_id}: label {self.judgement_id} kept by {self.kept_by}"


class FineTuneState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class FineTuneDecision(models.TextChoices):
    NONE = "", "Not decided"
    ADOPTED = "adopted", "Adopted"  # the reason says why: better on TEST, with the numbers
    KEPT = "kept", "Kept, not used"


class FineTuneRun(models.Model):
    """The deep tier (modeling/ml/finetune.py): one fine-tune of a project's encoder on its TRAIN labels, on the
    worker's own queue. Its encoder becomes the project's only when a paired comparison on TEST says the model
    on it is better than the current one (`decision`); otherwise it is kept for the record and not used.

    Files (weights, then the pool re-embedded with them) live under `folder` in the project's model directory
    and are written before this row points at them; a run killed midway leaves the project on its last model
    and its own files are removed when it is marked failed.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="finetune_runs")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=FineTuneState.choices, default=FineTuneState.QUEUED)
    trigger = models.CharField(max_length=12, help_text="auto (TRAIN grew) or owner (Fine-tune now)")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    encoder = models.CharField(max_length=64, help_text="The catalogued encoder it fine-tunes")
    base_version = models.CharField(max_length=128)
    encoder_version = models.CharField(max_length=160, help_text="The fine-tuned encoder's version (cache key)")
    folder = models.CharField(max_length=300, help_text="Relative to the project's model directory")
    train_count = models.PositiveIntegerField(default=0)
    test_count = models.PositiveIntegerField(default=0)
    judgement_revision = models.PositiveBigIntegerField(default=0)
    # Progress, for the model card: phase, epoch i of n, running loss, share done, time left.
    phase = models.CharField(max_length=80, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    epochs = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    progress = models.FloatField(default=0.0)
    seconds_left = models.FloatField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    claimed_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The paired comparison on TEST (modeling.ml.finetune.Comparison.as_dict) and what it decided.
    comparison = models.JSONField(default=dict, blank=True)
    decision = models.CharField(max_length=12, choices=FineTuneDecision.choices, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True)
    # An adopted run an owner stopped using ("Use the pretrained encoder"): the project went back to the
    # catalogued encoder; the weights stay for the model versions trained on them.
    set_aside_at = models.DateTimeField(null=True, blank=True)
    set_aside_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    training_seconds = models.FloatField(default=0.0)
    embedding_seconds = models.FloatField(default=0.0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="finetunerun_unique_number")]
        ordering = ["project", "-number"]

    def __str__(self) -> str:
        return f"{self.project} fine-tune {self.number} ({self.state}{', ' + self.decision if self.decision else ''})"

    @property
    def live(self) -> bool:
        return self.state in (FineTuneState.QUEUED, FineTuneState.RUNNING)
