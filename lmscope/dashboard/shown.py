"""Views drawn only while someone can see them: a closed glossary or a tour that is not running
costs no request (and no round of the renderer's updates) when the model or the analysis changes.

`while_shown` relays its sources into a store in the browser, and only while the view is shown;
the view's server callback takes that store as its one input.
"""

from __future__ import annotations

from dash import Dash, Input, Output

_RELAY = """function (shown) {
    if (!shown) { return window.dash_clientside.no_update; }
    return Array.prototype.slice.call(arguments, 1);
}"""


def while_shown(app: Dash, shown: Input, store: str, *sources: Input) -> None:
    """Write the values of `sources`, as a list, into the `dcc.Store` `store` when `shown` turns
    true and whenever a source changes while it is true; nothing while it is false."""
    app.clientside_callback(_RELAY, Output(store, "data"), shown, *sources)
