"""Each tab's long work on the page: a progress line with an estimate, a Cancel button, and a
heartbeat.

Every long callback (Analyze, the experiments) runs inside `service.jobs.job` (see
`service.jobs.ClientJobs`): the tab is the client. The status poll (`progress-poll`, always on:
every 2 s when the tab is idle, 0.4 s while it waits) shows the tab's jobs and records that the
tab is still open.
"""

from __future__ import annotations

import time

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update, set_props

from ..core.jobs import time_left
from ..service import Service
from ..service.jobs import CANCELLING

IDLE_POLL_MS, BUSY_POLL_MS = 2000, 400


def refusal(error: object, button: str | None) -> html.Div:
    """An error as the page shows it. Work refused for its estimated time (`CostLimitError` with
    `seconds`: it would show its progress and can be cancelled) is offered to run anyway, by the
    button whose press starts it (`button`)."""
    seconds = getattr(error, "seconds", None)
    if seconds is None or button is None:
        return html.Div(str(error), className="message error")
    return html.Div(
        [
            html.Span(str(error) + " "),
            html.Button(
                f"Run it anyway ({time_left(seconds).removesuffix(' left')}; it shows its "
                "progress and can be cancelled)",
                id={"kind": "run-anyway", "button": button},
                className="button secondary",
            ),
        ],
        className="message error confirm",
    )


def status_line() -> html.Div:
    """The status line under the model picker, with its Cancel button (shown while work runs)."""
    return html.Div(
        [
            html.Div(id="status", className="status", role="status"),
            html.Button("Cancel", id="cancel", className="button secondary", hidden=True),
        ],
        className="row status-row",
    )


def near(place: str) -> html.Div:
    """Progress and Cancel where work is started (`place`: a part of the page far from the status
    line, such as the Investigation panel): the tab's progress lines, copied in the browser from
    the status line, and a Cancel button; hidden while nothing runs."""
    return html.Div(
        [
            html.Div(id={"kind": "progress-near", "place": place}, className="status"),
            html.Button(
                "Cancel",
                id={"kind": "cancel-near", "place": place},
                className="button secondary",
            ),
        ],
        id={"kind": "progress-near-box", "place": place},
        className="row status-row progress-near",
        role="status",
        hidden=True,
    )


def poll() -> dcc.Interval:
    """The status poll: always on, so that the server knows the tab is still open."""
    return dcc.Interval(id="progress-poll", interval=IDLE_POLL_MS)


def register(app: Dash, service: Service) -> None:
    """The status poll and the Cancel button over the service's client jobs."""
    registry = service.jobs

    @app.callback(
        Output("status", "children"),
        Input("progress-poll", "n_intervals"),
        State("message", "children"),  # as State: a pending Analyze writes it, and Dash holds
        State("client", "data"),  # back every callback with an input that is pending
    )
    def status(_tick, _message, client):
        """The tab's progress lines; also its heartbeat, and the poll's pace."""
        if not isinstance(client, str):
            return ""
        lines = registry.poll(client)
        set_props("cancel", {"hidden": not lines})
        set_props("progress-poll", {"interval": BUSY_POLL_MS if lines else IDLE_POLL_MS})
        return f"… {' · '.join(lines)}" if lines else ""

    @app.callback(
        Output({"kind": "run-anyway", "button": ALL}, "disabled"),
        Input({"kind": "run-anyway", "button": ALL}, "n_clicks"),
        State("client", "data"),
        prevent_initial_call=True,
    )
    def run_anyway(clicks, client):
        """Long work confirmed: its button is pressed again, here, and that start is allowed past
        the time limit once (`ClientJobs.confirm`)."""
        trigger = ctx.triggered_id
        if not any(clicks) or not isinstance(trigger, dict) or not isinstance(client, str):
            return [no_update] * len(clicks)
        service.jobs.confirm(client, trigger["button"])
        set_props(trigger["button"], {"n_clicks": time.time_ns() // 1_000_000})
        return [bool(n) for n in clicks]

    app.clientside_callback(  # in the browser: the status line, copied near the work
        """function (line, hidden) {
            const places = dash_clientside.callback_context.outputs_list[0].length;
            const busy = Boolean(line) && !hidden;
            return [Array(places).fill(line || ""), Array(places).fill(!busy)];
        }""",
        Output({"kind": "progress-near", "place": ALL}, "children"),
        Output({"kind": "progress-near-box", "place": ALL}, "hidden"),
        Input("status", "children"),
        Input("cancel", "hidden"),
    )

    @app.callback(
        Output("status", "children", allow_duplicate=True),
        Input({"kind": "cancel-near", "place": ALL}, "n_clicks"),
        State("client", "data"),
        prevent_initial_call=True,
    )
    def cancel_near(clicks, client):
        """Cancel pressed near the work: the same as the status line's."""
        if not any(clicks) or not isinstance(client, str) or not registry.cancel(client):
            return no_update
        return f"… {CANCELLING}"

    @app.callback(
        Output("status", "children", allow_duplicate=True),
        Input("cancel", "n_clicks"),
        State("client", "data"),
        prevent_initial_call=True,
    )
    def cancel(_clicks, client):
        if not isinstance(client, str) or not registry.cancel(client):
            return no_update
        return f"… {CANCELLING}"
