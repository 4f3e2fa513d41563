"""Activation patching: the analyzed prompt as the clean run against a corrupted prompt typed here,
as layer x position or layer x head heatmaps; attribution patching (AtP) beside the exact scan,
with their agreement, and AtP's strongest cells checked exactly."""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from dash import Dash, Input, Output, Patch, State, ctx, dcc, html, no_update

from ....experiments.defaults import default
from ....experiments.patching import Patching, patch
from ... import figures
from .. import graph
from .panel import (
    Outcome,
    Panel,
    Setting,
    agreement_line,
    button,
    checked_table,
    metric_line,
    number,
    parse_target,
)
from .reproduce import Code, call, flag, setting_flags, token_text

TAB = "patching"  # its tab in the panel (labelled capitalized)
BODIES = ("inv-patch-body",)
FIGURES = ("inv-patch-atp", "inv-patch-exact")

EXPLAIN = (
    "Activation patching runs two prompts of the same token count: the analyzed (clean) prompt "
    "and a corrupted one that changes the answer (e.g. swap which name repeats). Denoising puts "
    "one clean activation into the corrupted run (is it enough to bring the clean answer back?); "
    "noising puts one corrupted activation into the clean run (is it needed?). 1 is the clean "
    "run's metric, 0 the corrupted run's. The metric is the target token's logit minus the "
    "'minus' token's (both fields above), or the target's log-probability. AtP estimates every "
    "cell at once from one gradient; the exact scan patches each cell alone. Click a cell to "
    "focus its layer, position or head in the stages above."
)
COMPONENTS = [
    {"label": "residual stream", "value": "resid"},
    {"label": "attention output", "value": "attn"},
    {"label": "MLP output", "value": "mlp"},
    {"label": "heads", "value": "heads"},
]
DIRECTIONS = [{"label": d, "value": d} for d in ("denoising", "noising")]
COMPONENT_NAMES = {"resid": "the residual stream", "attn": "each attention output",
                   "mlp": "each MLP output", "heads": "each head"}  # fmt: skip
# What a shared link carries of this tab (dashboard/share.py)
URL_SETTINGS = (
    Setting("corrupt", "inv-patch-corrupt", str, None),
    Setting("pcomp", "inv-patch-component", tuple(c["value"] for c in COMPONENTS),
            default(patch, "component")),
    Setting("pdir", "inv-patch-direction", tuple(d["value"] for d in DIRECTIONS),
            default(patch, "direction")),
    Setting("pk", "inv-patch-k", int, default(patch, "check")),
)  # fmt: skip


def layout() -> list:
    return [
        html.H3("Activation patching: which parts carry the answer?"),
        html.P(EXPLAIN, className="explain"),
        html.Div(
            [
                html.Label(
                    "Corrupted prompt", htmlFor="inv-patch-corrupt", className="field-label"
                ),
                dcc.Input(
                    id="inv-patch-corrupt",
                    type="text",
                    className="model-custom",
                    placeholder="same token count as the analyzed prompt",
                    style={"minWidth": "28rem"},
                ),
            ],
            className="row",
        ),
        html.Div(
            [
                dcc.RadioItems(
                    id="inv-patch-component",
                    options=COMPONENTS,
                    value=default(patch, "component"),
                    inline=True,
                ),
                dcc.RadioItems(
                    id="inv-patch-direction",
                    options=DIRECTIONS,
                    value=default(patch, "direction"),
                    inline=True,
                ),
                number("inv-patch-k", default(patch, "check"), "check top", step=1, min=0),
                button("Estimate (AtP)", "inv-patch-atp-run", True),
                button("Exact scan", "inv-patch-exact-run"),
            ],
            className="row actions",
        ),
        html.Div(id="inv-patch-body"),
        graph("inv-patch-atp", "lmscope-patching-atp"),
        graph("inv-patch-exact", "lmscope-patching-exact"),
    ]


