"""Write paths for labeling: the queue, leases, judgements, undo, skip.

Called alike by the labeling page, the REST API and simulations. Services raise the domain errors of
`labeling.errors` (each with its HTTP status); views show them and the API answers with them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from lightbulb_site.ids import is_row_id
from projects.label_kinds import InvalidAnswer, kind_for, pixel
from projects.models import Item, ItemStatus, Project

from .audits import AUDIT, audit_items, record_audit, undo_audit
from .blind import REVIEW, sees_others_test_labels
from .errors import (
    AwaitingReview,
    BlindLabel,
    InvalidLabel,
    InvalidValue,
    ItemRejected,
    ItemUnavailable,
    LeaseConflict,
    NothingToUndo,
    NotYourLabel,
    ReasonRequired,
)
from .leases import LEASE_CLEARED, after_change, claim_item, free_lease, release_lease
from .models import AuditStatus, Judgement, JudgementSource, Proposal, ProposalStatus, Skip, Stage
from .overlap import OPEN_STATUSES, OVERLAP, coin_for, is_overlap_item, labeller_ids, live_votes, second_label_pool
from .queue import Candidate, RandomOrdering, model_hooks

MAX_BATCH = 50


@dataclass
class LeasedItem:
    item: Item
    stage: str
    picked_by: str
    probability: float | None


# --------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------


@dataclass
class QueueCounts:
    """What the queue needs to know of a project before leasing, read in one query (`queue_counts`)."""

    test: int  # current TEST judgements plus live TEST leases
    train: int  # the same for TRAIN
    free: int  # unlabelled items nobody holds: the pool before a user's skips
    id_low: int | None  # the lowest and highest ids in the pool (None when it is empty)
    id_high: int | None
    audits_pending: bool = False  # some confirmed batch items wait for their blind second look
    partial: int = 0  # overlap items waiting for their next vote (labeling.overlap)


def _count(rows) -> Coalesce:
    grouped = rows.order_by().values("project").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(grouped, output_field=IntegerField()), 0)


def queue_counts(project: Project, *, now: datetime) -> QueueCounts:
    """The stage counts, the pool's size and its id range, in one query (each lease asks for them).

    Judgement and unlabelled counts are the project's tallies (kept by the database, read fresh here
    rather than from a `project` that may have been loaded long ago); only live leases are counted, and
    the ends of the pool's id range are two index lookups (an aggregate MIN/MAX would read the pool).
    """
    leased = Item.objects.filter(project=OuterRef("pk"), status=ItemStatus.UNLABELLED, leased_until__gt=now)
    # Overlap items whose round is open have no current label yet, but their stage is taken: counted so.
    open_round = Item.objects.filter(project=OuterRef("pk"), status__in=OPEN_STATUSES)
    pool = Item.objects.filter(free_lease(now), project=OuterRef("pk"), status=ItemStatus.UNLABELLED)
    row = (
        Project.objects.filter(pk=project.pk)
        .annotate(
            leased_test=_count(leased.filter(lease_stage=Stage.TEST)),
            leased_train=_count(leased.filter(lease_stage=Stage.TRAIN)),
            leased_all=_count(leased),
            id_low=Subquery(pool.order_by("id").values("id")[:1]),
            id_high=Subquery(pool.order_by("-id").values("id")[:1]),
            audits_pending=Exists(Proposal.objects.filter(project=OuterRef("pk"), audit_status=AuditStatus.PENDING)),
            open_test=_count(open_round.filter(overlap_stage=Stage.TEST)),
            open_train=_count(open_round.filter(overlap_stage=Stage.TRAIN)),
            partial=_count(open_round.filter(status=ItemStatus.PARTIAL)),
        )
        .values_list(
            "tally_unlabelled", "tally_test", "tally_train", "leased_test", "leased_train", "leased_all", "id_low",
            "id_high", "audits_pending", "open_test", "open_train", "partial",
        )
        .first()
    )
    if row is None:  # the project was deleted meanwhile
        return QueueCounts(test=0, train=0, free=0, id_low=None, id_high=None)
    (unlabelled, test, train, leased_test, leased_train, leased_all, low, high, audits, open_test, open_train,
     partial) = row
    return QueueCounts(
        test=test + leased_test + open_test, train=train + leased_train + open_train,
        free=max(0, unlabelled - leased_all), id_low=low, id_high=high, audits_pending=audits, partial=partial,
    )


def stage_counts(project: Project, *, now: datetime | None = None) -> dict[str, int]:
    """TEST/TRAIN counts of current judgements plus live leases, so concurrent annotators share out stages."""
    counts = queue_counts(project, now=now or timezone.now())
    return {"test": counts.test, "train": counts.train}


def choose_stage(project: Project, *, test: int, train: int) -> str:
    """Light Bulb's rule: fill TEST first, then keep TEST at about `test_ratio` of TRAIN."""
    if test < project.test_min_judgements:
        return Stage.TEST
    if project.test_ratio > 0 and test / (train + 1) < project.test_ratio:
        return Stage.TEST
    return Stage.TRAIN


