"""Attribution: direct logit attribution per head and MLP, and token attribution (integrated
gradients, gradient x input)."""

from __future__ import annotations

from dash import Dash, State, html

from ....core.errors import RequestError
from ....experiments.attribution import (
    COMPLETENESS,
    TokenAttribution,
    direct_logit_attribution,
    token_attribution,
)
from ... import figures
from .. import graph
from ..tokens import chips
from .panel import NO_ANALYSIS, Outcome, Panel, button, metric_line, parse_target
from .reproduce import Code, call, flag, token_text

TAB = "attribution"  # its tab in the panel (labelled capitalized)
URL_SETTINGS = ()  # its settings are the panel's target and 'minus' (dashboard/share.py)
BODIES = ("inv-dla-body", "inv-attr-body")
FIGURES = ("inv-dla-heads", "inv-dla-mlp")

DLA_METHOD = (
    "Method: each head's and each MLP's output at the last position is read through the final "
    "normalization with its scale frozen at its value on the full residual stream and dotted with "
    "the target's unembedding, so the parts add up to the target's logit exactly."
)
EXPLAIN_DLA = (
    "Direct logit attribution splits the target's logit (its score) into what each head and "
    "each MLP wrote directly into the residual stream. It misses indirect effects (a head that "
    "helps a later head), which ablation catches."
)
EXPLAIN_TOKENS = (
    "Token attribution asks which prompt tokens pushed the model toward the target. Integrated "
    "gradients fades the prompt's token embeddings in from a neutral baseline (all zeros where "
    "a position vector is added, the vocabulary's average embedding for rotary models) and adds "
    "up the gradients on the way, refining the path until the scores settle; its scores add up "
    "to the change in the metric (the target's log-probability, or logit(A) - logit(B) with a "
    "'minus' token: the completeness check below). When they do "
    "not settle within the step budget, the page says so and greys them out. Gradient x input is "
    "the quick one-step estimate. Blue pushed toward the target, red away; hover a token for the "
    "exact value."
)
GREY = "120,120,120"
BASELINES = {"zero": "all-zero", "mean": "mean-embedding"}  # how the page names each baseline


def layout() -> list:
    return [
        html.H3("Direct logit attribution"),
        html.P([EXPLAIN_DLA, " ", DLA_METHOD], className="explain"),
        button("Attribute the logit", "inv-dla-run", True),
        html.Div(id="inv-dla-body"),
        html.Div(
            [graph("inv-dla-heads", "lmscope-dla-heads"), graph("inv-dla-mlp", "lmscope-dla-mlp")],
            className="two-col",
        ),
        html.H3("Token attribution"),
        html.P(EXPLAIN_TOKENS, className="explain"),
        button("Attribute the tokens", "inv-attr-run", True),
        html.Div(id="inv-attr-body"),
    ]


def tint(value: float, limit: float, valid: bool = True) -> str:
    """A chip colour for an attribution: blue toward the target, red away, by strength; grey
    (strength only, paler) where the scores are not trustworthy."""
    alpha = min(1.0, abs(value) / limit) * 0.75 if limit else 0.0
    if not valid:
        return f"rgba({GREY},{alpha / 2:.3f})"
    rgb = "47,111,173" if value >= 0 else "225,87,89"
    return f"rgba({rgb},{alpha:.3f})"


def not_valid_warning(result: TokenAttribution) -> html.Div:
    """Why the integrated gradients below are not to be trusted, with the figures."""
    problems = []
    if not result.complete:
        problems.append(
            f"they add up to the change in {result.metric.label} only within "
            f"{result.completeness_error:.1%} (the limit is {COMPLETENESS:.0%})"
        )
    if not result.converged:
        problems.append(
            f"a token's score may still be off by up to {result.token_change:.3f} (the tolerance "
            f"is {result.tolerance:.3f})"
        )
    return html.Div(
        f"Integrated gradients did not converge within {result.steps} path points (budget "
        f"{result.max_steps}): {' and '.join(problems)}. The scores are shown in grey and are "
        "not reliable: the model's output changes too abruptly along the path for this budget. "
        "Gradient x input below is a local, one-step estimate.",
        className="notice",
        id="inv-attr-warning",
    )


