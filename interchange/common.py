"""What the judgements file and the span formats share: the error, the batch size, how an imported answer's
stage and source are read."""

from __future__ import annotations

from typing import Protocol

from django.contrib.auth.models import User
from django.db import transaction

from labeling.leases import bump_revision
from labeling.models import Judgement, JudgementSource, Stage
from projects.label_kinds import InvalidAnswer, LabelKind
from projects.models import Item, ItemStatus, Project
from projects.services import ProjectError

BULK_BATCH = 2000


class InterchangeError(ProjectError):
    """A file or config that cannot be imported or written as asked (400), with the reason."""


def store_imported(project: Project, per_item: dict[int, list[Judgement]]) -> int:
    """Write imported judgements, each item's in file order with the last one current, and mark the items
    labelled, in one transaction. Returns how many judgements were written."""
    to_create: list[Judgement] = []
    for judgements in per_item.values():
        judgements[-1].is_current = True
        to_create.extend(judgements)
    with transaction.atomic():
        for start in range(0, len(to_create), BULK_BATCH):
            Judgement.objects.bulk_create(to_create[start : start + BULK_BATCH])
        ids = list(per_item)
        for start in range(0, len(ids), BULK_BATCH):
            Item.objects.filter(pk__in=ids[start : start + BULK_BATCH]).update(status=ItemStatus.LABELLED)
        if to_create:
            bump_revision(project)
    return len(to_create)


def stage_and_source(raw_stage: str, raw_source: str) -> tuple[str, str] | str:
    """The stage and source an imported answer gets, or why it is not imported (an auto-label, an unknown stage)."""
    stage = raw_stage.strip().upper()
    if stage == Stage.AUTO or raw_source.strip().lower() == JudgementSource.AUTO:
        return "an auto-label (the model's, nobody saw it) is not imported as a judgement"
    if stage in ("", Stage.TRAIN):
        return Stage.TRAIN, JudgementSource.IMPORTED
    if stage == Stage.TEST:
        return Stage.TEST, JudgementSource.IMPORTED
    if stage == "MODEL_LABELLED":
        # Light Bulb wrote batch-confirmed model labels with this stage: a person confirmed them.
        return Stage.TRAIN, JudgementSource.CONFIRMED_PROPOSAL
    return f"unknown stage {raw_stage!r} (TRAIN, TEST or MODEL_LABELLED)"


class ImportedRecord(Protocol):
    """What an importer read for one item (a span record, a box record): where, and its provenance."""

    where: str
    stage: str
    source: str
    labelled_by: str
    time_taken: float | None


def imported_judgement(
    project: Project, *, kind: LabelKind, item: Item, value: dict, record: ImportedRecord, users: dict[str, User],
) -> Judgement | str:
    """An imported answer as an unsaved judgement (not yet current), or the problem that keeps it out: an
    auto-label, an unknown stage, or a value the labelling screen would refuse (the kind's own check)."""
    picked = stage_and_source(record.stage, record.source)
    if isinstance(picked, str):
        return f"{record.where}: {picked}"
    try:
        checked = kind.validate(project, item, value)
    except InvalidAnswer as exc:
        return f"{record.where}: {exc}"
    stage, source = picked
    return Judgement(
        project=project, item_id=item.pk, label=kind.summary(checked), value=checked,
        user=users.get(record.labelled_by), labelled_by=record.labelled_by, stage=stage, source=source,
        time_taken=record.time_taken, is_current=False,
    )


def users_named(records) -> dict[str, User]:
    return {u.username: u for u in User.objects.filter(username__in={r.labelled_by for r in records})}
