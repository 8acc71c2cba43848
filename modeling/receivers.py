"""The one table from what happened below to what the model loop does about it.

The lower apps announce events (`projects.signals`, `labeling.signals`) after their writes commit;
these receivers, connected in `ModelingConfig.ready()`, turn each into a request for background work
(`modeling.services.request_*`, each idempotent and coalescing). Nothing below imports this module.
"""

from __future__ import annotations

from django.dispatch import receiver

from labeling.signals import auto_labels_withdrawn, judgements_changed, proposals_rejected
from projects.label_kinds import kind_for
from projects.models import Project
from projects.signals import items_added, settings_changed

from .services import request_embedding, request_proposals, request_ranking, request_tokenizing, request_training

# Settings whose change makes the current model propose again: batches depend on the floor, proven
# thresholds on the target and the guarantee; the audit share, the classes and the encoder change what
# a proposal can be.
REPROPOSE_ON = frozenset(
    {"review_precision_floor", "auto_label_precision", "proposal_guarantee", "audit_share", "classes", "encoder"}
)
# The queue reads a stored ranking: a new sampling rule re-ranks (and proposals follow the ranking).
RERANK_ON = frozenset({"sampling"})
# Another encoder means other features: embed the pool with it and train a version on them at once, rather
# than wait for the next label. Switching back to an encoder that had an adopted fine-tune reads that
# fine-tune again (it was adopted for this project's labels; "Use the pretrained encoder" drops it).
REEMBED_ON = frozenset({"encoder"})


@receiver(items_added, dispatch_uid="modeling.embed_new_items")
def embed_new_items(sender, *, project_id: int, **kwargs) -> None:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return
    if kind_for(project).tokenized:
        request_tokenizing(project_id)  # spans snap to the model's tokens: the queue waits for them
    if project.modelled:
        request_embedding(project_id)


@receiver(judgements_changed, dispatch_uid="modeling.retrain")
def retrain(sender, *, project_id: int, **kwargs) -> None:
    request_training(project_id)


@receiver(proposals_rejected, dispatch_uid="modeling.repropose_rejected")
def repropose_rejected(sender, *, project_id: int, **kwargs) -> None:
    # An unticked item may belong to its next-likeliest class: propose that one if it clears the rule.
    request_proposals(project_id)


@receiver(auto_labels_withdrawn, dispatch_uid="modeling.repropose_withdrawn")
def repropose_withdrawn(sender, *, project_id: int, **kwargs) -> None:
    # Items an owner took the auto-labels back from are unlabelled again: review batches may offer them.
    request_proposals(project_id)


@receiver(settings_changed, dispatch_uid="modeling.follow_settings")
def follow_settings(sender, *, project_id: int, fields: frozenset[str], **kwargs) -> None:
    if fields & REPROPOSE_ON:
        request_proposals(project_id)
    if fields & RERANK_ON:
        request_ranking(project_id)
    if fields & REEMBED_ON:
        request_embedding(project_id)
        request_training(project_id, force=True)
