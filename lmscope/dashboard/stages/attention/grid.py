"""The head grid: every head at a glance, coloured by its category on this input, one Tab stop
(arrow keys move within it: assets/roving.js); clicking a head opens it (writes `focus.head`)."""

from __future__ import annotations

from dash import Dash, Input, Output, Patch, State, dcc, html, no_update

from ....core.analysis import Analysis
from ....core.card import ModelCard
from ....core.errors import LmscopeError
from ....core.heads import CATEGORIES as HEAD_CATEGORIES
from ....core.heads import (
    CHANCE_MULTIPLE,
    LABELS,
    MIN_EVIDENCE,
    SCORES,
    SINK,
    SINK_MARK,
    THRESHOLDS,
    HeadReport,
    head_name,
    passes,
)
from ....core.model import LoadedModel
from ....core.profile import head_profile as measured_profile
from ....core.profile import known_profile
from ....service import Service
from ... import figures
from ...static import static
from ...terms import counted
from .. import Drawing, Views, ready
from .cells import Cell, cell_grid
from .counts import counts_table

EXPLAIN = (
    "Attention is how a token gathers information from the tokens before it. Each [[layer]] has "
    "several [[heads|attention head]]; each head decides, for every token, how much to read from "
    "each earlier token (the weights in a row add up to 1). Many heads park a large share on the "
    "very first token, whatever it is (an [[attention sink]]: a place to put attention when there "
    "is nothing to read). That share is shown apart, as the brown bar under each cell, and each "
    "head is named after what it does with the rest of its attention: look at the previous token, at itself, spread "
    "out evenly, look at earlier copies of the current token (duplicate), or at what followed them "
    "([[induction|induction head]]). Click a head to see its [[attention pattern]], or switch the "
    "click to pick heads for the Investigate panel's ablation."
)
CATEGORIES = HEAD_CATEGORIES
SHOWN_NAMES = 16  # head names listed per category before "and n more"
SCALE = (0.4, 0.7, 1.0)  # the scores the legend shows the shading for


def head_profile(lm: LoadedModel) -> HeadReport | None:
    """The model's general head roles (from a probe text, cached on disk; measured if need be),
    None if they cannot be measured."""
    try:
        return measured_profile(lm)
    except LmscopeError:
        return None


def _score(report: HeadReport, layer: int, head: int) -> float | None:
    return report.strength(layer, head)


def _thin(report: HeadReport, layer: int, head: int) -> tuple[str, float, float] | None:
    """For a head with too little evidence: the score it would pass on, its value and evidence."""
    best = None
    for name in SCORES:
        value = report.scores[name][layer][head]
        if passes(name, value, report.chance_of(layer).get(name)) and not report.decided(
            layer, head, name
        ):
            evidence = report.evidence_of(layer, head, name) or 0.0
            if best is None or value > best[1]:
                best = (name, value, evidence)
    return best


def describe(report: HeadReport, layer: int, head: int) -> str:
    """One head in words: its category with score, or why there is no verdict; its sink share."""
    category = report.categories[layer][head]
    score = _score(report, layer, head)
    if category == "insufficient" and (thin := _thin(report, layer, head)):
        name, value, evidence = thin
        text = (
            f"too little evidence on this input ({LABELS[name]} would score {value:.2f}, on only "
            f"{evidence:.2g} rows' worth of attention off the first token; a verdict needs "
            f"{MIN_EVIDENCE:g})"
        )
    elif score is not None:
        text = f"{LABELS[category]}, score {score:.2f} (share of its attention off the first token)"
    else:
        text = LABELS[category]
    sink = report.sink(layer, head)
    if sink is not None:
        text += f"; sink share {sink:.2f} (attention on the first token)"
    return text


