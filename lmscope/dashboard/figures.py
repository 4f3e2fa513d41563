"""Plotly figures, each a pure function of an `Analysis`: built on the server, only what is shown.

Token axes are numeric positions labelled `index·token` (repeated tokens stay distinct); long
prompts label every n-th token.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from html import escape, unescape

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch
from plotly.subplots import make_subplots

from ..core.analysis import LENS_K, Analysis

# The house template is plotly's default in the dashboard's process: a figure takes the default as
# it is made, while naming the template in each layout validated all of it again (16 ms a figure,
# most of the time it took to build one).
pio.templates.default = "plotly_white"
FONT = dict(family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size=14)
MAX_TICKS = 48  # token labels per axis; longer prompts label every n-th token


def graph_config(filename: str, fmt: str = "png") -> dict:
    """Modebar settings: download as PNG or SVG under a telling file name, no plotly logo."""
    return {
        "displaylogo": False,
        "showSendToCloud": False,
        "modeBarButtonsToRemove": ["sendChartToCloud", "lasso2d", "select2d"],
        "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": 2},
    }


def _rounded(values: torch.Tensor, decimals: int = 4) -> list:
    """Short JSON numbers: float32 -> float64 first, so 0.1234 prints as 0.1234."""
    return values.detach().double().round(decimals=decimals).tolist()


def plot_text(text: str) -> str:
    """Text shown as itself in a figure: plotly reads `<b>`, `<a href>` and entities in labels,
    so `&`, `<` and `>` from a token, a model name or a prompt are written as entities."""
    return escape(text, quote=False)


def _clip(text: str, width: int = 12) -> str:
    """At most `width` characters, the cut marked with an ellipsis (cell labels)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def token_labels(analysis: Analysis, start: int = 0) -> list[str]:
    """Unique axis labels for the tokens from `start` on: `3·␣cat`."""
    return [plot_text(f"{t.index}·{t.display}") for t in analysis.tokens[start:]]


