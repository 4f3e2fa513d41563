"""Dataset runs: every stored per-prompt row equals the one-prompt experiment on that prompt, each
aggregate equals numpy's on the stored rows, bad rows are reported by number, and every data
format reads the same rows."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import lmscope
from lmscope.core.analysis import analyze
from lmscope.core.heads import CATEGORIES, SCORES, SINK
from lmscope.experiments.ablation_atp import head_scan
from lmscope.experiments.attribution import direct_logit_attribution
from lmscope.experiments.lens import metric_lens
from lmscope.experiments.metric import make_metric
from lmscope.experiments.patching import patch
from lmscope.experiments.steering import steer
from lmscope.runs import DataError, RunSpec, RunStore, aggregates, execute, read_dataset

WORDS = [
    f" {w}"
    for w in "cat dog red blue tree house car sun moon river stone bird fish king queen book door road".split()
]


def induction_rows() -> list[dict]:
    """Repeated word sequences (the demo model's induction heads predict the repeat) against the
    same second half after other words: the clean and corrupted metrics differ by 10-20 logits,
    so patching's normalized values rest on far more than float rounding. Two lengths."""
    rows, rng = [], random.Random(0)
    for n in (5, 7, 5, 7, 5, 7, 5, 7):
        words = rng.sample(WORDS, 2 * n)
        seq, other = words[:n], words[n:]
        rows.append({"prompt": "".join(seq + seq[:-1]), "corrupt": "".join(other + seq[:-1]),
                     "answer": seq[-1], "wrong": seq[0]})  # fmt: skip
    return rows


def ioi_rows() -> list[dict]:
    names = ((" Mary", " John"), (" Tom", " James"))
    clean, corrupt = (
        "When{a} and{b} went to the store,{b} gave a drink to",
        "When{a} and{b} went to the store,{a} gave a drink to",
    )
    return [{"prompt": clean.format(a=a, b=b), "corrupt": corrupt.format(a=a, b=b), "answer": a,
             "wrong": b} for a, b in names]  # fmt: skip


def write_jsonl(path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> str:
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def demo():
    """The bundled demo model: trained, so prompts move its metrics well above float noise."""
    return lmscope.load("demo")


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory) -> str:
    return write_jsonl(tmp_path_factory.mktemp("data") / "induction.jsonl", induction_rows())


def stored(store: RunStore) -> dict[tuple, float]:
    """{(prompt_id, quantity, layer, column): value}, checking no cell is stored twice."""
    table = store.values()
    keys = list(
        zip(
            *(table[c].to_pylist() for c in ("prompt_id", "quantity", "layer", "column")),
            strict=True,
        )
    )
    assert len(keys) == len(set(keys)), "a cell is stored twice"
    return dict(zip(keys, table["value"].to_pylist(), strict=True))


def worst_difference(got: dict[tuple, float], expected: dict[tuple, float]) -> float:
    """The largest difference between two runs' cells: absolute up to 1, relative above (float32
    values of 10-20 logits are apart by at least 1e-6 before any rounding differs)."""
    assert got.keys() == expected.keys()
    return max(abs(got[k] - v) / max(1.0, abs(v)) for k, v in expected.items())


def grid(row: int, quantity: str, values) -> dict[tuple, float]:
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.dim() == 1:
        return {(row, quantity, layer, -1): float(v) for layer, v in enumerate(values)}
    return {(row, quantity, layer, column): float(values[layer, column])
            for layer in range(values.shape[0]) for column in range(values.shape[1])
            if not math.isnan(values[layer, column])}  # fmt: skip


def scalar(row: int, quantity: str, value: float) -> dict[tuple, float]:
    return {(row, quantity, -1, -1): float(value)}


def one_prompt(lm, experiment: str, settings: dict, row: int, data: dict) -> dict[tuple, float]:
    """The cells of the one-prompt experiment on one row, laid out here, independently of
    lmscope.runs."""
    prompt, answer, wrong = data["prompt"], data["answer"], data["wrong"]
    cells: dict[tuple, float] = {}
    if experiment == "profile":
        report = analyze(lm, prompt).heads
        for name in (*SCORES, SINK):
            cells |= grid(row, name, report.scores[name])
        for category in CATEGORIES:
            one_hot = [[float(c == category) for c in layer] for layer in report.categories]
            cells |= grid(row, f"category:{category}", one_hot)
    elif experiment == "lens":
        cells |= grid(row, "lens", metric_lens(analyze(lm, prompt), answer, wrong).values)
    elif experiment == "dla":
        dla = direct_logit_attribution(analyze(lm, prompt), answer, wrong)
        cells |= grid(row, "head", dla.heads) | grid(row, "mlp", dla.mlps)
        cells |= grid(row, "attention_bias", dla.attention_bias)
        for name in ("embeddings", "constant", "logit"):
            cells |= scalar(row, name, getattr(dla, name))
    elif experiment == "ablation-scan":
        method = settings.get("method", "atp")
        scan = head_scan(lm, prompt, settings.get("mode", "zero"), answer, wrong, method=method)
        if method == "exact":
            cells |= grid(row, "exact", scan.effect) | scalar(row, "metric", scan.clean_metric)
        else:
            cells |= grid(row, "atp", scan.atp) | scalar(row, "metric", scan.base_metric)
            cells |= _exact_cells(row, scan.exact, scan.checked, "head")
            cells |= _agreement(row, scan.agreement())
    elif experiment == "patch":
        result = patch(lm, prompt, data["corrupt"], answer, wrong, **settings)
        if result.atp is not None:
            cells |= grid(row, "atp", result.atp)
        cells |= _exact_cells(row, result.exact, result.checked, "cell")
        cells |= scalar(row, "clean", result.pair.clean_metric)
        cells |= scalar(row, "corrupt", result.pair.corrupt_metric)
        cells |= _agreement(row, result.agreement())
    elif experiment == "steer":
        s = settings
        result = steer(lm, prompt, s["layer"], s["coefficient"], prompts=s.get("from_prompts"),
                       token=s.get("token"), position=s.get("position"), new_tokens=0)  # fmt: skip
        metric, _ = make_metric(lm, answer, wrong, result.before)
        before, after = float(metric(result.before)), float(metric(result.after))
        cells |= scalar(row, "before", before) | scalar(row, "after", after)
        cells |= scalar(row, "change", after - before) | scalar(row, "kl", result.kl)
    return cells


def _exact_cells(row: int, exact, checked: list[dict], key: str) -> dict[tuple, float]:
    if exact is not None:
        return grid(row, "exact", exact)
    return {(row, "exact", *c[key]): c["exact"] for c in checked}


def _agreement(row: int, agreement: dict | None) -> dict[tuple, float]:
    if agreement is None:
        return {}
    return scalar(row, "spearman", agreement["spearman"]) | scalar(
        row, "top_k_overlap", agreement["top_k_overlap"]
    )


RUNS = [
    ("profile", {}),
    ("lens", {}),
    ("dla", {}),
    ("ablation-scan", {"method": "atp"}),
    ("ablation-scan", {"method": "both", "mode": "mean"}),
    ("ablation-scan", {"method": "exact"}),
    ("patch", {"component": "resid", "scan": "both"}),
    ("patch", {"component": "heads", "scan": "atp"}),
    ("patch", {"component": "mlp", "scan": "exact", "direction": "noising"}),
    ("steer", {"layer": 1, "coefficient": 3.0, "token": " Mary"}),
    ("steer", {"layer": 0, "coefficient": 1.0, "from_prompts": ["Love", "Hate"], "position": 3}),
]


@pytest.mark.parametrize(("experiment", "settings"), RUNS, ids=[f"{e}-{s}" for e, s in RUNS])
def test_every_stored_row_equals_the_one_prompt_experiment_on_that_prompt(
    demo, rows_file, tmp_path, experiment, settings
):
    spec = RunSpec(model="demo", data=rows_file, experiment=experiment, out=str(tmp_path / "run"),
                   settings=settings, batch_size=3)  # fmt: skip
    store = execute(spec, lm=demo)
    assert store.manifest()["status"] == "complete"
    got = stored(store)
    expected: dict[tuple, float] = {}
    for row, data in enumerate(induction_rows(), start=1):
        expected |= one_prompt(demo, experiment, settings, row, data)
    worst = worst_difference(got, expected)
    assert worst <= 1e-5, worst
    assert (
        len({round(v, 3) for v in expected.values()}) > 2
    )  # the cells differ: a test that can fail
    assert set(store.values()["model"].to_pylist()) == {demo.model_id}
    sizes = set(store.prompts()["tokens"].to_pylist())
    assert len(sizes) == 2  # both length buckets ran, in batches of several prompts


def test_each_aggregate_equals_numpys_on_the_stored_rows(demo, rows_file, tmp_path):
    spec = RunSpec(model="demo", data=rows_file, experiment="patch", out=str(tmp_path / "run"),
                   settings={"component": "heads", "scan": "both"}, batch_size=3)  # fmt: skip
    store = execute(spec, lm=demo)
    assert len(store.done_parts()) == 3  # pooled over parts, not computed in one go
    summary = aggregates(store, k=3)
    rows = store.values().to_pylist()
    by_cell: dict[tuple, list[float]] = {}
    for r in rows:
        by_cell.setdefault((r["quantity"], r["layer"], r["column"]), []).append(r["value"])
    cells = {(r["quantity"], r["layer"], r["column"]): r for r in summary.cells.to_pylist()}
    assert cells.keys() == by_cell.keys()
    for key, values in by_cell.items():
        x, got = np.array(values), cells[key]
        std = x.std(ddof=1)
        assert got["n"] == len(x) == 8
        assert got["mean"] == pytest.approx(x.mean(), abs=1e-12)
        assert got["std"] == pytest.approx(std, abs=1e-12)
        half = 1.959964 * std / np.sqrt(len(x))
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((x.mean() - half, x.mean() + half))
    # top-k frequency: how often each head is among a prompt's 3 largest |value|
    for quantity in ("atp", "exact"):
        counts: dict[tuple, int] = {}
        for prompt in range(1, 9):
            mine = sorted((r for r in rows if r["prompt_id"] == prompt and r["quantity"] == quantity),
                          key=lambda r: -abs(r["value"]))[:3]  # fmt: skip
            for r in mine:
                counts[(r["layer"], r["column"])] = counts.get((r["layer"], r["column"]), 0) + 1
        got = {
            (r["layer"], r["column"]): r
            for r in summary.top_k.to_pylist()
            if r["quantity"] == quantity
        }
        assert {k: v["count"] for k, v in got.items()} == counts
        assert all(v["frequency"] == v["count"] / 8 for v in got.values())
    # AtP vs exact, pooled over every (prompt, head)
    pairs = {}
    for r in rows:
        if r["quantity"] in ("atp", "exact"):
            pairs.setdefault((r["prompt_id"], r["layer"], r["column"]), {})[r["quantity"]] = r[
                "value"
            ]
    atp, exact = (np.array([p[q] for p in pairs.values()]) for q in ("atp", "exact"))
    ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731 - no ties among these floats
    agreement = summary.agreement
    assert agreement["pairs"] == len(atp) == 8 * demo.layers * demo.heads
    assert agreement["spearman"] == pytest.approx(np.corrcoef(ranks(atp), ranks(exact))[0, 1])
    assert agreement["pearson"] == pytest.approx(np.corrcoef(atp, exact)[0, 1])
    assert agreement["mean_abs_difference"] == pytest.approx(np.abs(atp - exact).mean())


def test_position_cells_are_aggregated_from_the_end_when_prompts_differ_in_length(
    demo, rows_file, tmp_path
):
    spec = RunSpec(model="demo", data=rows_file, experiment="patch", out=str(tmp_path / "run"),
                   settings={"component": "resid", "scan": "atp", "check": 0})  # fmt: skip
    store = execute(spec, lm=demo)
    summary = aggregates(store)
    assert not summary.aligned
    tokens = dict(
        zip(
            store.prompts()["prompt_id"].to_pylist(),
            store.prompts()["tokens"].to_pylist(),
            strict=True,
        )
    )
    last = [r["value"] for r in store.values().to_pylist()
            if r["quantity"] == "atp" and r["layer"] == 1 and r["column"] == tokens[r["prompt_id"]] - 1]  # fmt: skip
    cell = next(
        r
        for r in summary.cells.to_pylist()
        if (r["quantity"], r["layer"], r["column"]) == ("atp", 1, -1)
    )
    assert cell["n"] == 8 and cell["mean"] == pytest.approx(np.mean(last))


BAD_ROWS = [
    {"prompt": "When Mary and John went to the store, John gave a drink to", "corrupt": "x"},
    {"corrupt": "When Mary and John went to the store, Mary gave a drink to"},
    {"prompt": "", "corrupt": ""},
    {"prompt": "When Mary and John went to the store, John gave a drink to",
     "corrupt": "When Mary and John went to the store, Mary gave a drink to", "answer": " Maryland and"},
]  # fmt: skip


def test_bad_rows_are_skipped_with_their_number_and_reason_and_the_run_goes_on(demo, tmp_path):
    good = ioi_rows()[:2]
    path = write_jsonl(tmp_path / "mixed.jsonl", good + BAD_ROWS, ("not json at all", "[1, 2]"))
    store = execute(RunSpec(model="demo", data=path, experiment="patch", out=str(tmp_path / "run"),
                            settings={"scan": "atp"}), lm=demo)  # fmt: skip
    assert store.manifest()["status"] == "complete"
    assert store.manifest()["counts"] == {"done": 8, "skipped": 6, "total": 8}
    reasons = dict(store.skipped())
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "tokens and the corrupted prompt" in reasons[3]  # token counts differ
    assert reasons[4] == "missing column 'prompt'"
    assert "empty" in reasons[5]
    assert "'answer'" in reasons[6] and "tokens" in reasons[6]
    assert reasons[7].startswith("not valid JSON") and reasons[8] == "not a JSON object"
    assert set(store.values()["prompt_id"].to_pylist()) == {1, 2}


def test_every_data_format_reads_the_same_rows(tmp_path):
    import datasets

    rows = (
        ioi_rows()
        + induction_rows()[:1]
        + [{"prompt": "Hello", "answer": None, "corrupt": None, "wrong": None}]
    )
    jsonl = write_jsonl(tmp_path / "d.jsonl", rows)
    csv_path = tmp_path / "d.csv"
    csv_path.write_text(
        "prompt,corrupt,answer,wrong\n"
        + "".join(f'"{r["prompt"]}","{r["corrupt"] or ""}","{r["answer"] or ""}","{r["wrong"] or ""}"\n' for r in rows),
        encoding="utf-8",
    )  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    expected = [{k: v for k, v in r.items() if v is not None} for r in rows]
    for path in (jsonl, csv_path, tmp_path / "d.parquet", tmp_path / "saved"):
        found = read_dataset(path)
        fields = [{k: v for k, v in r.fields.items() if v != ""} for r in found.records]
        assert fields == expected, path
        assert [r.row for r in found.records] == [1, 2, 3, 4]
        assert found.columns == ("prompt", "corrupt", "answer", "wrong")


def test_a_file_that_cannot_be_read_is_one_clear_line(tmp_path):
    garbage = tmp_path / "d.parquet"
    garbage.write_bytes(b"not parquet at all")
    for path, said in (
        (tmp_path / "missing.jsonl", "no such file"),
        (garbage, "cannot be read as parquet"),
        (tmp_path / "d.txt", "lmscope reads .jsonl, .csv, .parquet"),
    ):
        if path.suffix == ".txt":
            path.write_text("x")
        with pytest.raises(DataError) as error:
            read_dataset(path)
        assert said in str(error.value) and "\n" not in str(error.value)


def test_a_runs_heatmap_says_how_many_prompts_a_score_applies_to(demo, tmp_path):
    """Induction applies only where a prompt repeats a token: of three prompts done, the map of
    its means says it counts one, and why the other two are not in it (a learner read "mean over
    1 prompt" for a run of 3 as a fault)."""
    from lmscope.dashboard.runs.figures import mean_map

    prompts = ["the cat sat on the mat and the cat", "a dog ran far", "one blue bird sang"]
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in prompts])
    store = lmscope.run(demo, data, "profile", str(tmp_path / "run"))
    cells = [c for c in aggregates(store).to_dict()["cells"] if c["quantity"] == "induction"]
    counted = max(c["n"] for c in cells)
    repeats = [
        len(set(ids)) < len(ids) for ids in (demo.tokenizer(p)["input_ids"] for p in prompts)
    ]
    assert counted == sum(repeats) == 1
    title = mean_map(cells, "induction", ["layer", "head"], counted, len(prompts)).layout.title.text
    title = title.replace("<br>", " ")  # the house style breaks long titles into lines
    assert "mean over 1 prompt of 3" in title and "the other 2 prompts give no value" in title
    whole = [c for c in aggregates(store).to_dict()["cells"] if c["quantity"] == "previous"]
    title = mean_map(whole, "previous", ["layer", "head"], 3, 3).layout.title.text
    assert title == "previous: mean over 3 prompts (click a cell)"