# --------------------------------------------------------------------------------------------------
# Queue and leases
# --------------------------------------------------------------------------------------------------


def _claim(
    candidate: Candidate, *, user: User, stage: str, now: datetime, until: datetime, labels_wanted: int = 1
) -> Item | None:
    """Atomic claim (`claim_item`), so two annotators can never hold the same item: the item, or None.

    `labels_wanted`: the overlap coin's draw for the item (labeling.overlap), kept with it from now on.
    """
    picked_by, probability = candidate.picked_by, candidate.probability
    if stage == Stage.TEST and picked_by != "random":
        picked_by, probability = "random", None
    return claim_item(
        Item.objects.filter(free_lease(now), pk=candidate.item_id, status=ItemStatus.UNLABELLED),
        pk=candidate.item_id, leased_to=user, leased_until=until, lease_stage=stage, lease_picked_by=picked_by,
        lease_probability=probability, labels_wanted=labels_wanted, overlap_stage="",
    )


def _lease_next_votes(
    project: Project, *, user: User, count: int, skipped, now: datetime, until: datetime
) -> list[LeasedItem]:
    """Overlap items waiting for their next vote come before fresh items, oldest first: never to a person
    who voted on the item already (the claim itself says so too, so a race cannot break it)."""
    leased: list[LeasedItem] = []
    pool = second_label_pool(project, user=user, now=now).exclude(pk__in=skipped)
    for item_id, stage in list(pool.order_by("id").values_list("id", "overlap_stage")[: count * 2]):
        if len(leased) >= count:
            break
        claimed = claim_item(
            second_label_pool(project, user=user, now=now).filter(pk=item_id, overlap_stage=stage), pk=item_id,
            leased_to=user, leased_until=until, lease_stage=stage, lease_picked_by=OVERLAP, lease_probability=None,
        )
        if claimed is not None:
            leased.append(LeasedItem(item=claimed, stage=stage, picked_by=OVERLAP, probability=None))
    return leased


