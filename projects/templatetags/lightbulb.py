from __future__ import annotations

import math

import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def sanitize_html(value: str) -> str:
    """Owner-written HTML (task descriptions) rendered with scripts, handlers and styles stripped."""
    return mark_safe(nh3.clean(value or "", link_rel="noopener noreferrer nofollow"))


@register.filter
def guidelines_html(value: str) -> str:
    """A project's guidelines (Markdown, HTML allowed) as sanitised HTML."""
    from projects.rendering import render_guidelines

    return mark_safe(render_guidelines(value or ""))


@register.filter
def percent(value: float | None, digits: int = 0) -> str:
    # A score a version does not have (e.g. no TEST boxes yet) reaches here as the template's "" for a missing key.
    if not isinstance(value, int | float):
        return "—"
    return f"{value * 100:.{digits}f}%"


@register.filter
def percent_floor(value: float | None, digits: int = 2) -> str:
    """A threshold as a percentage rounded down: 0.99996 reads 99.99%, never a confidence of 100.00%."""
    if value is None:
        return "—"
    scale = 10**digits
    return f"{math.floor(value * 100 * scale + 1e-9) / scale:.{digits}f}%"


@register.filter
def percent_value(value: float | None) -> str:
    """A fraction as a plain percentage number for an <input type=number> (always a dot, no sign)."""
    if value is None:
        return ""
    return f"{value * 100:.1f}".rstrip("0").rstrip(".")


@register.filter
def highlight_words(value: str, query: str) -> str:
    """The text, escaped, with the search's words marked (search batches, the item page from a search)."""
    from django.utils.safestring import mark_safe

    from projects.rendering import highlight

    return mark_safe(highlight(str(value or ""), str(query or "")))  # noqa: S308 - highlight() escapes all


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as people say them: "40 s", "12 min", "1.5 h"."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
