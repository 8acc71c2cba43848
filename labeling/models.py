from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Stage(models.TextChoices):
    TRAIN = "TRAIN", "Train"
    TEST = "TEST", "Test"
    # An auto-label is in no stage: it never trains the model and never measures it (nobody saw it).
    AUTO = "AUTO", "Auto-labelled"


# The stages a person's label can be in (the API refuses AUTO from clients).
HUMAN_STAGES = [(Stage.TRAIN.value, Stage.TRAIN.label), (Stage.TEST.value, Stage.TEST.label)]


class JudgementSource(models.TextChoices):
    HUMAN = "human", "Human"
    CONFIRMED_PROPOSAL = "confirmed_proposal", "Confirmed proposal"
    # A person gave a wrongly proposed tile its right class in the batch grid: a human label.
    CORRECTED_PROPOSAL = "corrected_proposal", "Corrected in a batch"
    SEARCH_BATCH = "search_batch", "Confirmed text-search batch"
    IMPORTED = "imported", "Imported from judgements file"
    # A reviewer or owner decided, changing someone else's label (with a reason).
    ADJUDICATED = "adjudicated", "Adjudicated by a reviewer"
    # The owner's "label the rest automatically": above a threshold TEST proved; nobody looked at the item.
    AUTO = "auto", "Auto-label (nobody saw it)"


# Labels a person gave or looked at (every source but AUTO).
SEEN_BY_A_PERSON = [s for s in JudgementSource.values if s != JudgementSource.AUTO]


class Judgement(models.Model):
    """One person's label for one item. History is kept: a relabel adds a row and the newest counts.

    `is_current` marks the row that counts; a partial unique constraint guarantees there is at most one.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="judgements")
    item = models.ForeignKey("projects.Item", on_delete=models.CASCADE, related_name="judgements")
    label = models.CharField(max_length=200)
    # A structured answer (projects.label_kinds): {"spans": [...]} for sequence tagging, with `label` its
    # summary ("2 spans"); null for classification, whose answer is `label` itself.
    value = models.JSONField(null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="judgements"
    )
    # Kept as text too: imported rows name people who may have no account, and deleting a user must not
    # erase who labelled what.
    labelled_by = models.CharField(max_length=150, blank=True)
    stage = models.CharField(max_length=8, choices=Stage.choices)
    source = models.CharField(max_length=24, choices=JudgementSource.choices, default=JudgementSource.HUMAN)
    time_taken = models.FloatField(null=True, blank=True, help_text="Seconds the person spent on it")
    # How the queue chose the item: "random" (uniform, with its probability) or "active" (model ranking).
    picked_by = models.CharField(max_length=16, blank=True)
    picked_probability = models.FloatField(null=True, blank=True)
    is_current = models.BooleanField(default=True)
    # One person's independent label in an overlap round (Item.labels_wanted > 1). While the round is open
    # no vote is current; when the k votes agree the earliest becomes current; a relabel in the round
    # clears the person's earlier vote (kept, not a vote any more), an undo marks it undone.
    is_vote = models.BooleanField(default=False)
    # Why a reviewer or owner changed someone else's label (source adjudicated); empty otherwise.
    reason = models.TextField(blank=True, max_length=1000)
    # Auto-labels only: the run that made it (its model version and proof) and the calibrated confidence.
    auto_run = models.ForeignKey(
        "AutoLabelRun", null=True, blank=True, on_delete=models.PROTECT, related_name="judgements"
    )
    confidence = models.FloatField(null=True, blank=True)
    # Undo keeps the row for the record and marks when it was taken back.
    undone_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item"], condition=Q(is_current=True), name="judgement_one_current_per_item"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "is_current", "stage"], name="judgement_project_stage_idx"),
            models.Index(fields=["project", "user"], name="judgement_project_user_idx"),
            models.Index(fields=["item", "is_vote"], name="judgement_item_vote_idx"),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.item} → {self.label} ({self.stage})"


class AutoLabelRun(models.Model):
    """An owner's "label the rest automatically": which version labelled how many items, and the proof.

    `proof` is what TEST showed for that version at `target` ({"per_class": {label: {"threshold",
    "evidence", "correct", "lower_bound", "labelled"}}, "guarantee", "alpha", "test_items"}); it stays with
    the labels it justified. Withdrawing a version's auto-labels keeps the row and its judgements for the
    record (undone), and puts the items back in the queue.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="auto_label_runs")
    version = models.PositiveIntegerField(help_text="ModelVersion.number whose thresholds and predictions labelled")
    target = models.FloatField(help_text="The auto-label precision TEST proved (95% lower bound)")
    guarantee = models.CharField(max_length=16)
    proof = models.JSONField(default=dict)
    labelled = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Items above the threshold someone was working on")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    withdrawn = models.PositiveIntegerField(default=0, help_text="Auto-labels taken back (still current then)")
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "version"], name="autolabelrun_project_version")]

    def __str__(self) -> str:
        state = f", withdrawn {self.withdrawn}" if self.withdrawn_at else ""
        return f"v{self.version} auto-labelled {self.labelled} at {self.target:.1%}{state}"


class Skip(models.Model):
    """A person passed on an item; their queue leaves it out while other items remain."""

    item = models.ForeignKey("projects.Item", on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="skips")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "user"], name="skip_unique_item_user")]


# --------------------------------------------------------------------------------------------------
# Proposals: labels the model (or a text search) suggests, confirmed by people in batches
# --------------------------------------------------------------------------------------------------


