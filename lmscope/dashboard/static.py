"""Static parts of the page (tables, the glossary) as ONE Dash component each.

Dash's renderer checks every mounted component on every update of the page, so a table of 50
cells made each Analyze slower. `static(tree)` takes a tree of plain `dash.html` components that
no callback reads or writes inside, and sends it as JSON in one `data-static` attribute;
assets/static.js builds the DOM from it. Text only ever goes to text nodes; attributes are a
short list (no event handlers, links only within this site).
"""

from __future__ import annotations

import json

from dash import html
from dash.development.base_component import Component

# props copied to the DOM (Dash names; `className` becomes `class`), besides data-* and aria-*
ATTRIBUTES = (
    "id",
    "className",
    "title",
    "role",
    "href",
    "target",
    "rel",
    "colSpan",
    "rowSpan",
    "scope",
    "hidden",
)


def same_site(href: str) -> bool:
    """A link within the page (`#...`) or to a path of this server (`/terms/...`), not beyond."""
    return href.startswith("#") or (href.startswith("/") and not href.startswith("//"))


def node(tree: object) -> object:
    """`tree` as JSON: strings for text, lists for siblings, `[tag, attrs, children]` elements."""
    if tree is None or isinstance(tree, bool):
        return None
    if isinstance(tree, str | int | float):
        return str(tree)
    if isinstance(tree, list | tuple):
        return [node(child) for child in tree]
    if not isinstance(tree, Component) or tree._namespace != "dash_html_components":
        raise TypeError(f"static() takes plain html components, not {type(tree).__name__}")
    props = tree.to_plotly_json()["props"]
    if not isinstance(props.get("id", ""), str):
        raise TypeError("static() parts have no callbacks: string ids only")
    attrs = {k: v for k, v in props.items() if k in ATTRIBUTES or k.startswith(("data-", "aria-"))}
    if "href" in attrs and not same_site(str(attrs["href"])):
        raise ValueError("static() links stay within this site")
    if "style" in props:
        attrs["style"] = props["style"]
    return [tree._type.lower(), attrs, node(props.get("children"))]


def static(tree: object, **props) -> html.Div:
    """`tree` drawn in the browser by assets/static.js, inside one Div (`props` are the Div's)."""
    data = json.dumps(node(tree), ensure_ascii=False, separators=(",", ":"))
    return html.Div(**{"data-static": data}, **props)