def token_ticks(analysis: Analysis, start: int = 0) -> dict:
    """A numeric position axis labelled with tokens; at most `MAX_TICKS` labels on long prompts.

    Numeric axes keep long prompts cheap to draw (a category per token makes plotly re-measure
    every label).
    """
    labels = token_labels(analysis, start)
    step = max(1, -(-len(labels) // MAX_TICKS))
    shown = range(0, len(labels), step)
    return dict(
        tickmode="array",
        tickvals=[start + i for i in shown],
        ticktext=[labels[i] for i in shown],
    )


def percent(p: float) -> str:
    """A probability for people: 12.3%, and tiny ones still readable (3.2e-05, not 0.0%)."""
    return f"{p:.1%}" if p >= 0.0005 else f"{p:.1e}"


def probability_format(top: float) -> str:
    """A tick format for a probability axis running up to `top` (tiny ones in scientific form)."""
    return ".0%" if top >= 0.1 else (".1%" if top >= 0.005 else ".1e")


# Character widths in ems, generous for the sans-serif fonts browsers pick for FONT (checked against
# Chromium's own measurement in the browser tests).
_NARROW = frozenset(" !'(),-./:;I[]fijlrt|·")
_WIDE_LATIN = frozenset("%@MWmw")


# The widest a title may run: in a figure across the page, and in one of half the page (`two-col`)
WIDE_TITLE_ROOM = 760
TITLE_ROOM = 430
TITLE_SIZE = 17  # px


def _ems(char: str) -> float:
    if char in _NARROW:
        return 0.4
    if char in _WIDE_LATIN or unicodedata.east_asian_width(char) in "WF":
        return 1.05
    if char.isupper():
        return 0.8
    if char.isascii() and char.isalnum():
        return 0.68
    return 0.95 if char.isalnum() else 1.0  # other scripts; symbols such as ␣ and ↵


def text_width(text: str, size: int = FONT["size"]) -> float:
    """At least the width in pixels of `text` (as plotly gets it, entities and all) in FONT."""
    return size * sum(_ems(char) for char in unescape(text))


def tick_room(labels: Iterable[str], *, across: bool, angle: int = 0, title: bool = False) -> int:
    """Pixels of margin an axis's tick labels and title take: `across` for a y axis (labels side
    by side with it), else an x axis with labels at `angle` (0 or -45 degrees).

    plotly_white's axes have `automargin`: plotly finds the room itself, but by drawing the figure,
    growing the margins and drawing it again (2-3x the time). Margins made of these leave it
    nothing to grow, so a figure is drawn once; automargin stays on for a label wider than this.
    """
    widest = max((text_width(label) for label in labels), default=0.0)
    line = FONT["size"] * 1.3
    if across:
        room = widest + 14  # and the gap plotly leaves between the labels and the plot
    elif angle:
        room = (widest + line) * math.sin(math.radians(abs(angle))) + 8
    else:
        room = line + 8
    return math.ceil(room + (line + 16 if title else 0)) + 4


def title_lines(text: str, room: float = TITLE_ROOM, size: int = TITLE_SIZE) -> list[str]:
    """A title broken at spaces into lines of at most `room` pixels (`text_width`), so that a
    long one (`Each head's direct effect on logit(' Mary') - logit(' John')`) is not cut."""
    lines: list[str] = []
    for word in text.split(" "):
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(joined, size) <= room:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines


def _style(fig: go.Figure, height: int, title_room: float = WIDE_TITLE_ROOM, **layout) -> go.Figure:
    """The house style; a `title` is plain text (it may quote a token or a model name), broken
    into lines of at most `title_room` pixels (`title_lines`), the top margin grown to hold them."""
    layout = {"margin": dict(l=10, r=10, t=40, b=10)} | layout
    if isinstance(layout.get("title"), str):
        lines = title_lines(layout["title"], title_room)
        text = "<br>".join(plot_text(line) for line in lines)
        layout["title"] = dict(text=text, font=dict(size=TITLE_SIZE))
        extra = round(TITLE_SIZE * 1.3 * (len(lines) - 1))
        layout["margin"] = dict(layout["margin"]) | {"t": layout["margin"].get("t", 40) + extra}
        height += extra
    fig.update_layout(font=FONT, height=height, **layout)
    return fig


LOG_SCALE_RATIO = 20  # colour by log10(norm) once the largest cell is this many times the median


def write_scale(norms: dict[str, torch.Tensor]) -> tuple[bool, str]:
    """Whether to colour residual writes by log10(norm), and the sentence that says so.

    `norms`: `(layers, T)` per sublayer. Real models write a few huge vectors at the first
    position (massive activations, ~22,000 in SmolLM2's MLPs against a median near 30): on a
    linear scale they leave every other cell dark.
    """
    stacked = torch.stack(list(norms.values()))
    top, median = float(stacked.max()), float(stacked.median()) or 1e-12
    if top < LOG_SCALE_RATIO * median:
        return False, "colour: norm, linear scale"
    kind, rest = divmod(int(stacked.argmax()), stacked[0].numel())
    layer, position = divmod(rest, stacked.shape[-1])
    return True, (
        f"colour: log scale (the largest write, {top:,.0f} by the {list(norms)[kind]} of L{layer} "
        f"at position {position}, is {top / median:,.0f}x the median {median:,.1f})"
    )


def residual_writes(analysis: Analysis) -> go.Figure:
    """How much attention and the MLP each wrote into the residual stream, per layer and position.

    Colour is the norm, on a log scale when a few cells dwarf the rest (see `write_scale`); the
    hover always gives the norm itself. Two stacked heatmaps sharing the x axis, laid out by hand
    in one figure (plotly's `make_subplots` and per-trace updates cost three times as much: this
    figure is built on every Analyze).
    """
    layers = [f"L{l}" for l in range(analysis.attn_norms.shape[0])]
    tokens = np.array([plot_text(t.display) for t in analysis.tokens], dtype=object)
    norms = {"attention": analysis.attn_norms, "MLP": analysis.mlp_norms}
    log, note = write_scale(norms)
    traces = []
    for row, (name, values) in enumerate(norms.items(), start=1):
        shown = values.clamp_min(1e-6).log10() if log else values
        hover = np.empty((*values.shape, 2), dtype=object)  # (token, norm) per cell
        hover[..., 0] = tokens
        hover[..., 1] = values.double().round(decimals=2).cpu().numpy()
        traces.append(
            go.Heatmap(
                z=_rounded(shown, 3 if log else 2),
                y=layers,
                customdata=hover,
                coloraxis="coloraxis",
                xaxis=f"x{row}" if row > 1 else "x",
                yaxis=f"y{row}" if row > 1 else "y",
                hovertemplate=f"{name} in %{{y}} at position %{{x}} (%{{customdata[0]}}): "
                "norm %{customdata[1]:,.2f}<extra></extra>",
            )
        )
    colorbar = dict(title="norm")
    if log:
        stacked = torch.stack(list(norms.values())).clamp_min(1e-6).log10()
        ticks = list(range(math.floor(float(stacked.min())), math.ceil(float(stacked.max())) + 1))
        colorbar.update(
            title="norm (log)", tickvals=ticks, ticktext=[f"{10.0**k:,g}" for k in ticks]
        )
    ticks = token_ticks(analysis)
    x_axis = dict(tickangle=-45, **ticks)
    titles = [
        dict(text=text, x=0.5, y=y, xref="paper", yref="paper", xanchor="center",
             yanchor="bottom", showarrow=False, font=dict(size=16))
        for text, y in (("attention wrote (norm)", 1.0), ("MLP wrote (norm)", 0.46))
    ]  # fmt: skip
    layout = dict(
        coloraxis=dict(colorscale="Viridis", colorbar=colorbar),
        xaxis=dict(x_axis, anchor="y", matches="x2", showticklabels=False),
        yaxis=dict(anchor="x", domain=[0.54, 1.0]),
        xaxis2=dict(x_axis, anchor="y2"),
        yaxis2=dict(anchor="x2", domain=[0.0, 0.46]),
        annotations=titles,
    )
    height = 160 + 2 * 16 * len(layers)
    return _style(
        go.Figure(data=traces, layout=layout),
        max(360, height),
        title=dict(text=f"What each layer wrote into the residual stream<br><sup>{note}</sup>"),
        margin=dict(
            l=tick_room(layers, across=True),
            r=10,
            t=90,
            b=tick_room(ticks["ticktext"], across=False, angle=-45),
        ),
    )


def top_predictions(analysis: Analysis, k: int = 10, position: int | None = None) -> go.Figure:
    """The k most likely next tokens after `position` (default the last), most likely first."""
    preds = analysis.top_predictions(k, position)
    labels = [plot_text(f"{rank}. {p.to_dict()['display']}") for rank, p in enumerate(preds, 1)]
    fig = go.Figure(
        go.Bar(
            x=[round(p.probability, 6) for p in preds],
            y=labels,
            customdata=[p.id for p in preds],
            orientation="h",
            marker_color="#2f6fad",
            text=[percent(p.probability) for p in preds],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y} (id %{customdata})<br>probability %{x:.4f}<extra></extra>",
        )
    )
    top = preds[0].probability if preds else 1.0
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="probability", tickformat=probability_format(top), range=[0, top * 1.25])
    title = f"Top {k} next tokens{_after(analysis, position)}"
    margin = dict(
        l=tick_room(labels, across=True), r=30, t=40, b=tick_room((), across=False, title=True)
    )
    return _style(fig, 420, title=title, margin=margin)


