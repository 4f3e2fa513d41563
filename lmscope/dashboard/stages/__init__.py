"""One module per stage of the forward pass; each gives its section's layout and its callbacks."""

from __future__ import annotations

from dash import dcc, html

from ...api.service import Service
from ...core.analysis import Analysis
from ...core.errors import LmscopeError
from ..figures import graph_config


def stored(service: Service, data: dict | None) -> Analysis | None:
    """The analysis the page shows, from the server-side store (None before the first one, or
    once the store has evicted it: the stages then ask for Analyze again)."""
    if not data or not data.get("id"):
        return None
    try:
        return service.store.get(data["id"])
    except LmscopeError:
        return None


def section(
    number: int, title: str, explain: str, *children, badge: str | None = None
) -> html.Section:
    """A stage: numbered heading, a plain-language explanation for a newcomer, then its views.

    `badge` replaces the "Stage n" label (panels that are not a stage of the forward pass).
    """
    return html.Section(
        [
            html.H2([html.Span(badge or f"Stage {number}", className="stage-number"), title]),
            html.P(explain, className="explain"),
            *children,
        ],
        id=f"stage-{number}",
        className="stage",
    )


def ready(key: str) -> html.Span:
    """An invisible marker: this stage is drawn for analysis `key` (tests and benchmarks wait on it)."""
    return html.Span(className="stage-ready", **{"data-analysis": key})


def graph(graph_id: str, filename: str) -> dcc.Graph:
    """A figure slot, hidden until a callback fills it; its export settings follow the page's choice."""
    return dcc.Graph(
        id={"kind": "figure", "name": graph_id},
        config=graph_config(filename),
        figure={"data": [], "layout": {}},
        style={"display": "none"},
        className="figure",
    )


SHOWN = {"display": "block"}
HIDDEN = {"display": "none"}
