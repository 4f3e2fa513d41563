"""Many clients at once, analyzing and ablating, get the answers they would get alone; a model is
loaded once."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from werkzeug.serving import make_server

from lmscope.core import trace
from lmscope.core.model_cache import ModelCache
from lmscope.core.slots import FairSlots
from lmscope.service import Service
from lmscope.web.server import api_app

PROMPTS = [
    "The cat sat on the mat",
    "When Mary and John went to the store, John gave a drink to",
    "one two three four one two three",
    "Émile's café — naïve 😀 test",
]


@pytest.fixture(scope="module")
def server(hub_cache) -> Iterator[tuple[str, Service]]:
    """A real threaded HTTP server on loopback, as a browser or API client sees it."""
    service = Service(models=ModelCache(budget=2**30))
    httpd = make_server("127.0.0.1", 0, api_app(service), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", service
    httpd.shutdown()


def post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    answer.pop("analysis_id", None)  # a fresh id per request, by design
    return answer


def requests() -> list[tuple[str, dict]]:
    """Plain analyses interleaved with ablations of different heads on the same prompts."""
    mix = []
    for i, prompt in enumerate(PROMPTS):
        mix.append(("/api/analyze", {"model": "gpt2", "prompt": prompt}))
        heads = [[0, i % 4], [1, (i + 1) % 4]]
        mode = "zero" if i % 2 else "mean"
        mix.append(
            ("/api/ablate", {"model": "gpt2", "prompt": prompt, "heads": heads, "mode": mode})
        )
    return mix


def test_sixteen_concurrent_clients_get_the_sequential_answers(server) -> None:
    base, service = server
    mix = requests()
    expected = [post(base, path, body) for path, body in mix]
    jobs = [i % len(mix) for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: post(base, *mix[i]), jobs))
    for i, answer in zip(jobs, answers, strict=True):
        assert answer == expected[i], mix[i]
    assert service.models.loads == 1


@pytest.mark.parametrize("slots", [1, 2])
def test_concurrent_clients_never_run_more_forward_passes_at_once_than_there_are_slots(
    server, monkeypatch, slots
) -> None:
    """Each pass already uses every core (torch's intra-op threads), so passes take turns (a long
    pass may give way between its blocks: no two blocks run at once beyond the slots)."""
    base, service = server
    monkeypatch.setattr(trace, "_SLOTS", FairSlots(slots))
    lm = service.model("gpt2")
    running, peak, lock = [0], [0], threading.Lock()

    def enter(*_) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])

    def leave(*_) -> None:
        with lock:
            running[0] -= 1

    blocks = lm.adapter.block_list(lm.model)
    hooks = [b.register_forward_pre_hook(enter) for b in blocks]
    hooks += [b.register_forward_hook(leave) for b in blocks]
    try:
        mix = requests()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: post(base, *mix[i % len(mix)]), range(24)))
    finally:
        for hook in hooks:
            hook.remove()
    assert peak[0] == slots


def test_a_model_asked_for_by_many_threads_at_once_is_loaded_once(hub_cache) -> None:
    cache = ModelCache(budget=2**30)
    barrier = threading.Barrier(8)

    def get(index: int):
        barrier.wait()
        return cache.get("openai-community/gpt2" if index % 2 else "gpt2")

    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(get, range(8)))
    assert cache.loads == 1
    assert all(m is models[0] for m in models)
