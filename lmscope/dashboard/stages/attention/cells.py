"""A grid of head buttons drawn in the browser (assets/cellgrid.js) from one JSON attribute.

A model has hundreds of heads: as Dash components, each button slowed every update of the page
(the renderer checks each mounted component on each change), so the head grid and the model view
cost seconds of the browser's time per analysis. Here a grid is ONE component; a click on a cell
writes `{"layer", "head", "at"}` into the store named by `pick`. Text only ever goes to
`textContent` and attributes, never parsed as markup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from dash import dcc, html


@dataclass
class Cell:
    """One head's button: its text, CSS classes, tooltip, inline style, `data-*` attributes and
    an optional image (src, alt)."""

    layer: int
    head: int
    text: str = ""
    classes: str = ""
    title: str = ""
    style: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    image: tuple[str, str] | None = None

    def to_json(self) -> dict:
        cell = {"l": self.layer, "h": self.head, "t": self.text, "c": self.classes}
        cell |= {"title": self.title, "s": self.style, "d": self.data}
        if self.image:
            cell["img"], cell["alt"] = self.image
        return cell


def cell_grid(cells: list[list[Cell]], *, pick: str, label: str, classes: str, columns: str):
    """`cells[layer][head]` as a roving-tabindex grid (rows L0.., columns H0..) whose clicks land
    in `dcc.Store(id=pick)`; `columns` is the CSS grid template."""
    heads = len(cells[0]) if cells else 0
    grid = {"cells": [[c.to_json() for c in row] for row in cells]}
    return html.Div(
        className=f"{classes} roving-grid",
        role="group",
        style={"gridTemplateColumns": columns},
        **{
            "aria-label": label,
            "data-cols": str(heads),
            "data-pick": pick,
            "data-cells": json.dumps(grid, ensure_ascii=False, separators=(",", ":")),
        },
    )


def pick_store(pick: str) -> dcc.Store:
    """Where a grid's clicks land: `{"layer", "head", "at"}` (`at` makes each click new)."""
    return dcc.Store(id=pick)
