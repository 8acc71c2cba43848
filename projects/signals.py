"""What the projects app announces to the apps above it (the model loop, the file sync).

Senders call the `announce_*` helpers inside their write transaction; the signal is sent once the
transaction commits, so a listener never acts on rows that were rolled back. Listeners live in the
apps that care (`modeling/receivers.py`); this app never imports them.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.dispatch import Signal

from .models import Project

# Items were added to a project (by an import or a rescan). kwargs: project_id.
items_added = Signal()
# Project settings changed. kwargs: project_id, fields (the names of the changed model fields).
settings_changed = Signal()
# Someone left the project or changed role. kwargs: project_id.
members_changed = Signal()


def announce_items_added(project: Project) -> None:
    project_id = project.pk
    transaction.on_commit(lambda: items_added.send(sender=Project, project_id=project_id))


def announce_members_changed(project: Project) -> None:
    project_id = project.pk
    transaction.on_commit(lambda: members_changed.send(sender=Project, project_id=project_id))


def announce_settings_changed(project: Project, *, fields: Iterable[str]) -> None:
    project_id, changed = project.pk, frozenset(fields)
    if changed:
        transaction.on_commit(lambda: settings_changed.send(sender=Project, project_id=project_id, fields=changed))
