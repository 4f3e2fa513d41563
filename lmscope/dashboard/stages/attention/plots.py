"""The attention stage's figures: one head (whole, pooled, or a zoomed window), one layer, and the
model view's thumbnails (small PNG images, encoded here: no imaging library needed).

Hover texts name tokens (`3·␣cat`), not positions, wherever the figure is small enough to carry a
label per cell (`NAMED` tokens a side); model text reaches plotly only through `plot_text`.
"""

from __future__ import annotations

import base64
import struct
import zlib

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ....core.analysis import OVERVIEW, Analysis
from ....core.heads import head_name
from ...figures import _rounded, _style, plot_text, token_labels, token_ticks

LAYER_VIEW_WINDOW = 48  # the layer view draws at most this many (last) tokens per head
NAMED = 160  # a heatmap up to this many tokens a side names both tokens in every cell's hover
THUMB = 32  # the model view's thumbnails show at most this many (last) tokens
BLUES = ((247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107))


def _cell_names(analysis: Analysis, rows: range, keys: range) -> list[list[str]]:
    """Per cell `query ← key` in token labels (for the hover)."""
    names = token_labels(analysis)
    return [[f"{names[i]} reads {names[j]}" for j in keys] for i in rows]


OVERVIEW_STEP = 4096  # an overview's weights are sent to the nearest 1/4096 (hover: 3 decimals)


def overview_cells(pooled: torch.Tensor) -> torch.Tensor:
    """An overview's weights rounded to multiples of 1/`OVERVIEW_STEP` (at most 0.00012 off, below
    the 3 decimals its hover shows): float32 with few significant bits compresses to a fifth, so a
    head at 8,192 tokens reaches the browser in well under 300 KB. Zoomed windows stay exact."""
    return torch.round(pooled * OVERVIEW_STEP) / OVERVIEW_STEP


