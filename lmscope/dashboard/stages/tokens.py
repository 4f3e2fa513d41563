"""Stage 1, tokenization: the prompt as the model's tokens, leading spaces visible, ids shown."""

from __future__ import annotations

from html import escape

from dash import Dash, Input, Output, dcc, html

from ...api.service import Service
from ...core.tokens import Token
from . import ready, section, stored

EXPLAIN = (
    "The model never sees letters. A tokenizer cuts the text into pieces from a fixed vocabulary "
    "and the model reads each piece as a number, its id. Common words are one token; rare words "
    "are split. A space usually belongs to the word after it, shown here as ␣. Hover a token to "
    "find it everywhere on the page; click it to look at its embedding in stage 2."
)


def chip_html(token: Token, extra: str = "", *, note: str = "", style: str = "") -> str:
    """One token as a chip: its text (whitespace visible) over its id; hover links every copy.

    `note` is added to the tooltip, `style` (trusted CSS, e.g. a background) to the chip.
    """
    text, cls = escape(token.display), escape(f"chip {extra}".strip())
    tip = escape(f"token {token.index}: {token.display!r}, id {token.id}{note}")
    css = f' style="{escape(style)}"' if style else ""
    return (
        f'<span class="{cls}" title="{tip}"{css} data-token-index="{token.index}">'
        f'<span class="chip-text">{text}</span><span class="chip-id">{token.id}</span></span>'
    )


def chips(
    tokens: list[Token],
    extra: str = "",
    *,
    after: str = "",
    notes: list[str] | None = None,
    styles: list[str] | None = None,
    **props,
) -> dcc.Markdown:
    """Many chips as one HTML block: one Dash component, not three per token (long prompts stay
    fast to draw). `after` is trusted HTML appended at the end; `notes` and `styles` (one per
    token) go to `chip_html`."""
    notes = notes or [""] * len(tokens)
    styles = styles or [""] * len(tokens)
    inner = "".join(
        chip_html(t, extra, note=n, style=s) for t, n, s in zip(tokens, notes, styles, strict=True)
    )
    inner += after
    return dcc.Markdown(
        f'<div class="chip-row">{inner}</div>',
        dangerously_allow_html=True,
        className="chips",
        **props,
    )


def layout() -> html.Section:
    return section(
        1,
        "Tokenization",
        EXPLAIN,
        html.Div(html.P("Press Analyze to see the tokens.", className="empty"), id="tokens-body"),
    )


def register(app: Dash, service: Service) -> None:
    @app.callback(Output("tokens-body", "children"), Input("analysis", "data"))
    def draw(data):
        analysis = stored(service, data)
        if analysis is None:
            return html.P("Press Analyze to see the tokens.", className="empty")
        count = len(analysis.tokens)
        return [
            html.P(
                [html.Strong(f"{count:,} tokens"), f" from {len(analysis.prompt):,} characters."],
                className="token-count",
            ),
            *[html.P(n, className="notice") for n in analysis.notices],
            chips(analysis.tokens, id="token-chips"),
            ready(data["id"]),
        ]
