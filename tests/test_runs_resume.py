"""A run stopped any way (Ctrl-C, SIGKILL of its process, cancel) and started again with the same
arguments computes only what is missing and ends with the rows of one uninterrupted run, none
twice; the index and the CLI tell where each run stands."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_runs import WORDS, stored, worst_difference, write_jsonl

import lmscope
from lmscope.cli import main
from lmscope.runs import RunError, RunIndex, RunSpec, RunStore, execute, start

ROOT = Path(__file__).resolve().parent.parent
WAIT = 120.0  # seconds a condition may take on a loaded machine before the test fails


def many_rows(count: int) -> list[dict]:
    rng = random.Random(1)
    rows = []
    for _ in range(count):
        seq, other = rng.sample(WORDS, 5), rng.sample(WORDS, 5)
        rows.append({"prompt": "".join(seq + seq[:-1]), "corrupt": "".join(other + seq[:-1]),
                     "answer": seq[-1], "wrong": seq[0]})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def demo():
    return lmscope.load("demo")


def wait_for(condition, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the run ended (code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT:.0f} s for {what}")
        time.sleep(0.02)


def cli_run(data: str, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "lmscope.cli", "run", "--model", "demo", "--data", data,
               "--experiment", "patch", "--component", "heads", "--scan", "both",
               "--out", str(out), "--batch-size", "4"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_a_run_killed_half_way_resumes_to_the_rows_of_one_uninterrupted_run(demo, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", many_rows(160))
    out, store = tmp_path / "run", RunStore(tmp_path / "run")
    parts = 160 // 4

    # Ctrl-C: the run stops at once, marked interrupted, its finished parts kept
    first = cli_run(data, out)
    wait_for(lambda: len(store.done_parts()) >= 2, "two parts", first)
    first.send_signal(signal.SIGINT)
    assert first.wait(WAIT) == 130
    assert store.manifest()["status"] == "interrupted"
    after_interrupt = len(store.done_parts())
    assert 2 <= after_interrupt < parts

    # SIGKILL of the resumed run: nothing runs its cleanup; the index sees the process gone
    second = cli_run(data, out)
    wait_for(lambda: len(store.done_parts()) >= after_interrupt + 2, "two more parts", second)
    second.send_signal(signal.SIGKILL)
    second.wait(WAIT)
    killed_at = len(store.done_parts())
    assert killed_at < parts, "the run ended before it was killed: nothing was tested"
    assert store.manifest()["status"] == "running"
    assert RunIndex().get(str(out))["status"] == "stopped"

    third = cli_run(data, out)
    assert third.wait(WAIT) == 0, third.stderr.read().decode()
    manifest = store.manifest()
    assert manifest["status"] == "complete" and manifest["counts"]["done"] == 160
    sessions = manifest["sessions"]
    assert [s["resumed"] for s in sessions] == [0, after_interrupt * 4, killed_at * 4]
    assert sessions[-1]["prompts"] == 160 - killed_at * 4  # only what was missing
    assert sorted(store.prompts()["prompt_id"].to_pylist()) == list(range(1, 161))

    whole = execute(RunSpec(model="demo", data=data, experiment="patch", out=str(tmp_path / "whole"),
                            settings={"component": "heads", "scan": "both"}, batch_size=4), lm=demo)  # fmt: skip
    resumed, uninterrupted = stored(store), stored(whole)  # each checks no cell is stored twice
    assert worst_difference(resumed, uninterrupted) <= 1e-6


def test_a_cancelled_run_stops_and_resumes_with_the_same_rows(demo, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", many_rows(160))
    spec = RunSpec(model="demo", data=data, experiment="ablation-scan", out=str(tmp_path / "run"),
                   settings={"method": "both"}, batch_size=4)  # fmt: skip
    run = start(spec, lm=demo)
    wait_for(lambda: run.progress().done >= 8, "eight prompts")
    progress = run.progress()
    assert progress.state == "running" and progress.total == 160
    assert progress.rate > 0 and progress.eta_s > 0
    run.cancel()
    store = run.wait(WAIT)
    assert not run.running
    assert store.manifest()["status"] == "cancelled"
    done = store.manifest()["counts"]["done"]
    assert 8 <= done < 160
    execute(spec, lm=demo)
    assert store.manifest()["status"] == "complete"
    whole = execute(RunSpec(**spec.to_dict() | {"out": str(tmp_path / "whole")}), lm=demo)
    resumed, uninterrupted = stored(store), stored(whole)
    assert worst_difference(resumed, uninterrupted) <= 1e-6


def test_a_longer_limit_extends_a_run_and_other_settings_are_refused(demo, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", many_rows(12))
    spec = RunSpec(model="demo", data=data, experiment="lens", out=str(tmp_path / "run"), limit=5)
    store = lmscope.run(demo, data, "lens", str(tmp_path / "run"), limit=5)  # = execute(spec)
    assert sorted(store.prompts()["prompt_id"].to_pylist()) == [1, 2, 3, 4, 5]
    execute(RunSpec(**spec.to_dict() | {"limit": None}), lm=demo)
    assert sorted(store.prompts()["prompt_id"].to_pylist()) == list(range(1, 13))
    assert store.manifest()["sessions"][-1]["prompts"] == 7
    with pytest.raises(RunError, match=r"holds another run \(experiment differ"):
        execute(RunSpec(**spec.to_dict() | {"experiment": "dla"}), lm=demo)
    with store.lock(), pytest.raises(RunError, match="being written by another run"):
        execute(spec, lm=demo)


def test_the_cli_lists_runs_shows_one_and_refuses_bad_settings_in_one_line(demo, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [*many_rows(6), {"prompt": ""}])
    out = tmp_path / "run"
    assert main(["run", "--model", "demo", "--data", data, "--experiment", "dla", "--out",
                 str(out), "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["manifest"]["status"] == "complete" and doc["skipped"] == [
        [7, "'prompt': The prompt is empty: type some text to analyze."]
    ]
    heads = [c for c in doc["aggregates"]["cells"] if c["quantity"] == "head"]
    assert len(heads) == demo.layers * demo.heads and all(c["n"] == 6 for c in heads)
    run_id = doc["manifest"]["id"]
    assert main(["runs", "--experiment", "dla"]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "complete" in listing and str(out) in listing
    assert main(["runs", run_id[:6]]) == 0
    shown = capsys.readouterr().out
    assert (
        "dla on demo" in shown and "row 7 skipped" in shown and "head: mean over prompts" in shown
    )
    assert main(["run", "--model", "demo", "--data", data, "--experiment", "dla", "--out",
                 str(tmp_path / "other"), "--scan", "atp"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lmscope: dla takes no settings; not scan."]
    assert main(["run", "--model", "demo", "--data", str(tmp_path / "none.csv"), "--experiment",
                 "dla", "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert capsys.readouterr().err.strip().endswith("none.csv: no such file or folder.")
