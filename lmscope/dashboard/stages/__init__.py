"""One module per stage of the forward pass; each gives its section's layout and its callbacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from ...core.analysis import Analysis
from ...service import Service
from ..figures import graph_config
from ..static import static
from ..terms import linked


class Views(NamedTuple):
    """Views of a stage drawn with other stages' in one request (`register_views`).

    `draw(analysis, data, focus)` gives one value per output (`analysis` None before the first
    Analyze or once the store evicted it); `follows_focus`: drawn again when the focus changes.
    """

    outputs: tuple[Output, ...]
    draw: Callable[[Analysis | None, dict | None, dict | None], tuple]
    follows_focus: bool = False


def new_analysis(data: dict | None, drawn: str | None) -> bool:
    """Whether a callback that last drew analysis `drawn` must draw `data` afresh. Read from what
    it drew, not from what triggered it: a focus written while the analysis's request is in
    flight supersedes that request (the page drops its answer), and the call that replaces it is
    triggered by the focus alone."""
    return (data or {}).get("id") != drawn or ctx.triggered_id is None


def register_views(app: Dash, service: Service, views: Sequence[Views]) -> None:
    """ONE callback draws `views` for each new analysis (see `new_analysis`; `views-drawn` holds
    what it last drew): every callback costs the page's renderer a round of updates over all its
    mounted components (four in one: 20-35 ms less per Analyze on a 2-core CPU)."""

    @app.callback(
        *(output for view in views for output in view.outputs),
        Output("views-drawn", "data"),
        Input("analysis", "data"),
        Input("focus", "data"),
        State("views-drawn", "data"),
    )
    def draw(data, focus, drawn):
        analysis = service.stored(data)
        new = new_analysis(data, drawn)
        values: list = []
        for view in views:
            if new or view.follows_focus:
                values.extend(view.draw(analysis, data, focus))
            else:
                values.extend((no_update,) * len(view.outputs))
        return (*values, (data or {}).get("id") if new else no_update)


def section(
    number: int, title: str, explain: str, *children, badge: str | None = None
) -> html.Section:
    """A stage: numbered heading, a plain-language explanation for a newcomer, then its views.

    `badge` replaces the "Stage n" label (panels that are not a stage of the forward pass).
    """
    heading = [
        html.H2([html.Span(badge or f"Stage {number}", className="stage-number"), title]),
        html.P(linked(explain), className="explain"),
    ]
    return html.Section(
        [static(heading), *children],
        id=f"stage-{number}",
        className="stage",
        tabIndex="-1",  # a skip link moves the keyboard focus here
    )


def position_input(input_id: str) -> dcc.Input:
    """A box for one token position (a number, not a menu of every token: its size does not grow
    with the prompt); its callback sets `max` and refuses what is out of range."""
    return dcc.Input(
        id=input_id, type="number", min=0, step=1, debounce=True, className="position-input"
    )


def ready(key: str) -> html.Span:
    """An invisible marker: this stage is drawn for analysis `key` (tests and benchmarks wait on it)."""
    return html.Span(className="stage-ready", **{"data-analysis": key})


# What each figure shows, for screen readers (the slot's aria-label); others fall back to a
# description made from the export file name.
FIGURE_TEXT = {
    "token-vector": "Strip of the token's embedding vector: one coloured cell per number.",
    "position-vector": "Strip of the position's learned embedding vector: one cell per number.",
    "head-heatmap": "Heatmap of one attention head's pattern: one row per token reading, one "
    "column per token read; darker cells carry more attention.",
    "layer-heads": "Small heatmaps of every head's attention pattern in one layer.",
    "residual-writes": "Heatmaps of how much each attention and MLP layer wrote into the residual "
    "stream at each token.",
    "top10": "Bar chart of the ten most likely next tokens and their probabilities.",
    "logit-lens": "Logit lens table: the top next token read off the residual stream after each "
    "layer, at each position.",
    "inv-ablation": "Bar chart of next-token probabilities before and after the ablation.",
    "inv-scan": "Heatmap over layers and heads of how much removing each head alone changes the "
    "metric (the target's log-probability, or the logit difference); red cells helped the target.",
    "inv-dla-heads": "Heatmap over layers and heads of what each head wrote directly into the "
    "target's logit.",
    "inv-dla-mlp": "Bar chart of what each layer's MLP wrote directly into the target's logit.",
    "inv-compare": "Chart comparing the two models' next-token probabilities on this prompt.",
    "inv-gen-distribution": "Bar chart of the next-token distribution that sampling draws from, "
    "after temperature, top-k and top-p.",
}


def graph(graph_id: str, filename: str, label: str | None = None) -> html.Div:
    """A figure slot, hidden until a callback fills it; its export settings follow the page's
    choice. The slot is a `figure` region whose aria-label (`label`, else `FIGURE_TEXT`) says what
    it shows."""
    text = label or FIGURE_TEXT.get(graph_id)
    if text is None:
        text = "Figure: " + filename.removeprefix("lmscope-").replace("-", " ") + "."
    return html.Div(
        dcc.Graph(
            id={"kind": "figure", "name": graph_id},
            config=graph_config(filename),
            figure={"data": [], "layout": {}},
            style={"display": "none"},
            className="figure",
        ),
        role="figure",
        className="figure-slot",
        **{"aria-label": text},
    )


SHOWN = {"display": "block"}
HIDDEN = {"display": "none"}
