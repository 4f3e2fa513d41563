"""A run's figures, built on the server from its aggregates and stored rows: the mean of one
quantity over the prompts as a heatmap (its 95% interval and n in the hover), and one cell's value
on every prompt (a click on a point opens that prompt). Text goes through `plot_text`, margins
through `tick_room`, as in `dashboard.figures`."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from ..figures import _clip, _style, plot_text, tick_room
from ..terms import counted

PROMPT_SHOWN = 80  # characters of a prompt in a hover


def column_name(axes: list, column: int) -> str:
    """`H5`, `position 3`, `3 from the end` (-3), or the quantity's one value (`-1`)."""
    if axes[1] == "head":
        return f"H{column}"
    if axes[1] == "position":
        return f"position {column}" if column >= 0 else f"{-column} from the end"
    return "value"


def cell_name(quantity: str, axes: list, layer: int, column: int) -> str:
    """`atp L3-H5`, `lens L2`, `clean` (a per-prompt number)."""
    if axes[0] is None:
        return quantity
    where = f"L{layer}" + (f"-H{column}" if axes[1] == "head" else "")
    if axes[1] == "position":
        where += f" @ {column_name(axes, column)}"
    return f"{quantity} {where}"


def mean_map(rows: list[dict], quantity: str, axes: list, prompts: int, done: int) -> go.Figure:
    """The mean over prompts of each cell of `quantity` (`rows`: its aggregate cells; `prompts`
    the most any cell counts, of the `done` prompts measured); x and y are the cells' own column
    and layer numbers, so a click names the cell."""
    layers = sorted({r["layer"] for r in rows})
    columns = sorted({r["column"] for r in rows})
    at = {(r["layer"], r["column"]): r for r in rows}
    z, hover = [], []
    for layer in layers:
        z.append([_number(at.get((layer, c), {}).get("mean")) for c in columns])
        hover.append([_hover(at.get((layer, c)), axes) for c in columns])
    values = [v for row in z for v in row if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    diverging = low < 0 < high
    limit = max(abs(low), abs(high)) or 1.0
    names = [column_name(axes, c) for c in columns]
    ylabels = [f"L{layer}" if layer >= 0 else plot_text(quantity) for layer in layers]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=layers,
            customdata=hover,
            colorscale="RdBu" if diverging else "Blues",
            zmid=0 if diverging else None,
            zmin=-limit if diverging else None,
            zmax=limit if diverging else None,
            xgap=1,
            ygap=1,
            colorbar=dict(title="mean"),
            hovertemplate="%{customdata[0]}<br>mean %{z:.4g}, 95% interval "
            "[%{customdata[1]}, %{customdata[2]}]<br>std %{customdata[3]}, n %{customdata[4]}"
            "<extra></extra>",
        )
    )
    ticks = [plot_text(name) for name in names]
    step = max(1, -(-len(ticks) // 48))
    fig.update_xaxes(
        tickmode="array",
        tickvals=columns[::step],
        ticktext=ticks[::step],
        title=axes[1] or "",
        tickangle=-45 if axes[1] == "position" else 0,
    )
    fig.update_yaxes(
        tickmode="array", tickvals=layers, ticktext=ylabels, title="layer" if axes[0] else "",
        autorange="reversed",
    )  # fmt: skip
    title = f"{quantity}: mean over {counted(prompts, 'prompt')}"
    if prompts < done:  # e.g. induction on prompts that repeat no token: not applicable there
        title += (
            f" of {done:,} (click a cell); the other {counted(done - prompts, 'prompt')} give no "
            "value here: the score does not apply on them"
        )
    else:
        title += " (click a cell)"
    margin = dict(
        l=tick_room(ylabels, across=True, title=bool(axes[0])),
        r=10,
        t=40,
        b=tick_room(ticks, across=False, angle=-45 if axes[1] == "position" else 0, title=True),
    )
    height = min(760, max(240, 130 + 26 * len(layers)))
    return _style(fig, height, title=title, margin=margin)


def distribution(
    name: str, prompt_ids: list[int], values: list[float], prompts: dict[int, str], summary: dict
) -> go.Figure:
    """One cell's value on every prompt (x: the prompt's row), its mean and 95% interval drawn
    across; a point's hover shows its prompt, as text."""
    texts = [plot_text(_clip(prompts.get(p, ""), PROMPT_SHOWN)) for p in prompt_ids]
    fig = go.Figure(
        go.Scatter(
            x=prompt_ids,
            y=[round(v, 6) for v in values],
            mode="markers",
            marker=dict(size=8, color="#2f6fad"),
            customdata=texts,
            hovertemplate="row %{x}: %{y:.4g}<br>%{customdata}<br>(click: open it above)"
            "<extra></extra>",
        )
    )
    mean, low, high = (summary.get(k) for k in ("mean", "ci_low", "ci_high"))
    if _number(low) is not None and _number(high) is not None:
        fig.add_hrect(y0=low, y1=high, fillcolor="#e15759", opacity=0.12, line_width=0)
    if _number(mean) is not None:
        fig.add_hline(y=mean, line=dict(color="#e15759", width=2))
    fig.update_xaxes(title="prompt (row of the dataset)")
    fig.update_yaxes(title=plot_text(name))
    title = f"{name} on each prompt: mean (line) and its 95% interval (band)"
    margin = dict(l=tick_room(["-0.0000"], across=True, title=True), r=10, t=40,
                  b=tick_room((), across=False, title=True))  # fmt: skip
    return _style(fig, 320, title=title, margin=margin)


def _number(value: object) -> float | None:
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def _hover(row: dict | None, axes: list) -> list:
    if row is None:
        return ["", "n/a", "n/a", "n/a", 0]
    fmt = [f"{v:.4g}" if _number(v) is not None else "n/a" for v in
           (row["ci_low"], row["ci_high"], row["std"])]  # fmt: skip
    return [plot_text(cell_name(row["quantity"], axes, row["layer"], row["column"])),
            *fmt, row["n"]]  # fmt: skip
