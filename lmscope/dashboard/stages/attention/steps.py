"""Why a head attends: the step view. For the open head and the followed query token, the query
and key vectors, each dot product, the scaling, the mask, the softmax and the weighted sum of the
values, with this prompt's numbers (core/head_steps.py computes them; only the top keys are listed).
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, html, no_update

from ....core.analysis import Analysis
from ....core.errors import LmscopeError
from ....core.head_steps import HeadSteps, head_steps, job_position
from ....core.heads import LABELS, SINK_MARK, head_name
from ....service import Service
from ...static import static
from .. import position_input
from .head import focused_head

TOP = 8  # keys listed (by weight); the rest are summed up in one row
SHOWN_DIMS = 6  # vector entries written out; the whole vector is in the tooltip
EMPTY = "Open a head to see, step by step, why it attends where it does."


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Why this head attends there: step by step"),
            html.Div(
                [
                    html.Label("Query token (position) ", htmlFor="attn-query"),
                    position_input("attn-query"),
                    html.Span(
                        " or click a row of the pattern, or a token in the token view.",
                        className="hint",
                    ),
                ],
                className="row",
            ),
            # The position `draw` put in the box: only a user's own change of it moves `focus`.
            dcc.Store(id="attn-query-shown"),
            dcc.Store(id="head-steps-asked"),  # the head and position whose values to draw
            html.Div(html.P(EMPTY, className="empty"), id="head-steps"),
            html.Div(id="head-steps-values"),
        ],
        id="head-steps-view",
        className="steps-view",
    )


def chosen_position(analysis: Analysis, focus: dict | None) -> int | None:
    """The query token the page follows (`focus.position`: a click, the box, a link), if any."""
    position = (focus or {}).get("position")
    if isinstance(position, int) and 0 <= position < len(analysis.tokens):
        return position
    return None


def followed(analysis: Analysis, focus: dict | None) -> int:
    """The query token the views follow (`focus.position`), else the last one."""
    position = chosen_position(analysis, focus)
    return len(analysis.tokens) - 1 if position is None else position


# What each category's head reads at its job row, for the note saying why the view opened there
JOB_READS = {
    "previous_token": "the token just before it",
    "self": "itself",
    "duplicate_token": "an earlier copy of the same token",
    "induction": "the token that followed an earlier copy of this token",
}


def job_note(analysis: Analysis, layer: int, head: int, position: int) -> html.P:
    """Why the step view opened on this row rather than the last one."""
    category = analysis.heads.categories[layer][head]
    return html.P(
        [
            f"Opened on query token {position} ",
            token(analysis, position),
            f", where this {LABELS[category]} head does its job: it reads "
            f"{JOB_READS[category]}. Type another position, or click a row of the pattern.",
        ],
        className="hint steps-job",
        id="steps-job",
    )


def sink_note(analysis: Analysis, steps: HeadSteps) -> html.P | None:
    """A row that parks at least `SINK_MARK` on the first token says so: it reads little else."""
    share = float(steps.weights[0])
    if steps.position == 0 or share < SINK_MARK:
        return None
    return html.P(
        [
            f"{share:.0%} of this row goes to the first token ",
            token(analysis, 0),
            ", the attention sink: where a head parks attention it has no use for here. The "
            f"other {1 - share:.0%} is what it reads.",
        ],
        className="hint steps-sink",
        id="steps-sink",
    )


def token(analysis: Analysis, position: int) -> html.Span:
    """A token as an inline chip: its text (whitespace visible), never parsed as markup."""
    return html.Span(analysis.tokens[position].display, className="chip-inline")


def vector(values, dims: int = SHOWN_DIMS) -> html.Span:
    """The first entries of a vector, its length and norm; every entry in the tooltip."""
    numbers = [f"{v:.3f}" for v in values.tolist()]
    head = ", ".join(numbers[:dims]) + (", …" if len(numbers) > dims else "")
    return html.Span(
        [html.Span(f"[{head}]", className="mono"), f" ({len(numbers)} numbers, norm "
         f"{float(values.norm()):.3f})"],
        title="[" + ", ".join(numbers) + "]",
    )  # fmt: skip


def _key_rows(analysis: Analysis, steps: HeadSteps, top: list[int]) -> list[html.Tr]:
    """One row per listed key: its token, key vector, q . k, the scaled score, its weight."""
    best = float(steps.scores.max())
    rows = []
    for j in top:
        rows.append(
            html.Tr(
                [
                    html.Td(f"{j}"),
                    html.Td(token(analysis, j)),
                    html.Td(vector(steps.keys[j], 3)),
                    html.Td(f"{float(steps.dots[j]):.4f}", className="num"),
                    html.Td(f"{float(steps.scores[j]):.4f}", className="num"),
                    html.Td(f"{float((steps.scores[j] - best).exp()):.6f}", className="num"),
                    html.Td(f"{float(steps.weights[j]):.6f}", className="num weight"),
                ],
                **{"data-key": str(j)},
            )
        )
    return rows


def _summary_row(steps: HeadSteps, top: list[int]) -> html.Tr | None:
    """The keys not listed, summed (on long prompts thousands of them)."""
    readable = int(steps.allowed.sum())
    rest = readable - len(top)
    if rest <= 0:
        return None
    weight = float(steps.weights.sum()) - float(steps.weights[top].sum())
    return html.Tr(
        [
            html.Td(f"the other {rest:,} readable keys", colSpan=6),
            html.Td(f"{weight:.6f} in all", className="num"),
        ],
        className="rest",
    )


def _scaling(steps: HeadSteps) -> str:
    if steps.standard_scaling:
        text = (
            f"Step 3, scale: multiply each dot product by 1/√{steps.d_head} = "
            f"{steps.scaling:.4f} (d_head = {steps.d_head}), so that scores do not grow with the "
            "vector length."
        )
    else:
        text = (
            f"Step 3, scale: this model multiplies each dot product by {steps.scaling:g} (not the "
            f"usual 1/√{steps.d_head})."
        )
    if steps.softcap is not None:
        text += (
            f" Then soft-cap: score = {steps.softcap:g} · tanh(scaled / {steps.softcap:g}), which "
            f"keeps every score between −{steps.softcap:g} and {steps.softcap:g}."
        )
    return text


def _mask(steps: HeadSteps) -> str:
    tokens, readable = steps.allowed.shape[0], int(steps.allowed.sum())
    later = tokens - steps.position - 1
    text = "Step 4, mask: a token may read only itself and the tokens before it (a causal mask), "
    text += (
        f"so the scores of the {later:,} later tokens are set to −∞ and get weight 0"
        if later
        else "and this is the last token, so no key is masked here"
    )
    hidden = steps.position + 1 - readable
    if hidden:
        text += f"; {hidden:,} earlier tokens are outside this layer's local window and hidden too"
    return text + f". {readable:,} keys remain."


def _gqa(steps: HeadSteps) -> str | None:
    if steps.group == 1:
        return None
    others = [h for h in steps.group_heads if h != steps.head]
    return (
        f"Grouped-query attention: this query head reads key/value head {steps.kv_head} of "
        f"{steps.kv_heads}, shared with heads "
        + ", ".join(head_name(steps.layer, h) for h in others)
        + ". They see the same keys and values below; only their queries differ."
    )


def explain(analysis: Analysis, steps: HeadSteps, top: int = TOP) -> list:
    """The step view of one head and query token."""
    listed = steps.top(top)
    card = analysis.lm.card
    where = (
        "after the rotary position rotation, as the model used it"
        if card.rotary
        else "as the model used it"
    )
    best = float(steps.scores.max())
    total = float((steps.scores - best).exp().sum())
    parts = [
        html.P(
            [
                html.Strong(head_name(steps.layer, steps.head)),
                f", query token {steps.position} ",
                token(analysis, steps.position),
                ": where does it read from, and why?",
            ],
            className="steps-title",
        ),
        html.Ol(
            [
                html.Li(
                    [
                        f"Step 1, query: the query vector q of this token ({where}): ",
                        *(
                            [f"this model first normalizes them: {steps.qk_norm}. "]
                            if steps.qk_norm
                            else []
                        ),
                        vector(steps.query),
                        ". Each earlier token j has a key vector k_j made the same way.",
                    ]
                ),
                html.Li(
                    "Step 2, match: the dot product q · k_j of the query with every key: large "
                    "when they point the same way (column q · k below)."
                ),
                html.Li(_scaling(steps)),
                html.Li(_mask(steps)),
                html.Li(
                    [
                        "Step 5, softmax: weight_j = exp(score_j − max) / Σ exp(score − max), "
                        f"with max = {best:.4f} and Σ = {total:.4f} over the readable keys; the "
                        "weights add up to ",
                        html.Span(f"{float(steps.weights.sum()):.6f}", className="mono"),
                        ". This row is the head's pattern row for this token.",
                    ]
                ),
                html.Li(
                    [
                        "Step 6, read: the head's output is the weighted sum Σ weight_j · v_j of "
                        "the value vectors: ",
                        vector(analysis.z[steps.layer, steps.position, steps.head]),
                        f". The {len(listed)} keys listed carry "
                        f"{float(steps.weights[listed].sum()):.1%} of the weight.",
                    ]
                ),
            ],
            className="steps",
        ),
    ]
    sink = sink_note(analysis, steps)
    if sink is not None:
        parts.insert(1, sink)
    gqa = _gqa(steps)
    if gqa:
        parts.append(html.P(gqa, className="hint gqa"))
    header = ["position", "key token", "key k_j", "q · k_j", "score (scaled)", "exp(score − max)"]
    rows = _key_rows(analysis, steps, listed)
    rest = _summary_row(steps, listed)
    parts.append(
        html.P(
            f"Steps 2 to 5 for each key, the {len(listed)} largest weights first:",
            className="table-caption",
        )
    )
    parts.append(
        html.Table(
            [
                html.Thead(html.Tr([html.Th(h) for h in [*header, "weight"]])),
                html.Tbody(rows + ([rest] if rest else [])),
            ],
            className="table steps-table",
            id="steps-table",
        )
    )
    return parts


def values_table(analysis: Analysis, steps: HeadSteps, top: int = TOP) -> list:
    """Step 6 for the keys read most: their value vectors, weighted."""
    listed = steps.top(top)
    rows = [
        html.Tr(
            [
                html.Td(token(analysis, j)),
                html.Td(f"{float(steps.weights[j]):.4f}", className="num"),
                html.Td(vector(steps.values[j], 4)),
                html.Td(vector(steps.weights[j] * steps.values[j], 4)),
            ]
        )
        for j in listed[:4]
    ]
    head = ["key token", "weight", "value v_j", "weight · v_j"]
    return [
        html.P(
            "Step 6 for the keys read most: each value vector v_j, scaled by its weight; the sum "
            "over every readable key is the output above (computed here: "
            f"{float(steps.output.norm()):.3f} long).",
            className="table-caption",
        ),
        html.Table(
            [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
            className="table values-table",
            id="values-table",
        ),
    ]


OUTPUTS = (
    Output("head-steps", "children"),
    Output("attn-query", "value"),
    Output("attn-query", "max"),
    Output("attn-query-shown", "data"),
    Output("head-steps-values", "children", allow_duplicate=True),
    Output("head-steps-asked", "data"),
)


def draw(analysis: Analysis | None, data: dict | None, focus: dict | None, current, current_max):
    """Steps 1-5 and the query box (`OUTPUTS`; `current`, `current_max`: the box's value and
    max now); step 6's values follow in their own request (`head-steps-asked`), only when a head
    is open: a new analysis without one costs no second round trip."""
    if analysis is None:
        return html.P(EMPTY, className="empty"), None, None, None, [], no_update
    chosen = focused_head(analysis, focus)
    position = chosen_position(analysis, focus)
    job = None  # no token chosen: the open head's job row, else the last token
    if position is None and chosen is not None:
        job = position = job_position(analysis, *chosen)
    if position is None:
        position = len(analysis.tokens) - 1
    last = len(analysis.tokens) - 1
    box = (  # unchanged values are not rewritten: no round trip to `pick` for nothing
        no_update if position == current else position,
        no_update if last == current_max else last,
        position,
    )
    if chosen is None:
        return html.P(EMPTY, className="empty"), *box, [], no_update
    try:
        steps = head_steps(analysis, *chosen, position, with_values=False)
    except LmscopeError as error:
        return html.P(str(error), className="message error"), *box, [], no_update
    asked = {"id": data["id"], "head": list(chosen), "position": position}
    view = explain(analysis, steps)
    if job is not None:
        view.insert(1, job_note(analysis, *chosen, job))
    return static(view), *box, no_update, asked


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("head-steps-values", "children"),
        Input("head-steps-asked", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def draw_values(asked, data):
        """After steps 1-5: the values cost a forward pass up to the head's layer."""
        analysis = service.stored(data)
        if analysis is None or not asked or asked.get("id") != data.get("id"):
            return no_update
        try:
            steps = head_steps(analysis, *asked["head"], asked["position"])
        except LmscopeError as error:
            return html.P(str(error), className="message error")
        return static(values_table(analysis, steps))

    app.clientside_callback(  # in the browser: a new analysis rewrites the box for nothing
        """function (position, shown, focus) {
            // A position typed into the box becomes the page's; the one `draw` wrote there does
            // not (it would overwrite a position a link or another view set meanwhile).
            if (!Number.isInteger(position) || position === shown ||
                position === (focus || {}).position) {
                return window.dash_clientside.no_update;
            }
            return Object.assign({}, focus || {}, {position: position});
        }""",
        Output("focus", "data", allow_duplicate=True),
        Input("attn-query", "value"),
        State("attn-query-shown", "data"),
        State("focus", "data"),
        prevent_initial_call=True,
    )
