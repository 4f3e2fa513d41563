"""Stage 3, attention: every head at a glance, its category on this input, and its pattern."""

from __future__ import annotations

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from ...api.service import Service
from ...core.errors import LmscopeError
from ...core.heads import CHANCE_MULTIPLE, LABELS, SCORES, THRESHOLDS, HeadReport, head_name
from ...core.model import LoadedModel
from .. import figures
from . import HIDDEN, SHOWN, graph, ready, section, stored

EXPLAIN = (
    "Attention is how a token gathers information from the tokens before it. Each layer has "
    "several heads; each head decides, for every token, how much to read from each earlier token "
    "(the weights in a row add up to 1). Heads specialise: some look at the previous token, some "
    "at the first token, some copy what followed an earlier occurrence of the current token "
    "(induction). The grid shows every head, coloured by what it does on this prompt, with its "
    "score (1 = does exactly that). Click a head to see its attention pattern, or switch the click "
    "to pick heads for the Investigate panel's ablation."
)
CATEGORIES = (*SCORES, "other")
SHOWN_NAMES = 16  # head names listed per category before "and n more"


def head_profile(lm: LoadedModel) -> HeadReport | None:
    """The model's general head roles (from a probe set, cached on disk) if the library has them."""
    try:
        from ...core.profile import head_profile as profile
    except ImportError:
        return None
    try:
        return profile(lm)
    except LmscopeError:
        return None


def _score(report: HeadReport, layer: int, head: int) -> float | None:
    category = report.categories[layer][head]
    if category == "other":
        return None
    return report.scores[category][layer][head]


def head_grid(report: HeadReport) -> html.Div:
    """One button per head, coloured by its category on this input, labelled with its score."""
    layers, heads = len(report.categories), len(report.categories[0])
    cells = [html.Div("", className="grid-corner")]
    cells += [html.Div(f"H{h}", className="grid-label") for h in range(heads)]
    for layer in range(layers):
        cells.append(html.Div(f"L{layer}", className="grid-label"))
        for head in range(heads):
            category = report.categories[layer][head]
            score = _score(report, layer, head)
            text = "" if score is None else f"{score:.2f}".lstrip("0")
            cells.append(
                html.Button(
                    text,
                    id={"kind": "head", "layer": layer, "head": head},
                    className=f"head-cell cat-{category}",
                    title=f"{head_name(layer, head)}: {LABELS[category]}"
                    + ("" if score is None else f", score {score:.2f} on this input"),
                    **{"data-head": head_name(layer, head)},
                )
            )
    return html.Div(
        cells,
        className="head-grid",
        style={"gridTemplateColumns": f"2.6rem repeat({heads}, minmax(1.9rem, 1fr))"},
    )


def legend() -> html.Div:
    return html.Div(
        [
            html.Span(LABELS[c], className=f"legend-item cat-{c}", title=_rule(c))
            for c in CATEGORIES
        ],
        className="legend",
    )


def _rule(category: str) -> str:
    """The legend's tooltip: when a head is filed under this category (heads.primary_category)."""
    if category == "other":
        return "no score reaches its threshold"
    if category == "diffuse":
        return f"score >= {THRESHOLDS[category]}"
    return f"score >= {THRESHOLDS[category]} and at least {CHANCE_MULTIPLE:g}x what uniform attention scores"


def _names(names: list[str]) -> str:
    more = len(names) - SHOWN_NAMES
    return ", ".join(names[:SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")


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
        if category != "other" and not report.applicable(category):
            state, cls = "not applicable on this input (no repeated tokens)", "na"
        elif heads:
            state, cls = f"active: {len(heads)} head{'s' * (len(heads) != 1)}", "active"
        else:
            state, cls = "inactive on this input", "inactive"
        cells = [
            html.Td(html.Span(LABELS[category], className=f"legend-item cat-{category}")),
            html.Td(_names(heads) or "none", className="mono"),
            html.Td(state, className=f"state-{cls}"),
        ]
        if general is not None:
            cells.append(html.Td(_names(general[category]) or "none", className="mono"))
        rows.append(html.Tr(cells))
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in header])), html.Tbody(rows)],
        className="table categories",
    )


