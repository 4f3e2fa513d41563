"""Past runs on the page: the index as a table; a run opened as a heatmap of one quantity's mean
over the prompts (the 95% interval in the hover), a clicked cell's value on every prompt, and any
prompt of the run opened in the analysis above (the page's prompt set and analyzed)."""

from __future__ import annotations

from urllib.parse import urlencode

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update, set_props

from ...core.errors import LmscopeError
from ...service import Service
from ..stages import HIDDEN, SHOWN, graph
from .figures import cell_name, distribution, mean_map
from .start import message

LISTED = 20  # newest runs in the table
PREFERRED = ("atp", "exact", "head", "lens", "change", "induction")  # opened first, where present


def layout() -> list:
    return [
        dcc.Store(id="runs-changed"),  # a run started or ended: the table is read again
        dcc.Store(id="runs-opened"),  # {"id": run id} shown below the table
        dcc.Store(id="runs-scroll"),  # the row last opened in the analysis
        dcc.Store(id="runs-scrolled"),  # ... once the page has scrolled to it
        html.H3("Runs on this machine"),
        html.Div(
            [
                html.Span(
                    "Started here, with lmscope run, or saved from the panel above.",
                    className="hint",
                ),
                html.Button("Refresh", id="runs-refresh", className="button secondary"),
            ],
            className="row",
        ),
        html.Div(id="runs-list"),
        html.Div(id="runs-opened-head"),
        html.Div(
            [
                html.Label("Quantity", htmlFor="runs-quantity", className="field-label"),
                dcc.Dropdown(
                    id="runs-quantity", clearable=False, searchable=False, className="model-picker"
                ),
            ],
            className="row",
            id="runs-quantity-row",
            hidden=True,
        ),
        graph(
            "runs-mean",
            "lmscope-run-mean",
            "Heatmap of one quantity's mean over the run's "
            "prompts, per layer and head or position; the hover gives its 95% interval.",
        ),
        graph(
            "runs-cell",
            "lmscope-run-cell",
            "Each prompt's value of the clicked cell, with the mean and its 95% interval.",
        ),
        html.Div(
            [
                html.Label(
                    [
                        "Open row ",
                        dcc.Input(
                            id="runs-prompt-row",
                            type="number",
                            min=1,
                            step=1,
                            className="model-custom",
                        ),
                    ],
                    className="field-label",
                ),
                html.Button("in the analysis", id="runs-prompt-open", className="button secondary"),
                html.Span(
                    "or click a point above: the page analyzes that prompt.", className="hint"
                ),
            ],
            className="row",
            id="runs-prompt-row-box",
            hidden=True,
        ),
        html.Div(id="runs-skipped"),
    ]


def runs_table(listed: list[dict]) -> html.Table | html.P:
    if not listed:
        return html.P("No runs yet.", className="hint")
    header = html.Tr([html.Th(t) for t in ("run", "experiment", "model", "data", "prompts",
                                            "status", "updated", "")])  # fmt: skip
    rows = []
    for run in listed[:LISTED]:
        prompts = f"{run['done']:,} / {run['total']:,}"
        if run["skipped"]:
            prompts += f" ({run['skipped']:,} skipped)"
        rows.append(
            html.Tr(
                [
                    html.Td(run["id"], className="mono"),
                    html.Td(run["experiment"]),
                    html.Td(run["model"], className="mono"),
                    html.Td(run["data"]),
                    html.Td(prompts),
                    html.Td(run["status"]),
                    html.Td(run["updated"].replace("T", " ")[:19]),
                    html.Td(
                        html.Button(
                            "Open",
                            id={"kind": "run-open", "id": run["id"]},
                            className="button secondary",
                        )
                    ),
                ],
                **{"data-run": run["id"]},
            )
        )
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="runs-table")


def opened_head(status: dict, results: dict) -> html.Div:
    """What the opened run is: experiment, model, data, settings, counts, how positions align."""
    settings = ", ".join(f"{k} {v}" for k, v in status["settings"].items() if v is not None)
    agreement = results.get("agreement")
    positions = ""
    if any(axes[1] == "position" for axes in results["cells_by"].values()):
        positions = "; positions " + results["positions"]
    lines = [
        html.H4(f"Run {status['id']}: {status['experiment']} on {status['model']}, "
                f"{status['data']}"),
        html.P(f"{status['progress']['line']}; settings: {settings or 'none'}{positions}.",
               className="hint"),
    ]  # fmt: skip
    if agreement:
        lines.append(
            html.P(
                f"AtP against exact over {agreement['pairs']:,} (prompt, cell) pairs: Spearman "
                f"{agreement['spearman']:.3f}, same sign {agreement['same_sign']:.0%}.",
                id="runs-agreement",
            )
        )
    return html.Div(lines, id="runs-opened-summary", **{"data-run": status["id"]})


def skipped_view(status: dict) -> list:
    rows = status.get("skipped_rows") or []
    if not rows:
        return []
    items = [html.Li(f"row {r['row']}: {r['reason']}") for r in rows]
    return [html.P(f"{status['skipped']:,} rows skipped:", className="hint"), html.Ul(items)]


def default_quantity(cells: dict) -> str:
    grids = [q for q, axes in cells.items() if axes[0] is not None]
    for name in PREFERRED:
        if name in grids:
            return name
    return (grids or list(cells))[0]


