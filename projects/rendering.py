"""Render json items through the project's HTML template, safely.

Placeholders are `{{field}}` or `{{field.sub}}` (Light Bulb's syntax). Every substituted value is
HTML-escaped, and the whole result then goes through nh3 (Ammonia), so neither the data nor the
owner-written template can inject script into an annotator's browser.
"""

from __future__ import annotations

import html
import json
import re

import nh3

PLACEHOLDER = re.compile(r"\{\{\s*([\w.-]+)\s*\}\}")


def _lookup(data: object, dotted: str) -> object:
    value = data
    for part in dotted.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render_json_item(template: str, data: object) -> str:
    if not template.strip():
        # No template: a readable definition list of the object's fields.
        if isinstance(data, dict):
            rows = "".join(
                f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_as_text(v))}</dd>" for k, v in data.items()
            )
            return f"<dl>{rows}</dl>"
        return f"<pre>{html.escape(_as_text(data))}</pre>"
    filled = PLACEHOLDER.sub(lambda m: html.escape(_as_text(_lookup(data, m.group(1))), quote=True), template)
    return nh3.clean(filled, link_rel="noopener noreferrer nofollow")


# Owner-written guidelines: CommonMark, with raw HTML allowed (owners paste tables and images from
# their docs), then sanitised like every owner-written HTML. Tables and strikethrough as GitHub has them.
_GUIDELINES = None


def render_guidelines(text: str) -> str:
    """Guidelines Markdown as safe HTML: scripts, handlers, styles and foreign schemes stripped by nh3."""
    global _GUIDELINES
    if not text.strip():
        return ""
    if _GUIDELINES is None:
        from markdown_it import MarkdownIt

        _GUIDELINES = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable(["table", "strikethrough"])
    return nh3.clean(_GUIDELINES.render(text), link_rel="noopener noreferrer nofollow")
