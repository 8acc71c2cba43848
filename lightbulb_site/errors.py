"""The base of every domain error: a message fit to show a person, and the HTTP status it answers with.

Services raise subclasses of `DomainError` (never Http404); the API's exception handler turns any of
them into JSON with `status_code` without knowing the apps, and HTML views show the message. Plain
Python, so Django-free modules may subclass it too.
"""

from __future__ import annotations


def sentence(message: str) -> str:
    """An error message as a page shows it: capitalised, with a full stop ("the floor must be..." ->
    "The floor must be....")."""
    return message[:1].upper() + message[1:] + "."


class DomainError(Exception):
    status_code = 400

    def payload(self) -> dict:
        """The JSON body of the API's answer; subclasses add fields a client can act on."""
        return {"detail": str(self)}
