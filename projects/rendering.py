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


# --------------------------------------------------------------------------------------------------
# E-mail-like texts: the body first, the headers folded (issue 21: full headers in a scrolling box)
# --------------------------------------------------------------------------------------------------

_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,60}:[ \t]?")
_KNOWN_HEADERS = frozenset({"from", "to", "subject", "date", "received", "message-id", "return-path", "cc",
                            "reply-to", "mime-version", "content-type", "delivered-to"})


def split_email(text: str) -> dict | None:
    """A text that starts like an e-mail (an mbox "From " line or a block of RFC 5322 headers, two of them
    well known, then a blank line), split for display: subject, from, date, to, the raw header block, and the
    body (the plain-text part of a MIME message, decoded; else the text after the headers). None otherwise.
    The model reads the whole text as it is: this is only how a person sees it."""
    import email
    import email.policy

    head, sep, rest = text.replace("\r\n", "\n").partition("\n\n")
    if not sep or len(head) > 64_000:
        return None
    lines = head.split("\n")
    if lines and lines[0].startswith("From "):
        lines = lines[1:]
    names = [m.group(0).rstrip(": \t").lower() for line in lines if (m := _HEADER_LINE.match(line))]
    if len(names) < 2 or len(_KNOWN_HEADERS.intersection(names)) < 2:
        return None
    if any(line and not _HEADER_LINE.match(line) and line[:1] not in " \t" for line in lines):
        return None  # a line in the block that is neither a header nor a continuation: not headers
    message = email.message_from_string("\n".join(lines) + "\n\n" + rest, policy=email.policy.default)
    body = rest
    encoded = str(message.get("Content-Transfer-Encoding", "")).strip().lower() in ("quoted-printable", "base64")
    if message.is_multipart() or encoded:
        # Only then does the body need decoding; a plain one is shown exactly as it was read (already text).
        try:
            part = message.get_body(preferencelist=("plain",))
            if part is not None:
                body = part.get_content()
        except (LookupError, ValueError, KeyError, AttributeError):
            pass  # an unknown charset or a broken part: the text after the headers, as it is
    def header(name: str) -> str:
        try:
            return str(message.get(name, "") or "")[:500]
        except (ValueError, IndexError, AttributeError):
            return ""
    return {"subject": header("Subject"), "from": header("From"), "to": header("To"), "date": header("Date"),
            "headers": head, "body": body.strip("\n")}


def highlight(text: str, query: str, *, limit: int | None = None) -> str:
    """`text` HTML-escaped, with every occurrence of the query's words (case-insensitive) in <mark>; cut to
    `limit` characters first (with an ellipsis)."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    words = sorted({w for w in query.split() if w}, key=len, reverse=True)[:20]
    if not words:
        return html.escape(text)
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    out, last = [], 0
    for match in pattern.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        out.append(f"<mark>{html.escape(match.group(0))}</mark>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)
