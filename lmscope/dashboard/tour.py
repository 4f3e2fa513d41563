"""The guided tour and the guided experiments: their steps, written for the loaded model.

Each step names an element on the page (`target`, a CSS selector), what to say, what to do for
the user when the step opens (`do`: click a button, set a control) and whether what it points at
is there yet (`ready`; `hold` while its actions still lack data; `settled`: a selector that must
be drawn inside the target first). A tour has the same steps from its start to its end: a step
whose data is not there yet waits for it. The steps travel as JSON in the
`data-tour` attribute of `#tour-data`; assets/tour.js shows them (text only through
`textContent`), scrolls each target into view and highlights it. The page remembers in
`tour-memory` (localStorage) that a visitor finished or skipped the tour.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from dash import Dash, Input, Output, dcc, html

from ..core.analysis import Analysis
from ..core.errors import LmscopeError
from ..core.heads import head_name
from ..core.model import LoadedModel
from ..experiments.ablation import barely_moved
from ..experiments.induction import SEQUENCE, SecondCopyLoss, induction_prompt, second_copy_loss
from ..experiments.name_movers import name_movers
from ..service import Service
from .figures import percent
from .shown import while_shown
from .stages import embeddings, mlp, output
from .stages.attention import grid
from .stages.attention import head as head_view
from .stages.investigate import ablation
from .stages.investigate.redundancy import REDUNDANCY

TOURS = ("tour", "induction", "name-mover")
TOP_HEADS = 3  # heads the name-mover experiment ablates, from the scan
INDUCTION_HEADS = 4  # at most this many induction heads are ablated


def _id(**parts) -> str:
    """The DOM id Dash gives a component with a dict id (keys sorted, compact JSON)."""
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))


def by_id(**parts) -> str:
    """A CSS selector for a component with a dict id."""
    return f"[id='{_id(**parts)}']"


def figure(name: str) -> str:
    return by_id(kind="figure", name=name)


IOI = "When Mary and John went to the store, John gave a drink to"  # layout.STARTERS[0]
STARTER = by_id(index=0, kind="starter")
OUTPUT = "#stage-5 .two-col"  # the top-10 bars and the logit lens that the output steps speak of
OPEN_ABLATION = ["set", "inv-tabs", {"value": ablation.TAB}]  # the panel's tab with the ablation


def step(title: str, text: str, target: str, **more) -> dict:
    """One step: `ready` defaults to True, `do` to nothing."""
    return {"title": title, "text": text, "target": target, "ready": True} | more


def _meaning(result: dict, heads: list[list[int]], second: SecondCopyLoss | None, job: str) -> str:
    """What an ablation's result means, in words; backup heads when it barely moved."""
    target = result["target"]
    before, after = target["probability_before"], target["probability_after"]
    names = ", ".join(head_name(*h) for h in heads)
    text = (
        f"Without {names}, p({target['display']}) went from {percent(before)} to {percent(after)}. "
    )
    if second is not None:
        text += (
            f"Over the second copy (after its first word), the loss per token went from "
            f"{second.before:.2f} to {second.after:.2f} nats; the first copy, which nothing "
            f"predicts, costs {second.first_copy:.2f}. "
        )
    if barely_moved(before, after):
        return text + "That barely moved. " + REDUNDANCY
    if after < before:
        text += f"The prediction leaned on these heads: {job}"
        if before < output.UNSURE:
            text += (
                " (This model was unsure of its answer to begin with, so read the drop as what "
                "these heads add to a weak guess.)"
            )
        return text
    return text + "Removing them made the target more likely: these heads worked against it."


def _weights(shares: dict[tuple[int, int], float], heads: list[list[int]]) -> str:
    return ", ".join(f"{head_name(*h)} ({percent(shares[tuple(h)])})" for h in heads)