def _after(analysis: Analysis, position: int | None) -> str:
    """' after token 7' in a title, when a figure reads a position other than the last."""
    last = len(analysis.tokens) - 1
    return (
        ""
        if position is None or position % len(analysis.tokens) == last
        else f" after token {position}"
    )


def logit_lens(analysis: Analysis, k: int = LENS_K, position: int = -1) -> go.Figure:
    """The next-token guess read off the residual stream after each layer (bottom: embeddings)."""
    rows = analysis.logit_lens(position, k=k)
    names = ["embeddings"] + [f"after L{l}" for l in range(len(rows) - 1)]
    fig = go.Figure(
        go.Heatmap(
            z=[[round(p.probability, 4) for p in row] for row in rows],
            x=[f"#{r}" for r in range(1, k + 1)],
            y=names,
            text=[[plot_text(_clip(p.to_dict()["display"])) for p in row] for row in rows],
            customdata=[[plot_text(p.to_dict()["display"]) for p in row] for row in rows],
            texttemplate="%{text}",
            textfont=dict(size=13),
            colorscale="Oranges",
            zmin=0,
            zmax=1,
            colorbar=dict(title="probability"),
            hovertemplate="%{y}, rank %{x}: %{customdata}<br>probability %{z:.4f}<extra></extra>",
        )
    )
    title = f"Logit lens: the guess, layer by layer{_after(analysis, position)}"
    margin = dict(l=tick_room(names, across=True), r=10, t=40, b=tick_room((), across=False))
    return _style(fig, 120 + 34 * len(rows), title=title, margin=margin)


