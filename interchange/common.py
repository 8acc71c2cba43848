"""What the judgements file and the span formats share: the error, the batch size, how an imported answer's
stage and source are read."""

from __future__ import annotations

from labeling.models import JudgementSource, Stage
from projects.services import ProjectError

BULK_BATCH = 2000


class InterchangeError(ProjectError):
    """A file or config that cannot be imported or written as asked (400), with the reason."""


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
