"""Starting a run from the page: a dataset file uploaded (its bytes read on the server, never a
path), the experiment and its settings (`runs.SETTINGS`, each with its default), then the run's
progress with its rate and estimate, and Cancel."""

from __future__ import annotations

import base64
import binascii

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from ...core.errors import LmscopeError
from ...runs.spec import EXPERIMENTS, SETTINGS, Setting
from ...service import Service
from ...service.runs import UPLOAD_BYTES

POLL_MS = 500
ACTIVE = ("starting", "loading", "running")
SETTING = "run-setting"  # pattern-matching id kind of each setting's control
FIRST = "profile"  # the experiment the form opens on


def layout() -> list:
    return [
        dcc.Store(id="runs-dataset"),  # the uploaded dataset's description (no path)
        dcc.Store(id="runs-watched"),  # the run started from this tab
        dcc.Interval(id="runs-poll", interval=POLL_MS, disabled=True),
        html.H3("Start a run on the loaded model"),
        dcc.Upload(
            html.Div(["Drop a dataset here, or ", html.Span("choose a file", className="link")]),
            id="runs-upload",
            accept=".jsonl,.ndjson,.csv,.parquet",
            max_size=UPLOAD_BYTES,
            className="runs-upload",
        ),
        html.P(
            f"A .jsonl, .csv or .parquet file of at most {UPLOAD_BYTES // 1000:,} KB, with a "
            "'prompt' column; 'corrupt' for patching; 'answer' and 'wrong' (one token each) for "
            "the metric, else the top prediction's log-probability. The file is read on the "
            "server and kept in its runs folder; larger datasets: lmscope run.",
            className="hint",
        ),
        html.Div(id="runs-upload-info"),
        html.Div(
            [
                html.Label("Experiment", htmlFor="runs-experiment", className="field-label"),
                dcc.Dropdown(
                    id="runs-experiment",
                    options=list(EXPERIMENTS),
                    value=FIRST,
                    clearable=False,
                    searchable=False,
                    className="model-picker",
                ),
                html.Label(
                    [
                        "first rows only ",
                        dcc.Input(
                            id="runs-limit",
                            type="number",
                            min=1,
                            step=1,
                            placeholder="all",
                            className="model-custom",
                        ),
                    ],
                    className="field-label",
                ),
            ],
            className="row",
        ),
        html.Div(settings_controls(FIRST), id="runs-settings", className="row runs-settings"),
        html.Div(
            [
                html.Button("Start the run", id="runs-start", className="button primary"),
                html.Button(
                    "Cancel the run", id="runs-cancel", className="button secondary", hidden=True
                ),
                html.Span(className="spacer"),
                html.Button(
                    "Save the analysis above as a run",
                    id="runs-save-analysis",
                    className="button secondary",
                    title="its head profile (every head's scores and category) on the analyzed "
                    "prompt, as a run of one prompt",
                ),
            ],
            className="row actions",
        ),
        html.Div(id="runs-message", role="alert"),
        html.Div(id="runs-progress", role="status"),
    ]


def setting_control(setting: Setting) -> html.Label:
    """One setting as a labelled control showing its default (a required one says so)."""
    name = {"kind": SETTING, "name": setting.name}
    if setting.choices:
        control = dcc.Dropdown(id=name, options=list(setting.choices), value=setting.default,
                               clearable=False, searchable=False, className="run-choice")  # fmt: skip
        controls = [control]
    elif setting.count > 1:
        controls = [
            dcc.Input(id={"kind": SETTING, "name": f"{setting.name}.{i}"}, type="text",
                      placeholder="AB"[i], className="model-custom")
            for i in range(setting.count)
        ]  # fmt: skip
    else:
        kind = "number" if setting.kind in (int, float) else "text"
        step = 1 if setting.kind is int else "any"
        controls = [dcc.Input(id=name, type=kind, value=setting.default, className="model-custom",
                              **({"step": step} if kind == "number" else {}))]  # fmt: skip
    if setting.required:
        default = "required"
    elif setting.default is None:
        default = "optional"
    else:
        default = f"default {setting.default}"
    return html.Label(
        [html.Span(setting.name.replace("_", " "), className="field-label"), *controls,
         html.Span(f"{setting.help} ({default})", className="hint")],
        className="run-setting",
    )  # fmt: skip


def settings_controls(experiment: str) -> list:
    """The experiment's settings form (in the page from the start for the first experiment)."""
    controls = [setting_control(s) for s in SETTINGS.get(experiment, ())]
    return controls or [html.Span(f"{experiment} has no settings.", className="hint")]


def read_settings(experiment: str, ids: list[dict], values: list) -> dict[str, object]:
    """The settings form's values, as `RunSpec` takes them (empty fields left out: defaults)."""
    known = {s.name: s for s in SETTINGS.get(experiment, ())}
    settings: dict[str, object] = {}
    for control, value in zip(ids, values, strict=True):
        name, _, part = control["name"].partition(".")
        if name not in known or value is None or value == "":
            continue
        setting = known[name]
        if part:
            settings.setdefault(name, ["", ""])[int(part)] = str(value)  # type: ignore[index]
        elif setting.kind is int and isinstance(value, float) and value.is_integer():
            settings[name] = int(value)
        else:
            settings[name] = value
    return settings