def token_rows(result: TokenAttribution) -> list:
    """The token attribution as chips and the completeness line; integrated gradients that did
    not converge come under a warning, greyed, labelled "not converged"."""
    valid = result.valid
    rows = [] if valid else [not_valid_warning(result)]
    ig_label = "Integrated gradients" + ("" if valid else " (not converged)")
    for name, label, values, trusted in (
        ("ig", ig_label, result.integrated_gradients.tolist(), valid),
        ("gxi", "Gradient x input", result.gradient_x_input.tolist(), True),
    ):
        limit = max((abs(v) for v in values), default=0.0)
        rows += [
            html.P(html.Strong(label)),
            chips(
                result.tokens,
                "chip-plain",
                notes=[f"; {label.lower()} {v:+.4f}" for v in values],
                styles=[tint(v, limit, trusted) for v in values],
                id=f"inv-attr-{name}",
                **{"data-valid": "true" if trusted else "false"},
            ),
        ]
    gap = result.f_input - result.f_baseline
    total = float(result.integrated_gradients.sum())
    rows.append(
        html.P(
            f"Completeness: the integrated gradients add up to {total:.4f}; "
            f"f(prompt) - f(baseline) = {result.f_input:.4f} - ({result.f_baseline:.4f}) = "
            f"{gap:.4f} (relative error {result.completeness_error:.2%}, {result.steps} path "
            f"points, largest per-token error estimate {result.token_change:.4f}, "
            f"{BASELINES.get(result.baseline, result.baseline)} baseline; {'converged' if valid else 'NOT converged'}). "
            f"f = {result.metric.label}.",
            id="inv-completeness",
            className="hint",
        )
    )
    return rows


def register(app: Dash, panel: Panel) -> None:
    targets = {"target": State("inv-target", "value"), "wrong": State("inv-wrong", "value")}

    @panel.experiment(
        app,
        buttons=("inv-dla-run",),
        body="inv-dla-body",
        figures=("inv-dla-heads", "inv-dla-mlp"),
        reads=targets,
    )
    def run_dla(data, _trigger, target, wrong) -> Outcome:
        analysis = panel.service.stored(data)
        if analysis is None:
            raise RequestError(NO_ANALYSIS)
        dla = direct_logit_attribution(analysis, parse_target(target), parse_target(wrong))
        doc = dla.to_dict()
        shown = dla.label
        body = [
            metric_line({"label": shown}, doc["notices"], "inv-dla-metric"),
            html.P(
                [
                    html.Strong(shown, className="mono"),
                    f" = {dla.logit:.3f} = heads {float(dla.heads.sum()):+.3f} + MLPs "
                    f"{float(dla.mlps.sum()):+.3f} + embeddings {dla.embeddings:+.3f} + biases "
                    f"{float(dla.attention_bias.sum()) + dla.constant:+.3f}.",
                ]
            ),
        ]
        heads = figures.head_map(
            dla.heads, f"Each head's direct effect on {shown}", "logit", "logit"
        )
        mlps = figures.layer_bars(dla.mlps, f"Each MLP's direct effect on {shown}", "logit")
        answer, other = parse_target(target), parse_target(wrong)
        fields = {"prompt": data["prompt"], "answer": answer, "wrong": other}
        code = Code(
            data["model"],
            "from lmscope.experiments.attribution import direct_logit_attribution",
            f"direct_logit_attribution(lmscope.analyze(lm, {data['prompt']!r}), {answer!r}, "
            f"{other!r})",
            ["attribute", "--model", data["model"], "--prompt", data["prompt"],
             *flag("target", token_text(analysis.lm, answer)),
             *flag("wrong", token_text(analysis.lm, other))],
            "dla",
            fields,
        )  # fmt: skip
        figures_shown = {"inv-dla-heads": heads, "inv-dla-mlp": mlps}
        return Outcome(body, figures_shown, ("logit_attribution", doc), code=code)

    @panel.experiment(app, buttons=("inv-attr-run",), body="inv-attr-body", reads=targets)
    def run_attribution(data, _trigger, target, wrong) -> Outcome:
        lm, prompt = panel.model_and_prompt(data)
        result = token_attribution(lm, prompt, parse_target(target), wrong=parse_target(wrong))
        doc = result.to_dict()
        head = metric_line(doc["metric"], result.notices, "inv-attr-metric")
        answer, other = parse_target(target), parse_target(wrong)
        code = Code(
            data["model"],
            "from lmscope.experiments.attribution import token_attribution",
            call("token_attribution", prompt, answer, wrong=other),
            ["attribute", "--tokens", "--model", data["model"], "--prompt", prompt,
             *flag("target", token_text(lm, answer)), *flag("wrong", token_text(lm, other))],
        )  # fmt: skip
        return Outcome([head, *token_rows(result)], kept=("token_attribution", doc), code=code)
