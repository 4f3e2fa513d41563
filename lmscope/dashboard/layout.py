"""The page: header, model picker, prompt, model card, the five stages, the Investigation panel,
the Runs section and the glossary."""

from __future__ import annotations

import secrets
from typing import NamedTuple

from dash import dcc, html

from ..core.card import ModelCard
from ..core.catalog import entry as catalog_entry
from . import progress, runs, tour
from .glossary import glossary
from .share import layout as share_layout
from .stages import attention, embeddings, flow, investigate, mlp, output, tokens
from .static import static
from .terms import counted

# The skip links at the top: each stage's section, by the id `stages.section` gives it.
SKIP_LINKS = (
    ("The whole pass", "stage-0"),
    ("Tokens", "stage-1"),
    ("Embeddings", "stage-2"),
    ("Attention", "stage-3"),
    ("MLP", "stage-4"),
    ("Output", "stage-5"),
    ("Investigate", "stage-6"),
    ("Runs", "stage-7"),
    ("Glossary", "glossary"),
)


def skip_links() -> html.Div:
    """The "Skip to:" links between the stages, first on the page for keyboard users."""
    links = [
        html.A(label, href=f"#{target}", className="skip-link") for label, target in SKIP_LINKS
    ]
    separated = [part for link in links for part in (link, " · ")][:-1]
    nav = html.Nav(["Skip to: ", *separated], className="skip-links", **{"aria-label": "Stages"})
    return static(nav)


class Starter(NamedTuple):
    """A starter prompt and the one thing it shows on a real model."""

    label: str
    prompt: str
    look_for: str


STARTERS: tuple[Starter, ...] = (
    Starter(
        "Name mover (IOI)",
        "When Mary and John went to the store, John gave a drink to",
        "A trained model answers ' Mary': the name that appeared once. In stage 3, look for heads "
        "that read ' Mary' from the last position; the Investigation scan finds the heads the "
        "answer depends on.",
    ),
    Starter(
        "Repeated random sequence (induction)",
        "vortex amber 41 quill serif mango drift 9 lumen tidal cobalt. "
        "vortex amber 41 quill serif mango drift 9 lumen tidal cobalt.",
        "The second copy is predictable only by copying the first. Induction heads (stage 3) "
        "read the token just after the earlier copy of the current token: a stripe one step "
        "right of the diagonal of repeats.",
    ),
    Starter(
        "Fact (Eiffel Tower)",
        "The Eiffel Tower is in the city of",
        "A trained model answers ' Paris'. In stage 5 the logit lens shows in which layer the "
        "answer appears; the MLP layers are where facts are thought to be recalled.",
    ),
)


def model_options(catalog: list[dict], extra: dict[str, str] | None = None) -> list[dict]:
    """The picker's entries: the service's catalog (a model not on this machine says what
    picking it would do, and cannot be picked where the hub is out of reach), then any other
    model this page has loaded."""
    options = []
    for entry in catalog:
        option = {"label": entry["name"], "value": entry["id"]}
        if entry["picking"]:
            option["label"] += f" ({entry['picking']})"
            option["disabled"] = "cannot be reached" in entry["picking"]
        options.append(option)
    known = {entry["id"] for entry in catalog}
    for model_id, name in (extra or {}).items():
        if model_id not in known:
            options.append({"label": name, "value": model_id})
    return options


def card_view(card: ModelCard) -> html.Div:
    """The model card: the shape and design a learner reads before looking inside (one static
    component: see `static`)."""
    heads = f"{card.heads_per_layer} per layer, {card.total_heads:,} in all"
    if card.key_value_heads != card.heads_per_layer:
        heads += f" ({counted(card.key_value_heads, 'key/value head')})"
    fields = (
        ("parameters", f"{card.parameters:,} ({card.parameters / 1e6:,.0f}M)"),
        ("layers", f"{card.layers}"),
        ("attention heads", heads),
        ("hidden size", f"{card.hidden_size:,} (head size {card.head_size})"),
        ("MLP size", f"{card.mlp_size:,}"),
        ("vocabulary", f"{card.vocab_size:,} tokens"),
        ("positions", card.positional_encoding),
        ("context", f"{card.context_length:,} tokens"),
        ("normalization", card.normalization),
        ("activation", card.activation),
    ) + ((("weights", card.source),) if card.source else ())
    fields += tuple((name, value) for name, value in design(card) if value)
    entry = catalog_entry(card.model_id)
    if entry is not None and entry.terms:
        terms = html.A(entry.terms, href=f"/terms/{entry.id}", target="_blank", rel="noopener")
        fields += (("terms", terms),)
    if card.parity:
        fields += (("trace check", card.parity),)
    warning = (
        html.P(["Warning: ", card.parity], className="message error", id="parity-warning")
        if card.parity_ok is False
        else None
    )
    return static(
        html.Div(
            [
                html.H2(
                    [card.name, html.Span(f" {card.family} · {card.model_id}", className="sub")]
                ),
                warning,
                html.Dl(
                    [x for k, v in fields for x in (html.Dt(k), html.Dd(v))],
                    className="card-fields",
                ),
            ],
            id="model-card-body",
        )
    )


