from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Stage(models.TextChoices):
    TRAIN = "TRAIN", "Train"
    TEST = "TEST", "Test"


class JudgementSource(models.TextChoices):
    HUMAN = "human", "Human"
    CONFIRMED_PROPOSAL = "confirmed_proposal", "Confirmed proposal"
    IMPORTED = "imported", "Imported from judgements file"


class Judgement(models.Model):
    """One person's label for one item. History is kept: a relabel adds a row and the newest counts.

    `is_current` marks the row that counts; a partial unique constraint guarantees there is at most one.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="judgements")
    item = models.ForeignKey("projects.Item", on_delete=models.CASCADE, related_name="judgements")
    label = models.CharField(max_length=200)
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
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.item} → {self.label} ({self.stage})"


class Skip(models.Model):
    """A person passed on an item; their queue leaves it out while other items remain."""

    item = models.ForeignKey("projects.Item", on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="skips")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "user"], name="skip_unique_item_user")]
