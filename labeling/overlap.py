"""Overlap: a share of items labelled by k people independently, so labels can be checked against each other.

The rules (docs/design/overlap.md):
- Which items: decided when an item is first leased, by a coin independent of the item, so overlap items
  are uniformly random within their stage. TEST comes first: with s the project's overlap share and t
  TEST's long-run share of human labels (test_ratio / (1 + test_ratio)), a TEST item is in the overlap with
  probability min(1, s / t) and a TRAIN item with max(0, (s - t) / (1 - t)): s of all items in the end,
  every TEST item before any TRAIN one. k is capped at the members who can label; no new overlap item is
  opened while more than twice that many wait for their next label, so one busy annotator never stalls.
- Votes: each person's label in the round is a judgement with `is_vote` and not current: the item has no
  label for training, TEST accuracy or exports (status partial) until its k people have labelled. Then k
  agreeing votes settle it (the round's earliest vote becomes current: its stage and pick probability are
  the ones de-biased metrics need); otherwise it is disputed, and a reviewer decides (an adjudicated
  judgement, the votes kept).
- The second (third...) label: a pool of partial items that come first in everyone's queue, never to a
  person who already voted on the item; the same conditions are part of the claim itself.
- Blind: while an item's round is open, nobody below reviewer sees another person's vote, and no model
  guess is shown on an overlap item (TRAIN too), or the votes would agree because people followed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Q, QuerySet

from projects.label_kinds import kind_for
from projects.models import Item, ItemStatus, Membership, Project, Role

from .models import Judgement, Stage

# An item whose round is open: it has votes but no current label.
OPEN_STATUSES = (ItemStatus.PARTIAL, ItemStatus.DISPUTED)
# lease_picked_by of a lease for an overlap item's next vote (how the item was first picked stays on its
# first vote, and every vote of the round copies it).
OVERLAP = "overlap"
# More partial items than this many per labeller: no new overlap items until the backlog shrinks.
BACKLOG_PER_LABELLER = 2


def labeller_ids(project: Project) -> set[int]:
    """Members who label from the queue: annotators, and reviewers and owners who have labelled from it
    here (many never do: they decide, review or import; counting them would open rounds nobody finishes)."""
    from .models import JudgementSource

    from_queue = Exists(Judgement.objects.filter(project=project, user=OuterRef("user"), source=JudgementSource.HUMAN)
                        .filter(Q(is_vote=True) | ~Q(picked_by="")))
    return set(
        Membership.objects.filter(project=project)
        .alias(from_queue=from_queue)
        .filter(Q(role=Role.ANNOTATOR) | Q(role__in=[Role.REVIEWER, Role.OWNER], from_queue=True))
        .values_list("user_id", flat=True)
    )


def labellers(project: Project) -> int:
    return len(labeller_ids(project))


def test_share(project: Project) -> float:
    """TEST's long-run share of human labels: the queue keeps TEST / TRAIN at about test_ratio."""
    r = max(0.0, float(project.test_ratio))
    return r / (1.0 + r)


def overlap_probability(project: Project, *, stage: str) -> float:
    """The chance that a freshly leased item of `stage` is labelled by k people (TEST first)."""
    s = max(0.0, min(1.0, float(project.overlap_share)))
    if s <= 0.0:
        return 0.0
    t = test_share(project)
    if stage == Stage.TEST:
        return 1.0 if t <= s else s / t
    return 0.0 if t >= s else (s - t) / (1.0 - t)


@dataclass
class Coin:
    """The overlap draw for one lease call: k (capped) and whether the backlog leaves room."""

    k: int
    open_to_new: bool

    def labels_wanted(self, project: Project, *, stage: str, rng: random.Random) -> int:
        if self.k < 2 or not self.open_to_new:
            return 1
        return self.k if rng.random() < overlap_probability(project, stage=stage) else 1


def coin_for(project: Project, *, partial: int) -> Coin:
    """`partial`: the project's partial items now (from the queue's counts)."""
    if project.overlap_share <= 0 or kind_for(project).structured:
        # Overlap rounds compare classes (agreement, disputes): spans are labelled once.
        return Coin(k=1, open_to_new=False)
    n = labellers(project)
    return Coin(k=min(int(project.overlap_k), n), open_to_new=partial <= BACKLOG_PER_LABELLER * n)


def live_votes(item: Item) -> QuerySet[Judgement]:
    """The votes that count in the item's round, earliest first."""
    return Judgement.objects.filter(item=item, is_vote=True, undone_at__isnull=True).order_by("created_at", "id")


def voted_by(user: User) -> Exists:
    """For an Item queryset: `user` has a live vote on the item."""
    return Exists(Judgement.objects.filter(item=OuterRef("pk"), user=user, is_vote=True, undone_at__isnull=True))


def second_label_pool(project: Project, *, user: User, now) -> QuerySet[Item]:
    """Partial items `user` may give their vote: nobody holds them and `user` has not voted on them."""
    from .leases import free_lease

    return Item.objects.filter(free_lease(now), project=project, status=ItemStatus.PARTIAL).exclude(voted_by(user))


def hidden_in_open_rounds(user: User) -> Q:
    """Judgements nobody may see, whatever their role: other people's labels on an overlap item still being
    labelled (votes, and votes replaced or undone in the round), so every vote stays independent."""
    return Q(item__labels_wanted__gt=1, item__status__in=[ItemStatus.UNLABELLED, ItemStatus.PARTIAL]) & ~Q(user=user)


def hidden_votes(user: User) -> Q:
    """Judgements below reviewer may not see: other people's labels on an overlap item until it is decided
    (its round open, or disputed: reviewers decide those and see every vote)."""
    return Q(item__labels_wanted__gt=1, item__status__in=[ItemStatus.UNLABELLED, *OPEN_STATUSES]) & ~Q(user=user)


def is_overlap_item(item: Item) -> bool:
    return item.labels_wanted > 1


def first_vote_picks(item_ids: list[int]) -> dict[int, str]:
    """How each item's round was picked (its earliest live vote's `picked_by`), for showing its next lease."""
    picks: dict[int, str] = {}
    rows = (Judgement.objects.filter(item_id__in=item_ids, is_vote=True, undone_at__isnull=True)
            .order_by("created_at", "id").values_list("item_id", "picked_by"))
    for item_id, picked_by in rows:
        picks.setdefault(item_id, picked_by or "random")
    return picks
