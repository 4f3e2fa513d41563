"""Model comparison: a second model on the same prompt, its predictions and head categories by
relative depth."""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, html

from ....core.errors import RequestError
from ....core.heads import LABELS
from ....experiments.comparison import compare
from ... import figures
from ...terms import linked
from .. import graph
from .panel import Outcome, Panel, Setting, button
from .reproduce import Code

COMPARE_TOP = 5
TAB = "comparison"  # its tab in the panel (labelled capitalized)
BODIES = ("inv-compare-body",)
FIGURES = ("inv-compare",)
# What a shared link carries of this tab (dashboard/share.py)
URL_SETTINGS = (
    Setting("vs", "inv-compare-model", str, None),
    Setting("vsid", "inv-compare-custom", str, None),
)

EXPLAIN_COMPARE = (
    "Run the same prompt through a second model: what each predicts, and which kinds of heads "
    "each has at each depth (0 = first layer, 1 = last, so models of different depth line up): "
    "on this prompt, and in general, on each model's probe set of natural text and repeated "
    "random tokens. Compare a small and a larger model to see heads specialize with scale. The "
    "dotted line counts first-token heads: in GPT-2 overviews, 'first / positional' heads; in "
    "today's models the [[attention sink]], where a head rests when it has nothing to read."
)


def layout() -> list:
    return [
        html.H3("Compare with another model"),
        html.P(linked(EXPLAIN_COMPARE), className="explain"),
        html.Div(
            [
                dcc.Dropdown(
                    id="inv-compare-model",
                    clearable=True,
                    searchable=False,
                    placeholder="second model",
                    className="model-picker",
                ),
                dcc.Input(
                    id="inv-compare-custom",
                    type="text",
                    placeholder="or any Hugging Face id",
                    className="model-custom",
                ),
                button("Compare", "inv-compare-run", True),
            ],
            className="row",
        ),
        html.Div(id="inv-compare-body"),
        graph("inv-compare", "lmscope-compare"),
    ]


def predictions(rows: list[dict]) -> html.Table:
    """A model's top predictions (`Prediction.to_dict()` rows) as a small table."""
    return html.Table(
        [
            html.Thead(html.Tr([html.Th("#"), html.Th("token"), html.Th("probability")])),
            html.Tbody(
                [
                    html.Tr([html.Td(i), html.Td(p["display"], className="mono"),
                             html.Td(figures.percent(p["probability"]))])
                    for i, p in enumerate(rows, 1)
                ]
            ),
        ],
        className="table",
    )  # fmt: skip


def register(app: Dash, panel: Panel) -> None:
    @app.callback(Output("inv-compare-model", "options"), Input("model-picker", "options"))
    def compare_choices(options):
        return options

    @panel.experiment(
        app,
        buttons=("inv-compare-run",),
        body="inv-compare-body",
        figures=("inv-compare",),
        reads={"picked": State("inv-compare-model", "value"),
               "custom": State("inv-compare-custom", "value")},
    )  # fmt: skip
    def run_compare(data, _trigger, picked, custom) -> Outcome:
        first, prompt = panel.model_and_prompt(data)
        second_id = (custom or "").strip() or picked
        if not second_id:
            raise RequestError("Choose a second model to compare with.")
        result = compare(first, panel.service.model(second_id), prompt).to_dict()
        sides = result["models"]
        same = (
            "the same top prediction"
            if result["same_top_prediction"]
            else "different top predictions"
        )
        body = [
            html.P(f"The two models make {same}."),
            html.Div(
                [
                    html.Div([html.Strong(s["model"]["name"]),
                              predictions(s["predictions"][:COMPARE_TOP])])
                    for s in sides
                ],
                className="two-col",
                id="inv-compare-predictions",
            ),
        ]  # fmt: skip
        fig = figures.categories_by_depth(sides, LABELS)
        fig.update_layout(title="Head categories by relative depth")
        code = Code(
            data["model"],
            "from lmscope.experiments.comparison import compare",
            f"compare(lm, lmscope.load({second_id!r}), {prompt!r})",
            ["compare", "--model", data["model"], "--other", second_id, "--prompt", prompt],
        )
        return Outcome(body, {"inv-compare": fig}, ("comparison", result), code=code)
