"""The model card on the project page (also served alone, so the page can refresh it in place)."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from projects.models import Project
from projects.permissions import get_project_for_user

from .services import model_summary


def model_card_context(project: Project) -> dict:
    summary = model_summary(project)
    current = summary["current_version"]
    confusion_rows = []
    if current:
        classes = current["classes"]
        for i, (name, row) in enumerate(zip(classes, current["confusion"], strict=False)):
            cells = [{"n": n, "diagonal": i == j} for j, n in enumerate(row)]
            per_class = current["per_class"].get(name, {})
            confusion_rows.append({"name": name, "cells": cells, "total": sum(row), "metrics": per_class})
    embedding, training = summary["embedding"], summary["training"]
    signature = "|".join(
        str(x)
        for x in (
            embedding["embedded"], embedding["failed"], embedding["total"], embedding["running"],
            training["running"], training["waiting_for"], training["last_error"],
            current["number"] if current else 0,
        )
    )
    curve = [
        {"labels": v["labels"], "accuracy": v["accuracy"], "version": v["number"]}
        for v in summary["versions"]
        if v["accuracy"] is not None
    ]
    return {
        "model": summary,
        "confusion_rows": confusion_rows,
        "curve": curve,
        "recent_versions": [
            {**v, "created": datetime.fromisoformat(v["created_at"])} for v in reversed(summary["versions"][-10:])
        ],
        "model_signature": signature,
    }


@login_required
def model_card(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _role = get_project_for_user(request.user, project_id)
    return render(request, "modeling/model_card.html", {"project": project, **model_card_context(project)})