def attention_heatmap(
    analysis: Analysis,
    layer: int,
    head: int,
    window: tuple[int, int, int, int] | None = None,
    height: int = 620,
) -> go.Figure:
    """One head's attention: rows are the reading (query) token, columns the token read (key).

    `window` = (first row, last row + 1, first key, last key + 1) draws that part at full
    resolution; otherwise past `OVERVIEW` tokens the head is max-pooled
    (`Analysis.pattern_overview`): each cell is the strongest weight of its tile.
    """
    count = len(analysis.tokens)
    title = f"Attention of head {head_name(layer, head)}"
    hover = "%{text}<br>weight %{z:.4f}<extra></extra>"
    if window is not None:
        r0, r1, k0, k1 = window
        z = analysis.pattern(layer, head, slice(r0, r1))[:, k0:k1]
        rows, keys = range(r0, r1), range(k0, k1)
        coords = {"x": list(keys), "y": list(rows)}
        title = f"{head_name(layer, head)}: queries {r0}-{r1 - 1}, keys {k0}-{k1 - 1}, every token"
    elif count <= OVERVIEW:
        z, coords = analysis.pattern(layer, head), {}
        rows = keys = range(count)
    else:
        z = overview_cells(analysis.pattern_overview(layer, head))
        factor = -(-count // z.shape[0])
        tiles = list(range(0, count, factor))
        coords = {"x": tiles, "y": tiles}
        rows = keys = range(0)
        hover = f"queries %{{y}}+ read keys %{{x}}+ ({factor} x {factor} tile)<br>"
        hover += "largest weight ≈ %{z:.3f}<extra></extra>"
        title += f" (max over {factor} x {factor} token tiles; zoom in for every token)"
    named = 0 < len(rows) <= NAMED and len(keys) <= NAMED
    if len(rows) and not named:
        hover = "query %{y} reads key %{x}<br>weight %{z:.4f}<extra></extra>"
    text = {"text": _cell_names(analysis, rows, keys)} if named else {}
    fig = go.Figure(
        go.Heatmap(
            z=z.cpu().numpy(),  # float32, sent as a binary array
            **coords,
            **text,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar=dict(title="weight"),
            hovertemplate=hover,
        )
    )
    ticks = _window_ticks(analysis, rows, keys) if len(rows) else ({}, {})
    fig.update_yaxes(autorange="reversed", title="query (reading) token", **ticks[0])
    fig.update_xaxes(title="key (read) token", tickangle=-45, **ticks[1])
    shown = max(len(rows), 1) if len(rows) else min(count, OVERVIEW)
    return _style(fig, min(height, 300 + 16 * shown), title=title)


def _window_ticks(analysis: Analysis, rows: range, keys: range) -> tuple[dict, dict]:
    """Token-labelled ticks for the rows and keys shown (at most `MAX_TICKS` each)."""
    if rows.start == 0 and keys.start == 0 and len(rows) == len(keys) == len(analysis.tokens):
        whole = token_ticks(analysis)
        return whole, whole
    labels = token_labels(analysis)

    def ticks(span: range, most: int) -> dict:
        step = max(1, -(-len(span) // most))
        shown = list(span)[::step]
        return dict(tickmode="array", tickvals=shown, ticktext=[labels[i] for i in shown])

    return ticks(rows, 32), ticks(keys, 16)  # key labels run slanted: fewer of them


def layer_heads(analysis: Analysis, layer: int, window: int = LAYER_VIEW_WINDOW) -> go.Figure:
    """Every head of one layer side by side (the last `window` tokens when the prompt is longer);
    the first column and the bottom row carry token labels, a click on a head opens it."""
    heads = analysis.heads_per_layer
    start = max(0, len(analysis.tokens) - window)
    shown = analysis.layer_patterns(layer, rows=slice(start, None))[:, :, start:].cpu()
    labels = token_labels(analysis, start)
    cols = min(heads, 3)
    rows = -(-heads // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[head_name(layer, h) for h in range(heads)],
        horizontal_spacing=0.02,
        vertical_spacing=0.3 / rows,
    )
    for h in range(heads):
        fig.add_trace(
            go.Heatmap(
                z=_rounded(shown[h], 3),
                x=labels,
                y=labels,
                coloraxis="coloraxis",
                hovertemplate=f"{head_name(layer, h)}: %{{y}} reads %{{x}}<br>%{{z:.3f}}"
                "<br>click to open this head<extra></extra>",
            ),
            row=h // cols + 1,
            col=h % cols + 1,
        )
    step = max(1, -(-len(labels) // 12))
    tick = dict(tickmode="array", tickvals=labels[::step], ticktext=labels[::step])
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    for h in range(heads):
        if h + cols >= heads:  # the lowest head of its column
            place = dict(row=h // cols + 1, col=h % cols + 1)
            fig.update_xaxes(showticklabels=True, tickangle=-60, tickfont_size=10, **tick, **place)
    fig.update_yaxes(showticklabels=True, tickfont_size=10, **tick, col=1)
    fig.update_layout(coloraxis=dict(colorscale="Blues", cmin=0, cmax=float(shown.max()) or 1.0))
    fig.update_annotations(font_size=13)
    return _style(
        fig,
        140 + 300 * rows,
        title=f"Layer {layer}: all {heads} heads (click one to open it)",
        margin=dict(l=10, r=10, t=80, b=10),
    )


def _png(pixels: torch.Tensor) -> str:
    """An RGB image `(h, w, 3)` uint8 as a `data:image/png` URI."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + bytes(row) for row in pixels.flatten(1).tolist())

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


def colour(weights: torch.Tensor) -> torch.Tensor:
    """Weights in [0, 1] `(...)` as RGB uint8 `(..., 3)` on plotly's Blues scale."""
    stops = torch.tensor(BLUES, dtype=torch.float32)
    position = weights.clamp(0, 1) * (len(BLUES) - 1)
    low = position.floor().long().clamp(max=len(BLUES) - 2)
    part = (position - low).unsqueeze(-1)
    return (stops[low] * (1 - part) + stops[low + 1] * part).round().to(torch.uint8)


def thumbnails(analysis: Analysis, window: int = THUMB) -> list[list[str]]:
    """Every head of every layer as a small PNG of its pattern over the last `window` tokens,
    each scaled to its own largest weight: `[layer][head]` data URIs."""
    start = max(0, len(analysis.tokens) - window)
    images = []
    for layer in range(len(analysis.keys)):
        shown = analysis.layer_patterns(layer, rows=slice(start, None))[:, :, start:].cpu()
        top = shown.flatten(1).amax(-1).clamp_min(1e-6).view(-1, 1, 1)
        images.append([_png(colour(h)) for h in shown / top])
    return images


def text_of(analysis: Analysis, position: int) -> str:
    """The token at `position` as it is shown in labels (`3·␣cat`), plotly-safe."""
    return plot_text(f"{position}·{analysis.tokens[position].display}")