class ProposalOrigin(models.TextChoices):
    MODEL = "model", "Model (above its class threshold)"
    SEARCH = "search", "Text search"


class ProposalStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for a person; never a judgement until confirmed
    ACCEPTED = "accepted", "Accepted"  # a person confirmed it: a judgement was recorded
    REJECTED = "rejected", "Rejected"  # a person said the item is not of this class
    WITHDRAWN = "withdrawn", "Withdrawn"  # a newer model version no longer supports it, or its class paused
    SUPERSEDED = "superseded", "Superseded"  # the item was labelled some other way first


class AuditStatus(models.TextChoices):
    NONE = "", "Not audited"
    PENDING = "pending", "Waiting for an item-by-item check"
    AGREED = "agreed", "Check agreed"
    DISAGREED = "disagreed", "Check disagreed"


class BatchStatus(models.TextChoices):
    OPEN = "open", "Open"  # leased to a reviewer
    SUBMITTED = "submitted", "Submitted"
    RELEASED = "released", "Released"  # given up (a new batch of another class was asked for)
    UNDONE = "undone", "Undone"  # confirmed, then taken back by its reviewer a moment later


class ProposalBatch(models.Model):
    """A page of proposals of one class leased to one reviewer, like a single item's lease."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="proposal_batches")
    label = models.CharField(max_length=200)
    origin = models.CharField(max_length=8, choices=ProposalOrigin.choices, default=ProposalOrigin.MODEL)
    query = models.CharField(max_length=300, blank=True, help_text="The words searched for (text search batches)")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="proposal_batches"
    )
    status = models.CharField(max_length=12, choices=BatchStatus.choices, default=BatchStatus.OPEN)
    leased_until = models.DateTimeField()
    size = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    corrected = models.PositiveIntegerField(default=0, help_text="Tiles given another class in the grid")
    time_taken = models.FloatField(null=True, blank=True, help_text="Seconds the reviewer spent on the batch")
    # Drawn at random on submission (project.audit_share): its accepted items are then labelled again
    # one by one, blind, to measure how far batch confirmations can be trusted.
    audit = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "user", "status"], name="batch_project_user_idx")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"batch {self.pk}: {self.label} × {self.size} ({self.status})"


class Proposal(models.Model):
    """A suggested label for one unlabelled item. Not a judgement: only a person's confirmation makes one."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="proposals")
    item = models.ForeignKey("projects.Item", on_delete=models.CASCADE, related_name="proposals")
    label = models.CharField(max_length=200)
    # The whole predicted answer of a structured kind (projects.label_kinds); null for classification.
    value = models.JSONField(null=True, blank=True)
    origin = models.CharField(max_length=8, choices=ProposalOrigin.choices, default=ProposalOrigin.MODEL)
    # The model version that supports it (and its calibrated confidence); empty for text search.
    version = models.PositiveIntegerField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=ProposalStatus.choices, default=ProposalStatus.PENDING)
    # Lease: copied from the batch so a claim is one conditional UPDATE on this table.
    batch = models.ForeignKey(ProposalBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="proposals")
    leased_until = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    audit_status = models.CharField(max_length=12, choices=AuditStatus.choices, default=AuditStatus.NONE, blank=True)
    audit_label = models.CharField(max_length=200, blank=True)
    # The class the reviewer gave the item instead (the proposal then counts as rejected).
    corrected_label = models.CharField(max_length=200, blank=True)
    audited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When it stopped being pending")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item"], condition=Q(status="pending"), name="proposal_one_pending_per_item"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status", "label"], name="proposal_project_status_idx"),
            models.Index(fields=["project", "audit_status"], name="proposal_audit_idx"),
            models.Index(fields=["item", "status"], name="proposal_item_status_idx"),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.item_id} → {self.label}? ({self.status})"


class ProposalPause(models.Model):
    """A class whose measured batch precision is clearly below the review floor: not proposed again until
    the model is retrained on enough new human labels. Kept after it is lifted, for the record."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="proposal_pauses")
    label = models.CharField(max_length=200)
    measured = models.FloatField(help_text="Measured precision when paused")
    seen = models.PositiveIntegerField()
    target = models.FloatField()
    human_labels = models.PositiveIntegerField(help_text="Human judgements in the project when paused")
    paused_at = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "label"], condition=Q(lifted_at__isnull=True), name="pause_one_active_per_class"
            )
        ]
        ordering = ["-paused_at"]

    def __str__(self) -> str:
        return f"{self.label} paused at {self.measured:.0%} ({'lifted' if self.lifted_at else 'active'})"


class ReviewVerdict(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    CHANGED = "changed", "Changed"


class LabelReview(models.Model):
    """A reviewer's check of one label in the review grid: accepted as it is, or changed (the change is an
    adjudicated judgement of its own). Per-annotator accuracy is accepted / reviewed."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="label_reviews")
    judgement = models.OneToOneField(Judgement, on_delete=models.CASCADE, related_name="review")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="labels_reviewed_of"
    )
    annotator_name = models.CharField(max_length=150)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="label_reviews_made"
    )
    reviewer_name = models.CharField(max_length=150)
    verdict = models.CharField(max_length=12, choices=ReviewVerdict.choices)
    corrected_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "annotator"], name="labelreview_annotator_idx")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.annotator_name}'s {self.judgement_id}: {self.verdict}"