def mover_job(analysis: Analysis, result: dict, heads: list[list[int]]) -> str:
    """What the name-mover ablation means on this model: whether the heads the scan ranks first
    read the name from the last token, and, if not, which heads do and what removing them does
    (`experiments.name_movers`)."""
    target = result["target"]
    name = target["display"]
    found = name_movers(analysis, target["id"], heads)
    if found is None:
        return "the scan finds which heads this answer needs."
    if found.movers:
        text = (
            f"{_weights(found.shares, found.movers)} read {name} from the last token, as a name "
            "mover does (it copies a name from earlier in the text to the end)."
        )
        if found.others:
            text += (
                f" {_weights(found.shares, found.others)} barely read it: they do other work "
                "this answer needs."
            )
        return text
    most = max(found.shares[tuple(h)] for h in heads)
    text = (
        f"they matter, but none of them gives {name} more than {percent(most)} of the last "
        "token's attention, so they are not name movers (heads that copy a name from earlier in "
        "the text to the end): the scan finds what the answer needs, not which heads carry the "
        "name."
    )
    if found.candidates_p is None:
        return text
    before, after = found.candidates_p
    text += (
        f" The heads that read {name} most from the last position are "
        f"{_weights(found.shares, found.candidates)}: the name-mover candidates. Without them, "
        f"p({name}) goes from {percent(before)} to {percent(after)}"
    )
    if barely_moved(before, after):
        return text + (
            ": it barely moves. Other heads do the same job or take over when they are gone, "
            "as backup heads do."
        )
    return text + "."


# ----- the tours -----


def _scan_heads(results: dict, prompt: str) -> list[list[int]] | None:
    scan = results.get("ablation_scan")
    if not scan or scan.get("prompt") != prompt:
        return None
    effect = torch.tensor(scan["effect"])
    order = effect.flatten().argsort()[:TOP_HEADS]
    return [list(divmod(int(i), effect.shape[1])) for i in order]


def _ablated(results: dict, prompt: str, heads: list[list[int]] | None) -> dict | None:
    result = results.get("ablation")
    if not heads or not result or result.get("prompt") != prompt:
        return None
    return result if sorted(result["heads"]) == sorted(heads) else None


def ablation_steps(
    lm: LoadedModel,
    results: dict,
    prompt: str,
    heads,
    why: str,
    job: str | Callable[[dict], str],
    second: bool = False,
) -> list[dict]:
    """Set the heads, run the ablation, and say what it means (`job`: what the heads were doing
    when removing them hurt, or a function of the ablation's result that says so)."""
    names = ", ".join(head_name(*h) for h in heads or [])
    result = _ablated(results, prompt, heads)
    ran = result is not None
    loss = second_copy_loss(lm, prompt, heads) if ran and second else None
    return [
        step(
            "Ablate them",
            f"Next puts {names or 'the heads'} in the ablation set ({why}) and presses Run "
            "ablation: their outputs are replaced by zeros for this prompt only.",
            "#inv-ablate",
            do=[
                OPEN_ABLATION,
                ["set", "inv-heads", {"data": heads}],
                ["set", "inv-mode", {"value": "zero"}],
                ["click", "#inv-ablate"],
            ]
            if heads
            else None,
            hold=not heads,
            ready=bool(heads),
        ),
        step(
            "What changed",
            _meaning(result, heads, loss, job(result) if callable(job) else job)
            if ran
            else "Running the ablation…",
            "#inv-small-effect" if ran and _barely(result) else "#inv-target-change",
            ready=ran,
        ),
    ]


def _barely(result: dict) -> bool:
    target = result["target"]
    return barely_moved(target["probability_before"], target["probability_after"])


def name_mover_steps(
    lm: LoadedModel, analysis: Analysis | None, results: dict, intro: bool
) -> list[dict]:
    """The IOI prompt, the scan, the top heads ablated, and what it means."""
    on_ioi = analysis is not None and analysis.prompt == IOI
    steps = []
    if intro:
        steps.append(
            step(
                "The name-mover experiment",
                f'Next loads the prompt "{IOI}" and analyzes it. A trained model answers the '
                "name that appeared once (Mary): some heads must move that name to the end.",
                STARTER,
            )
        )
        steps.append(
            step(
                "The prediction",
                output.tour_text(analysis if on_ioi else None),
                OUTPUT,
                do=[["click", STARTER]],
                ready=on_ioi,
            )
        )
    heads = _scan_heads(results, IOI) if on_ioi else None
    scan_text = (
        "The scan removes every head alone and records how much log p(target) drops. Red cells "
        "are heads the prediction needs."
    )
    if heads:
        scan_text += " Removing " + ", ".join(head_name(*h) for h in heads) + " hurts it most."
    steps.append(
        step(
            "Scan every head",
            scan_text,
            figure("inv-scan"),
            do=[OPEN_ABLATION, ["set", "inv-mode", {"value": "zero"}], ["click", "#inv-scan-run"]],
            hold=not on_ioi,
            ready=heads is not None,
            wait="Scanning every head, one at a time…",
        )
    )
    steps += ablation_steps(
        lm,
        results,
        IOI,
        heads,
        "the three the scan ranks first",
        lambda result: mover_job(analysis, result, heads),
    )
    return steps


