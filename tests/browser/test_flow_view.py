"""The pass on one screen and the line view, as a learner uses them on the demo and on SmolLM2:
the flow's numbers are the analysis's and a plain transformers pass's, a click on any part brings
the stage that explains it into view, and hovering a token draws lines to exactly the tokens each
shown head reads (checked against `Analysis.pattern`)."""

from __future__ import annotations

import json

import pytest
import torch
from playwright.sync_api import Page, expect
from test_dashboard import analyze, open_demo, reference, run_reference, wait_for_stages

from lmscope.core.flow import LINE_FLOOR, LINE_WINDOW, line_window

pytestmark = pytest.mark.browser

PROMPT = "The cat sat on the mat. The cat sat on the"
IOI = "When Mary and John went to the store, John gave a drink to"
IN_VIEW = (
    "id => { const r = document.getElementById(id).getBoundingClientRect();"
    " return r.top > -5 && r.top < window.innerHeight / 3"
    " && document.activeElement === document.getElementById(id); }"
)


__all__ = ["reference"]  # the demo model loaded plainly by transformers (a fixture)


def number(x: float) -> str:
    """A length as assets/flow.js writes it."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def wait_for_flow(page: Page, key: str) -> None:
    expect(page.locator("#flow-diagram")).to_have_attribute("data-analysis", key)
    expect(page.locator("#flow-diagram .flow-layers")).to_be_visible()


def cells(page: Page, kind: str, attribute: str = "data-length") -> list[float]:
    return [float(v) for v in page.locator(f"#flow-diagram .flow-{kind}").evaluate_all(
        f"cells => cells.map(c => c.getAttribute('{attribute}'))"
    )]  # fmt: skip


def check_numbers(page: Page, analysis, position: int) -> None:
    """The drawn bars and lens cells carry the analysis's own numbers at `position`."""
    stream = analysis.residual[1:, position].norm(dim=-1).tolist()
    assert cells(page, "attn") == pytest.approx(analysis.attn_norms[:, position].tolist(), abs=1e-4)
    assert cells(page, "mlp") == pytest.approx(analysis.mlp_norms[:, position].tolist(), abs=1e-4)
    assert cells(page, "stream") == pytest.approx(stream, abs=1e-3)
    lens = [row[0].probability for row in analysis.logit_lens(position, 1)[1:]]
    assert cells(page, "lens", "data-probability") == pytest.approx(lens, abs=1e-5)


def drawn_predictions(page: Page) -> list[tuple[int, float]]:
    rows = page.locator("#flow-diagram .flow-pred")
    return [
        (int(r.get_attribute("data-id")), float(r.get_attribute("data-probability")))
        for r in rows.all()
    ]


def click_into_view(page: Page, part: str, stage: int) -> None:
    """Click a part of the flow; the stage explaining it scrolls to the top and takes the focus."""
    page.locator(f"#flow-diagram {part}").first.click()
    try:
        page.wait_for_function(IN_VIEW, arg=f"stage-{stage}", timeout=20_000)
    except Exception as error:
        where = page.evaluate(
            "id => [document.getElementById(id).getBoundingClientRect().top, window.scrollY,"
            " window.innerHeight, document.activeElement && document.activeElement.id]",
            f"stage-{stage}",
        )
        raise AssertionError(f"{part} -> stage {stage}: {where}") from error


def show_lines(page: Page) -> None:
    """Scroll the line view on screen with the pointer off the page's column (a scroll under a
    resting pointer hovers whatever token arrives beneath it, as it would for a learner)."""
    page.mouse.move(1, 1)
    page.locator("#attn-lines").scroll_into_view_if_needed()


def drawn_lines(page: Page) -> dict[int, dict[int, float]]:
    """The line view's lines: head -> {key position: weight}."""
    lines = page.locator("#lines-svg line").evaluate_all(
        "ls => ls.map(l => [l.dataset.head, l.dataset.key, l.dataset.weight])"
    )
    out: dict[int, dict[int, float]] = {}
    for head, key, weight in lines:
        out.setdefault(int(head), {})[int(key)] = float(weight)
    return out