def design(card: ModelCard) -> list[tuple[str, str]]:
    """The card's lines on what sets this family apart, where it has them."""
    local = ""
    if card.sliding_window:
        layers = len(card.local_layers)
        local = f"{card.sliding_window:,} tokens on {layers} of {card.layers} layers"
    caps = ", ".join(
        f"{name} at {value:g}"
        for name, value in (("attention", card.attention_softcap), ("logits", card.final_softcap))
        if value
    )
    return [
        ("sliding window", local),
        ("soft-capping", caps),
        ("norms", "also after each sublayer" if card.post_norms else ""),
        ("query/key norm", "yes" if card.qk_norm else ""),
        ("embedding scale", f"x {card.embedding_scale:g}" if card.embedding_scale != 1.0 else ""),
    ]


def page(model_id: str, card: ModelCard, notice: str | None, catalog: list[dict]) -> html.Div:
    """The whole page for one visitor (a fresh client id each load, for the progress line);
    `catalog`: the service's, for the model picker."""
    controls = html.Div(
        [
            html.Div(
                [
                    html.Label("Model", htmlFor="model-picker", className="field-label"),
                    dcc.Dropdown(
                        id="model-picker",
                        options=model_options(catalog, {model_id: card.name}),
                        value=model_id,
                        clearable=False,
                        searchable=False,
                        className="model-picker",
                    ),
                    dcc.Input(
                        id="model-custom",
                        type="text",
                        placeholder="or any Hugging Face id: gpt2-large, openai-community/gpt2, …",
                        debounce=False,
                        className="model-custom",
                    ),
                    html.Button("Load", id="model-load", className="button secondary"),
                ],
                className="row",
            ),
            progress.status_line(),
            html.Div(id="message", role="alert"),
            html.Div(
                [
                    html.Span(id="confirm-load-text"),
                    html.Button("Download and load it", id="model-confirm", className="button"),
                ],
                id="confirm-load",
                className="message confirm",
                hidden=True,
            ),
            dcc.Textarea(
                id="prompt",
                placeholder="Type a prompt, or pick a starter below…",
                className="prompt",
            ),
            html.Div(
                [
                    html.Button("Analyze", id="analyze", className="button primary"),
                    html.Span("Starters:", className="field-label"),
                    *[
                        html.Button(
                            starter.label,
                            id={"kind": "starter", "index": i},
                            className="button starter",
                            title=starter.look_for,
                        )
                        for i, starter in enumerate(STARTERS)
                    ],
                    html.Span(className="spacer"),
                    html.Button(
                        "Download analysis (JSON)", id="download-json", className="button secondary"
                    ),
                    html.Div(
                        [
                            "Figures save as ",
                            dcc.RadioItems(
                                id="export-format",
                                options=["png", "svg"],
                                value="png",
                                inline=True,
                            ),
                        ],
                        className="export",
                    ),
                ],
                className="row actions",
            ),
            html.P(id="starter-hint", className="hint", hidden=True),
        ],
        className="controls",
    )
    return html.Div(
        [
            dcc.Location(id="url", refresh=False),
            dcc.Store(id="model", data={"id": model_id, "name": card.name}),
            dcc.Store(id="analysis"),
            # What the user is looking at, shared by every view and the shareable URL:
            # {"head": [layer, head], "layer": int, "position": int (the token the stages
            # follow; absent = the last), "target": str}. Writers use allow_duplicate=True.
            dcc.Store(id="focus", data={}),
            dcc.Store(id="views-drawn"),  # the analysis stages.register_views last drew
            *share_layout(),
            dcc.Store(id="client", data=secrets.token_hex(8)),
            progress.poll(),
            dcc.Download(id="download"),
            skip_links(),
            html.Header(
                [
                    html.H1("lmscope"),
                    html.P("What a language model does with your prompt, stage by stage."),
                ],
                className="masthead",
            ),
            html.Div(notice, id="start-notice", className="notice") if notice else None,
            tour.controls(),
            controls,
            html.Details(
                [html.Summary("Model card"), html.Div(card_view(card), id="model-card")],
                open=True,
                className="card",
            ),
            flow.layout(),
            tokens.layout(),
            embeddings.layout(),
            attention.layout(),
            mlp.layout(),
            output.layout(),
            investigate.layout(),
            runs.layout(),
            glossary(),
        ],
        className="page",
    )
