"""The Runs section as a person uses it: upload a dataset, start a run on the loaded model, watch
its progress (and cancel one), open the run's heatmap of means, a cell's value on every prompt,
and a prompt of the run in the analysis above. Every number is checked against the same run made
by the library directly (`lmscope.run`, `lmscope.runs.aggregates`)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from playwright.sync_api import Page, expect
from test_dashboard import figure, open_demo, shown_analysis, wait_for_stages
from test_runs import WORDS, induction_rows

import lmscope
from lmscope.core.analysis import analyze
from lmscope.runs import aggregates

pytestmark = pytest.mark.browser


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def graph(name: str) -> str:
    return "[id='" + json.dumps({"kind": "figure", "name": name}, separators=(",", ":")) + "']"


def setting(name: str) -> str:
    return "[id='" + json.dumps({"kind": "run-setting", "name": name}, separators=(",", ":")) + "']"


def upload(page: Page, name: str, content: bytes) -> None:
    page.set_input_files(
        "#runs-upload input[type=file]",
        files=[{"name": name, "mimeType": "application/octet-stream", "buffer": content}],
    )


def choose(page: Page, dropdown: str, option: str) -> None:
    page.click(dropdown)
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(dropdown)).to_contain_text(option)


def click_cell(page: Page, name: str, column: float, columns: int, row: float, rows: int) -> None:
    """Click the heatmap cell at (column, row), counted in cells from the top left."""
    cells = page.locator(f"{graph(name)} .nsewdrag").first
    cells.scroll_into_view_if_needed()
    box = cells.bounding_box()
    x = box["x"] + box["width"] * (column + 0.5) / columns
    y = box["y"] + box["height"] * (row + 0.5) / rows
    page.mouse.move(x, y)  # plotly clicks the point under the hover
    page.mouse.click(x, y)


def test_a_run_from_the_page_shows_its_progress_heatmap_a_cell_and_opens_a_prompt(
    page, dashboard_url, dashboard_service, artifacts, tmp_path
):
    demo = dashboard_service.model("demo")
    open_demo(page, dashboard_url)
    section = page.locator("#stage-7")

    # A long run: its progress with a rate and an estimate, then Cancel.
    rng = random.Random(1)
    long = [{"prompt": "".join(rng.choice(WORDS) for _ in range(24))} for _ in range(400)]
    upload(page, "long.jsonl", jsonl(long))
    expect(page.locator("#runs-upload-summary")).to_contain_text("long.jsonl: 400 rows")
    choose(page, "#runs-experiment", "ablation-scan")
    choose(page, setting("method"), "exact")
    page.click("#runs-start")
    line = page.locator("#runs-progress-line")
    expect(line).to_contain_text("prompts/s")
    expect(line).to_contain_text("left")
    section.screenshot(path=str(artifacts / "runs-progress.png"))
    page.click("#runs-cancel")
    expect(page.locator("#runs-progress [data-state='cancelled']")).to_be_visible()
    expect(page.locator("#runs-cancel")).to_be_hidden()

    # A patching run over eight pairs, to the end.
    rows = induction_rows()
    upload(page, "pairs.jsonl", jsonl(rows))
    expect(page.locator("#runs-upload-summary")).to_contain_text(
        "pairs.jsonl: 8 rows; columns prompt, corrupt, answer, wrong."
    )
    choose(page, "#runs-experiment", "patch")
    expect(page.locator(setting("component"))).to_contain_text("resid")  # its default, shown
    choose(page, setting("component"), "heads")
    page.click("#runs-start")
    expect(page.locator("#runs-progress [data-state='complete']")).to_be_visible()
    expect(page.locator("#runs-progress-line")).to_contain_text("8 of 8 prompts")
    expect(page.locator(graph("runs-mean"))).to_be_visible()
    run_id = page.locator("#runs-opened-summary").get_attribute("data-run")
    expect(page.locator(f"#runs-table tr[data-run='{run_id}']")).to_contain_text("complete")

    # The same run by the library: the heatmap is its mean AtP estimate per layer and head.
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(jsonl(rows))
    store = lmscope.run(demo, str(data), "patch", str(tmp_path / "run"), component="heads")
    cells = [r for r in aggregates(store).cells.to_pylist() if r["quantity"] == "atp"]
    expected = torch.zeros(demo.layers, demo.heads, dtype=torch.float64)
    for r in cells:
        expected[r["layer"], r["column"]] = r["mean"]
    shown = figure(page, "runs-mean")
    torch.testing.assert_close(torch.tensor(shown["z"], dtype=torch.float64), expected)
    section.screenshot(path=str(artifacts / "runs-heatmap.png"))

    # A cell: its value on each of the eight prompts, the interval in the heatmap's hover.
    click_cell(page, "runs-mean", 2, demo.heads, 1, demo.layers)
    expect(page.locator(f"{graph('runs-mean')} .hoverlayer")).to_contain_text("95% interval")
    expect(page.locator(graph("runs-cell"))).to_be_visible()
    values = store.cell("atp", 1, 2)
    shown = figure(page, "runs-cell")
    assert shown["x"] == values["prompt_id"].to_pylist() == list(range(1, 9))
    assert shown["y"] == pytest.approx(values["value"].to_pylist(), abs=1e-6)
    page.locator(graph("runs-cell")).screenshot(path=str(artifacts / "runs-cell.png"))

    # A prompt of the run, opened in the analysis: the page's prompt, analyzed, its targets set.
    before = shown_analysis(page)
    page.fill("#runs-prompt-row", "3")
    page.click("#runs-prompt-open")
    wait_for_stages(page, before)
    expect(page.locator("#prompt")).to_have_value(rows[2]["prompt"])
    expect(page.locator("#inv-target")).to_have_value(rows[2]["answer"].replace(" ", "␣"))
    expect(page.locator("#inv-wrong")).to_have_value(rows[2]["wrong"].replace(" ", "␣"))
    page.screenshot(path=str(artifacts / "runs-prompt-opened.png"))

    # The analysis on the page, saved as a run of its prompt: its head profile, each score the
    # analysis's own (the mean over one prompt).
    page.click("#runs-save-analysis")
    expect(page.locator("#runs-message")).to_contain_text("Saved as run")
    saved = page.locator("#runs-progress [data-state='complete']")
    expect(saved).to_be_visible()
    run_id = saved.get_attribute("data-run")
    expect(page.locator(f"#runs-opened-summary[data-run='{run_id}']")).to_be_visible()
    expect(page.locator("#runs-quantity")).to_contain_text("induction")
    scores = analyze(demo, rows[2]["prompt"]).heads.scores["induction"]
    shown = torch.tensor(figure(page, "runs-mean")["z"], dtype=torch.float64)
    torch.testing.assert_close(
        shown, torch.as_tensor(scores, dtype=torch.float64), atol=1e-5, rtol=0
    )