def check_lines(page: Page, analysis, layer: int, position: int, heads: list[int]) -> None:
    """Wait for the lines of `position` in `layer`; each shown head's lines run to exactly the
    window's keys its pattern row weighs at least the floor, with those weights."""
    svg = page.locator("#lines-svg")
    expect(svg).to_have_attribute("data-position", str(position))
    expect(svg).to_have_attribute("data-layer", str(layer))
    shown = line_window(len(analysis.tokens), len(analysis.tokens) - 1)
    drawn = drawn_lines(page)
    assert set(drawn) <= set(heads)
    # the browser got only what it draws: one row per shown head, only the weights drawn
    sent = json.loads(page.locator("#lines-answer [data-lines]").get_attribute("data-lines"))
    assert [line["head"] for line in sent["lines"]] == heads
    assert sum(len(line["keys"]) for line in sent["lines"]) == sum(map(len, drawn.values()))
    for head in heads:
        row = analysis.pattern(layer, head, slice(position, position + 1))[0]
        expected = {k: float(row[k]) for k in shown if k <= position and row[k] >= LINE_FLOOR}
        assert sorted(drawn.get(head, {})) == sorted(expected)
        for key, weight in expected.items():
            assert drawn[head][key] == pytest.approx(weight, abs=1e-4)


def test_flow_on_the_demo_walks_to_every_stage(
    page, dashboard_url, dashboard_service, reference, artifacts
):
    open_demo(page, dashboard_url)
    key = analyze(page, PROMPT)
    wait_for_flow(page, key)
    analysis = dashboard_service.store.get(key)
    last = len(analysis.tokens) - 1
    check_numbers(page, analysis, last)
    # the top predictions are the model's own, run plainly through transformers
    probs = run_reference(reference, [t.id for t in analysis.tokens]).logits[0, -1].softmax(-1)
    top = probs.topk(5)
    drawn = drawn_predictions(page)
    assert [i for i, _ in drawn] == top.indices.tolist()
    assert [p for _, p in drawn] == pytest.approx(top.values.tolist(), abs=1e-5)
    # GPT-2's design, read off the card: a learned position vector, LayerNorm, a GELU MLP
    expect(page.locator("#flow-diagram .flow-embed")).to_contain_text("learned vector")
    expect(page.locator("#flow-diagram .flow-legend")).to_contain_text("LayerNorm")
    expect(page.locator("#flow-diagram .flow-step-mlp")).to_contain_text("MLP · GELU")
    page.locator("#stage-0").screenshot(path=str(artifacts / "flow-demo.png"))

    # Hovering a layer writes its numbers in the readout.
    page.locator("#flow-diagram .flow-mlp").nth(1).hover()
    expect(page.locator("#flow-readout")).to_contain_text(
        f"the MLP one {number(float(analysis.mlp_norms[1, last]))} long"
    )

    for part, stage in (
        (".flow-tokens", 1),
        (".flow-embed", 2),
        ('.flow-attn[data-layer="1"]', 3),
        (".flow-stream", 4),
        (".flow-mlp", 4),
        (".flow-lens", 5),
        (".flow-final", 5),
        (".flow-top", 5),
    ):
        click_into_view(page, part, stage)
    # the attention cell of layer 1 set the line view to layer 1, whose lines appear on screen
    expect(page.locator("#lines-layer")).to_have_value("1")

    # Following another token redraws the flow at that token.
    page.locator("#stage-0").scroll_into_view_if_needed()
    page.fill("#flow-position", "3")
    page.keyboard.press("Enter")
    expect(page.locator("#flow-diagram .flow-followed")).to_have_attribute("data-position", "3")
    check_numbers(page, analysis, 3)
    expect(page.locator("#output-position")).to_have_attribute("data-position", "3")