def one_head_step(shown: Analysis | None, head: tuple[int, int] | None) -> dict:
    """Open the head that shows its role most clearly; before the analysis, wait for it."""
    if head is None:
        text = (
            "No head shows a clear pattern on this prompt: each spreads its attention thin."
            if shown is not None
            else "Finding the head that shows its role most clearly…"
        )
        return step("3. One head", text, "#head-grid-body .head-grid", ready=shown is not None)
    return step(
        "3. One head",
        head_view.tour_text(shown, *head),
        figure("head-heatmap"),
        do=[
            ["set", "grid-mode", {"value": "inspect"}],
            ["click", f'.head-cell[data-head="{head_name(*head)}"]'],
        ],
    )


def main_tour(lm: LoadedModel, analysis: Analysis | None, results: dict) -> list[dict]:
    """One prompt (the IOI starter) through the five stages, then the name-mover experiment."""
    card = lm.card
    on_ioi = analysis is not None and analysis.prompt == IOI
    shown = analysis if on_ioi else None
    report = shown.heads if shown is not None else None
    head = report.clearest_head() if report is not None else None
    tokens = (f"The prompt became {len(shown.tokens)} tokens. " if shown is not None else "") + (
        f"{card.name} knows {card.vocab_size:,} tokens; each piece of text is one of them, with "
        "its id underneath. A space belongs to the word after it (␣). Hover a token to find it "
        "everywhere on the page."
    )
    steps = [
        step(
            "Start here",
            f"This tour takes one prompt through {card.name}: {card.layers} layers of "
            f"{card.heads_per_layer} attention heads and an MLP each. Next puts the name-mover "
            "prompt in this box and presses Analyze for you.",
            "#prompt",
        ),
        step("1. Tokens", tokens, "#token-chips", do=[["click", STARTER]], ready=on_ioi),
        step(
            "2. Embeddings",
            "Each token id picks a row of the embedding table: the strip shows the numbers of "
            "one token's vector. " + embeddings.tour_text(lm),
            figure("token-vector"),
            ready=on_ioi,
        ),
        step(
            "3. Attention", grid.tour_text(lm, report), "#head-grid-body .head-grid", ready=on_ioi
        ),
    ]
    steps.append(one_head_step(shown, head))
    steps += [
        step("4. MLP", mlp.tour_text(lm), "#mlp-shape-diagram", ready=on_ioi),
        step("5. Output", output.tour_text(shown), OUTPUT, ready=on_ioi),
        *name_mover_steps(lm, analysis, results, intro=False),
        step(
            "Words and experiments",
            f"The glossary says what each word means for {card.name}; the stage texts link to "
            "it. The two guided experiments at the top of the page (induction heads, name "
            "movers) each end with what their result means.",
            "#glossary",
            do=[["open", "#glossary"]],
            settled="dt",  # its entries are drawn once it is open
        ),
    ]
    return steps