def progress_view(status: dict) -> html.Div:
    """`patch on demo, ioi.jsonl: 120 of 200 prompts, 14.2 prompts/s, about 5 s left`."""
    progress = status["progress"]
    return html.Div(
        [
            html.Strong(f"{status['experiment']} on {status['model']}, {status['data']}: "),
            html.Span(progress["line"], id="runs-progress-line"),
            *([html.Span(f" ({progress['message']})")] if progress.get("message") else []),
        ],
        className="status",
        **{"data-state": progress["state"], "data-run": status["id"]},
    )


def message(text: str, ok: bool = False) -> html.Div:
    return html.Div(text, className="message ok" if ok else "message error")


def register(app: Dash, service: Service) -> None:
    runs = service.runs

    @app.callback(
        Output("runs-dataset", "data"),
        Output("runs-upload-info", "children"),
        Input("runs-upload", "contents"),
        State("runs-upload", "filename"),
        prevent_initial_call=True,
    )
    def upload(contents, filename):
        """The file's bytes to the server, which reads and keeps it; what it holds, or why not."""
        if not isinstance(contents, str) or "," not in contents:
            return no_update, no_update
        try:
            content = base64.b64decode(contents.partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            return None, message("The file did not arrive whole; choose it again.")
        try:
            found = runs.upload(filename, content)
        except LmscopeError as error:
            return None, message(str(error))
        skipped = f", {found['unreadable']} unreadable" if found["unreadable"] else ""
        columns = ", ".join(found["columns"]) or "none of prompt, corrupt, answer, wrong"
        text = f"{found['name']}: {found['rows']:,} rows{skipped}; columns {columns}."
        return found, html.Div(text, className="message ok", id="runs-upload-summary")

    @app.callback(
        Output("runs-settings", "children"),
        Input("runs-experiment", "value"),
        prevent_initial_call=True,
    )
    def settings_form(experiment):
        return settings_controls(experiment)

    @app.callback(
        Output("runs-watched", "data"),
        Output("runs-message", "children"),
        Output("runs-poll", "disabled"),
        Input("runs-start", "n_clicks"),
        State("runs-dataset", "data"),
        State("runs-experiment", "value"),
        State({"kind": SETTING, "name": ALL}, "id"),
        State({"kind": SETTING, "name": ALL}, "value"),
        State("runs-limit", "value"),
        State("model", "data"),
        running=[(Output("runs-start", "disabled"), True, False)],
        prevent_initial_call=True,
    )
    def start(_clicks, dataset, experiment, ids, values, limit, model):
        if not dataset:
            return no_update, message("Upload a dataset first."), no_update
        settings = read_settings(experiment, ids, values)
        limit = int(limit) if isinstance(limit, int | float) and limit >= 1 else None
        try:
            status = runs.start(model["id"], dataset["dataset"], experiment, settings, limit)
        except LmscopeError as error:
            return no_update, message(str(error)), no_update
        return status["id"], "", False

    @app.callback(
        Output("runs-progress", "children"),
        Output("runs-cancel", "hidden"),
        Output("runs-poll", "disabled", allow_duplicate=True),
        Output("runs-changed", "data", allow_duplicate=True),
        Output("runs-opened", "data", allow_duplicate=True),
        Input("runs-poll", "n_intervals"),
        Input("runs-watched", "data"),
        prevent_initial_call=True,
    )
    def watch(_tick, run_id):
        """The watched run's progress; once it ends, the list is refreshed and the run opened."""
        if not run_id:
            return no_update, True, True, no_update, no_update
        try:
            status = runs.status(run_id)
        except LmscopeError as error:
            return message(str(error)), True, True, no_update, no_update
        active = status["status"] in ACTIVE
        changed = f"{run_id}:{status['status']}"
        if active:
            listed = changed if ctx.triggered_id == "runs-watched" else no_update
            return progress_view(status), False, False, listed, no_update
        return progress_view(status), True, True, changed, {"id": run_id}

    @app.callback(
        Output("runs-watched", "data", allow_duplicate=True),
        Output("runs-message", "children", allow_duplicate=True),
        Input("runs-save-analysis", "n_clicks"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def save_analysis(_clicks, data):
        """The analyzed prompt's head profile (`profile`), saved as a run of that one prompt."""
        if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
            return no_update, message("Analyze a prompt first.")
        try:
            status = runs.save_prompt(data.get("model"), {"prompt": data["prompt"]}, "profile", {})
        except LmscopeError as error:
            return no_update, message(str(error))
        return status["id"], message(f"Saved as run {status['id']}.", ok=True)

    @app.callback(
        Output("runs-message", "children", allow_duplicate=True),
        Input("runs-cancel", "n_clicks"),
        State("runs-watched", "data"),
        prevent_initial_call=True,
    )
    def cancel(_clicks, run_id):
        try:
            runs.cancel(run_id)
        except LmscopeError as error:
            return message(str(error))
        return message("Cancelling: the run stops at its next cancel point.", ok=True)
