"""Bad input gets one clear message through every door (library, CLI, HTTP API) and loses nothing:
a normal request right after still succeeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import BertConfig, GPT2Config

from lmscope.cli import main
from lmscope.core.errors import LmscopeError
from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web.server import api_app

GOOD = {"model": "gpt2", "prompt": "The cat sat on the mat"}


def _config_only(hub: Path, repo_id: str, config: dict) -> None:
    """A hub snapshot holding just a config: lmscope must refuse it before wanting any weights."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("1" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("1" * 40)


@pytest.fixture(scope="module")
def odd_models(hub_cache: Path) -> Path:
    _config_only(hub_cache, "test/bert", BertConfig(num_hidden_layers=1, hidden_size=32).to_dict())
    remote = GPT2Config(n_layer=1).to_dict() | {
        "model_type": "shiny_new_arch",
        "auto_map": {"AutoConfig": "configuration_shiny.ShinyConfig"},
    }
    _config_only(hub_cache, "test/remote-code", remote)
    huge = GPT2Config(n_layer=96, n_embd=12288, n_head=96).to_dict()  # a 175B-parameter shape
    _config_only(hub_cache, "test/huge", huge)
    return hub_cache


# (model, prompt, words the message must contain)
CASES = {
    "empty prompt": ("gpt2", "", "empty"),
    "whitespace-only prompt": ("gpt2", " \n\t ", "only whitespace"),
    "prompt over the character limit": ("gpt2", "a" * 200_001, "characters"),
    "lone surrogate": ("gpt2", "bad \ud800 text", "lone surrogate"),
    "unknown model id": ("no-such-org/no-such-model", "hello", "no-such-org/no-such-model"),
    "id with ..": ("../../etc/passwd", "hello", "not"),
    "id that is a path": ("/etc", "hello", "operator"),
    "not a causal LM": ("test/bert", "hello", "not a causal"),
    "needs remote code": ("test/remote-code", "hello", "remote code"),
    "too big for memory": ("test/huge", "hello", "memory"),
}


@pytest.fixture(scope="module")
def service(odd_models: Path) -> Service:
    return Service(models=ModelCache(budget=2**30))


@pytest.fixture(scope="module")
def client(service: Service):
    return api_app(service).test_client()


@pytest.mark.parametrize("case", CASES)
def test_library_refuses_bad_input_clearly_and_keeps_working(case: str, service: Service) -> None:
    model, prompt, words = CASES[case]
    with pytest.raises(LmscopeError, match=words):
        service.analyze(model, prompt)
    _, analysis = service.analyze(GOOD["model"], GOOD["prompt"])
    assert [t.id for t in analysis.tokens] == [464, 3797, 3332, 319, 262, 2603]


@pytest.mark.parametrize("case", CASES)
def test_api_answers_bad_input_with_4xx_json_and_keeps_working(case: str, client) -> None:
    model, prompt, words = CASES[case]
    response = client.post("/api/analyze", json={"model": model, "prompt": prompt})
    # 507 Insufficient Storage for a model too large for this machine (docs/api.md), else a 4xx
    assert (
        response.status_code == 507
        if case == "too big for memory"
        else 400 <= response.status_code < 500
    )
    assert words in response.get_json()["error"]
    assert client.post("/api/analyze", json=GOOD).status_code == 200


# The CLI's user is the operator, who may name a folder or a file: a path gets what is wrong there.
CLI_WORDS = {"id with ..": "is not a GGUF file", "id that is a path": "No model folder"}


@pytest.mark.parametrize(
    "case", [c for c in CASES if "surrogate" not in c]
)  # argv cannot carry one
def test_cli_prints_one_line_and_exits_nonzero(
    case: str, odd_models: Path, capsys, monkeypatch
) -> None:
    model, prompt, words = CASES[case]
    monkeypatch.chdir(
        "/usr/lib"
    )  # "../../etc/passwd" is then a file that exists, wherever the clone is
    words = CLI_WORDS.get(case, words)
    assert main(["analyze", "--model", model, "--prompt", prompt]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lmscope: ") and words in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert main(["analyze", "--model", GOOD["model"], "--prompt", GOOD["prompt"]]) == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"a string"', b'{"model": 5, "prompt": "x"}', b'{"model": "gpt2"}'],
)
def test_api_rejects_malformed_bodies_with_400(body: bytes, client) -> None:
    response = client.post("/api/analyze", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]
    assert client.post("/api/analyze", json=GOOD).status_code == 200


def test_api_rejects_oversized_bodies_with_413(client) -> None:
    response = client.post("/api/analyze", json={"model": "gpt2", "prompt": "a" * 2_000_000})
    assert response.status_code == 413
    assert "error" in response.get_json()
    assert client.post("/api/analyze", json=GOOD).status_code == 200


def test_prompt_longer_than_context_is_truncated_with_a_notice(service: Service) -> None:
    prompt = "word " * 20_000  # 100,000 characters, far past the tiny model's 128 tokens
    _, analysis = service.analyze("gpt2", prompt)
    assert len(analysis.tokens) == 128
    assert analysis.notices and "at most 128" in analysis.notices[0]
    assert analysis.tokens[-1].end == 100_000  # the kept tokens are the prompt's last ones


def test_unexpected_errors_answer_500_json_and_the_server_keeps_serving(
    client, service, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "analyze", broken)
    response = client.post("/api/analyze", json=GOOD)
    assert response.status_code == 500 and "keeps running" in response.get_json()["error"]
    monkeypatch.undo()
    assert client.post("/api/analyze", json=GOOD).status_code == 200


# Inputs that are odd but analyzable: every door answers normally, with a notice where text was cut.
ODD_BUT_FINE = {
    "100,000 characters": "word " * 20_000,
    "control characters and NUL": "tab\there\x00nul\x07bell\x1b[31m",
    "right-to-left and combining marks": "שלום مرحبا e\u0301 \u202ereversed",
    "emoji and flags": "👩‍👩‍👧 🇫🇷 😀 — café",
}


@pytest.mark.parametrize("case", ODD_BUT_FINE)
def test_api_and_cli_analyze_odd_text_and_say_when_they_cut_it(case: str, client, capsys) -> None:
    prompt = ODD_BUT_FINE[case]
    response = client.post("/api/analyze", json={"model": "gpt2", "prompt": prompt})
    assert response.status_code == 200
    doc = response.get_json()
    assert (
        "".join(prompt[t["start"] : t["end"]] for t in doc["tokens"])
        == prompt[doc["tokens"][0]["start"] :]
    )
    assert bool(doc["notices"]) == (len(prompt) > 1000)  # only the long prompt exceeds 128 tokens
    if "\x00" in prompt:
        return  # argv cannot carry NUL: the CLI door is the API's library call, tested above
    assert main(["analyze", "--model", "gpt2", "--prompt", prompt, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in printed["tokens"]] == [t["id"] for t in doc["tokens"]]