def layout() -> html.Section:
    return section(
        3,
        "Attention",
        EXPLAIN,
        html.Div(
            [
                html.Span("Clicking a head ", className="field-label"),
                dcc.RadioItems(
                    id="grid-mode",
                    options=[
                        {"label": "shows its pattern", "value": "inspect"},
                        {
                            "label": "adds it to / removes it from the ablation set",
                            "value": "select",
                        },
                    ],
                    value="inspect",
                    inline=True,
                ),
            ],
            className="row",
        ),
        html.Div(id="head-grid-body"),
        html.Div(id="head-categories"),
        html.H3("One head"),
        html.P("Click a head in the grid to see its attention pattern.", id="head-detail"),
        graph("head-heatmap", "lmscope-attention-head"),
        html.H3("One layer, all heads"),
        html.Label(["Layer ", dcc.Dropdown(id="layer-select", clearable=False)]),
        html.P(
            f"Each small square is one head's pattern; prompts longer than "
            f"{figures.LAYER_VIEW_WINDOW} tokens show how their last {figures.LAYER_VIEW_WINDOW} "
            "tokens read each other. The colour scale runs up to the largest weight shown.",
            className="hint",
        ),
        graph("layer-heads", "lmscope-attention-layer"),
    )


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("head-grid-body", "children"),
        Output("layer-select", "options"),
        Output("layer-select", "value"),
        Input("analysis", "data"),
    )
    def draw(data):
        analysis = stored(service, data)
        if analysis is None:
            return html.P("Press Analyze to see the heads.", className="empty"), [], None
        layers = [{"label": f"Layer {l}", "value": l} for l in range(analysis.lm.layers)]
        return [legend(), head_grid(analysis.heads), ready(data["id"])], layers, 0

    @app.callback(Output("head-categories", "children"), Input("analysis", "data"))
    def categories(data):
        """Separate from the grid: a model's first profile may take a while to compute."""
        analysis = stored(service, data)
        if analysis is None:
            return []
        return category_table(analysis.heads, head_profile(analysis.lm))

    @app.callback(
        Output({"kind": "figure", "name": "head-heatmap"}, "figure"),
        Output({"kind": "figure", "name": "head-heatmap"}, "style"),
        Output("head-detail", "children"),
        Input({"kind": "head", "layer": ALL, "head": ALL}, "n_clicks"),
        State("analysis", "data"),
        State("grid-mode", "value"),
    )
    def open_head(clicks, data, mode):
        trigger = ctx.triggered_id
        if mode == "select" and any(clicks):  # the click picks heads (investigate panel)
            return no_update, no_update, no_update
        if not isinstance(trigger, dict) or not any(clicks):
            return no_update, HIDDEN, "Click a head in the grid to see its attention pattern."
        analysis = stored(service, data)
        if analysis is None:
            return no_update, HIDDEN, no_update
        layer, head = trigger["layer"], trigger["head"]
        report = analysis.heads
        category = report.categories[layer][head]
        score = _score(report, layer, head)
        detail = [
            html.Strong(head_name(layer, head)),
            f": on this input {LABELS[category]}"
            + ("" if score is None else f" (score {score:.2f})")
            + ". Hover a cell for the exact weight.",
        ]
        profile = head_profile(analysis.lm)
        if profile is not None:
            detail.append(f" General role (profile): {LABELS[profile.categories[layer][head]]}.")
        return figures.attention_heatmap(analysis, layer, head), SHOWN, detail

    @app.callback(
        Output({"kind": "figure", "name": "layer-heads"}, "figure"),
        Output({"kind": "figure", "name": "layer-heads"}, "style"),
        Input("layer-select", "value"),
        State("analysis", "data"),
    )
    def open_layer(layer, data):
        analysis = stored(service, data)
        if analysis is None or layer is None:
            return no_update, HIDDEN
        return figures.layer_heads(analysis, layer), SHOWN