def test_line_view_on_the_demo_draws_the_heads_rows(
    page, dashboard_url, dashboard_service, artifacts
):
    open_demo(page, dashboard_url)
    key = analyze(page, PROMPT)
    analysis = dashboard_service.store.get(key)
    heads = list(range(analysis.heads_per_layer))
    show_lines(page)
    # on screen, the view draws the followed (last) token's lines in layer 0
    last = len(analysis.tokens) - 1
    check_lines(page, analysis, 0, last, heads)

    page.select_option("#lines-layer", "1")
    check_lines(page, analysis, 1, last, heads)
    page.locator('.lines-queries [data-position="4"]').hover()
    check_lines(page, analysis, 1, 4, heads)
    expect(page.locator("#lines-readout")).to_contain_text("(position 4), layer 1")
    page.locator("#attn-lines").screenshot(path=str(artifacts / "lines-demo.png"))

    # A head switched off is asked for no more; the others' lines stay exact.
    page.locator('.lines-head[data-head="2"]').click()
    expect(page.locator('#lines-svg line[data-head="2"]')).to_have_count(0)
    page.locator('.lines-queries [data-position="7"]').hover()
    check_lines(page, analysis, 1, 7, [0, 1, 3])
    assert 2 not in drawn_lines(page)
    # The keyboard reaches the tokens too.
    page.locator('.lines-queries [data-position="5"]').focus()
    check_lines(page, analysis, 1, 5, [0, 1, 3])


def test_line_view_of_a_long_prompt_pins_the_first_token(page, dashboard_url, dashboard_service):
    open_demo(page, dashboard_url)
    key = analyze(page, "one two three four five six seven " * 30)  # 210 tokens
    analysis = dashboard_service.store.get(key)
    count = len(analysis.tokens)
    assert count > LINE_WINDOW + 1
    show_lines(page)
    queries = page.locator(".lines-queries .lines-token")
    expect(queries).to_have_count(LINE_WINDOW + 1)
    expect(queries.first).to_have_attribute("data-position", "0")
    expect(page.locator(".lines-queries .lines-gap")).to_have_count(1)
    check_lines(page, analysis, 0, count - 1, list(range(analysis.heads_per_layer)))


def test_flow_and_lines_on_smollm2(page, dashboard_url, dashboard_service, smollm2_hf, artifacts):
    model, tokenizer = smollm2_hf
    ids = tokenizer(IOI)["input_ids"]
    with torch.no_grad():
        probs = model(torch.tensor([ids])).logits[0, -1].softmax(-1)
    top = probs.topk(5)

    page.goto(dashboard_url)  # offline with no GPT-2: the page opens on SmolLM2
    expect(page.locator("#model-card-body h2")).to_contain_text("SmolLM2 135M Instruct")
    page.get_by_role("button", name="Name mover (IOI)").click()
    key = wait_for_stages(page)
    wait_for_flow(page, key)
    analysis = dashboard_service.store.get(key)
    last = len(analysis.tokens) - 1
    expect(page.locator("#flow-diagram .flow-attn")).to_have_count(30)
    check_numbers(page, analysis, last)
    drawn = drawn_predictions(page)
    assert [i for i, _ in drawn] == top.indices.tolist()
    assert [p for _, p in drawn] == pytest.approx(top.values.tolist(), abs=1e-4)
    assert tokenizer.decode([drawn[0][0]]) == " Mary"
    # Llama's design, read off the card: no position vector (RoPE), RMSNorm, a gated SiLU MLP
    expect(page.locator("#flow-diagram .flow-embed")).to_contain_text("no position vector: RoPE")
    expect(page.locator("#flow-diagram .flow-legend")).to_contain_text("RMSNorm")
    expect(page.locator("#flow-diagram .flow-step-mlp")).to_contain_text("gated MLP · SiLU")
    expect(page.locator("#flow-diagram .flow-unembed")).to_contain_text("tied")
    page.locator("#stage-0").screenshot(path=str(artifacts / "flow-smollm2.png"))

    # Layer 17's attention opens stage 3 with the line view on layer 17.
    click_into_view(page, '.flow-attn[data-layer="17"]', 3)
    expect(page.locator("#lines-layer")).to_have_value("17")
    show_lines(page)
    heads = list(range(analysis.heads_per_layer))
    check_lines(page, analysis, 17, last, heads)
    page.locator('.lines-queries [data-position="10"]').hover()  # ' John' (the second)
    check_lines(page, analysis, 17, 10, heads)
    page.locator("#attn-lines").screenshot(path=str(artifacts / "lines-smollm2.png"))
    for part, stage in ((".flow-embed", 2), (".flow-mlp", 4), (".flow-top", 5)):
        click_into_view(page, part, stage)
