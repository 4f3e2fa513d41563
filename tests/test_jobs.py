"""Long work shows progress, stops when cancelled, and lets a short request in while it runs."""

from __future__ import annotations

import json
import socket
import threading
import time
from itertools import pairwise

import pytest
import torch

from lmscope.core import jobs, slots, trace
from lmscope.core.analysis import analyze
from lmscope.core.jobs import Cancelled, Job
from lmscope.core.model_cache import ModelCache
from lmscope.core.slots import FairSlots
from lmscope.experiments import ablation_atp
from lmscope.experiments.ablation import ablation_scan, scan_passes
from lmscope.experiments.inputs import prompt_ids
from lmscope.service import Service
from lmscope.web.server import api_app
from lmscope.web.wsgi import make_server

PROMPT = "When Mary and John went to the store, John gave a drink to"


def long_prompt(tokens: int) -> str:
    words = "the cat sat on a mat and then it ran to see a dog who was in the park".split()
    return " ".join(words[i % len(words)] for i in range(tokens))


def wait_until(condition, timeout: float = 60.0) -> None:
    """Poll `condition` (a condition, not a fixed sleep) until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_with_no_job_active_every_call_is_a_no_op_and_results_are_unchanged(tiny_gpt2) -> None:
    jobs.check()
    jobs.report(1, 3)
    jobs.layer(0, 2)
    plain = analyze(tiny_gpt2, PROMPT)
    with jobs.running(Job("analysis")) as job:
        inside = analyze(tiny_gpt2, PROMPT)
    assert torch.equal(plain.logits, inside.logits)
    assert job.inner == (1, 2)  # the pass went through both blocks, reporting each


def test_cancelling_a_scan_stops_it_between_passes(tiny_gpt2) -> None:
    passes = len(scan_passes(tiny_gpt2, len(prompt_ids(tiny_gpt2, PROMPT)[0]), batch_tokens=32))
    assert passes > 2
    started = []
    job = Job("scan")
    model = tiny_gpt2.model

    def cancel_after_first(*_) -> None:
        started.append(1)
        job.cancel()  # during the first pass: the scan must not start a second one

    hook = model.register_forward_pre_hook(cancel_after_first)
    try:
        with jobs.running(job), pytest.raises(Cancelled, match="Cancelled"):
            ablation_scan(tiny_gpt2, PROMPT, batch_tokens=32)
    finally:
        hook.remove()
    assert started == [1]


def test_a_cancel_stops_a_pass_at_the_next_layer(small_gpt2) -> None:
    entered = []
    job = Job("analysis")
    blocks = small_gpt2.adapter.block_list(small_gpt2.model)
    hooks = [block.register_forward_pre_hook(lambda *_, i=i: entered.append(i))
             for i, block in enumerate(blocks)]  # fmt: skip
    hooks.append(blocks[3].register_forward_hook(lambda *_: job.cancel()))
    try:
        with jobs.running(job), pytest.raises(Cancelled):
            analyze(small_gpt2, PROMPT)
    finally:
        for hook in hooks:
            hook.remove()
    assert entered == [0, 1, 2, 3]


def test_a_job_whose_client_is_gone_cancels_itself_and_its_children() -> None:
    gone = threading.Event()
    parent = Job("request", stale=gone.is_set)
    with jobs.running(parent), jobs.running(Job("scan")) as child:
        jobs.check()
        gone.set()
        with pytest.raises(Cancelled, match="went away"):
            jobs.check()
    assert child.parent is parent


def test_progress_line_counts_passes_and_estimates_the_time_left(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: now[0])
    job = Job("Ablation scan")
    job.report(0, 12)
    assert job.line() == "Ablation scan: pass 1 of 12"
    now[0] += 10
    job.report(2, 12)  # 2 of 12 passes took 10 s: 10 more passes, about 50 s
    assert job.line() == "Ablation scan: pass 3 of 12, about 50 s left"
    job.layer(15, 30)  # halfway through the third pass
    assert job.remaining() == pytest.approx(10 * (12 - 2.5) / 2.5)
    solo = Job("Analysis")
    solo.layer(9, 30)
    now[0] += 12  # 9 of 30 layers in 12 s: 28 s more
    assert solo.line() == "Analysis: layer 10 of 30, about 30 s left"
    assert jobs.time_left(4) == "a few seconds left" and jobs.time_left(400) == "about 7 min left"


def test_waiting_passes_get_the_slot_in_the_order_they_asked() -> None:
    fair = FairSlots(1)
    fair.acquire()
    order: list[int] = []

    def ask(i: int) -> None:
        fair.acquire()
        order.append(i)
        fair.release()

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=ask, args=(i,)))
        threads[-1].start()
        wait_until(lambda i=i: fair.waiting == i + 1)  # queued behind the previous asks
    fair.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_a_cancelled_job_leaves_the_queue_for_a_slot() -> None:
    fair = FairSlots(1)
    fair.acquire()
    job = Job("waiting")
    failed = []

    def ask() -> None:
        try:
            fair.acquire(job.check)
        except Cancelled:
            failed.append(True)

    thread = threading.Thread(target=ask)
    thread.start()
    wait_until(lambda: fair.waiting == 1)
    job.cancel()
    thread.join(10)
    assert failed == [True] and fair.waiting == 0
    fair.release()
    fair.acquire()  # the slot is free again: nobody holds it


def test_a_short_analysis_is_served_while_a_long_scan_runs(small_gpt2, monkeypatch) -> None:
    """A 5-token analysis asked for during the first pass of a long scan finishes before that
    pass does: the scan gives the slot up at a layer boundary, then carries on."""
    monkeypatch.setattr(trace, "_SLOTS", FairSlots(1))
    prompt = long_prompt(300)
    scan_job, outcome = Job("scan"), []

    def scan() -> None:
        try:
            with jobs.running(scan_job):
                ablation_scan(small_gpt2, prompt)
        except Cancelled:
            outcome.append("scan cancelled")

    thread = threading.Thread(target=scan)
    thread.start()
    try:
        wait_until(lambda: scan_job.inner[0] >= 2)  # the scan's first pass is under way
        started = time.monotonic()
        short = analyze(small_gpt2, "The cat sat on the")
        seconds = time.monotonic() - started
        assert len(short.tokens) == 5
        assert thread.is_alive() and scan_job.done == 0, "the short one waited for a whole pass"
        assert seconds < 10 * max(slots.QUANTUM, 1.0)
    finally:
        scan_job.cancel()
        thread.join(60)
    assert outcome == ["scan cancelled"]


def test_an_api_scan_stops_when_its_client_hangs_up(small_gpt2, monkeypatch) -> None:
    """Under waitress (as `lmscope serve` runs), closing the connection cancels the request."""
    service = Service(ModelCache(budget=2**34))
    key = service.models.add(small_gpt2)
    outcome, running = [], threading.Event()
    plain = ablation_atp.ablation_scan  # what the route's exact method runs

    def scan(*args, **kwargs):
        running.set()
        try:
            return plain(*args, **kwargs)
        except Cancelled as error:
            outcome.append(str(error))
            raise

    monkeypatch.setattr(ablation_atp, "ablation_scan", scan)
    server = make_server(api_app(service), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        body = {"model": key, "prompt": long_prompt(300), "method": "exact"}
        body = json.dumps(body).encode()
        client = socket.create_connection(("127.0.0.1", server.effective_port))
        client.sendall(
            b"POST /api/ablation-scan HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert running.wait(60)
        client.close()
        wait_until(lambda: outcome, timeout=30)
        assert outcome == [jobs.GONE]
    finally:
        server.close()


def _watched(job: Job, monkeypatch) -> list[tuple]:
    """Every progress call of `job` on a clock that ticks one second per layer entered (steady
    work): after each, (share done, units done, passes, layer, estimated end or None, its line,
    the time)."""
    now = [0.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: now[0])
    seen: list[tuple] = []
    layer, report = job.layer, job.report

    def after(call):
        def wrapped(*args, **kwargs):
            if call is layer:
                now[0] += 1.0
            call(*args, **kwargs)
            left = job.remaining()
            end = None if left is None else now[0] + left
            seen.append((job.fraction, job.done, job.passes, job.inner[0], end, job.line(), now[0]))

        return wrapped

    monkeypatch.setattr(job, "layer", after(layer))
    monkeypatch.setattr(job, "report", after(report))
    return seen


def _assert_forward(seen: list[tuple], total: bool) -> None:
    assert len(seen) > 4
    for before, after in pairwise(seen):
        assert after[0] >= before[0], (before, after)  # the share done never falls
        assert after[1] >= before[1]  # nor the units done
        if not total:  # the layer counter, within its pass number
            assert (after[2], after[3]) >= (before[2], before[3]), (before[5], after[5])
        if before[4] is not None and after[4] is not None and after[6] < before[4]:
            assert after[4] <= before[4] + 1e-9, (before[5], after[5])  # the end only nears


def test_progress_only_moves_forward_in_real_runs(tiny_gpt2, demo_lm, monkeypatch) -> None:
    """Integrated gradients run several batched passes (forward and backward) per report; an
    analysis of unknown size runs pass after pass; a scan runs two passes per unit. Before,
    the share fell back at each new pass (the layer counter ran 24 -> 29 -> 8) and the estimate
    jumped up."""
    from lmscope.experiments.attribution import token_attribution

    job = Job("Attribution")
    seen = _watched(job, monkeypatch)
    with jobs.running(job):
        result = token_attribution(demo_lm, "Alice was tired, so she went to", batch_tokens=64)
    assert result.steps > 33 and job.passes > 10  # refined past the first rule, in batches
    _assert_forward(seen, total=True)

    job = Job("Analysis")
    seen = _watched(job, monkeypatch)
    with jobs.running(job):
        for _ in range(3):
            analyze(tiny_gpt2, PROMPT)
    assert job.passes == 3 and seen[-1][5].startswith("Analysis: pass 3, layer 2 of 2")
    _assert_forward(seen, total=False)

    job = Job("Scan")
    seen = _watched(job, monkeypatch)
    ids = torch.tensor([prompt_ids(tiny_gpt2, PROMPT)[0][0].id] * 4).unsqueeze(0)
    with jobs.running(job), torch.no_grad():
        for unit in range(4):
            jobs.report(unit, 4)
            for _ in range(2):
                trace.run(tiny_gpt2, ids, capture=False)
    _assert_forward(seen, total=True)
    assert seen[-1][0] == pytest.approx((3 + 1 / 2 + 1 / 4) / 4)  # second pass, layer 2 of 2
