from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse


class DataType(models.TextChoices):
    IMAGES = "images", "Images"
    TEXT = "text", "Text"
    JSON = "json", "JSON"


class LabelType(models.TextChoices):
    CLASSIFICATION = "classification", "Classification"
    BINARY = "binary", "Binary (YES / NO)"
    SEQUENCE = "sequence", "Sequence tagging"
    OBJECT_DETECTION = "object_detection", "Object detection"


# Label types with a labelling screen (every type today: projects.label_kinds holds each one's parts).
SUPPORTED_LABEL_TYPES = frozenset(
    {LabelType.CLASSIFICATION, LabelType.BINARY, LabelType.SEQUENCE, LabelType.OBJECT_DETECTION}
)
# Label types whose model is a classification head on encoder vectors (sequence tagging trains spaCy's NER,
# `LabelKind.head`; object detection's detector is not built yet: its boxes are labelled and exported).
MODELLED_LABEL_TYPES = frozenset({LabelType.CLASSIFICATION, LabelType.BINARY})
BINARY_CLASSES = ["YES", "NO"]


class Sampling(models.TextChoices):
    """How the queue measures "the model is least sure": both rank uncertain items first.

    Margin (1 - the gap between the two likeliest classes) is the default: in `make bench` it beat
    entropy on the multi-class datasets (emoji: 0.61 vs 0.51 holdout accuracy after 80 labels, where
    entropy did worse than random order), because with many classes maximum entropy favours odd items
    spread thin over every class, while margin picks the items on a boundary the next label moves.
    With two classes both give the same order.
    """

    MARGIN = "margin", "Smallest margin between the two likeliest classes"
    ENTROPY = "entropy", "Highest entropy over all classes (Light Bulb's original rule)"


class ProposalGuarantee(models.TextChoices):
    """What the auto-label precision promises, proven on TEST with 95% confidence before anything is
    auto-labelled (review batches do not wait for it: a person checks every item in them).

    Each class (the default) is the stronger promise, but it needs TEST items predicted as *each* class
    (59 flawless ones at 95%, 299 at 99%). All classes together needs that many TEST items in all: the
    auto-labels as a whole are as precise as the target, while one rare class's share of them may be less.
    """

    EACH_CLASS = "each_class", "Each class"
    ALL_PROPOSALS = "all_proposals", "All classes together"


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    # Labels, sees everyone's labels (TEST too) and may change other people's, with a reason.
    REVIEWER = "reviewer", "Reviewer"
    ANNOTATOR = "annotator", "Annotator"
    VIEWER = "viewer", "Viewer"


# Higher rank = more rights; `min_role` checks compare ranks.
ROLE_RANK: dict[str, int] = {Role.VIEWER: 1, Role.ANNOTATOR: 2, Role.REVIEWER: 3, Role.OWNER: 4}


class ProjectQuerySet(models.QuerySet["Project"]):
    def by_key(self, key: int | str) -> Project | None:
        """The project a person names by id or slug (a slug that looks like a number wins over an id)."""
        if isinstance(key, int) and not isinstance(key, bool):
            return self.filter(pk=key).first()
        if not isinstance(key, str) or not key:
            return None
        project = self.filter(slug=key).first()
        if project is None and key.isdigit():
            project = self.filter(pk=int(key)).first()
        return project


TALLY_FIELDS = frozenset({"tally_unlabelled", "tally_test", "tally_train"})
# Written only by conditional UPDATEs, never by `save()` (a stale instance would write an old value back).
UPDATE_ONLY_FIELDS = TALLY_FIELDS | {"judgements_file_queued_at"}


