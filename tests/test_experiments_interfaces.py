"""The experiments from the command line and over HTTP: the library's answers, and bad heads
refused with one clear message."""

from __future__ import annotations

import json

import pytest
import torch

from lmscope.cli import main
from lmscope.core.model_cache import ModelCache
from lmscope.experiments.ablation import ablate
from lmscope.service import Service
from lmscope.web.server import api_app

PROMPT = "When Mary and John went to the store, John gave a drink to"


def hf_greedy(model, tokenizer, n: int) -> list[int]:
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
            pad_token_id=50256,
        )  # fmt: skip
    return out[0, ids.shape[1] :].tolist()


def test_cli_generate_prints_the_greedy_continuation(
    tiny_gpt2_folder, tiny_gpt2_model, gpt2_tokenizer, capsys
):
    args = [
        "generate",
        "--model",
        str(tiny_gpt2_folder),
        "--prompt",
        PROMPT,
        "--max-new-tokens",
        "5",
    ]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    expected = hf_greedy(tiny_gpt2_model, gpt2_tokenizer, 5)
    assert [s["chosen"]["id"] for s in doc["steps"]] == expected
    assert main(args) == 0
    assert gpt2_tokenizer.decode(expected) in capsys.readouterr().out


def test_cli_ablate_prints_the_distribution_before_and_after(tiny_gpt2_folder, tiny_gpt2, capsys):
    args = ["ablate", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--heads", "0.1,1.3"]
    assert main([*args, "--mode", "mean", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    expected = ablate(tiny_gpt2, PROMPT, [(0, 1), (1, 3)], "mean").to_dict()
    for key in ("before", "after"):
        assert [p["id"] for p in doc[key]] == [p["id"] for p in expected[key]]
        assert [p["logit"] for p in doc[key]] == pytest.approx(
            [p["logit"] for p in expected[key]], abs=2e-4
        )
    assert doc["heads"] == [[0, 1], [1, 3]]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "L0-H1, L1-H3" in out and "KL" in out
    assert repr(expected["after"][0]["text"]) in out


def test_cli_ablate_refuses_a_head_out_of_range_in_one_line(tiny_gpt2_folder, capsys):
    args = ["ablate", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--heads", "0.9"]
    assert main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: loading progress
    assert last.startswith("lmscope: Head 9 does not exist")
    assert "(asked for L0-H9)" in last


@pytest.fixture(scope="module")
def client(hub_cache):
    return api_app(Service(models=ModelCache(budget=2**30))).test_client()


def test_api_generate_answers_the_greedy_continuation(client, tiny_gpt2_model, gpt2_tokenizer):
    body = {"model": "gpt2", "prompt": PROMPT, "max_new_tokens": 4}
    response = client.post("/api/generate", json=body)
    assert response.status_code == 200
    steps = response.get_json()["steps"]
    assert [s["chosen"]["id"] for s in steps] == hf_greedy(tiny_gpt2_model, gpt2_tokenizer, 4)


def test_api_ablate_answers_the_library_result(client, tiny_gpt2):
    body = {"model": "gpt2", "prompt": PROMPT, "heads": [[1, 2]], "mode": "zero"}
    response = client.post("/api/ablate", json=body)
    assert response.status_code == 200
    expected = ablate(tiny_gpt2, PROMPT, [(1, 2)]).to_dict()
    doc = response.get_json()
    for key in ("before", "after"):
        assert [p["id"] for p in doc[key]] == [p["id"] for p in expected[key]]
        assert [p["logit"] for p in doc[key]] == pytest.approx(
            [p["logit"] for p in expected[key]], abs=2e-4
        )
    assert doc["target"]["id"] == expected["target"]["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"heads": [[0, 4]]}, "Head 4 does not exist"),
        ({"heads": [[5, 0]]}, "Layer 5 does not exist"),
        ({"heads": "0.1"}, "list of [layer, head] pairs"),
        ({"heads": [[0, 1]], "mode": "half"}, "'zero' or 'mean'"),
    ],
)
def test_api_ablate_refuses_bad_heads_with_400(client, body, message):
    response = client.post("/api/ablate", json={"model": "gpt2", "prompt": PROMPT} | body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_api_generate_refuses_bad_settings_with_400(client):
    body = {"model": "gpt2", "prompt": PROMPT, "method": "beam", "beams": 9}
    response = client.post("/api/generate", json=body)
    assert response.status_code == 400
    assert "'beams' must be between 1 and 5" in response.get_json()["error"]


def test_api_scan_attribution_and_compare_routes(client, tiny_gpt2):
    base = {"model": "gpt2", "prompt": PROMPT}
    scan = client.post("/api/ablation-scan", json=base | {"mode": "mean", "method": "exact"})
    scan = scan.get_json()
    assert len(scan["effect"]) == 2 and len(scan["effect"][0]) == 4
    dla = client.post("/api/logit-attribution", json=base | {"target": " Mary"}).get_json()
    parts = sum(map(sum, dla["heads"])) + sum(dla["mlps"]) + sum(dla["attention_bias"])
    assert parts + dla["embeddings"] + dla["constant"] == pytest.approx(dla["logit"], abs=1e-3)
    tokens = client.post("/api/token-attribution", json=base | {"steps": 8}).get_json()
    assert len(tokens["integrated_gradients"]) == len(tokens["tokens"])
    both = client.post("/api/compare", json={"models": ["gpt2", "gpt2"], "prompt": PROMPT})
    assert both.status_code == 200 and both.get_json()["same_top_prediction"] is True
    bad = client.post("/api/compare", json={"models": ["gpt2"], "prompt": PROMPT})
    assert bad.status_code == 400 and "two model ids" in bad.get_json()["error"]
