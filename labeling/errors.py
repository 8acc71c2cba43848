"""The labeling domain's errors. Each carries its HTTP status (`lightbulb_site.errors.DomainError`);
pages show the message, the API answers with it as JSON."""

from __future__ import annotations

from lightbulb_site.errors import DomainError


class LabelingError(DomainError):
    """A request that cannot be carried out; the message is fit to show a person (400)."""


class InvalidLabel(LabelingError):
    def __init__(self, label: str, allowed: list[str]):
        super().__init__(f"'{label}' is not a class of this project")
        self.label = label
        self.allowed = allowed

    def payload(self) -> dict:
        return {**super().payload(), "allowed": self.allowed}


class InvalidValue(LabelingError):
    """A structured answer (spans) that does not fit the item or the project; the message says where."""


class ItemUnavailable(LabelingError):
    """The item is not part of this project (or does not exist): shown as 404."""

    status_code = 404


class ItemRejected(LabelingError):
    """The item is a file that could not be read at import; it cannot be labelled."""


class LeaseConflict(LabelingError):
    """Someone else holds a live lease on the item (409)."""

    status_code = 409


class BlindLabel(LabelingError):
    """The item's TEST label is someone else's, given blind and hidden from this member: they may not
    replace what they cannot see (409; an owner can)."""

    status_code = 409


class NotYourLabel(LabelingError):
    """The item's current label is another person's: changing it is a reviewer's or owner's decision
    (409), never a silent overwrite."""

    status_code = 409


class AwaitingReview(LabelingError):
    """The item's independent labels disagree: a reviewer or owner decides it (409), nobody else labels it."""

    status_code = 409


class NotDisputed(LabelingError):
    """A decision for an item whose labels no longer disagree (decided already) or never did (409)."""

    status_code = 409


class ReasonRequired(LabelingError):
    """A reviewer or owner changing someone else's label says why (400); the reason stays in the history."""


class NothingToUndo(LabelingError):
    status_code = 409


class BatchError(LabelingError):
    """A confirmation that does not match the reviewer's batch (shown as 400, nothing is written)."""


class BatchConflict(LeaseConflict):
    """Someone else holds these proposals now (their lease expired and was taken): 409."""


class AutoLabelError(LabelingError):
    """Auto-labelling cannot run as asked (nothing proven yet, nothing to withdraw): 409 with the reason."""

    status_code = 409