class Project(models.Model):
    slug = models.SlugField(max_length=100, unique=True, help_text="Short stable name, used by the CLI")
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True, help_text="Shown to annotators; HTML is sanitised")
    guidelines = models.TextField(
        blank=True, max_length=100_000,
        help_text="How to label, written by owners in Markdown (HTML allowed, sanitised); shown on the labelling, "
                  "review and batch screens",
    )
    guidelines_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    template = models.TextField(
        blank=True, help_text="HTML template for json items, with {{field}} placeholders (values are escaped)"
    )
    data_type = models.CharField(max_length=16, choices=DataType.choices)
    label_type = models.CharField(max_length=32, choices=LabelType.choices, default=LabelType.CLASSIFICATION)
    classes = models.JSONField(default=list, help_text="Ordered list of class names")
    default_class = models.CharField(max_length=200, blank=True)
    class_keys = models.JSONField(
        default=dict, blank=True,
        help_text="Keys owners chose for classes ({class: key}, one letter or digit each); the others get theirs "
        "automatically",
    )

    dataset_directory = models.CharField(max_length=1024, help_text="Absolute path of the dataset (directory or file)")
    judgements_file = models.CharField(
        max_length=1024, blank=True, help_text="Light Bulb CSV kept up to date from the database (optional)"
    )
    model_directory = models.CharField(max_length=1024, blank=True, help_text="Where model versions are written")
    config_path = models.CharField(max_length=1024, blank=True, help_text="The YAML config it was imported from")
    dataset_options = models.JSONField(
        default=dict, blank=True, help_text="Extra dataset keys from the config (text_column, id_column, ...)"
    )
    model_options = models.JSONField(default=dict, blank=True, help_text="Extra model keys from the config")

    # The pretrained encoder whose features the model learns from; blank = the default for the data type.
    # Validated against projects.encoders.REGISTRY (the torch-free catalogue).
    encoder = models.CharField(
        max_length=64, blank=True,
        help_text="Encoder name (blank: mobilenet_lite0 for images, minilm_ngrams for text/json)",
    )
    min_train_judgements = models.PositiveIntegerField(
        default=10, help_text="TRAIN judgements needed (with the TEST minimum and two classes) before the first model"
    )
    sampling = models.CharField(
        max_length=16, choices=Sampling.choices, default=Sampling.MARGIN,
        help_text="How the queue picks the item the model is least sure of",
    )
    show_model_guesses = models.BooleanField(
        default=True,
        help_text="Show the model's guess on TRAIN items while labelling (never on TEST items, which stay blind)",
    )
    # Overlap (issue 20): a share of items is labelled by `overlap_k` people, blind to each other, chosen
    # uniformly at random within each stage as they are first leased, TEST items first.
    overlap_share = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of items labelled by several people independently, TEST items first (0 turns it off)",
    )
    overlap_k = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(2), MaxValueValidator(10)],
        help_text="How many people label each overlap item (capped at the members who can label)",
    )
    random_share = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of TRAIN items drawn uniformly at random instead of by the model's uncertainty",
    )

    review_precision_floor = models.FloatField(
        default=0.8,
        validators=[MinValueValidator(0.5), MaxValueValidator(0.99)],
        help_text="Review batches of a class are expected to be at least this precise (the model's calibrated "
        "confidence, corrected by what reviews measured)",
    )

    auto_label_precision = models.FloatField(
        default=0.99,
        validators=[MinValueValidator(0.5), MaxValueValidator(0.999)],
        help_text="Auto-labels (nobody sees them) are made only above a threshold where TEST proves this "
        "precision (95% lower bound)",
    )

    proposal_guarantee = models.CharField(
        max_length=16, choices=ProposalGuarantee.choices, default=ProposalGuarantee.EACH_CLASS,
        help_text="Whether the auto-label precision is proven for each class or for all classes together",
    )

    audit_share = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of confirmed proposal batches whose accepted items are checked again one by one",
    )

    # Stages, as in Light Bulb: the TEST stage fills first with uniformly random items, then is kept at
    # about `test_ratio` of TRAIN so accuracy is always measured on an unbiased random sample.
    test_min_judgements = models.PositiveIntegerField(
        default=10, help_text="TEST judgements collected (uniformly at random) before any TRAIN item"
    )
    test_ratio = models.FloatField(
        default=0.33,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="After the minimum, TEST is topped up whenever TEST / TRAIN falls below this",
    )
    lease_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(10)], help_text="How long an item handed out stays reserved"
    )

    # Bumped by every judgement write; derived files (judgements CSV, models) record the revision they
    # reflect, so background tasks can skip work that is already up to date.
    judgement_revision = models.PositiveBigIntegerField(default=0, editable=False)
    judgements_file_revision = models.PositiveBigIntegerField(default=0, editable=False)
    # A judgements-file sync task is queued (set when one is enqueued, cleared when it starts): a burst of
    # labels enqueues one, not one per label.
    judgements_file_queued_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Kept by database triggers (lightbulb_site/tallies.py), never written by Python: unlabelled items,
    # and the current TEST / TRAIN judgements, which every lease would otherwise count. `save()` leaves
    # them out, so a stale instance cannot write an old count back.
    tally_unlabelled = models.BigIntegerField(default=0, editable=False)
    tally_test = models.BigIntegerField(default=0, editable=False)
    tally_train = models.BigIntegerField(default=0, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name not in UPDATE_ONLY_FIELDS
            ]
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("projects:detail", args=[self.pk])

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .encoders import EncoderError, spec_for

        super().clean()
        if self.encoder:
            try:
                spec_for(self.encoder, data_type=self.data_type)
            except EncoderError as exc:
                raise ValidationError({"encoder": str(exc)}) from None

    @property
    def encoder_name(self) -> str:
        """The encoder in use: the project's choice, or the registry's default for its data type."""
        from .encoders import default_encoder

        return self.encoder or default_encoder(self.data_type)

    @property
    def labeling_supported(self) -> bool:
        return self.label_type in SUPPORTED_LABEL_TYPES

    @property
    def modelled(self) -> bool:
        """Whether the model loop trains a model for this label type today."""
        return self.label_type in MODELLED_LABEL_TYPES

    @property
    def dataset_path(self) -> Path:
        return Path(self.dataset_directory)

    @property
    def dataset_root(self) -> Path:
        """The folder item keys are relative to: the dataset directory, or the folder of a dataset file."""
        path = self.dataset_path
        return path.parent if path.is_file() else path

    @property
    def model_path(self) -> Path:
        if self.model_directory:
            return Path(self.model_directory)
        return Path(settings.MODEL_ROOT) / self.slug

    def item_file_path(self, item: Item) -> Path | None:
        """Absolute file for a file-backed item; never built from request data."""
        if not item.is_file:
            return None
        return self.dataset_root / item.key


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_project_user")]
        ordering = ["project", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} · {self.role} · {self.project}"


