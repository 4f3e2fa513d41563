"""The page's state in its URL, so that a link reopens exactly the view it was copied from.

The control callback (app.py) owns `?model=&prompt=` and ignores other keys. Here: what the user
looks at (`focus`: head, layer, token position, target) and the Investigation panel's state (its
"minus" token, open tab and every experiment's settings: `investigate.URL_SETTINGS`) join them as
`head=3.5&layer=3&pos=12&target=+Mary&minus=+John&tab=steering&scoef=6&gen=sample...`. A link's keys are read once when
the page opens and applied to the focus store when its first analysis arrives (`apply_link`, on
the server: they are checked against the model); the URL is written in the browser
(assets/share.js), so that an Analyze costs no round trip for it. Exported figures are named after
what they show (`export_name`).
"""

from __future__ import annotations

import json
import math
from urllib.parse import parse_qs

from dash import ClientsideFunction, Dash, Input, Output, Patch, State, dcc, no_update, set_props

from ..core.errors import RequestError
from ..experiments.inputs import parse_heads
from ..service import Service
from .stages.investigate import TAB_OF, URL_SETTINGS
from .stages.investigate.panel import Setting

MAX_TARGET = 200  # characters of a target a link may carry


def layout() -> list:
    """`share-pending`: the URL the page was opened with, until its analysis takes its keys;
    `share-apply`: the analysis that is to take them."""
    return [dcc.Store(id="share-pending", data=None), dcc.Store(id="share-apply", data=None)]


def query(search: str | None) -> dict[str, str]:
    parsed = parse_qs((search or "").lstrip("?"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() and len(text) < 10 else None


def focus_from(keys: dict[str, str], layers: int, heads: int, tokens: int) -> dict:
    """The link's focus, each key kept only if it names something this analysis has."""
    focus: dict = {}
    layer, _, head = (keys.get("head") or "").partition(".")
    layer, head = _int(layer), _int(head)
    if layer is not None and head is not None and layer < layers and head < heads:
        focus["head"] = [layer, head]
    if (value := _int(keys.get("layer"))) is not None and value < layers:
        focus["layer"] = value
    if (value := _int(keys.get("pos"))) is not None and value < tokens:
        focus["position"] = value
    if keys.get("target") and len(keys["target"]) <= MAX_TARGET:
        focus["target"] = keys["target"]
    return focus


def read(setting: Setting, text: str) -> object:
    """A setting's value from the URL's text, None where it cannot be one."""
    kind = setting.kind
    if kind == "heads":
        try:
            return [list(head) for head in parse_heads(text)]
        except RequestError:
            return None
    if isinstance(kind, tuple):
        return text if text in kind else None
    if kind is str:
        return text if len(text) <= MAX_TARGET else None
    try:
        value = kind(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def settings_from(keys: dict[str, str]) -> list[tuple[Setting, object]]:
    """The panel's controls a link sets, with their values (unreadable values left out)."""
    values = [(s, read(s, keys[s.key])) for s in URL_SETTINGS if s.key in keys]
    return [(setting, value) for setting, value in values if value is not None]


def export_name(name: str, model: str | None, focus: dict | None) -> str:
    """A figure's download name, after what it shows: `lmscope-smollm2-135m-instruct-L3H5-head-
    heatmap` for a head's view, `-pos12-top10` for a position's, the model (its id) always."""
    parts = ["lmscope"] + ([model.replace("/", "_").replace(":", "_")] if model else [])
    focus = focus or {}
    head, layer, position = focus.get("head"), focus.get("layer"), focus.get("position")
    if name.startswith("head") and isinstance(head, list | tuple) and len(head) == 2:
        parts.append(f"L{head[0]}H{head[1]}")
    elif name.startswith("layer") and isinstance(layer, int):
        parts.append(f"L{layer}")
    elif name in ("top10", "logit-lens") and isinstance(position, int):
        parts.append(f"pos{position}")
    return "-".join([*parts, name])


def register(app: Dash, service: Service) -> None:
    defaults = [[s.key, s.default, s.follows] for s in URL_SETTINGS]

    # Read at load from the browser: "client" is never written by a callback, so this runs before
    # the control callback's answer rewrites the URL to ?model=&prompt=.
    app.clientside_callback(
        ClientsideFunction("lmscope_share", "opened_with"),
        Output("share-pending", "data"),
        Input("client", "data"),
    )
    app.clientside_callback(
        ClientsideFunction("lmscope_share", "after_analysis"),
        Output("focus", "data", allow_duplicate=True),
        Output("share-apply", "data"),
        Input("analysis", "data"),
        State("share-pending", "data"),
        State("focus", "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Output("share-pending", "data", allow_duplicate=True),
        Input("share-apply", "data"),
        State("analysis", "data"),
        State("share-pending", "data"),
        prevent_initial_call=True,
    )
    def apply_link(_asked, data, pending):
        """The first analysis takes the link's focus and the panel's settings, each key kept only
        if it names something this analysis has."""
        analysis = service.stored(data)
        if analysis is None or (pending or {}).get("done"):
            return no_update, no_update
        keys = query((pending or {}).get("search"))
        lm = analysis.lm
        settings = settings_from(keys)
        for setting, value in settings:
            if setting.kind == "heads":
                value = [h for h in value if h[0] < lm.layers and h[1] < lm.heads]
            set_props(setting.control, {setting.prop: value})
        tabs = [TAB_OF[s.control] for s, _ in settings if s.control in TAB_OF]
        if tabs and "tab" not in keys:  # a link about an experiment opens where it is seen
            set_props("inv-tabs", {"value": tabs[0]})
        found = focus_from(keys, lm.layers, lm.heads, len(analysis.tokens))
        if found.get("target"):
            set_props("inv-target", {"value": found["target"].replace(" ", "␣")})
        if not found:  # an unchanged focus would draw every view following it again
            return no_update, {"search": "", "done": True}
        patch = Patch()
        for key, value in found.items():
            patch[key] = value
        return patch, {"search": "", "done": True}

    app.clientside_callback(  # the URL follows the view, once the link's keys have been applied
        "function () { return window.dash_clientside.lmscope_share.link(arguments, "
        f"{json.dumps(defaults)}); }}",
        Output("url", "search", allow_duplicate=True),
        Input("focus", "data"),
        Input("analysis", "data"),
        *(Input(s.control, s.prop) for s in URL_SETTINGS),
        State("share-pending", "data"),
        State("url", "search"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Input("inv-target", "value"),
        prevent_initial_call=True,
    )
    def follow_target(text):
        """The Investigation panel's target is the page's `focus.target` (␣ stands for a space)."""
        patch = Patch()
        patch["target"] = (text or "").replace("␣", " ")
        return patch