def kv_groups(heads: int, kv_heads: int | None) -> str | None:
    """Grouped-query attention in words, or None when every query head has its own keys."""
    if not kv_heads or kv_heads >= heads or heads % kv_heads:
        return None
    size = heads // kv_heads
    groups = ", ".join(
        f"heads {g * size}-{g * size + size - 1} share group {g}" for g in range(kv_heads)
    )
    return (
        f"Grouped-query attention: each layer's {heads} query heads read only "
        f"{counted(kv_heads, 'key/value head')}, {size} query heads per key/value group "
        f"({groups}). Heads of one group "
        "see the same keys and values; only their "
        "queries differ, so they can still attend differently. The lines in the grid separate "
        "the groups."
    )


def head_grid(report: HeadReport, kv_heads: int | None = None) -> html.Div:
    """One button per head: hue by category, depth by score, the sink share as a bar beneath;
    drawn in the browser (cells.py), clicks land in `head-pick`."""
    layers, heads = len(report.categories), len(report.categories[0])
    size = heads // kv_heads if kv_groups(heads, kv_heads) else 0
    rows = []
    for layer in range(layers):
        row = []
        for head in range(heads):
            category = report.categories[layer][head]
            score = _score(report, layer, head)
            text = "?" if category == "insufficient" else ""
            text = text if score is None else f"{score:.2f}".lstrip("0")
            group = " group-start" if size and head and head % size == 0 else ""
            name = head_name(layer, head)
            row.append(
                Cell(
                    layer,
                    head,
                    text,
                    f"head-cell cat-{category}{group}",
                    f"{name}: {describe(report, layer, head)}",
                    figures.head_cell_style(category, score, report.sink(layer, head)),
                    {"head": name, "category": category},
                )
            )
        rows.append(row)
    return cell_grid(
        rows,
        pick="head-pick",
        label=f"{layers} x {heads} attention heads: arrow keys move, Enter opens",
        classes="head-grid",
        columns=f"2.6rem repeat({heads}, minmax(1.9rem, 1fr))",
    )


def legend(
    report: HeadReport | None = None,
    heads: int = 0,
    kv_heads: int | None = None,
    window: str | None = None,
):
    """What the colours mean: hue = category, depth = score, the brown bar = the sink share, and
    the model's grouped keys and sliding window (`window`), if any (one static component)."""
    items = [
        html.Span(
            LABELS[c],
            className=f"legend-item cat-{c}",
            title=_rule(c),
            style=figures.head_cell_style(c, 1.0 if c in SCORES else None, None),
        )
        for c in CATEGORIES
    ]
    shades = [
        html.Span(
            f"{v:.2f}".lstrip("0"),
            className="legend-swatch",
            style=figures.head_cell_style("previous_token", v, None),
        )
        for v in SCALE
    ]
    sink = html.Span(
        "", className="legend-swatch", style=figures.head_cell_style("other", None, 0.6)
    )
    lines = [
        html.Div(items, className="legend"),
        html.P(
            [
                "Colour = what the head does with its attention off the first token; the deeper "
                "the colour, the higher its score (",
                *shades,
                "; 1 = all of that attention goes there). The bar along the bottom of a cell (",
                sink,
                " = 0.60) is the head's sink share: the part of its attention parked on the first "
                "token, shown apart. Striped cells: the head would pass a category, but this input "
                f"gives it fewer than {MIN_EVIDENCE:g} query rows' worth of attention off the "
                "first token, too little to tell. Hover a cell for its numbers.",
            ],
            className="hint legend-text",
        ),
    ]
    if report is not None:
        marked = report.sink_heads()
        total = report.layers * len(report.categories[0])
        lines.append(
            html.P(
                f"Attention sink: {len(marked)} of {total} heads park at least "
                f"{SINK_MARK:.0%} of their attention on the first token on this input.",
                className="hint sink-summary",
            )
        )
    groups = kv_groups(heads, kv_heads)
    if groups:
        lines.append(html.P(groups, className="hint kv-groups"))
    if window:
        lines.append(html.P(window, className="hint sliding-window"))
    return static(html.Div(lines, className="legend-block"))


