"""What the labeling app announces: judgements of a project changed (a label, an undo, a confirmed batch),
model proposals were rejected in a batch, and auto-labels were withdrawn.

Sent once the write transaction commits (see `projects/signals.py`). The model loop retrains on it
(`modeling/receivers.py`) and the judgements file is rewritten (`interchange/receivers.py`).
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

from projects.models import Project

# kwargs: project_id.
judgements_changed = Signal()
# A reviewer unticked model proposals without saying the right class. kwargs: project_id.
proposals_rejected = Signal()
# An owner withdrew a model version's auto-labels: their items are unlabelled again. kwargs: project_id.
auto_labels_withdrawn = Signal()


def announce_judgements_changed(project: Project) -> None:
    project_id = project.pk
    transaction.on_commit(lambda: judgements_changed.send(sender=Project, project_id=project_id))


def announce_proposals_rejected(project: Project) -> None:
    project_id = project.pk
    transaction.on_commit(lambda: proposals_rejected.send(sender=Project, project_id=project_id))


def announce_auto_labels_withdrawn(project: Project) -> None:
    project_id = project.pk
    transaction.on_commit(lambda: auto_labels_withdrawn.send(sender=Project, project_id=project_id))
