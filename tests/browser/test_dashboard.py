"""The dashboard as a person uses it: pick the demo model, type a prompt, press Analyze, look.

Every expected value comes from an independent computation: the tokenizer itself, and the demo
model run directly through transformers (not through lmscope's hooks).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from playwright.sync_api import Error, Page, expect
from transformers import GPT2LMHeadModel

from lmscope.core.catalog import DEMO_PATH

pytestmark = pytest.mark.browser

DEMO_NAME = "Tiny offline demo (lmscope)"
PROMPT = "The cat sat on the mat. The cat sat on the"
STAGES = 5


@pytest.fixture(scope="module")
def reference() -> GPT2LMHeadModel:
    """The demo model loaded plainly by transformers, to check what the page shows."""
    return GPT2LMHeadModel.from_pretrained(
        DEMO_PATH, attn_implementation="eager", dtype=torch.float32
    ).eval()


def run_reference(model: GPT2LMHeadModel, ids: list[int]):
    with torch.no_grad():
        return model(torch.tensor([ids]), output_attentions=True)


def figure(page: Page, name: str) -> dict:
    """The data of a plotly figure on the page (trace 0), as the browser holds it."""
    graph_id = json.dumps({"kind": "figure", "name": name}, separators=(",", ":"))
    data = page.evaluate(
        "id => { const d = document.getElementById(id).querySelector('.js-plotly-plot').data[0];"
        " return {x: d.x, y: d.y, z: d.z, customdata: d.customdata}; }",
        graph_id,
    )
    z = data["z"]
    if isinstance(z, dict) and "bdata" in z:  # a binary array: {dtype, bdata, shape}
        shape = [int(n) for n in str(z["shape"]).split(",")]
        values = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        data["z"] = values.reshape(shape).tolist()
    return data


def shown_analysis(page: Page) -> str | None:
    """The analysis id every stage has drawn, or None while any stage is still drawing."""
    return page.evaluate(
        "n => { const ids = [...document.querySelectorAll('.stage-ready')]"
        ".map(e => e.dataset.analysis); return ids.length === n && new Set(ids).size === 1"
        " ? ids[0] : null; }",
        STAGES,
    )


def wait_for_stages(page: Page, previous: str | None = None) -> str:
    """Wait until all five stages are drawn for an analysis other than `previous`."""
    page.wait_for_function(
        "([n, old]) => { const ids = [...document.querySelectorAll('.stage-ready')]"
        ".map(e => e.dataset.analysis); return ids.length === n && new Set(ids).size === 1"
        " && ids[0] !== old; }",
        arg=[STAGES, previous],
    )
    return shown_analysis(page)


def pick_demo(page: Page) -> None:
    page.click("#model-picker")
    page.get_by_role("option", name=DEMO_NAME).click()
    expect(page.locator("#model-card-body h2")).to_contain_text(DEMO_NAME)


def open_experiment(page: Page, name: str) -> None:
    """Open one tab of the Investigation panel ("ablation", "generation", ...)."""
    tab = page.locator(f"#inv-tab-{name}")
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


def open_demo(page: Page, url: str) -> None:
    """Open the dashboard on the demo model (it starts on SmolLM2 here: offline, no GPT-2)."""
    page.goto(f"{url}/?model=demo")
    expect(page.locator("#model-card-body h2")).to_contain_text(DEMO_NAME)


def analyze(page: Page, prompt: str) -> str:
    previous = shown_analysis(page)
    page.fill("#prompt", prompt)
    page.click("#analyze")
    return wait_for_stages(page, previous)


def expected_chips(tokenizer, prompt: str) -> tuple[list[str], list[str]]:
    ids = tokenizer(prompt)["input_ids"]
    return [tokenizer.decode([i]).replace(" ", "␣") for i in ids], [str(i) for i in ids]


def chips(page: Page, scope: str = "#token-chips") -> tuple[list[str], list[str]]:
    texts = page.locator(f"{scope} .chip .chip-text").all_inner_texts()
    ids = page.locator(f"{scope} .chip .chip-id").all_inner_texts()
    return texts, ids


def test_startup_without_cached_gpt2_opens_on_smollm2_with_notice(page, dashboard_url):
    page.goto(dashboard_url)
    notice = page.locator("#start-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("SmolLM2 135M Instruct")
    expect(page.locator("#model-card-body h2")).to_contain_text("SmolLM2 135M Instruct")


def test_every_stage_shows_the_analysis(page, dashboard_url, gpt2_tokenizer, reference, artifacts):
    page.goto(dashboard_url)
    pick_demo(page)  # from the dropdown, as a learner would
    analyze(page, PROMPT)
    config = reference.config
    ids = gpt2_tokenizer(PROMPT)["input_ids"]
    out = run_reference(reference, ids)

    # Model card: the config's shape.
    card = page.locator("#model-card-body").inner_text()
    assert f"{config.n_embd}" in card and f"{config.n_layer}" in card
    assert f"{reference.num_parameters():,}" in card

    # Stage 1: one chip per token, text with visible spaces, and the tokenizer's ids.
    assert chips(page) == expected_chips(gpt2_tokenizer, PROMPT)
    expect(page.locator("#stage-1 .token-count")).to_contain_text(f"{len(ids)} tokens")
    page.locator("#stage-1").screenshot(path=str(artifacts / "dashboard-stage1-tokens.png"))

    # Stage 2: the last token's vector and its nearest neighbours by cosine similarity.
    table = reference.transformer.wte.weight
    cosine = torch.nn.functional.cosine_similarity(table, table[ids[-1]].unsqueeze(0))
    cosine[ids[-1]] = -1
    nearest = cosine.topk(10).indices.tolist()
    rows = page.locator("#embed-neighbors tbody tr")
    expect(rows).to_have_count(10)
    shown_ids = [int(r.locator("td").nth(1).inner_text()) for r in rows.all()]
    assert shown_ids[:3] == nearest[:3]
    expect(page.locator("#embed-info")).to_contain_text(f"{config.n_embd} numbers")
    assert len(figure(page, "token-vector")["z"][0]) == config.n_embd
    # Another token by its position: a number box, whatever the prompt's length.
    box = page.locator("#embed-position")
    expect(box).to_have_value(str(len(ids) - 1))
    expect(box).to_have_attribute("max", str(len(ids) - 1))
    box.fill("1")
    box.press("Enter")
    expect(page.locator("#embed-info")).to_contain_text(f"(id {ids[1]})")
    strip = torch.tensor(figure(page, "token-vector")["z"][0])
    assert torch.allclose(strip, table[ids[1]].detach(), atol=1e-3)
    box.fill(str(len(ids) + 5))  # past the last token: refused, the stage keeps token 1
    box.press("Enter")
    expect(page.locator("#embed-info")).to_contain_text(f"(id {ids[1]})")
    # A focused box scrolls the page back to itself when it loses focus after an element
    # screenshot (Chromium restores the screenshot's scroll): the next click would miss.
    box.blur()
    page.locator("#stage-2").screenshot(path=str(artifacts / "dashboard-stage2-embeddings.png"))

    # Stage 3: one grid cell per head; clicking one shows its exact attention pattern.
    cells = page.locator(".head-cell")
    expect(cells).to_have_count(config.n_layer * config.n_head)
    page.locator('[data-head="L1-H2"]').click()
    heat = page.locator('[id=\'{"kind":"figure","name":"head-heatmap"}\'] .js-plotly-plot')
    expect(heat).to_be_visible()
    expect(page.locator("#head-detail")).to_contain_text("L1-H2")
    z = torch.tensor(figure(page, "head-heatmap")["z"])
    assert torch.allclose(z, out.attentions[1][0, 2], atol=1e-3)
    page.locator("#stage-3").screenshot(path=str(artifacts / "dashboard-stage3-attention.png"))

    # Stage 4: the MLP's expand-and-compress shape from the config.
    inner = config.n_inner or 4 * config.n_embd
    expect(page.locator("#mlp-body")).to_contain_text(
        f"{config.n_embd} → {inner} → {config.n_embd}"
    )
    residual = figure(page, "residual-writes")
    assert len(residual["z"]) == config.n_layer and len(residual["z"][0]) == len(ids)
    page.locator("#stage-4").screenshot(path=str(artifacts / "dashboard-stage4-mlp.png"))

    # Stage 5: the top bar is the model's most likely next token.
    probs = out.logits[0, -1].softmax(-1)
    best = int(probs.argmax())
    top = figure(page, "top10")
    assert len(top["x"]) == 10
    assert top["customdata"][0] == best
    assert top["x"][0] == pytest.approx(float(probs[best]), abs=1e-4)
    shown = gpt2_tokenizer.decode([best]).replace(" ", "␣")
    expect(page.locator("#predicted-token")).to_contain_text(shown)
    page.locator("#stage-5").screenshot(path=str(artifacts / "dashboard-stage5-output.png"))
    page.screenshot(path=str(artifacts / "dashboard-full.png"), full_page=True)


def test_shared_link_reproduces_the_analysis(page, dashboard_url, gpt2_tokenizer, reference):
    prompt = "Alice gave Bob a book because she"
    page.goto(f"{dashboard_url}/?model=demo&prompt={quote(prompt)}")
    wait_for_stages(page)
    expect(page.locator("#prompt")).to_have_value(prompt)
    assert chips(page) == expected_chips(gpt2_tokenizer, prompt)
    ids = gpt2_tokenizer(prompt)["input_ids"]
    best = int(run_reference(reference, ids).logits[0, -1].argmax())
    assert figure(page, "top10")["customdata"][0] == best


def test_analyze_puts_model_and_prompt_in_the_url(page, dashboard_url):
    open_demo(page, dashboard_url)
    analyze(page, "Two plus two is")
    page.wait_for_url("**prompt=Two+plus+two+is*")
    assert "model=demo" in page.url
    # Opening the copied link elsewhere shows the same tokens.
    link, first = page.url, chips(page)
    page.goto("about:blank")
    page.goto(link)
    wait_for_stages(page)
    assert chips(page) == first


def test_unknown_model_shows_a_message_and_the_page_keeps_working(page, dashboard_url):
    open_demo(page, dashboard_url)
    page.fill("#model-custom", "no-such-org/no-such-model")
    page.click("#model-load")
    error = page.locator("#message .error")
    expect(error).to_contain_text("no-such-org/no-such-model")
    expect(page.locator("#model-card-body h2")).to_contain_text(DEMO_NAME)
    analyze(page, "Still working")
    expect(page.locator("#message .ok")).to_contain_text("Analyzed")
    assert chips(page)[0][0] == "Still"


def test_empty_prompt_shows_a_message_and_the_next_analysis_works(page, dashboard_url, artifacts):
    open_demo(page, dashboard_url)
    page.fill("#prompt", "")
    page.click("#analyze")
    expect(page.locator("#message .error")).to_contain_text("empty")
    page.locator(".controls").screenshot(path=str(artifacts / "dashboard-error-empty-prompt.png"))
    analyze(page, "Hello world")
    assert chips(page)[0] == ["Hello", "␣world"]


def test_hovering_a_token_highlights_it_everywhere(page, dashboard_url):
    open_demo(page, dashboard_url)
    analyze(page, "one two three")
    page.locator('#token-chips [data-token-index="1"]').hover()
    lit = page.locator(".token-hl")
    # its chip in stage 1, its copy in the output sentence, both columns of the line view
    expect(lit).to_have_count(4)
    assert set(lit.evaluate_all("els => els.map(e => e.dataset.tokenIndex)")) == {"1"}


def test_clicking_a_token_inspects_its_embedding(page, dashboard_url):
    open_demo(page, dashboard_url)
    analyze(page, "one two three")
    page.locator('#token-chips [data-token-index="0"]').click()
    expect(page.locator("#embed-info")).to_contain_text("Token 0")


def test_analysis_downloads_as_json(page, dashboard_url, gpt2_tokenizer):
    open_demo(page, dashboard_url)
    analyze(page, "Download me")
    with page.expect_download() as info:
        page.click("#download-json")
    document = json.loads(Path(info.value.path()).read_text())
    assert [t["id"] for t in document["tokens"]] == gpt2_tokenizer("Download me")["input_ids"]
    assert document["prompt"] == "Download me"


def test_figures_export_as_svg_when_chosen(page, dashboard_url):
    open_demo(page, dashboard_url)
    analyze(page, "Export me")
    page.get_by_role("radio", name="svg", exact=True).check()
    graph_id = json.dumps({"kind": "figure", "name": "top10"}, separators=(",", ":"))
    page.wait_for_function(
        "id => document.getElementById(id).querySelector('.js-plotly-plot')"
        "._context.toImageButtonOptions.format === 'svg'",
        arg=graph_id,
    )


# Each figure of an Analyze whose margins plotly had to grow to fit its labels (it then draws the
# figure again): [name, side, margin given, margin drawn] once every figure is drawn.
GROWN_MARGINS = """() => [...document.querySelectorAll('.stage .js-plotly-plot')]
    .filter(plot => plot.offsetWidth && plot._fullLayout)
    .flatMap(plot => ['l', 't', 'b'].filter(side =>
        Math.round(plot._fullLayout._size[side]) > plot._fullLayout.margin[side])
      .map(side => [plot.parentElement.id, side, plot._fullLayout.margin[side],
                    Math.round(plot._fullLayout._size[side])]))"""


def test_figure_labels_fit_the_margins_they_are_drawn_with(page, dashboard_url):
    """Margins come from the labels (figures.tick_room), wide tokens and other scripts included:
    no label is cut off, and plotly draws each figure once instead of growing its margins."""
    open_demo(page, dashboard_url)
    analyze(page, "WWW MMMM internationalization Ærøskøbing 東京都 ――― %%% @@@ and so")
    page.wait_for_function(  # the embedding strips, the residual writes, top 10, the lens
        "() => [...document.querySelectorAll('.stage .js-plotly-plot')]"
        ".filter(plot => plot.offsetWidth && plot._fullLayout).length === 5"
    )
    assert page.evaluate(GROWN_MARGINS) == []


BYTE_BUDGET = 3_000_000


def long_prompt(tokenizer, tokens: int) -> str:
    """English-like text of about `tokens` tokens (GPT-2 tokenizer)."""
    text = (
        "The committee met on Tuesday to discuss the budget for the new library, and after a long "
        "debate about parking, lighting and the children's reading room, it approved the plan. "
    )
    ids = tokenizer(text * (tokens // 20 + 1))["input_ids"][:tokens]
    return tokenizer.decode(ids)


def test_long_analysis_sends_the_browser_under_3_mb_before_a_head_is_opened(
    page, dashboard_url, dashboard_service, small_gpt2, gpt2_tokenizer, artifacts
):
    """GPT-2 Small's shape, 1,024 tokens: heavy arrays stay on the server."""
    key = dashboard_service.models.add(small_gpt2)
    prompt = long_prompt(gpt2_tokenizer, 1024)
    count = len(gpt2_tokenizer(prompt)["input_ids"])
    assert 1000 <= count <= 1024
    open_demo(page, dashboard_url)
    page.fill("#model-custom", key)
    page.click("#model-load")
    expect(page.locator("#model-card-body h2")).to_contain_text("GPT-2")
    page.fill("#prompt", prompt)
    sizes: list[int] = []

    def record(response) -> None:
        try:
            sizes.append(len(response.body()))
        except Error:  # a response still arriving when the test ends
            pass

    page.on("response", record)
    page.click("#analyze")
    wait_for_stages(page)
    expect(page.locator("#stage-1 .token-count")).to_contain_text(f"{count:,} tokens")
    expect(page.locator(".head-cell")).to_have_count(144)
    page.locator("#stage-3").screenshot(path=str(artifacts / "dashboard-gpt2-small-heads.png"))
    sent = sum(sizes)
    (artifacts / "dashboard-bytes-1024-tokens.txt").write_text(f"{sent} bytes in {len(sizes)}\n")
    assert sent < BYTE_BUDGET, f"{sent:,} bytes sent for a {count}-token analysis"


def test_starter_prompt_fills_the_box_and_analyzes(page, dashboard_url, gpt2_tokenizer):
    open_demo(page, dashboard_url)
    previous = shown_analysis(page)
    page.get_by_role("button", name="Repeated random sequence (induction)").click()
    wait_for_stages(page, previous)
    expect(page.locator("#starter-hint")).to_contain_text("Induction heads")
    prompt = page.locator("#prompt").input_value()
    assert prompt.startswith("vortex amber")
    assert chips(page) == expected_chips(gpt2_tokenizer, prompt)


def test_page_fetches_nothing_from_outside_the_server(page, dashboard_url):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_demo(page, dashboard_url)
    analyze(page, "Offline is fine")
    page.locator('[data-head="L0-H0"]').click()
    expect(page.locator("#head-detail")).to_contain_text("L0-H0")
    outside = [u for u in requested if not u.startswith((dashboard_url, "data:", "blob:"))]
    assert requested and not outside
