"""One JSON shape for an item, shared by the labeling page and the REST API."""

from __future__ import annotations

from django.urls import reverse

from projects.models import Item, ItemKind, Project
from projects.rendering import render_json_item


def item_payload(
    project: Project,
    item: Item,
    *,
    stage: str | None = None,
    prediction: dict | None = None,
    picked_by: str | None = None,
) -> dict:
    payload: dict = {
        "id": item.pk,
        "path": item.key,
        "kind": item.kind,
        "stage": stage,
        "prediction": prediction,
        "picked_by": picked_by or None,  # "active" (the model's most uncertain) or "random"
    }
    if item.kind == ItemKind.FILE:
        payload["data"] = reverse("api:item-media", args=[item.pk])
        payload["media_url"] = payload["data"]
    elif item.kind == ItemKind.JSON:
        payload["data"] = item.data
        payload["html"] = render_json_item(project.template, item.data)
    else:
        payload["data"] = item.text
    return payload