def sliding_window(card: ModelCard) -> str | None:
    """Which layers read only the last `sliding_window` tokens, in words (None: every layer
    reads the whole prompt)."""
    if not card.sliding_window or not card.local_layers:
        return None
    every = [layer for layer in range(card.layers) if layer not in card.local_layers]
    names = ", ".join(f"L{layer}" for layer in every) or "none"
    return (
        f"Sliding window: {len(card.local_layers)} of {card.layers} layers read only the last "
        f"{card.sliding_window:,} tokens before each token (local attention); {names} read the "
        "whole prompt. On a shorter prompt the two kinds see the same."
    )


def _rule(category: str) -> str:
    """The legend's tooltip: when a head is filed under this category (heads.primary_category)."""
    if category == "other":
        return "no score reaches its threshold, even on thin evidence"
    if category == "insufficient":
        return (
            f"a score would pass, but rests on fewer than {MIN_EVIDENCE:g} query rows' worth of "
            "attention off the first token"
        )
    need = f"on at least {MIN_EVIDENCE:g} rows' worth of attention off the first token"
    if category == "diffuse":
        return f"score >= {THRESHOLDS[category]}, {need}"
    return (
        f"score >= {THRESHOLDS[category]}, at least {CHANCE_MULTIPLE:g}x what uniform attention "
        f"scores, {need}"
    )


def _names(names: list[str]) -> str:
    more = len(names) - SHOWN_NAMES
    return ", ".join(names[:SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")


def _state(report: HeadReport, category: str, heads: list[str]) -> tuple[str, str]:
    """The category's state on this input, and its CSS class."""
    if category in SCORES and not report.applicable(category):
        return "not applicable on this input (no repeated tokens)", "na"
    if heads:
        count = f"{len(heads)} head{'s' * (len(heads) != 1)}"
        return count, "active" if category in SCORES else "inactive"
    if category in SCORES and not any(
        report.decided(l, h, category)
        for l in range(report.layers)
        for h in range(len(report.categories[l]))
    ):
        return "too little evidence on this input", "na"
    if category not in SCORES:
        return "none on this input", "inactive"
    return "inactive on this input", "inactive"


def category_table(report: HeadReport, profile: HeadReport | None) -> html.Table:
    """Per category: its heads on this input, whether it is active here, and (with a profile) the
    heads whose general role it is."""
    summary = report.summary()
    general = profile.summary() if profile is not None else None
    header = ["category", "heads on this input", "on this input"]
    if general is not None:
        header.append("heads with this general role (profile)")
    rows = []
    for category in CATEGORIES:
        heads = summary[category]
        state, cls = _state(report, category, heads)
        cells = [
            html.Td(
                html.Span(
                    LABELS[category],
                    className=f"legend-item cat-{category}",
                    style=figures.head_cell_style(
                        category, 1.0 if category in SCORES else None, None
                    ),
                )
            ),
            html.Td(_names(heads) or "none", className="mono"),
            html.Td(state, className=f"state-{cls}"),
        ]
        if general is not None:
            cells.append(html.Td(_names(general[category]) or "none", className="mono"))
        rows.append(html.Tr(cells))
    marked = report.sink_heads()
    cells = [
        html.Td(LABELS[SINK]),
        html.Td(_names(marked) or "none", className="mono"),
        html.Td(f"{len(marked)} heads at >= {SINK_MARK:.0%}", className="state-inactive"),
    ]
    if profile is not None:
        cells.append(html.Td(_names(profile.sink_heads()) or "none", className="mono"))
    rows.append(html.Tr(cells, className="sink-row"))
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in header])), html.Tbody(rows)],
        className="table categories",
    )


def controls() -> html.Div:
    """What a click on a head does: open it, or pick it for the Investigate panel's ablation."""
    return html.Div(
        [
            html.Span("Clicking a head ", className="field-label"),
            dcc.RadioItems(
                id="grid-mode",
                options=[
                    {"label": "opens it", "value": "inspect"},
                    {"label": "adds it to / removes it from the ablation set", "value": "select"},
                ],
                value="inspect",
                inline=True,
            ),
        ],
        className="row",
    )


