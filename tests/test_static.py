"""Static parts of the page travel as JSON that assets/static.js turns into DOM: text stays text,
only the listed attributes pass, and nothing interactive can be wrapped by mistake."""

from __future__ import annotations

import json

import pytest
from dash import dcc, html

from lmscope.dashboard.static import node, static


def test_a_table_becomes_tags_attributes_and_plain_strings():
    table = html.Table(
        html.Tr([html.Td("<b>bold?</b>", className="mono", style={"color": "red"}), html.Td(3)]),
        id="t",
        **{"data-x": "1", "aria-label": "numbers"},
    )
    assert node(table) == [
        "table",
        {"id": "t", "data-x": "1", "aria-label": "numbers"},
        ["tr", {}, [["td", {"className": "mono", "style": {"color": "red"}}, "<b>bold?</b>"],
                    ["td", {}, "3"]]],
    ]  # fmt: skip
    holder = static(table, className="box")
    assert json.loads(holder.to_plotly_json()["props"]["data-static"]) == node(table)


def test_event_handlers_and_outside_links_do_not_pass():
    assert node(html.Span("x", n_clicks=3)) == ["span", {}, "x"]
    assert node(html.A("entry", href="#glossary-rope")) == [
        "a",
        {"href": "#glossary-rope"},
        "entry",
    ]
    assert node(html.A("terms", href="/terms/gemma3-270m"))[1] == {"href": "/terms/gemma3-270m"}
    for away in ("javascript:alert(1)", "//attacker.example/x", "https://attacker.example"):
        with pytest.raises(ValueError, match="within this site"):
            node(html.A("away", href=away))


def test_only_plain_html_without_callback_ids_can_be_static():
    with pytest.raises(TypeError):
        node(html.Div(dcc.Input(id="box")))
    with pytest.raises(TypeError):
        node(html.Button("x", id={"kind": "head", "layer": 0}))