def next_items(
    project: Project,
    *,
    user: User,
    count: int = 1,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> list[LeasedItem]:
    """Lease up to `count` items to `user` and return them, the user's live leases first.

    Stages are decided per item as it is leased; TEST items are drawn uniformly at random, TRAIN items
    in the order the model's ranking gives (random until a model exists).
    """
    count = max(1, min(int(count), MAX_BATCH))
    rng = rng or random.Random()
    now = now or timezone.now()
    until = now + timedelta(seconds=project.lease_seconds)

    # Items the user already holds come back first (a reload shows the same item), with the lease renewed.
    # Audit items are labelled already (by a confirmed batch) and are held like any other.
    held = list(
        Item.objects.filter(project=project, leased_to=user, leased_until__gt=now)
        .filter(
            Q(status__in=[ItemStatus.UNLABELLED, ItemStatus.PARTIAL])
            | Q(status=ItemStatus.LABELLED, lease_picked_by=AUDIT)
        )
        .order_by("leased_until", "id")[:count]
    )
    if held:
        Item.objects.filter(pk__in=[i.pk for i in held], leased_to=user).update(leased_until=until)
    result = [
        LeasedItem(
            item=i, stage=i.lease_stage or Stage.TRAIN, picked_by=i.lease_picked_by, probability=i.lease_probability
        )
        for i in held
    ]

    if len(result) >= count:
        return result
    counts = queue_counts(project, now=now)  # audit leases are of labelled items: they change none of it
    if counts.audits_pending:  # the audit query is the costliest here: only when some audit is owed
        result += _lease_audit_items(project, user=user, count=count - len(result), now=now, until=until)
    pool = Item.objects.filter(free_lease(now), project=project, status=ItemStatus.UNLABELLED)
    if kind_for(project).tokenized:
        # A text is offered once the model loop has tokenized it: spans snap to its tokens.
        pool = pool.filter(tokens__isnull=False)
    # By user alone (its own index): the pool is this project's already, and joining items here made
    # SQLite walk every item of the project to find a few skips.
    skipped = Skip.objects.filter(user=user).values("item_id")
    if counts.partial and len(result) < count:
        result += _lease_next_votes(project, user=user, count=count - len(result), skipped=skipped, now=now,
                                    until=until)
    coin = coin_for(project, partial=counts.partial)
    attempts = 0
    while len(result) < count and attempts < 5:
        attempts += 1
        stage = choose_stage(project, test=counts.test, train=counts.train)
        candidates = _candidates(
            project, pool, stage=stage, skipped=skipped, limit=(count - len(result)) * 3 + 5, rng=rng, now=now,
            allow_skipped=not result, counts=counts,
        )
        if not candidates:
            break
        for candidate in candidates:
            if len(result) >= count:
                break
            stage = choose_stage(project, test=counts.test, train=counts.train)
            wanted = coin.labels_wanted(project, stage=stage, rng=rng)
            item = _claim(candidate, user=user, stage=stage, now=now, until=until, labels_wanted=wanted)
            if item is not None:
                if stage == Stage.TEST:
                    counts.test += 1
                else:
                    counts.train += 1
                counts.free -= 1
                result.append(
                    LeasedItem(item=item, stage=stage, picked_by=item.lease_picked_by,
                               probability=item.lease_probability)
                )
    return result


def next_review_items(
    project: Project, *, user: User, count: int = 1, now: datetime | None = None,
) -> list[LeasedItem]:
    """Lease up to `count` texts the model is confident about (sequence tagging's review queue: the model's
    spans are shown pre-filled, Enter accepts them), most confident first, the user's live review leases
    first. They are TRAIN texts: TEST stays drawn at random by `next_items`.

    Preconditions: a structured label type; otherwise there is nothing to review (an empty list)."""
    if not kind_for(project).structured:
        return []
    count = max(1, min(int(count), MAX_BATCH))
    now = now or timezone.now()
    until = now + timedelta(seconds=project.lease_seconds)
    held = list(Item.objects.filter(project=project, leased_to=user, leased_until__gt=now, lease_picked_by=REVIEW,
                                    status=ItemStatus.UNLABELLED).order_by("leased_until", "id")[:count])
    if held:
        Item.objects.filter(pk__in=[i.pk for i in held], leased_to=user).update(leased_until=until)
    result = [LeasedItem(item=i, stage=Stage.TRAIN, picked_by=REVIEW, probability=None) for i in held]
    skipped = Skip.objects.filter(user=user).values("item_id")
    # The user's own TRAIN leases from the labelling screen (it leases a few items ahead) may move to review: else
    # someone who opens the screen and then "To review" finds nothing there. A TEST lease never does (TEST stays
    # drawn at random, blind), nor an overlap vote.
    takeable = free_lease(now) | Q(leased_to=user, lease_stage=Stage.TRAIN, overlap_stage="")
    queue = model_hooks().review_items(project, exclude=skipped).filter(takeable).exclude(pk__in=[i.pk for i in held])
    for item_id in list(queue.values_list("pk", flat=True)[: (count - len(result)) * 3 + 5]):
        if len(result) >= count:
            break
        claimed = claim_item(
            Item.objects.filter(takeable, pk=item_id, status=ItemStatus.UNLABELLED), pk=item_id, leased_to=user,
            leased_until=until, lease_stage=Stage.TRAIN, lease_picked_by=REVIEW, lease_probability=None,
            labels_wanted=1, overlap_stage="")
        if claimed is not None:
            result.append(LeasedItem(item=claimed, stage=Stage.TRAIN, picked_by=REVIEW, probability=None))
    return result


def review_source(project: Project, *, item: Item, value: object) -> str:
    """A reviewed item's source: `confirmed_proposal` when the person kept the model's spans or boxes exactly as
    shown from the review queue, else `human` (they fixed it: their answer)."""
    if item.lease_picked_by != REVIEW or not isinstance(value, dict):
        return JudgementSource.HUMAN
    prediction = model_hooks().predictions(project, [item.pk]).get(item.pk, {})
    if "boxes" in prediction:
        # Boxes as DetectionKind keeps them (`pixel`); the shown ones carry a score the answer does not.
        key = lambda boxes: sorted(  # noqa: E731
            (*(pixel(b[side]) for side in ("xmin", "ymin", "xmax", "ymax")), b.get("label")) for b in boxes)
        kept = key(value.get("boxes") or []) == key(prediction["boxes"])
        return JudgementSource.CONFIRMED_PROPOSAL if kept else JudgementSource.HUMAN
    shown = prediction.get("spans")
    if shown is None:
        return JudgementSource.HUMAN
    span_key = lambda spans: sorted((s.get("start"), s.get("end"), s.get("label")) for s in spans)  # noqa: E731
    kept = span_key(value.get("spans") or []) == span_key(shown)
    return JudgementSource.CONFIRMED_PROPOSAL if kept else JudgementSource.HUMAN


def _lease_audit_items(
    project: Project, *, user: User, count: int, now: datetime, until: datetime
) -> list[LeasedItem]:
    """Items of randomly audited batches come before the queue: each is labelled again, blind."""
    leased: list[LeasedItem] = []
    for item_id in list(audit_items(project, user=user, now=now)[: count * 2]):
        if len(leased) >= count:
            break
        claimed = claim_item(
            Item.objects.filter(free_lease(now), pk=item_id, status=ItemStatus.LABELLED), pk=item_id,
            leased_to=user, leased_until=until, lease_stage=Stage.TRAIN, lease_picked_by=AUDIT, lease_probability=None,
        )
        if claimed is not None:
            leased.append(LeasedItem(item=claimed, stage=Stage.TRAIN, picked_by=AUDIT, probability=None))
    return leased


def pool_size(project: Project, *, free: int, now: datetime, skipped=None) -> int:
    """How many items the pool holds (unlabelled, not leased, not skipped), exactly, the cheap way:
    `free` (from `queue_counts`: the tally less the live leases) less this user's skips still in it."""
    size = free
    if skipped is not None:
        # The user's skips first (a handful, by their index), so the items are looked up by id.
        skipped_ids = [row["item_id"] for row in skipped]
        if skipped_ids:
            size -= Item.objects.filter(
                free_lease(now), project=project, status=ItemStatus.UNLABELLED, pk__in=skipped_ids
            ).count()
    return max(0, size)


def _candidates(
    project: Project, pool, *, stage: str, skipped, limit: int, rng: random.Random, allow_skipped: bool,
    now: datetime, counts: QueueCounts,
) -> list[Candidate]:
    ordering = RandomOrdering() if stage == Stage.TEST else (model_hooks().ordering(project) or RandomOrdering())
    id_range = None if counts.id_low is None or counts.id_high is None else (counts.id_low, counts.id_high)

    def draw(pool, skipped) -> list[Candidate]:
        size = pool_size(project, free=counts.free, now=now, skipped=skipped)
        return ordering.candidates(pool, limit=limit, rng=rng, size=size, id_range=id_range)

    candidates = draw(pool.exclude(pk__in=skipped), skipped)
    if not candidates and allow_skipped:
        # Only items this user skipped remain and they hold nothing else: offer those again rather
        # than say the queue is empty. Never while they hold other items, or a skip would not let go.
        candidates = draw(pool, None)
    return candidates


# --------------------------------------------------------------------------------------------------
# Judgements
# --------------------------------------------------------------------------------------------------


def get_item(project: Project, item_id: int | str) -> Item:
    """An item of this project, or ItemUnavailable: ids from another project are never accepted."""
    try:
        pk = int(item_id)
    except (TypeError, ValueError):
        raise ItemUnavailable("no such item in this project") from None
    if not is_row_id(pk):
        raise ItemUnavailable("no such item in this project")
    item = Item.objects.filter(project=project, pk=pk).first()
    if item is None:
        raise ItemUnavailable("no such item in this project")
    return item


def validate_label(project: Project, label: str) -> str:
    if not isinstance(label, str) or label not in project.classes:
        raise InvalidLabel(str(label), list(project.classes))
    return label


def validate_answer(project: Project, item: Item, *, label: str, value: object) -> tuple[str, dict | None]:
    """(label, value) as stored: a class of the project, or a structured kind's checked value and summary."""
    kind = kind_for(project)
    if not kind.structured:
        if value is not None:
            raise InvalidValue(f"a {project.get_label_type_display()} label is a class, not a value")
        return validate_label(project, label), None
    if value is None:
        raise InvalidValue(
            f"a {project.get_label_type_display()} label is a value: {kind.value_shape}"
        )
    try:
        checked = kind.validate(project, item, value)
    except InvalidAnswer as exc:
        raise InvalidValue(str(exc)) from None
    return kind.summary(checked), checked


def do_record_judgement(
    project: Project,
    *,
    item: Item,
    user: User,
    label: str = "",
    value: object = None,
    time_taken: float | None = None,
    source: str = JudgementSource.HUMAN,
    role: str | None = None,
    reason: str = "",
    now: datetime | None = None,
) -> Judgement:
    """Record `user`'s label for `item`. A relabel keeps history: the newest judgement counts.

    `label` is the class; for a structured label type (sequence tagging) `value` is the answer instead
    ({"spans": [...]}, checked and normalised by the project's kind, projects.label_kinds) and the
    judgement's label becomes its summary.

    `role`: the person's role, for a label given through a page or the API (None: the product's own
    callers, imports and simulations, which the rules below do not bind). Then no silent overwrites:
    - below reviewer, someone else's TEST label is hidden (labeling.blind) and may not be replaced
      (BlindLabel), and neither may any other person's label (NotYourLabel); the model's auto-labels
      and items the queue handed to this person (an audit's second look) are theirs to label;
    - a reviewer or owner may change someone else's label, saying why (`reason`, else ReasonRequired):
      the judgement's source is then `adjudicated`, and the replaced label stays in the history.
    """
    if item.project_id != project.pk:
        raise ItemUnavailable("no such item in this project")
    label, value = validate_answer(project, item, label=label, value=value)
    if time_taken is not None:
        time_taken = max(0.0, min(float(time_taken), 24 * 3600.0))
    reason = " ".join(str(reason or "").split())[:1000]
    now = now or timezone.now()
    with transaction.atomic():
        item = Item.objects.select_for_update().get(pk=item.pk)
        if item.status == ItemStatus.REJECTED:
            raise ItemRejected(f"item {item.key} is a rejected file and cannot be labelled: {item.rejection_reason}")
        if item.leased_to_id not in (None, user.pk) and item.leased_until and item.leased_until > now:
            raise LeaseConflict(f"item {item.key} is being labelled by someone else")
        holds_lease = item.leased_to_id == user.pk and bool(item.lease_stage)
        if source == JudgementSource.HUMAN and value is not None and holds_lease:
            # From the review queue, the model's spans kept as shown are a confirmed proposal.
            source = review_source(project, item=item, value=value)
        if item.status == ItemStatus.DISPUTED:
            return _decide_dispute(project, item=item, user=user, label=label, time_taken=time_taken, role=role,
                                   reason=reason, now=now)
        if is_overlap_item(item) and item.status in (ItemStatus.UNLABELLED, ItemStatus.PARTIAL):
            return _record_vote(project, item=item, user=user, label=label, time_taken=time_taken, source=source,
                                holds_lease=holds_lease, now=now)
        previous = Judgement.objects.filter(item=item, is_current=True).first()
        if role is not None and previous is not None and overrules(item, previous, user=user) and not holds_lease:
            if not sees_others_test_labels(role):
                if not someone_elses(previous, user=user):
                    raise NotYourLabel(
                        f"item {item.key} was labelled by {item.labels_wanted} people independently and they agreed; "
                        "changing it is a reviewer's or owner's decision"
                    )
                if previous.stage == Stage.TEST:
                    raise BlindLabel(
                        f"item {item.key} has a TEST label given blind by someone else; a reviewer can change it"
                    )
                raise NotYourLabel(
                    f"item {item.key} is labelled by {previous.labelled_by or 'someone else'}; changing another "
                    "person's label is a reviewer's or owner's decision"
                )
            if not reason:
                whose = "the agreed" if not someone_elses(previous, user=user) else (
                    f"{previous.labelled_by or 'someone else'}'s"
                )
                raise ReasonRequired(f"say why you change {whose} label of item {item.key}")
            source = JudgementSource.ADJUDICATED
        if holds_lease:
            stage = item.lease_stage
        elif previous is not None and previous.stage != Stage.AUTO:
            stage = previous.stage  # a relabel never moves an item between TRAIN and TEST
        elif previous is not None:
            stage = Stage.TRAIN  # a person checks an auto-label: picked by confidence, so never TEST
        else:
            counts = stage_counts(project, now=now)
            stage = choose_stage(project, test=counts["test"], train=counts["train"])
        if previous is not None:
            Judgement.objects.filter(pk=previous.pk).update(is_current=False)
        judgement = Judgement.objects.create(
            project=project,
            item=item,
            label=label,
            value=value,
            user=user,
            labelled_by=user.get_username(),
            stage=stage,
            source=source,
            reason=reason if source == JudgementSource.ADJUDICATED else "",
            time_taken=time_taken,
            picked_by=item.lease_picked_by if holds_lease else "",
            picked_probability=item.lease_probability if holds_lease else None,
        )
        Item.objects.filter(pk=item.pk).update(status=ItemStatus.LABELLED, **LEASE_CLEARED)
        # A person's label settles the item: pending proposals for it are moot.
        Proposal.objects.filter(item=item, status=ProposalStatus.PENDING).update(
            status=ProposalStatus.SUPERSEDED, closed_at=now
        )
        if holds_lease and item.lease_picked_by == AUDIT:
            record_audit(item, user=user, label=label)
        after_change(project)
    return judgement


def someone_elses(previous: Judgement, *, user: User) -> bool:
    """The current label is another person's (or came from a file): not the model's, not this user's."""
    return previous.source != JudgementSource.AUTO and previous.user_id != user.pk


def overrules(item: Item, previous: Judgement, *, user: User) -> bool:
    """Whether labelling `item` would change a label that is not this user's alone to change: someone
    else's, or one that k people agreed on in an overlap round (theirs together, even the user's own)."""
    return someone_elses(previous, user=user) or previous.is_vote


def _round_pick(item: Item, *, votes: list[Judgement], holds_lease: bool) -> tuple[str, float | None]:
    """How the round's item was picked: from its first vote (every vote of the round says the same, so
    whichever becomes current carries it), else from the lease that brought the first vote."""
    if votes:
        return votes[0].picked_by, votes[0].picked_probability
    if holds_lease and item.lease_picked_by != OVERLAP:
        return item.lease_picked_by, item.lease_probability
    return "", None


def _record_vote(
    project: Project, *, item: Item, user: User, label: str, time_taken: float | None, source: str,
    holds_lease: bool, now: datetime,
) -> Judgement:
    """One person's label in an overlap round (inside do_record_judgement's transaction and row lock).

    A relabel in the round replaces the person's vote (the old row stays, no longer a vote). When the
    item has votes from `labels_wanted` people it settles (all agree: the earliest vote becomes current)
    or is disputed (a reviewer decides); until then it is partial and counts for nothing.
    """
    votes = list(live_votes(item))
    mine = [v.pk for v in votes if v.user_id == user.pk]
    if mine:  # replaced: kept in the history, withdrawn (never a label again, not even after an undo)
        Judgement.objects.filter(pk__in=mine).update(is_vote=False, undone_at=now)
    if item.overlap_stage:
        stage = item.overlap_stage
    elif holds_lease:
        stage = item.lease_stage
    else:
        counts = stage_counts(project, now=now)
        stage = choose_stage(project, test=counts["test"], train=counts["train"])
    picked_by, probability = _round_pick(item, votes=votes, holds_lease=holds_lease)
    vote = Judgement.objects.create(
        project=project, item=item, label=label, user=user, labelled_by=user.get_username(), stage=stage,
        source=source, time_taken=time_taken, picked_by=picked_by, picked_probability=probability,
        is_current=False, is_vote=True,
    )
    round_votes = [v for v in votes if v.user_id != user.pk] + [vote]
    if len({v.user_id for v in round_votes}) < item.labels_wanted:
        status = ItemStatus.PARTIAL
    else:
        status = _settle(round_votes)
    Item.objects.filter(pk=item.pk).update(status=status, overlap_stage=stage, **LEASE_CLEARED)
    # The item is being labelled: pending proposals for it are moot.
    Proposal.objects.filter(item=item, status=ProposalStatus.PENDING).update(
        status=ProposalStatus.SUPERSEDED, closed_at=now
    )
    if status == ItemStatus.LABELLED:  # only then does the item's label change (training, stats, files)
        after_change(project)
    return vote


def _settle(votes: list[Judgement]) -> ItemStatus:
    """The outcome of a round with all its votes (earliest first): if they agree, the earliest becomes the
    item's label (its stage and pick probability are the round's) and the item is labelled; else disputed."""
    if len({v.label for v in votes}) == 1:
        Judgement.objects.filter(pk=votes[0].pk).update(is_current=True)
        votes[0].is_current = True
        return ItemStatus.LABELLED
    return ItemStatus.DISPUTED


def _decide_dispute(
    project: Project, *, item: Item, user: User, label: str, time_taken: float | None, role: str | None,
    reason: str, now: datetime,
) -> Judgement:
    """A reviewer's or owner's decision on an item whose votes disagree: the item's label, source
    `adjudicated`, in the round's stage; the votes stay as they are (agreement reads them)."""
    if role is not None and not sees_others_test_labels(role):
        raise AwaitingReview(
            f"the independent labels of item {item.key} disagree; a reviewer or owner decides it"
        )
    votes = list(live_votes(item))
    picked_by, probability = _round_pick(item, votes=votes, holds_lease=False)
    Judgement.objects.filter(item=item, is_current=True).update(is_current=False)
    decision = Judgement.objects.create(
        project=project, item=item, label=label, user=user, labelled_by=user.get_username(),
        stage=item.overlap_stage or (votes[0].stage if votes else Stage.TRAIN), source=JudgementSource.ADJUDICATED,
        reason=reason or f"decided between {len(votes)} disagreeing labels", time_taken=time_taken,
        picked_by=picked_by, picked_probability=probability,
    )
    Item.objects.filter(pk=item.pk).update(status=ItemStatus.LABELLED, **LEASE_CLEARED)
    after_change(project)
    return decision


def do_undo_last_judgement(project: Project, *, user: User, now: datetime | None = None) -> Item:
    """Take back the user's most recent judgement in the project and hand the item back to them.

    The row stays (marked undone) for the record; an earlier judgement of the item, if any, counts again.
    """
    now = now or timezone.now()
    with transaction.atomic():
        last = (
            Judgement.objects.select_for_update()
            # Undo takes back single labels (a text accepted from the review queue is one); a confirmed batch
            # is not undone one item at a time.
            .filter(Q(source=JudgementSource.HUMAN) | Q(source=JudgementSource.CONFIRMED_PROPOSAL, picked_by=REVIEW),
                    project=project, user=user, undone_at__isnull=True)
            .filter(Q(is_current=True) | Q(is_vote=True))
            .select_related("item")
            .order_by("-created_at", "-id")
            .first()
        )
        if last is None:
            raise NothingToUndo("nothing to undo")
        if last.is_vote and last.item.status != ItemStatus.PARTIAL:
            # The round is finished: undoing now would let a person who learnt that the labels disagree
            # (or agree) change theirs to match, and the check would measure nothing.
            raise NothingToUndo(
                f"your label of {last.item.key} completed its round of {last.item.labels_wanted} independent labels, "
                "so it can no longer be undone; a reviewer or owner can change the item's label"
            )
        Judgement.objects.filter(pk=last.pk).update(is_current=False, undone_at=now)
        if last.is_vote:
            _reopen_round(project, last=last, user=user, now=now)
            return Item.objects.get(pk=last.item_id)
        if last.picked_by == AUDIT:
            undo_audit(last.item_id)
        earlier = (
            Judgement.objects.filter(item_id=last.item_id, undone_at__isnull=True)
            .exclude(pk=last.pk)
            .order_by("-created_at", "-id")
            .first()
        )
        if earlier is not None:
            Judgement.objects.filter(pk=earlier.pk).update(is_current=True)
        else:
            Item.objects.filter(pk=last.item_id).update(
                status=ItemStatus.UNLABELLED,
                leased_to=user,
                leased_until=now + timedelta(seconds=project.lease_seconds),
                lease_stage=last.stage,
                # The item was picked once; the label that replaces the undone one keeps how.
                lease_picked_by=last.picked_by,
                lease_probability=last.picked_probability,
            )
        after_change(project)
    return Item.objects.get(pk=last.item_id)


def _reopen_round(project: Project, *, last: Judgement, user: User, now: datetime) -> None:
    """After undoing `last`, a vote: the round is open again (no vote current) and the item goes back to
    the person who undid, to label again (unless someone else holds it for their own vote by now)."""
    was_settled = Judgement.objects.filter(item_id=last.item_id, is_current=True, is_vote=True).update(is_current=False)
    others_remain = Judgement.objects.filter(item_id=last.item_id, is_vote=True, undone_at__isnull=True).exists()
    item = Item.objects.get(pk=last.item_id)
    if item.leased_to_id not in (None, user.pk) and item.leased_until and item.leased_until > now:
        # Someone else holds it for their vote meanwhile: their lease stands, the item waits for labels.
        if others_remain:
            Item.objects.filter(pk=item.pk).update(status=ItemStatus.PARTIAL)
        else:  # their vote will open the round: it carries how the item was picked
            Item.objects.filter(pk=item.pk).update(status=ItemStatus.UNLABELLED, lease_picked_by=last.picked_by,
                                                   lease_probability=last.picked_probability, overlap_stage="")
        if was_settled:
            after_change(project)
        return
    lease = {"leased_to": user, "leased_until": now + timedelta(seconds=project.lease_seconds),
             "lease_stage": last.stage}
    if others_remain:
        Item.objects.filter(pk=last.item_id).update(
            status=ItemStatus.PARTIAL, lease_picked_by=OVERLAP, lease_probability=None, **lease
        )
    else:
        Item.objects.filter(pk=last.item_id).update(
            status=ItemStatus.UNLABELLED, overlap_stage="", lease_picked_by=last.picked_by,
            lease_probability=last.picked_probability, **lease,
        )
    if was_settled:
        after_change(project)


def undone_value(item: Item, *, user: User) -> dict | None:
    """The structured answer `user` last undid on `item` (a screen shows it again to fix, not redo)."""
    return (
        Judgement.objects.filter(item=item, user=user).exclude(undone_at=None)
        .order_by("-undone_at", "-id").values_list("value", flat=True).first()
    )


def do_skip_item(project: Project, *, item: Item, user: User) -> None:
    """Pass on an item: its lease is released for others and it leaves this user's queue."""
    if item.project_id != project.pk:
        raise ItemUnavailable("no such item in this project")
    with transaction.atomic():
        Skip.objects.get_or_create(item=item, user=user)
        release_lease(item, user=user)
        if Item.objects.filter(pk=item.pk, status=ItemStatus.PARTIAL).exists():
            _close_round_nobody_can_finish(project, item=Item.objects.select_for_update().get(pk=item.pk))


def do_close_stuck_rounds(project: Project) -> int:
    """After someone left the project (or stopped labelling): close the partial rounds that too few people
    are left to finish (`_close_round_nobody_can_finish`). How many partial items were looked at."""
    ids = list(Item.objects.filter(project=project, status=ItemStatus.PARTIAL).values_list("pk", flat=True))
    for item_id in ids:
        with transaction.atomic():
            item = Item.objects.select_for_update().filter(pk=item_id, status=ItemStatus.PARTIAL).first()
            if item is not None:
                _close_round_nobody_can_finish(project, item=item)
    return len(ids)


def _close_round_nobody_can_finish(project: Project, *, item: Item) -> None:
    """A partial item for which too few people are left who may still label it (the others voted or
    skipped it): its round closes with the votes it has, rather than wait for ever. One vote: an ordinary
    single label; several: they settle or dispute it as k votes would."""
    votes = list(live_votes(item))
    if not votes:
        return
    voters = {v.user_id for v in votes}
    skipped = set(Skip.objects.filter(item=item).values_list("user_id", flat=True))
    if len(labeller_ids(project) - voters - skipped) >= item.labels_wanted - len(voters):
        return
    status = _settle(votes)  # one vote agrees with itself: an ordinary single label
    Item.objects.filter(pk=item.pk).update(status=status, labels_wanted=len(voters))
    if status == ItemStatus.LABELLED:
        after_change(project)


EXCLUDED_PREFIX = "excluded by "


def do_exclude_item(project: Project, *, item: Item, user: User, reason: str = "", now: datetime | None = None) -> Item:
    """Take an item out of the project: it becomes a rejected item saying who excluded it and why, its label
    stops counting (kept in the history, no longer current), so the model neither learns from it nor is
    measured by it, and no queue, batch or export shows it again.

    Preconditions (else the domain error): the item is this project's and not rejected already; nobody else
    holds a lease on it (LeaseConflict). The caller checked the role (owners)."""
    if item.project_id != project.pk:
        raise ItemUnavailable("no such item in this project")
    reason = " ".join(str(reason or "").split())
    now = now or timezone.now()
    with transaction.atomic():
        item = Item.objects.select_for_update().get(pk=item.pk)
        if item.status == ItemStatus.REJECTED:
            raise ItemRejected(f"item {item.key} is already out of the project: {item.rejection_reason}")
        if item.leased_to_id not in (None, user.pk) and item.leased_until and item.leased_until > now:
            raise LeaseConflict(f"item {item.key} is being labelled by someone else")
        why = f"{EXCLUDED_PREFIX}{user.get_username()}" + (f": {reason}" if reason else "")
        had_label = Judgement.objects.filter(item=item, is_current=True).update(is_current=False)
        Item.objects.filter(pk=item.pk).update(
            status=ItemStatus.REJECTED, rejection_reason=why[:500], **LEASE_CLEARED
        )
        item.meta = {**item.meta, "excluded": True}
        item.save(update_fields=["meta"])
        Proposal.objects.filter(item=item, status=ProposalStatus.PENDING).update(
            status=ProposalStatus.SUPERSEDED, closed_at=now
        )
        if had_label:
            after_change(project)
    item.refresh_from_db()
    return item
