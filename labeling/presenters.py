"""One JSON shape for an item, shared by the labeling page and the REST API."""

from __future__ import annotations

from django.urls import reverse

from projects.label_kinds import image_size, item_text, kind_for
from projects.models import Item, ItemKind, Project
from projects.rendering import render_json_item, split_email


def item_payload(
    project: Project,
    item: Item,
    *,
    stage: str | None = None,
    prediction: dict | None = None,
    picked_by: str | None = None,
    answer: dict | None = None,
) -> dict:
    """`answer`: a structured kind's value to show pre-filled (the spans a person just undid)."""
    payload: dict = {
        "id": item.pk,
        "path": item.key,
        "kind": item.kind,
        "stage": stage,
        "prediction": prediction,
        # "active" (the model's most uncertain), "typical" (before a model), "random", or "audit"
        "picked_by": picked_by or None,
    }
    if item.kind == ItemKind.FILE:
        payload["data"] = reverse("api:item-media", args=[item.pk])
        payload["media_url"] = payload["data"]
    elif item.kind == ItemKind.JSON:
        payload["data"] = item.data
        payload["html"] = render_json_item(project.template, item.data)
    else:
        payload["data"] = item.text
        # E-mails show their body first, the headers folded (the model still reads the whole text).
        payload["email"] = split_email(item.text)
    kind = kind_for(project)
    if kind.tokenized:
        # Spans snap to these [start, end) offsets: the model's own tokenizer's (Item.tokens).
        payload["text"] = item_text(item)
        payload["tokens"] = item.tokens or []
    if kind.structured:
        payload["answer"] = answer
    if item.kind == ItemKind.FILE and kind.name == "object_detection":
        # Boxes are in the original image's pixels, whatever size the screen draws it at.
        width, height = image_size(item)
        payload["width"], payload["height"] = width, height
    return payload


def batch_payload(project: Project, leased, *, ready: dict[str, int]) -> dict:
    """One JSON shape for a leased batch of proposals (the batch page and the REST API)."""
    if leased is None:
        return {"batch": None, "label": None, "origin": None, "query": "", "lease_expires": None, "items": [],
                "ready": ready}
    batch = leased.batch
    items = []
    for proposal in leased.proposals:
        payload = item_payload(project, proposal.item)
        payload["proposal"] = {
            "label": proposal.label,
            "confidence": proposal.confidence,
            "model_version": proposal.version,
            "status": proposal.status,
        }
        items.append(payload)
    return {
        "batch": batch.pk,
        "label": batch.label,
        "origin": batch.origin,
        "query": batch.query,
        "lease_expires": batch.leased_until.isoformat(),
        "items": items,
        "ready": ready,
    }