def induction_steps(lm: LoadedModel, analysis: Analysis | None, results: dict) -> list[dict]:
    """A repeated random sequence, its induction heads, their ablation, the second copy's loss."""
    prompt = induction_prompt(lm)
    on_it = analysis is not None and analysis.prompt == prompt
    report = analysis.heads if on_it else None
    heads = report.strongest("induction", INDUCTION_HEADS) if report is not None else None
    found = (
        "Induction heads on this prompt: " + ", ".join(head_name(*h) for h in heads) + "."
        if heads
        else "Finding the heads…"
    )
    if report is not None and heads and not report.summary()["induction"]:
        found = (
            "No head passes the induction threshold here; the ones scoring highest are "
            + ", ".join(head_name(*h) for h in heads)
            + "."
        )
    steps = [
        step(
            "The induction experiment",
            f"Next types {SEQUENCE} random words into the prompt, then the same words again "
            "without the last one, and presses Analyze. Nothing in language predicts the second "
            "copy: only copying the first does.",
            "#prompt",
        ),
        step(
            "Two copies",
            "Here is the sequence twice. In the second copy every next token can be read off "
            "the first: find the earlier copy of the current token, take the one after it.",
            "#token-chips",
            do=[["set", "prompt", {"value": prompt}], ["click", "#analyze"]],
            ready=on_it,
        ),
        step(
            "Find the heads",
            found + " An induction head reads the token just after the earlier copy of the "
            "current token.",
            "#head-categories table",
            ready=on_it,
        ),
    ]
    steps.append(
        step(
            "One induction head",
            f"This is {head_name(*heads[0])}'s pattern: in the second copy, each row reads one "
            "step right of where the same token stood the first time, a stripe beside the "
            "diagonal of repeats.",
            figure("head-heatmap"),
            do=[
                ["set", "grid-mode", {"value": "inspect"}],
                ["click", f'.head-cell[data-head="{head_name(*heads[0])}"]'],
            ],
        )
        if heads
        else step("One induction head", "Finding the heads…", figure("head-heatmap"), ready=False)
    )
    steps += ablation_steps(
        lm,
        results,
        prompt,
        heads,
        "the induction heads found above",
        "the second copy got harder to predict, because the heads that copy from the first "
        "copy are gone. That is what an induction head is for.",
        second=True,
    )
    return steps


def tours(lm: LoadedModel, analysis: Analysis | None, results: dict | None) -> dict[str, list]:
    """Every tour's steps for this model, the analysis shown and the experiments' results."""
    results = results or {}
    return {
        "tour": main_tour(lm, analysis, results),
        "induction": induction_steps(lm, analysis, results),
        "name-mover": name_mover_steps(lm, analysis, results, intro=True),
    }


# ----- the page -----


def controls() -> html.Div:
    """The tour's bar near the top: the start button, the guided experiments, and its data."""
    return html.Div(
        [
            html.Button(
                "Start here: take the tour",
                id="tour-start",
                className="button primary tour-start",
                **{"data-tour-start": "tour"},
            ),
            html.Span("Guided experiments:", className="field-label"),
            html.Button(
                "Induction heads",
                id="tour-induction",
                className="button secondary",
                **{"data-tour-start": "induction"},
            ),
            html.Button(
                "Name movers",
                id="tour-name-mover",
                className="button secondary",
                **{"data-tour-start": "name-mover"},
            ),
            html.Span(id="tour-remembered", className="hint"),
            dcc.Store(id="tour-memory", storage_type="local"),
            dcc.Store(id="tour-on", data=False),  # assets/tour.js: true while a tour runs
            dcc.Store(id="tour-shown"),
            html.Div(id="tour-data", hidden=True),
        ],
        className="row tour-bar",
        id="tour-bar",
    )


def register(app: Dash, service: Service) -> None:
    while_shown(
        app, Input("tour-on", "data"), "tour-shown", Input("model", "data"),
        Input("analysis", "data"), Input("inv-results", "data"),
    )  # fmt: skip

    @app.callback(Output("tour-data", "children"), Input("tour-shown", "data"))
    def steps(shown):
        """The tours, written when one starts and rewritten while it runs when the model, the
        analysis or an experiment's result changes."""
        model, data, results = shown or (None, None, None)
        try:
            lm = service.model(model["id"])
        except (LmscopeError, KeyError, TypeError):
            return []
        analysis = service.stored(data)
        if analysis is not None and analysis.lm.model_id != lm.model_id:
            analysis = None
        document = json.dumps(tours(lm, analysis, results), ensure_ascii=False)
        return html.Div(**{"data-tour": document, "data-model": lm.card.name})

    @app.callback(
        Output("tour-start", "children"),
        Output("tour-remembered", "children"),
        Input("tour-memory", "data"),
    )
    def remembered(memory):
        """A visitor who finished or skipped the tour is not invited again (but may retake it)."""
        ended = (memory or {}).get("ended")
        if ended == "finished":
            return "Take the tour again", "You finished the tour."
        if ended == "skipped":
            return "Take the tour again", "You skipped the tour."
        return "Start here: take the tour", ""
