"""Glossary links in our own stage texts: `[[term]]` or `[[shown words|term]]` markers become
in-page links to `#glossary-<slug>`. Text from a model or a user never goes through them."""

from __future__ import annotations

import re

from dash import html

_MARKER = re.compile(r"\[\[([^\[\]|]+)(?:\|([^\[\]|]+))?\]\]")


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, the noun plural unless the count is one: "1 key/value head"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def slug(term: str) -> str:
    """The anchor name of a term: lower case, words joined by dashes (`attention-sink`)."""
    return re.sub(r"[^a-z0-9]+", "-", term.lower()).strip("-")


def linked(text: str) -> list:
    """Our own stage text with `[[term]]` / `[[words|term]]` markers as in-page glossary links."""
    parts: list = []
    last = 0
    for match in _MARKER.finditer(text):
        parts.append(text[last : match.start()])
        shown, term = match.group(1), match.group(2) or match.group(1)
        parts.append(html.A(shown, href=f"#glossary-{slug(term)}", className="term-link"))
        last = match.end()
    parts.append(text[last:])
    return [p for p in parts if p != ""]


def plain(text: str) -> str:
    """The same text with its markers removed (for tooltips and tests)."""
    return _MARKER.sub(lambda m: m.group(1), text)
