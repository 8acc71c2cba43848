"""Interchange listens to labeling: when judgements change, the project's judgements file is rewritten."""

from __future__ import annotations

from django.dispatch import receiver

from labeling.signals import judgements_changed

from .tasks import enqueue_judgements_file_sync


@receiver(judgements_changed, dispatch_uid="interchange.sync_judgements_file")
def sync_file_on_judgements_changed(sender, *, project_id: int, **kwargs) -> None:
    enqueue_judgements_file_sync(project_id)
