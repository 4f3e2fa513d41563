"""The Investigation panel: intervene (ablate heads, steer), attribute, generate, compare models.

One module per experiment (`ablation`, `attribution`, `steering`, `generation`, `comparison`,
...), each with its `layout()`, its callbacks and the ids of its result views; `panel` holds what
they share. Every result comes from `lmscope.experiments` on the analyzed prompt: these modules
only read the page's controls, call the library, and draw what it returns. Results (small JSON) are kept in the
browser for the "Download results" button; tensors stay on the server.
"""

from __future__ import annotations

import json

from dash import Dash, Input, Output, State, dcc, html, no_update

from ....service import Service
from ...progress import near
from .. import HIDDEN, section
from . import ablation, attribution, comparison, generation, patching, reproduce, steering
from .panel import Panel, Setting, button

NUMBER = 6
NOTHING_TO_DOWNLOAD = (
    "Nothing to download yet: run an experiment below first. Its results for this prompt (JSON) "
    "are kept for this button."
)
PARTS = (ablation, attribution, patching, steering, generation, comparison)
# What a shared link carries of the panel (dashboard/share.py): the "minus" token (the target is
# the page's focus), the open tab, and each part's settings; TAB_OF: a setting's control -> tab
URL_SETTINGS = (
    Setting("minus", "inv-wrong", str, None),
    Setting("tab", "inv-tabs", tuple(part.TAB for part in PARTS), PARTS[0].TAB),
    *(setting for part in PARTS for setting in part.URL_SETTINGS),
)
TAB_OF = {setting.control: part.TAB for part in PARTS for setting in part.URL_SETTINGS}
EXPLAIN = (
    "The stages above show what the model computes; here you change it ([[ablation]]) and see "
    "what happens. "
    "All experiments use the prompt analyzed above and follow one target token (the top "
    "prediction unless you pick another): its log-probability, or, with a second token after "
    "'minus', the logit difference logit(A) - logit(B) (e.g. ␣Mary minus ␣John). Nothing here "
    "changes the model for anyone else: every "
    "intervention applies to your request only."
)


def layout() -> html.Section:
    """Only the open tab's controls are mounted: every mounted component costs the page's
    renderer time on each update, and six experiments' controls were a third of the page."""
    parts = [_split(part.layout()) for part in PARTS]
    stores = [store for own, _ in parts for store in own]
    views = [rest for _, rest in parts]
    return section(
        NUMBER,
        "Investigate: change the model and watch",
        EXPLAIN,
        dcc.Store(id="inv-results", data={}),
        dcc.Download(id="inv-download"),
        html.Div(id="inv-message", role="alert"),
        html.Div(
            [
                html.Label("Target token", htmlFor="inv-target", className="field-label"),
                dcc.Input(
                    id="inv-target",
                    type="text",
                    placeholder="top prediction",
                    className="model-custom",
                ),
                html.Label("minus", htmlFor="inv-wrong", className="field-label"),
                dcc.Input(
                    id="inv-wrong",
                    type="text",
                    placeholder="nothing: log p(target)",
                    className="model-custom",
                ),
                html.Span("e.g. ␣Paris (␣ is a space) or 6342", className="hint"),
                html.Span(className="spacer"),
                button("Download results (JSON)", "inv-download-json"),
            ],
            className="row",
        ),
        *stores,
        near("investigate"),  # the experiments' progress and Cancel, here where they start
        dcc.Tabs(
            [_tab(part, rest) for part, rest in zip(PARTS, views, strict=True)],
            id="inv-tabs",
            value=PARTS[0].TAB,
            className="inv-tabs",
        ),
        badge="Investigate",
    )


def _tab(part, children: list) -> dcc.Tab:
    return dcc.Tab(children, label=part.TAB.capitalize(), value=part.TAB, id=f"inv-tab-{part.TAB}")


def _split(children: list) -> tuple[list, list]:
    """A part's stores and the rest: stores stay mounted outside the tabs (the attention grid, the
    tour and other tabs read them)."""
    stores = [child for child in children if isinstance(child, dcc.Store)]
    return stores, [child for child in children if not isinstance(child, dcc.Store)]


def register(app: Dash, service: Service) -> None:
    panel = Panel(service)
    for part in PARTS:
        part.register(app, panel)
    reproduce.register(app, service)
    bodies = [name for part in PARTS for name in part.BODIES]
    views = [name for part in PARTS for name in part.FIGURES]

    @app.callback(
        Output("inv-download", "data"),
        Output("inv-message", "children", allow_duplicate=True),
        Input("inv-download-json", "n_clicks"),
        State("inv-results", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def download(_clicks, results, data):
        if not results:  # said, not silently nothing
            return no_update, html.Div(NOTHING_TO_DOWNLOAD, className="message", role="status")
        name = (data or {}).get("model", "model").replace("/", "_")
        document = {"model": (data or {}).get("model"), "prompt": (data or {}).get("prompt")}
        text = json.dumps(document | results, ensure_ascii=False)
        return dcc.send_string(text, f"lmscope-{name}-investigate.json"), ""

    @app.callback(
        *(Output(body, "children", allow_duplicate=True) for body in bodies),
        *(Output({"kind": "figure", "name": v}, "style", allow_duplicate=True) for v in views),
        Output("inv-results", "data", allow_duplicate=True),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-gen-body", "children", allow_duplicate=True),
        Output("inv-gen-analysis", "data"),
        Input("analysis", "data"),
        State("client", "data"),
        State("inv-results", "data"),
        State("inv-gen-store", "data"),
        State("inv-tabs", "value"),
        prevent_initial_call=True,
    )
    def reset(data, client, results, generated, tab):
        """A new analysis: results of the previous prompt are no longer shown or downloaded
        (an empty store is left alone: rewriting it would redraw the tour's steps for nothing).
        The panel's one callback per Analyze: each costs the page's renderer time."""
        panel.follow(client, data)
        cleared = ([],) * len(bodies) + (HIDDEN,) * len(views)
        return (
            *cleared,
            {} if results else no_update,
            "",
            *generation.on_analysis(data, generated, tab),
        )