def vector_strip(values: torch.Tensor, title: str) -> go.Figure:
    """A vector as one row of coloured cells (blue negative, red positive), with its colour scale."""
    limit = float(values.abs().max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=[_rounded(values, 3)],
            colorscale="RdBu_r",
            zmin=-limit,
            zmax=limit,
            colorbar=dict(
                title=dict(text="value", side="right"),
                thickness=12,
                tickvals=[-limit, 0, limit],
                ticktext=[f"{-limit:.2f}", "0", f"{limit:.2f}"],
            ),
            hovertemplate="dimension %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(visible=False)
    fig.update_xaxes(title="dimension")
    margin = dict(l=20, r=10, t=36, b=tick_room((), across=False, title=True))
    return _style(fig, 200, title=title, margin=margin)


# Head categories: the same colours as the grid's `--cat-*` variables in style.css.
CATEGORY_COLORS = {
    "previous_token": "#4e79a7",
    "self": "#59a14f",
    "diffuse": "#9d968f",
    "duplicate_token": "#f28e2b",
    "induction": "#e15759",
    "insufficient": "#c9ced6",
    "other": "#e4e7eb",
}
SINK_COLOR = "#7a5a44"  # the attention-sink bar under each grid cell
SCORE_FLOOR = 0.15  # a score of 0 still shows a trace of its category's hue


def mix(color: str, amount: float, base: str = "#ffffff") -> str:
    """`color` mixed into `base`: amount 1 is the full colour, 0 the base (white)."""
    amount = min(1.0, max(0.0, amount))
    pairs = [(int(color[k : k + 2], 16), int(base[k : k + 2], 16)) for k in (1, 3, 5)]
    return "#" + "".join(f"{round(b + (c - b) * amount):02x}" for c, b in pairs)


def score_shade(category: str, score: float | None) -> str:
    """A grid cell's fill: the category's hue, as deep as its score (.40 pale, 1.00 full)."""
    if score is None or score != score:
        return CATEGORY_COLORS[category]
    return mix(CATEGORY_COLORS[category], SCORE_FLOOR + (1 - SCORE_FLOOR) * score)


def head_cell_style(category: str, score: float | None, sink: float | None) -> dict:
    """Inline style of one grid cell: fill by category and score, a bar along its bottom as wide
    as the head's share of attention on the first token (the sink), ink that stays readable."""
    fill = score_shade(category, score)
    style = {"backgroundColor": fill}
    if category == "insufficient":
        style["backgroundImage"] = (
            "repeating-linear-gradient(135deg, rgba(255,255,255,.7) 0 3px, transparent 3px 7px)"
        )
    if sink is not None and sink == sink:
        width = f"{100 * min(1.0, max(0.0, sink)):.0f}%"
        bar = f"linear-gradient(to right, {SINK_COLOR} {width}, transparent {width})"
        style["backgroundImage"] = ", ".join(filter(None, [bar, style.get("backgroundImage")]))
        style["backgroundSize"] = "100% 5px" + (", auto" if category == "insufficient" else "")
        style["backgroundPosition"] = "left bottom" + (
            ", 0 0" if category == "insufficient" else ""
        )
        style["backgroundRepeat"] = "no-repeat" + (", repeat" if category == "insufficient" else "")
    dark = score is not None and score == score and score >= 0.6 and category != "diffuse"
    style["color"] = "#ffffff" if dark else "#1f2933"
    return style


def before_after(rows: list[tuple[int, str, float, float]], title: str) -> go.Figure:
    """Grouped bars of next-token probabilities before and after an intervention.

    `rows`: (token id, display text, probability before, probability after), in display order.
    """
    labels = [plot_text(f"{i}. {text}") for i, (_, text, _, _) in enumerate(rows, 1)]
    ids = [r[0] for r in rows]
    fig = go.Figure(
        [
            go.Bar(
                name=name,
                x=labels,
                y=[round(r[col], 6) for r in rows],
                customdata=ids,
                marker_color=color,
                hovertemplate=f"{name}: %{{x}} (id %{{customdata}})<br>probability %{{y:.4f}}"
                "<extra></extra>",
            )
            for name, col, color in (("before", 2, "#2f6fad"), ("after", 3, "#e15759"))
        ]
    )
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=1.08, x=1, xanchor="right"))
    fig.update_xaxes(tickangle=-45)
    top = max((max(r[2], r[3]) for r in rows), default=1.0)
    fig.update_yaxes(title="probability", tickformat=probability_format(top))
    return _style(fig, 420, title=title)