def heatmap(result: Patching, values: torch.Tensor, title: str) -> go.Figure:
    """Layers down, positions (their tokens) or heads across; white = unpatched."""
    columns = result.columns()
    layers, width = values.shape
    base = result.unpatched
    limit = max(float((values - base).abs().max()), 1e-6)
    fig = go.Figure(
        go.Heatmap(
            z=values.round(decimals=4).tolist(),
            x=list(range(width)),
            y=list(range(layers)),
            customdata=[[figures.plot_text(c) for c in columns] for _ in range(layers)],
            colorscale="RdBu",
            zmid=base,
            zmin=base - limit,
            zmax=base + limit,
            xgap=1,
            ygap=1,
            colorbar=dict(title="restored" if result.direction == "denoising" else "kept"),
            hovertemplate="L%{y} · %{customdata}<br>%{z:.4f}<extra></extra>",
        )
    )
    ticks = [
        figures.plot_text(f"{i}·{c}" if result.component != "heads" else c)
        for i, c in enumerate(columns)
    ]
    fig.update_xaxes(
        tickmode="array",
        tickvals=list(range(width)),
        ticktext=ticks,
        title="head" if result.component == "heads" else "position (clean / corrupted)",
    )
    fig.update_yaxes(title="layer", autorange="reversed", dtick=1 if layers <= 48 else None)
    fig.update_layout(
        template="plotly_white",
        height=min(760, max(280, 180 + 22 * layers)),
        margin=dict(l=10, r=10, t=40, b=10),
        title=figures.plot_text(title),
    )
    return fig


def summary(result: Patching) -> list:
    """The metric, the two runs' values, the agreement, and AtP's strongest cells checked."""
    p = result.pair
    body = [
        metric_line(p.metric.to_dict(), p.notices, "inv-patch-metric"),
        html.P(
            f"{result.direction.capitalize()} patching of {COMPONENT_NAMES[result.component]}: "
            "metric "
            f"{p.clean_metric:.4f} on the clean prompt (1), {p.corrupt_metric:.4f} on the "
            "corrupted one (0).",
            id="inv-patch-runs",
        ),
    ]
    checked = [(result.cell_name(tuple(c["cell"])), c["atp"], c["exact"]) for c in result.checked]
    return [
        *body,
        *agreement_line(result.agreement(), "inv-patch-agreement"),
        *checked_table(checked, "AtP's strongest cells, patched exactly:", "inv-patch-checked"),
    ]


def register(app: Dash, panel: Panel) -> None:
    @panel.experiment(
        app,
        buttons=("inv-patch-atp-run", "inv-patch-exact-run"),
        body="inv-patch-body",
        figures=("inv-patch-atp", "inv-patch-exact"),
        reads={
            "corrupt": State("inv-patch-corrupt", "value"),
            "component": State("inv-patch-component", "value"),
            "direction": State("inv-patch-direction", "value"),
            "k": State("inv-patch-k", "value"),
            "target": State("inv-target", "value"),
            "wrong": State("inv-wrong", "value"),
        },
    )
    def run_patching(data, trigger, corrupt, component, direction, k, target, wrong) -> Outcome:
        lm, prompt = panel.model_and_prompt(data)
        answer, other = parse_target(target), parse_target(wrong)
        settings = {
            "component": component,
            "direction": direction,
            "scan": "both" if trigger == "inv-patch-exact-run" else "atp",
            "check": default(patch, "check") if k is None else int(k),
        }
        result = patch(lm, prompt, corrupt or "", answer, other, **settings)
        atp = heatmap(
            result, result.atp, "AtP estimate (one forward pass of each prompt, one backward)"
        )
        exact = None
        if result.exact is not None:
            exact = heatmap(result, result.exact, "Exact: each cell patched alone")
        figures = {"inv-patch-atp": atp, "inv-patch-exact": exact}
        code = Code(
            data["model"],
            "from lmscope.experiments.patching import patch",
            call("patch", prompt, corrupt or "", answer, other, **settings),
            ["patch", "--model", data["model"], "--clean", prompt, "--corrupt", corrupt or "",
             *flag("answer", token_text(lm, answer)), *flag("wrong", token_text(lm, other)),
             *setting_flags(settings)],
            "patch",
            {"prompt": prompt, "corrupt": corrupt or "", "answer": answer, "wrong": other},
            settings,
        )  # fmt: skip
        return Outcome(summary(result), figures, ("patching", result.to_dict()), code=code)

    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Input({"kind": "figure", "name": "inv-patch-atp"}, "clickData"),
        Input({"kind": "figure", "name": "inv-patch-exact"}, "clickData"),
        State("inv-patch-component", "value"),
        prevent_initial_call=True,
    )
    def focus(atp_click, exact_click, component):
        """A clicked cell becomes the page's focus: its layer and position, or its head."""
        click = atp_click if ctx.triggered_id["name"] == "inv-patch-atp" else exact_click
        if not click or not click.get("points"):
            return no_update
        point = click["points"][0]
        layer, column = int(point["y"]), int(point["x"])
        update = Patch()
        update["layer"] = layer
        if component == "heads":
            update["head"] = [layer, column]
        else:
            update["position"] = column
        return update