OUTPUTS = (Output("head-legend", "children"), Output("head-grid-body", "children"))


def draw(analysis: Analysis | None, data: dict | None) -> tuple:
    """The legend and the grid for a new analysis (`OUTPUTS`)."""
    if analysis is None:
        return [], html.P("Press Analyze to see the heads.", className="empty")
    card = analysis.lm.card
    kv = getattr(card, "key_value_heads", None)
    grid = head_grid(analysis.heads, kv)
    shown = legend(analysis.heads, card.heads_per_layer, kv, sliding_window(card))
    return shown, [grid, ready(data["id"])]


MEASURING = "Measuring this model's heads on a reference text, once per model…"


def categories(drawing: Drawing) -> tuple:
    """The categories table (`CATEGORY_VIEWS`), drawn with the other stages when the model's profile is
    at hand; else the profile is asked for in a request of its own (it takes seconds to measure)."""
    analysis, data = drawing.analysis, drawing.data
    if analysis is None:
        return [], no_update
    profile = known_profile(analysis.lm)
    counts = static(counts_table(analysis.heads))
    if profile is None:
        return [html.P(MEASURING, className="hint"), counts], data["id"]
    return [static(category_table(analysis.heads, profile)), counts], no_update


CATEGORY_VIEWS = Views(
    (Output("head-categories", "children"), Output("head-profile-asked", "data")), categories
)


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("head-categories", "children", allow_duplicate=True),
        Input("head-profile-asked", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def measured(asked, data):
        """The categories table once the model's head profile is measured."""
        analysis = service.stored(data)
        if analysis is None or asked != data.get("id"):
            return no_update
        table = category_table(analysis.heads, head_profile(analysis.lm))
        return [static(table), static(counts_table(analysis.heads))]

    app.clientside_callback(  # in the browser: one round trip less before the head opens
        """function (pick, mode, focus) {
            if (mode === "select" || !pick) {
                return window.dash_clientside.no_update;
            }
            return Object.assign({}, focus || {},
                {head: [pick.layer, pick.head], layer: pick.layer});
        }""",
        Output("focus", "data", allow_duplicate=True),
        Input("head-pick", "data"),
        State("grid-mode", "value"),
        State("focus", "data"),
        prevent_initial_call=True,
    )


def focus_head(layer: int, head: int) -> Patch:
    """The focus store's change that opens head `layer`-`head` (its layer too)."""
    focus = Patch()
    focus["head"] = [layer, head]
    focus["layer"] = layer
    return focus


def focus_position(position: int) -> Patch:
    """The focus store's change that makes the token at `position` the one the views follow."""
    focus = Patch()
    focus["position"] = position
    return focus


def tour_text(lm: LoadedModel, report: HeadReport | None) -> str:
    """What the tour says of the grid, for this model and (`report`) this prompt."""
    card = lm.card
    text = (
        f"Each cell is one head: {card.layers} layers x {card.heads_per_layer} heads. Its colour "
        "says what the head does on this prompt (previous token, self, spread out, duplicate, "
        "induction); the bar at the bottom is its share on the first token."
    )
    if card.key_value_heads < card.heads_per_layer:
        text += (
            f" {card.name} uses grouped-query attention: the {card.heads_per_layer} query heads of "
            f"a layer share {counted(card.key_value_heads, 'key/value head')} (the lines in the "
            "grid)."
        )
    if report is not None:
        sinks, total = len(report.sink_heads()), report.layers * len(report.categories[0])
        if sinks:
            text += (
                f" Attention sink: on this prompt {sinks} of {total} heads park at least "
                f"{SINK_MARK:.0%} of their attention on the first token, whatever it is."
            )
        else:
            text += (
                f" No head parks {SINK_MARK:.0%} of its attention on the first token here: "
                "this model shows no attention sink on this prompt."
            )
    return text
