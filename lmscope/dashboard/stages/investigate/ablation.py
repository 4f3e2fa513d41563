"""Ablation: pick heads (typed, from the attention grid or the scan), remove them, compare; and
the scan that removes every head alone, exactly or estimated by attribution patching (AtP) with
its strongest heads checked exactly and its agreement with the exact scan once both are known."""

from __future__ import annotations

import math

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from ....core.errors import LmscopeError, RequestError
from ....core.heads import head_name
from ....experiments.ablation import MODES, ablate, ablation_scan
from ....experiments.ablation_atp import ablation_estimate, head_scan
from ....experiments.atp import scan_agreement
from ....experiments.defaults import default
from ....experiments.inputs import check_heads, parse_heads
from ....experiments.patching import CHECK_TOP
from ... import figures
from .. import graph
from .panel import (
    Outcome,
    Panel,
    Setting,
    agreement_line,
    button,
    checked_table,
    message,
    metric_line,
    number,
    parse_target,
)
from .redundancy import small_effect_note
from .reproduce import Code, call, flag, setting_flags, token_text

ABLATION_TOKENS = 20  # greedy continuation shown before and after an ablation
TAB = "ablation"  # its tab in the panel (labelled capitalized)
BODIES = ("inv-ablation-body", "inv-scan-body", "inv-scan-atp-body", "inv-scan-agreement")
FIGURES = ("inv-ablation", "inv-scan", "inv-scan-atp")

EXPLAIN_ABLATION = (
    "Ablation removes heads: their output is replaced by zeros (zero) or by their average over "
    "this prompt (mean, which removes only what depends on the input). If the prediction changes, "
    "the heads mattered. KL divergence measures how far the whole next-token distribution moved "
    "(0 = not at all)."
)
EXPLAIN_SCAN = (
    "The scan removes each head alone, one at a time, and records how the metric (the target's "
    "log-probability, or logit(A) - logit(B) with a 'minus' token) changes. Red cells: the head "
    "helped the target (removing it hurt); blue: it "
    "worked against it. Click a cell to add that head to the ablation set. Estimate (AtP) "
    "estimates every cell at once from one gradient (about 4 passes instead of one per layer of "
    "heads) and removes its strongest heads exactly to check it; run the exact scan too to see "
    "how well the two agree."
)

# What a shared link carries of this tab (dashboard/share.py)
URL_SETTINGS = (
    Setting("ablate", "inv-heads", "heads", [], "data"),
    Setting("mode", "inv-mode", tuple(MODES), default(head_scan, "mode")),
    Setting("scank", "inv-scan-k", int, default(head_scan, "check")),
)


def layout() -> list:
    return [
        dcc.Store(id="inv-heads", data=[]),
        dcc.Store(id="inv-grid-marks"),
        html.H3("Ablation: remove heads"),
        html.P(EXPLAIN_ABLATION, className="explain"),
        html.Div(
            [
                html.Span("Heads:", className="field-label"),
                html.Span(id="inv-chips", className="row"),
                dcc.Input(
                    id="inv-heads-text",
                    type="text",
                    placeholder="type LAYER.HEAD, e.g. 0.1,3.5",
                    className="model-custom",
                ),
                button("Add", "inv-heads-add"),
                button("Clear", "inv-heads-clear"),
            ],
            className="row",
        ),
        html.P(
            "Pick heads by typing them, by clicking cells of the attention grid (Stage 3) with "
            '"adds it to the ablation set" chosen, or by clicking the scan below.',
            className="hint",
        ),
        html.Div(
            [
                dcc.RadioItems(
                    id="inv-mode",
                    options=[{"label": f"{m} ablation", "value": m} for m in MODES],
                    value=default(head_scan, "mode"),
                    inline=True,
                ),
                button("Run ablation", "inv-ablate", True),
                button("Scan every head", "inv-scan-run"),
                button("Estimate (AtP)", "inv-scan-atp-run"),
                number("inv-scan-k", default(head_scan, "check"), "check top", step=1, min=0),
            ],
            className="row actions",
        ),
        html.Div(id="inv-ablation-body"),
        graph("inv-ablation", "lmscope-ablation"),
        html.H3("Which heads matter here? The ablation scan"),
        html.P(EXPLAIN_SCAN, className="explain"),
        html.Div(id="inv-scan-body"),
        graph("inv-scan", "lmscope-ablation-scan"),
        html.Div(id="inv-scan-agreement"),
        html.Div(id="inv-scan-atp-body"),
        graph("inv-scan-atp", "lmscope-ablation-scan-atp"),
    ]


