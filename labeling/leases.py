"""The lower layer every labeling write shares: lease columns, the judgement revision, the change event.

Leases are conditional UPDATEs on `Item` (and on `Proposal` for batches); `free_lease` is the one
definition of "nobody holds it now". Every write that changes judgements bumps the project's
`judgement_revision` (what the model and the judgements file compare against) and announces the change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet

from projects.models import Item, Project

from .signals import announce_judgements_changed

# The lease columns of an item nobody holds.
LEASE_CLEARED = {
    "leased_to": None, "leased_until": None, "lease_stage": "", "lease_picked_by": "", "lease_probability": None,
}


def free_lease(now: datetime, field: str = "leased_until") -> Q:
    """No live lease: `field` empty or past. `field` may span a relation (e.g. "item__leased_until")."""
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lte": now})


def claim_rows(rows: QuerySet[Any], **values: Any) -> int:
    """Take the rows of `rows` (filtered to what may be taken now), atomically; how many were taken.

    Any database: one conditional UPDATE, so two claimants can never both take a row. Where rows can be
    locked with SKIP LOCKED (PostgreSQL), they are first locked that way: a row another transaction is
    claiming this very moment is passed over at once, not waited for and then lost, so 20 annotators
    asking together spread over the queue instead of queueing behind its first row. SQLite has no row
    locks (its IMMEDIATE transactions already take turns), so there the UPDATE alone does it.
    """
    if not connection.features.has_select_for_update_skip_locked:
        return rows.update(**values)
    with transaction.atomic():
        ids = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True))
        if not ids:
            return 0
        return rows.model._default_manager.filter(pk__in=ids).update(**values)


def claim_item(rows: QuerySet[Item], *, pk: int, **values: Any) -> Item | None:
    """`claim_rows` for the one item `pk` (`rows` is filtered to it), returning it as claimed, or None.

    Where rows are locked first, the lock reads the whole row, so the claimed item costs no query of its
    own; elsewhere it is read back after the UPDATE.
    """
    if not connection.features.has_select_for_update_skip_locked:
        return Item.objects.filter(pk=pk).first() if rows.update(**values) else None
    with transaction.atomic():
        item = rows.select_for_update(skip_locked=True).filter(pk=pk).first()
        if item is None or not Item.objects.filter(pk=pk).update(**values):
            return None
    for field, value in values.items():
        setattr(item, field, value)
    return item


def release_lease(item: Item, *, user: User) -> bool:
    return bool(
        Item.objects.filter(pk=item.pk, leased_to=user).update(**LEASE_CLEARED)
    )


def bump_revision(project: Project) -> None:
    """Judgements changed: a new revision, so the model and the judgements file know they are behind."""
    Project.objects.filter(pk=project.pk).update(judgement_revision=F("judgement_revision") + 1)


def after_change(project: Project) -> None:
    """Call inside the write transaction after judgements changed: bump the revision, announce it."""
    bump_revision(project)
    announce_judgements_changed(project)
