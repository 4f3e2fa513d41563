"""Stage 1, tokenization: the prompt as the model's tokens, leading spaces visible, ids shown."""

from __future__ import annotations

import json
from unicodedata import name

from dash import Output, html

from ...core.tokens import Token
from . import Drawing, Views, ready, section

EXPLAIN = (
    "The model never sees letters. A tokenizer cuts the text into pieces ([[tokens|token]]) from a "
    "fixed [[vocabulary]] and the model reads each piece as a number, its [[id|token id]]. "
    "Common words are one token; rare words are split. A space usually belongs to the word after "
    "it, shown here as ␣. A character the vocabulary has no token for is split into its bytes "
    "([[byte-level BPE]]): such a token shows its bytes, like <0xC3>, in a dashed chip (hover it: "
    "it names the character). Hover a token to find it everywhere on the page; click it to look "
    "at its embedding in stage 2."
)


def chips(
    tokens: list[Token],
    extra: str = "",
    *,
    after: dict | None = None,
    notes: list[str] | None = None,
    styles: list[str] | None = None,
    **props,
) -> html.Div:
    """Many chips as one component: each token's text (whitespace visible) over its id.

    The tokens travel as JSON in `data-chips` and assets/chips.js draws them as DOM text, so no
    token is ever parsed as markup and long prompts stay fast to draw. A token holding part of a
    character split over tokens (shown as its bytes, <0xC3>) gets a dashed chip. `notes` (one per token)
    extend the tooltips, `styles` (one CSS colour per token) tint the chips, and `after`
    ({"id", "text", "label", "title"}) adds a highlighted chip at the end.
    """
    split = [characters(t.part_of) if t.split else "" for t in tokens]
    row = {
        "t": [t.display for t in tokens],
        "d": [t.id for t in tokens],
        "i": [t.index for t in tokens],
        "x": split if any(split) else None,  # the characters it holds part of, named
        "c": extra,
        "n": notes,
        "s": styles,
        "after": after,
    }
    data = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    return html.Div(className="chips chip-row", **{"data-chips": data}, **props)


def characters(text: str) -> str:
    """Characters named for a tooltip: `"ü" (U+00FC LATIN SMALL LETTER U WITH DIAERESIS)`."""
    parts = []
    for char in text:
        label = " ".join(filter(None, (f"U+{ord(char):04X}", name(char, ""))))
        parts.append(f"{json.dumps(char, ensure_ascii=False)} ({label})")
    return ", ".join(parts) or "a character"


def layout() -> html.Section:
    return section(
        1,
        "Tokenization",
        EXPLAIN,
        html.Div(html.P("Press Analyze to see the tokens.", className="empty"), id="tokens-body"),
    )


def draw(drawing: Drawing) -> tuple:
    """The tokens, the followed one marked (`VIEWS`)."""
    analysis, data, focus = drawing.analysis, drawing.data, drawing.focus
    if analysis is None:
        return (html.P("Press Analyze to see the tokens.", className="empty"),)
    count = len(analysis.tokens)
    return (
        [
            html.P(
                [html.Strong(f"{count:,} tokens"), f" from {len(analysis.prompt):,} characters."],
                className="token-count",
            ),
            *[html.P(n, className="notice") for n in analysis.notices],
            chips(analysis.tokens, styles=focused(count, focus), id="token-chips"),
            ready(data["id"]),
        ],
    )


VIEWS = Views((Output("tokens-body", "children"),), draw, follows_focus=True)


FOCUSED = "#ffd54f"  # the chip of the token the page follows (`focus.position`)


def focused(count: int, focus: dict | None) -> list[str] | None:
    """Chip colours that mark the followed token, or None when the page follows the last one."""
    position = (focus or {}).get("position")
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < count:
        return None
    return [FOCUSED if i == position else "" for i in range(count)]