def head_chips(heads: list[list[int]]) -> list:
    """The ablation set as chips (`L4-H11`)."""
    if not heads:
        return [html.Span("none yet", className="hint")]
    return [html.Span(head_name(*h), className="chip-inline", **{"data-head": head_name(*h)})
            for h in heads]  # fmt: skip


def register(app: Dash, panel: Panel) -> None:
    @app.callback(
        Output("inv-heads", "data"),
        Output("inv-message", "children", allow_duplicate=True),
        Input("head-pick", "data"),
        Input({"kind": "figure", "name": "inv-scan"}, "clickData"),
        Input({"kind": "figure", "name": "inv-scan-atp"}, "clickData"),
        Input("inv-heads-add", "n_clicks"),
        Input("inv-heads-text", "n_submit"),
        Input("inv-heads-clear", "n_clicks"),
        State("grid-mode", "value"),
        State("inv-heads", "data"),
        State("inv-heads-text", "value"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def select(_cells, _scan, _atp, _add, _submit, _clear, mode, heads, text, data):
        """Grid clicks (in select mode) toggle a head; scan clicks and the text field add heads."""
        trigger, heads = ctx.triggered_id, [list(h) for h in heads or []]
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update, no_update
        if trigger == "inv-heads-clear":
            return [], ""
        if trigger == "head-pick":
            if mode != "select":
                return no_update, no_update
            head = [ctx.triggered[0]["value"]["layer"], ctx.triggered[0]["value"]["head"]]
            return ([h for h in heads if h != head] if head in heads else [*heads, head]), ""
        if isinstance(trigger, dict):  # a cell of the exact or the AtP scan
            point = ctx.triggered[0]["value"]["points"][0]
            new = [(int(point["y"]), int(point["x"]))]
        else:
            try:
                lm, _ = panel.model_and_prompt(data)
                new = check_heads(lm, parse_heads(text or ""))
            except LmscopeError as error:
                return no_update, message(error)
        return heads + [list(h) for h in new if list(h) not in heads], ""

    @app.callback(Output("inv-chips", "children"), Input("inv-heads", "data"))
    def show_heads(heads):
        return head_chips(heads or [])

    app.clientside_callback(  # cellgrid.js marks cells of grids drawn later from lmscopeMarks
        """function (heads, _grid) {
            const chosen = new Set((heads || []).map(h => `L${h[0]}-H${h[1]}`));
            window.lmscopeMarks = chosen;
            document.querySelectorAll(".head-cell").forEach(cell => {
                cell.classList.toggle("selected", chosen.has(cell.dataset.head));
            });
            return chosen.size;
        }""",
        Output("inv-grid-marks", "data"),
        Input("inv-heads", "data"),
        Input("head-grid-body", "children"),
    )

    @panel.experiment(
        app,
        buttons=("inv-ablate",),
        body="inv-ablation-body",
        figures=("inv-ablation",),
        reads={
            "heads": State("inv-heads", "data"),
            "mode": State("inv-mode", "value"),
            "target": State("inv-target", "value"),
            "wrong": State("inv-wrong", "value"),
        },
    )
    def run_ablation(data, _trigger, heads, mode, target, wrong) -> Outcome:
        lm, prompt = panel.model_and_prompt(data)
        if not heads:
            raise RequestError("Pick at least one head to ablate.")
        result = ablate(lm, prompt, heads, mode, target=parse_target(target),
                        wrong=parse_target(wrong), new_tokens=ABLATION_TOKENS)  # fmt: skip
        p_before, p_after = result.target_probability
        before, after = result.before.softmax(-1), result.after.softmax(-1)
        top_before, top_after = result.top("before"), result.top("after")
        ids = [p.id for p in top_before] + [
            p.id for p in top_after if p.id not in {q.id for q in top_before}
        ]
        rows = [(i, lm.token_display(i), float(before[i]), float(after[i])) for i in ids]
        names = ", ".join(head_name(*h) for h in result.heads)
        change = p_after - p_before
        sign = "+" if change >= 0 else "-"
        logratio = (
            f", log-probability {math.log(p_after) - math.log(p_before):+.3f}"
            if p_before > 0 and p_after > 0
            else ""
        )
        doc = result.to_dict()
        m = doc["metric"]
        body = [
            metric_line(m, result.notices, "inv-ablation-metric"),
            html.P(
                f"{m['label']}: {m['before']:.4f} → {m['after']:.4f} (change {m['change']:+.4f}).",
                id="inv-metric-change",
            ),
            html.P(
                [
                    f"{result.mode.capitalize()} ablation of {names}. Top token before: ",
                    html.Strong(top_before[0].to_dict()["display"], className="mono",
                                id="inv-top-before"),
                    f" {figures.percent(top_before[0].probability)}; after: ",
                    html.Strong(top_after[0].to_dict()["display"], className="mono",
                                id="inv-top-after"),
                    f" {figures.percent(top_after[0].probability)}.",
                ],
                className="prediction",
            ),
            html.P(
                [
                    "Target ",
                    html.Strong(lm.token_display(result.target), className="mono"),
                    f" (id {result.target}): {figures.percent(p_before)} → "
                    f"{figures.percent(p_after)} (change {sign}{figures.percent(abs(change))}"
                    f"{logratio}). KL divergence (before ‖ after): ",
                    html.Strong(f"{result.kl:.4f}", id="inv-kl"),
                    " nats.",
                ],
                id="inv-target-change",
            ),
            html.P([html.Span("Greedy continuation before: ", className="field-label"),
                    html.Span(result.generation_before.text, className="continuation",
                              id="inv-continuation-before")]),
            html.P([html.Span("after: ", className="field-label"),
                    html.Span(result.generation_after.text, className="continuation",
                              id="inv-continuation-after")]),
        ]  # fmt: skip
        analysis = panel.service.stored(data)
        note = small_effect_note(analysis and analysis.heads, result.heads, p_before, p_after)
        body += [note] if note is not None else []
        title = "Next-token probabilities before and after the ablation (top 10 of each)"
        answer, other = parse_target(target), parse_target(wrong)
        code = Code(
            data["model"],
            "from lmscope.experiments.ablation import ablate",
            call("ablate", prompt, [tuple(h) for h in result.heads], result.mode, target=answer,
                 wrong=other, new_tokens=ABLATION_TOKENS),
            ["ablate", "--model", data["model"], "--prompt", prompt,
             "--heads", ",".join(f"{l}.{h}" for l, h in result.heads), "--mode", result.mode,
             *flag("target", token_text(lm, answer)), *flag("wrong", token_text(lm, other)),
             "--new-tokens", ABLATION_TOKENS],
        )  # fmt: skip
        figure = figures.before_after(rows, title)
        return Outcome(body, {"inv-ablation": figure}, ("ablation", doc), code=code)

    scan_reads = {
        "mode": State("inv-mode", "value"),
        "target": State("inv-target", "value"),
        "wrong": State("inv-wrong", "value"),
        "results": State("inv-results", "data"),
    }
    agreement = Output("inv-scan-agreement", "children", allow_duplicate=True)

    @panel.experiment(
        app,
        buttons=("inv-scan-run",),
        body="inv-scan-body",
        figures=("inv-scan",),
        reads=scan_reads,
        also=(agreement,),
    )
    def run_scan(data, _trigger, mode, target, wrong, results) -> Outcome:
        lm, prompt = panel.model_and_prompt(data)
        scan = ablation_scan(lm, prompt, mode, target=parse_target(target),
                             wrong=parse_target(wrong))  # fmt: skip
        doc = scan.to_dict()
        label, clean = doc["metric"]["label"], doc["metric"]["clean"]
        effect = scan.effect
        worst = divmod(int(effect.argmin()), effect.shape[1])
        body = [
            metric_line(doc["metric"], scan.notices, "inv-scan-metric"),
            html.P(
                [
                    f"{scan.mode.capitalize()} ablation of each head alone; target ",
                    html.Strong(lm.token_display(scan.target), className="mono"),
                    f" ({label} = {clean:.3f} on the clean prompt). Removing ",
                    html.Strong(head_name(*worst)),
                    f" lowers it most ({float(effect.min()):+.3f}).",
                ]
            ),
        ]
        contrastive = scan.metric is not None and scan.metric.contrastive
        fig = figures.head_map(
            effect,
            f"Change in {label} when one head is removed",
            "Δ logit diff" if contrastive else "Δ log p",
            "change in the logit difference" if contrastive else "change in log-probability",
        )
        agreed = agreement_of(doc, (results or {}).get("ablation_atp"))
        code = scan_code(lm, data["model"], prompt, mode, target, wrong, {"method": "exact"})
        return Outcome(body, {"inv-scan": fig}, ("ablation_scan", doc),
                       {"inv-scan-agreement.children": agreed}, code=code)  # fmt: skip

    @panel.experiment(
        app,
        buttons=("inv-scan-atp-run",),
        body="inv-scan-atp-body",
        figures=("inv-scan-atp",),
        reads=scan_reads | {"k": State("inv-scan-k", "value")},
        also=(agreement,),
    )
    def run_scan_atp(data, _trigger, mode, target, wrong, results, k) -> Outcome:
        lm, prompt = panel.model_and_prompt(data)
        check = default(head_scan, "check") if k is None else int(k)
        result = ablation_estimate(lm, prompt, mode, parse_target(target), parse_target(wrong),
                                   check=check)  # fmt: skip
        doc = result.to_dict()
        label = doc["metric"]["label"]
        top = divmod(int(result.atp.abs().argmax()), result.atp.shape[1])
        body = [
            metric_line(doc["metric"], result.notices, "inv-scan-atp-metric"),
            html.P(
                f"AtP estimate of {result.mode} ablating each head alone ({label} = "
                f"{result.base_metric:.3f} on the prompt), from one forward and one backward "
                f"pass: {head_name(*top)} matters most (estimated {float(result.atp[top]):+.3f}).",
                id="inv-scan-atp-summary",
            ),
            *checked_table([(c["name"], c["atp"], c["exact"]) for c in result.checked],
                           "AtP's strongest heads, ablated exactly:", "inv-scan-checked", "head"),
        ]  # fmt: skip
        fig = figures.head_map(
            result.atp,
            f"AtP estimate of the change in {label} when one head is removed",
            "Δ logit diff" if result.metric.contrastive else "Δ log p",
            "estimated change",
        )
        agreed = agreement_of((results or {}).get("ablation_scan"), doc)
        settings = {"method": "atp", "check": check}
        code = scan_code(lm, data["model"], prompt, mode, target, wrong, settings)
        return Outcome(
            body, {"inv-scan-atp": fig}, ("ablation_atp", doc),
            {"inv-scan-agreement.children": agreed}, code=code,
        )  # fmt: skip


def scan_code(lm, model: str, prompt: str, mode: str, target, wrong, settings: dict) -> Code:
    """The ablation scan as code: `head_scan`, `lmscope ablation-scan`, an ablation-scan run."""
    answer, other = parse_target(target), parse_target(wrong)
    settings = {"mode": mode, **settings}
    return Code(
        model,
        "from lmscope.experiments.ablation_atp import head_scan",
        call("head_scan", prompt, mode, answer, other, **{k: v for k, v in settings.items()
                                                           if k != "mode"}),
        ["ablation-scan", "--model", model, "--prompt", prompt,
         *flag("target", token_text(lm, answer)), *flag("wrong", token_text(lm, other)),
         *setting_flags(settings)],
        "ablation-scan",
        {"prompt": prompt, "answer": answer, "wrong": other},
        settings,
    )  # fmt: skip


def agreement_of(exact: dict | None, estimate: dict | None) -> list:
    """The agreement line of the two scans the page holds (`atp.scan_agreement`), if any."""
    found = scan_agreement(exact, estimate, CHECK_TOP)
    return [] if found is None else agreement_line(found, "inv-scan-agreement-line")
