"""The blind TEST stage: what a person may see of an item while it can still be labelled by them.

TEST items measure the model, so they must be labelled by people who saw neither the model's guess nor
anyone else's label; otherwise the evaluation set agrees with the model because people followed it.
Every page and API answer that shows an item, a guess or a label asks here first.

- The model's guess: never on a TEST item, never on an audit (a blind second look), and on TRAIN items
  only while the owner's setting `show_model_guesses` is on.
- Overlap items (labeling.overlap): no model guess at all (TRAIN too); while an item's round is open
  nobody, whatever their role, sees another person's label of it, and below reviewer not while it is
  disputed either.
- Other people's TEST labels: hidden from members below reviewer (annotators and viewers: anyone who
  labels, or may be made an annotator later); reviewers and owners see every label, with who gave it.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from projects.models import ROLE_RANK, Item, Project, Role

from .audits import AUDIT
from .models import Judgement, Stage
from .overlap import OVERLAP, hidden_in_open_rounds, hidden_votes

REVIEW = "review"  # picked_by of a text leased from the review queue (sequence tagging)

# The lowest role that sees other people's TEST labels.
SEES_TEST_LABELS = Role.REVIEWER


def sees_others_test_labels(role: str | None) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[SEES_TEST_LABELS]


def shows_prediction(project: Project, *, stage: str | None, picked_by: str | None, overlap: bool = False) -> bool:
    """Whether an item of this stage, picked so, may show the model's guess (`overlap`: the item is
    labelled by several people independently)."""
    if stage != Stage.TEST and picked_by == REVIEW:
        return True  # a text from the review queue is there to check the model's spans: they are the point
    return (stage != Stage.TEST and picked_by not in (AUDIT, OVERLAP) and not overlap
            and project.show_model_guesses)


def visible_prediction(
    project: Project, *, stage: str | None, picked_by: str | None, prediction: dict | None, overlap: bool = False
):
    """The model's guess as it may be shown with an item of this stage, or None."""
    return prediction if shows_prediction(project, stage=stage, picked_by=picked_by, overlap=overlap) else None


def item_stage(item: Item, current: Judgement | None) -> str | None:
    """The stage the item is in: its lease's while leased for labelling, else its current label's."""
    return item.lease_stage or (current.stage if current is not None else None)


def hidden_test_judgements(user: User) -> Q:
    """Judgements a blinded member may not see: TEST labels given by someone else (or read from a file),
    and other people's votes on overlap items whose round is open."""
    return (Q(stage=Stage.TEST) & ~Q(user=user)) | hidden_votes(user)


def visible_judgements(judgements: QuerySet[Judgement], *, user: User, role: str | None) -> QuerySet[Judgement]:
    if sees_others_test_labels(role):
        return judgements.exclude(hidden_in_open_rounds(user))
    return judgements.exclude(hidden_test_judgements(user))