def head_map(
    values: torch.Tensor, title: str, colorbar: str, hover: str, colorscale: str = "RdBu"
) -> go.Figure:
    """A layer x head heatmap of one number per head, diverging around 0 (`hover` names it)."""
    layers, heads = values.shape
    limit = float(values.abs().max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=_rounded(values),
            x=list(range(heads)),
            y=list(range(layers)),
            colorscale=colorscale,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            xgap=1,
            ygap=1,
            colorbar=dict(title=colorbar),
            hovertemplate=f"L%{{y}}-H%{{x}}<br>{hover} %{{z:.4f}}<extra></extra>",
        )
    )
    fig.update_xaxes(title="head", dtick=1 if heads <= 32 else None)
    fig.update_yaxes(title="layer", autorange="reversed", dtick=1 if layers <= 48 else None)
    height = min(760, max(260, 160 + 26 * layers))
    return _style(fig, height, title_room=TITLE_ROOM, title=title)  # may stand in half the page


def layer_bars(values: torch.Tensor, title: str, axis: str) -> go.Figure:
    """One bar per layer (blue positive, red negative)."""
    numbers = _rounded(values)
    fig = go.Figure(
        go.Bar(
            x=[f"L{l}" for l in range(len(numbers))],
            y=numbers,
            marker_color=["#2f6fad" if v >= 0 else "#e15759" for v in numbers],
            hovertemplate=f"%{{x}}: {axis} %{{y:.4f}}<extra></extra>",
        )
    )
    fig.update_yaxes(title=axis, zeroline=True)
    return _style(fig, 320, title_room=TITLE_ROOM, title=title)  # may stand in half the page


def categories_by_depth(sides: list[dict], labels: dict[str, str]) -> go.Figure:
    """Per model (a column each), the fraction of heads in each category at each relative depth
    (stacked bars), on this prompt (top row) and on the model's probe set (bottom row, what its
    heads do in general), with the share of first-token heads (sink at least half) as a line.

    `sides` are `Comparison.side(...)` dicts: `depth`, `fraction_per_layer`,
    `first_token_per_layer`, `profile` (the same for the probe set), `model`.
    """
    rows = (("this prompt", lambda side: side), ("in general (probe set)", lambda s: s["profile"]))
    titles = [plot_text(f"{side['model']['name']}: {what}") for what, _ in rows for side in sides]
    fig = make_subplots(
        rows=len(rows),
        cols=len(sides),
        shared_yaxes=True,
        vertical_spacing=0.16,
        horizontal_spacing=0.04,
        subplot_titles=titles,
    )
    width = min(0.3, *(0.9 / max(1, len(s["depth"]) - 1) for s in sides))
    for row, (what, part) in enumerate(rows, 1):
        for col, side in enumerate(sides, 1):
            depth, data = side["depth"], part(side)
            first = row == 1 and col == 1
            for category, fractions in data["fraction_per_layer"].items():
                fig.add_trace(
                    go.Bar(
                        x=depth,
                        y=fractions,
                        width=width,
                        name=labels[category],
                        legendgroup=category,
                        showlegend=first,
                        marker_color=CATEGORY_COLORS[category],
                        customdata=list(range(len(depth))),
                        hovertemplate=f"{labels[category]} ({what})<br>layer %{{customdata}} "
                        "(depth %{x:.2f})<br>%{y:.0%} of heads<extra></extra>",
                    ),
                    row=row,
                    col=col,
                )
            heads = side["model"]["heads_per_layer"]
            fig.add_trace(
                go.Scatter(
                    x=depth,
                    y=[n / heads for n in data["first_token_per_layer"]],
                    mode="lines+markers",
                    line=dict(color="#222222", dash="dot", width=1.5),
                    marker=dict(size=4),
                    name="first-token heads (sink at least half)",
                    legendgroup="first-token",
                    showlegend=first,
                    customdata=list(range(len(depth))),
                    hovertemplate=f"first-token heads ({what})<br>layer %{{customdata}}: "
                    "%{y:.0%} of heads park half or more on the first token<extra></extra>",
                ),
                row=row,
                col=col,
            )
    fig.update_layout(barmode="stack", legend=dict(orientation="h", y=-0.1, yanchor="top"))
    edge = width / 2 + 0.02
    fig.update_xaxes(range=[-edge, 1 + edge], dtick=0.25)
    fig.update_xaxes(title="relative depth (0 = first layer, 1 = last)", row=len(rows))
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    fig.update_yaxes(title="fraction of heads", col=1)
    return _style(fig, 760, margin=dict(l=10, r=10, t=60, b=90))