def register(app: Dash, service: Service) -> None:
    runs = service.runs

    @app.callback(
        Output("runs-list", "children"),
        Input("runs-changed", "data"),
        Input("runs-refresh", "n_clicks"),
    )
    def list_runs(_changed, _clicks):
        return runs_table(runs.list())

    @app.callback(
        Output("runs-opened", "data"),
        Input({"kind": "run-open", "id": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def open_run(clicks):
        if not isinstance(ctx.triggered_id, dict) or not any(clicks or []):
            return no_update
        return {"id": ctx.triggered_id["id"]}

    @app.callback(
        Output("runs-opened-head", "children"),
        Output("runs-quantity", "options"),
        Output("runs-quantity", "value"),
        Output("runs-quantity-row", "hidden"),
        Output({"kind": "figure", "name": "runs-mean"}, "figure"),
        Output({"kind": "figure", "name": "runs-mean"}, "style"),
        Output({"kind": "figure", "name": "runs-cell"}, "style"),
        Output("runs-prompt-row-box", "hidden"),
        Output("runs-skipped", "children"),
        Input("runs-opened", "data"),
        Input("runs-quantity", "value"),
        prevent_initial_call=True,
    )
    def show_run(opened, quantity):
        """A run opened (its default quantity), or another quantity of it chosen."""
        if not opened:
            return (no_update,) * 9
        try:
            status = runs.status(opened["id"], detail=True)
            results = runs.results(opened["id"])
        except LmscopeError as error:
            return (message(str(error)), *(no_update,) * 8)
        cells = results["cells_by"]
        if ctx.triggered_id == "runs-opened" or quantity not in cells:
            quantity = default_quantity(cells)
        rows = [r for r in results["cells"] if r["quantity"] == quantity]
        prompts = max((r["n"] for r in rows), default=0)
        figure = mean_map(rows, quantity, cells[quantity], prompts, status["done"])
        return (
            opened_head(status, results),
            list(cells),
            quantity,
            False,
            figure,
            SHOWN,
            HIDDEN,
            False,
            skipped_view(status),
        )

    @app.callback(
        Output({"kind": "figure", "name": "runs-cell"}, "figure"),
        Output({"kind": "figure", "name": "runs-cell"}, "style", allow_duplicate=True),
        Input({"kind": "figure", "name": "runs-mean"}, "clickData"),
        State("runs-opened", "data"),
        State("runs-quantity", "value"),
        prevent_initial_call=True,
    )
    def show_cell(click, opened, quantity):
        """A clicked cell's value on every prompt of the run."""
        if not click or not click.get("points") or not opened:
            return no_update, no_update
        point = click["points"][0]
        layer, column = int(point["y"]), int(point["x"])
        try:
            found = runs.cell(opened["id"], quantity, layer, column)
            results = runs.results(opened["id"])
            texts = runs.prompts(opened["id"], found["prompt_ids"])
        except LmscopeError:
            return no_update, no_update
        summary = next((r for r in results["cells"] if r["quantity"] == quantity
                        and r["layer"] == layer and r["column"] == column), {})  # fmt: skip
        name = cell_name(quantity, results["cells_by"][quantity], layer, column)
        prompts = {pid: fields.get("prompt", "") for pid, fields in texts.items()}
        figure = distribution(name, found["prompt_ids"], found["values"], prompts, summary)
        return figure, SHOWN

    @app.callback(
        Output("url", "search", allow_duplicate=True),
        Output("runs-message", "children", allow_duplicate=True),
        Input({"kind": "figure", "name": "runs-cell"}, "clickData"),
        Input("runs-prompt-open", "n_clicks"),
        State("runs-prompt-row", "value"),
        State("runs-opened", "data"),
        prevent_initial_call=True,
    )
    def open_prompt(click, _clicks, row, opened):
        """A prompt of the run in the analysis above: the page's prompt set and analyzed on the
        run's model (through the page's link handling), its answer and wrong token as the panel's
        targets."""
        if ctx.triggered_id == "runs-prompt-open":
            prompt_id = int(row) if isinstance(row, int | float) else None
        else:
            points = (click or {}).get("points") or []
            prompt_id = int(points[0]["x"]) if points else None
        if prompt_id is None or not opened:
            return no_update, no_update
        try:
            fields = runs.prompts(opened["id"], [prompt_id]).get(prompt_id)
            model = runs.status(opened["id"])["model"]
        except LmscopeError as error:
            return no_update, message(str(error))
        if not fields or not isinstance(fields.get("prompt"), str):
            return no_update, message(f"Row {prompt_id} is not a prompt of this run.")
        for field, control in (("answer", "inv-target"), ("wrong", "inv-wrong")):
            value = fields.get(field)
            shown = str(value).replace(" ", "␣") if value is not None else ""
            set_props(control, {"value": shown})
        search = "?" + urlencode({"model": model, "prompt": fields["prompt"]})
        set_props("runs-scroll", {"data": prompt_id})
        return search, message(f"Row {prompt_id} opened in the analysis above.", ok=True)

    app.clientside_callback(  # the analysis opened is where the reader goes
        """function (row) {
            if (row) { document.getElementById("prompt").scrollIntoView({block: "center"}); }
            return row;
        }""",
        Output("runs-scrolled", "data"),
        Input("runs-scroll", "data"),
        prevent_initial_call=True,
    )
