"""How many heads of each kind each layer holds, in the words of the GPT-2 overviews a learner
has read: previous-token heads, first-token / positional heads (on today's models the attention
sink) and the rest; every number is `HeadReport.counts_per_layer()` or `first_token_counts()`."""

from __future__ import annotations

from dash import html

from ....core.heads import LABELS, SCORES, SINK_MARK, HeadReport
from ... import figures

# The seed's order: previous-token first, then first-token / positional, then the rest
FIRST = ("previous_token",)
REST = ("induction", "duplicate_token", "self", "diffuse", "other", "insufficient")
FIRST_TOKEN = "first-token / positional"
CAPTION = (
    "Heads of each kind per layer, on this input. A first-token (positional) head, as GPT-2 "
    f"overviews call it, parks at least {SINK_MARK:.0%} of its attention on the first token: on "
    "today's models that is the attention sink, where a head rests when it has nothing to read. "
    "It is counted apart: each such head is also counted under what it does with the rest."
)


def _label(category: str) -> html.Th:
    score = 1.0 if category in SCORES else None
    return html.Th(
        html.Span(
            LABELS[category],
            className=f"legend-item cat-{category}",
            style=figures.head_cell_style(category, score, None),
        ),
        scope="row",
    )


def _row(label: html.Th, counts: list[int], kind: str) -> html.Tr:
    cells = [html.Td(str(n) if n else "·", className="num") for n in counts]
    total = html.Td(str(sum(counts)), className="num total")
    return html.Tr([label, *cells, total], **{"data-kind": kind})


def counts_table(report: HeadReport) -> html.Div:
    """Per layer (columns), the heads filed under each category and the first-token heads."""
    counts = report.counts_per_layer()
    layers = [html.Th(str(layer)) for layer in range(report.layers)]
    header = html.Tr([html.Th("layer"), *layers, html.Th("all")])
    rows = [_row(_label(c), counts[c], c) for c in FIRST]
    sink = html.Th(
        html.Span(
            FIRST_TOKEN,
            className="legend-item sink-item",
            style={"borderBottom": f"5px solid {figures.SINK_COLOR}"},
        ),
        scope="row",
        title=f"heads parking at least {SINK_MARK:.0%} of their attention on the first token",
    )
    rows.append(_row(sink, report.first_token_counts(), "first_token"))
    rows += [_row(_label(c), counts[c], c) for c in REST]
    table = html.Table(
        [html.Caption(CAPTION), html.Thead(header), html.Tbody(rows)],
        className="table layer-counts",
        id="head-layer-counts",
    )
    return html.Div(table, className="wide-table")