class ItemStatus(models.TextChoices):
    UNLABELLED = "unlabelled", "Unlabelled"
    LABELLED = "labelled", "Labelled"
    # Overlap items: some of their k independent labels are still missing; not a label for anything yet.
    PARTIAL = "partial", "Waiting for more labels"
    # Their k labels disagree: a reviewer decides.
    DISPUTED = "disputed", "Labels disagree"
    REJECTED = "rejected", "Rejected"  # file could not be read; kept with the reason, never shown to label


class ItemKind(models.TextChoices):
    FILE = "file", "File"  # the datum is a file under the dataset directory (images)
    TEXT = "text", "Text"  # text stored inline (from a .txt file or a CSV/JSONL row)
    JSON = "json", "JSON"  # a JSON object stored inline


class Item(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    # The stable key: path relative to the dataset directory, or the row id for CSV/JSONL sources.
    # Exports, the API and simulate's ground truth all speak this key.
    key = models.CharField(max_length=1024)
    kind = models.CharField(max_length=8, choices=ItemKind.choices)
    source = models.CharField(max_length=1024, blank=True, help_text="File the item came from, relative")
    text = models.TextField(blank=True)
    data = models.JSONField(null=True, blank=True)
    content_hash = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=ItemStatus.choices, default=ItemStatus.UNLABELLED)
    rejection_reason = models.CharField(max_length=500, blank=True)
    meta = models.JSONField(default=dict, blank=True, help_text="width/height, detected encoding, line number ...")
    # Sequence tagging: the text's tokens as [start, end) character offsets, from the project model's own
    # tokenizer (written by the model loop, which imports spaCy; the web process never does). Spans snap
    # to them and the queue offers a sequence item only once it has them.
    tokens = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    # Lease: while leased_until is in the future, only leased_to may label the item. Claimed with a
    # conditional UPDATE so two annotators can never hold the same item.
    leased_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="leased_items"
    )
    leased_until = models.DateTimeField(null=True, blank=True)
    lease_stage = models.CharField(max_length=8, blank=True, help_text="TRAIN or TEST, decided when leased")
    # How the queue picked the leased item; copied onto the judgement so metrics can be de-biased.
    lease_picked_by = models.CharField(max_length=16, blank=True)
    lease_probability = models.FloatField(null=True, blank=True)
    # Overlap: how many people label it independently (1: the usual single label), drawn when it is first
    # leased, and its stage while its round is open (partial or disputed: it has no current label then).
    labels_wanted = models.PositiveSmallIntegerField(default=1)
    overlap_stage = models.CharField(max_length=8, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="item_unique_project_key")]
        indexes = [
            # (project, status) for the pool, and leased_until within it so that counting live leases
            # and the free pool reads the index alone (no row visits on a 100,000-item project).
            models.Index(fields=["project", "status", "leased_until"], name="item_project_status_lease_idx"),
            models.Index(fields=["leased_to", "leased_until"], name="item_lease_idx"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return self.key

    @property
    def is_file(self) -> bool:
        return self.kind == ItemKind.FILE
