"""What labeling does when the projects app announces a change (connected in LabelingConfig.ready())."""

from __future__ import annotations

from django.dispatch import receiver

from projects.models import Project
from projects.signals import members_changed

from .services import do_close_stuck_rounds


@receiver(members_changed, dispatch_uid="labeling.close_stuck_rounds")
def close_stuck_rounds_when_members_change(sender, *, project_id: int, **kwargs) -> None:
    """A labeller who left may leave overlap rounds nobody can finish: they close with the votes they have."""
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        do_close_stuck_rounds(project)
