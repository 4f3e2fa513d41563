"""One module per stage of the forward pass; each gives its section's layout and its callbacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from ...core.analysis import Analysis
from ...service import Service
from ..figures import graph_config
from ..static import static
from ..terms import linked


@dataclass(frozen=True)
class Drawing:
    """What a view draws from: the analysis shown (None before the first Analyze, or once the
    store evicted it), its page data, the page's focus, whether the analysis is new to the view's
    group (`new_analysis`), what set the request off, and the values of the view's own controls
    (`Views.reads`) as `values["id.property"]`."""

    analysis: Analysis | None
    data: dict | None
    focus: dict | None
    new: bool
    trigger: object
    values: dict[str, object]


class Views(NamedTuple):
    """Views drawn together, in ONE request per group (`register_views`): the one way a stage
    is drawn.

    `draw(drawing)` gives one value per output. A view is drawn for a new analysis, when the
    focus changes if it `follows_focus`, and when one of its own controls among `reads` (an
    `Input`; a `State` is only read) changes.
    """

    outputs: tuple[Output, ...]
    draw: Callable[[Drawing], tuple]
    follows_focus: bool = False
    reads: tuple[Input | State, ...] = ()


def new_analysis(data: dict | None, drawn: str | None) -> bool:
    """Whether a callback that last drew analysis `drawn` must draw `data` afresh. Read from what
    it drew, not from what triggered it: a focus written while the analysis's request is in
    flight supersedes that request (the page drops its answer), and the call that replaces it is
    triggered by the focus alone."""
    return (data or {}).get("id") != drawn or ctx.triggered_id is None


def _key(dependency: Input | State) -> str:
    return f"{dependency.component_id}.{dependency.component_property}"


def register_views(app: Dash, service: Service, views: Sequence[Views], drawn: str) -> None:
    """ONE callback draws a group of `views` (see `Views`); the store `drawn` holds the analysis
    it last drew (`new_analysis`). Every callback costs the page's renderer a round of updates
    over all its mounted components, and a browser opens at most six requests at once: views
    are grouped so that an Analyze costs few requests (four stages in one: 20-35 ms less per
    Analyze on a 2-core CPU)."""
    inputs = [r for view in views for r in view.reads if isinstance(r, Input)]
    states = [r for view in views for r in view.reads if isinstance(r, State)]
    outputs = [output for view in views for output in view.outputs]
    duplicates = any(getattr(o, "allow_duplicate", False) for o in outputs)

    @app.callback(
        *outputs,
        Output(drawn, "data"),
        Input("analysis", "data"),
        Input("focus", "data"),
        *inputs,
        State(drawn, "data"),
        *states,
        prevent_initial_call="initial_duplicate" if duplicates else False,
    )
    def draw(data, focus, *rest):
        own = rest[: len(inputs)]
        last, *read = rest[len(inputs) :]
        values = {_key(d): v for d, v in zip([*inputs, *states], [*own, *read], strict=True)}
        trigger = ctx.triggered_id
        new = new_analysis(data, last)
        drawing = Drawing(service.stored(data), data, focus, new, trigger, values)
        answer: list = []
        for view in views:
            asked = any(isinstance(r, Input) and r.component_id == trigger for r in view.reads)
            if new or asked or (view.follows_focus and trigger in ("focus", "analysis")):
                answer.extend(view.draw(drawing))
            else:
                answer.extend((no_update,) * len(view.outputs))
        return (*answer, (data or {}).get("id") if new else no_update)


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
