"""The head-ablation scan by method (exact, AtP, both) from the CLI and the HTTP API: the values
are the library's, AtP's checked heads equal ablating that head alone, bad input is one line."""

from __future__ import annotations

import json

import pytest
import torch

from lmscope.cli import main
from lmscope.core.model_cache import ModelCache
from lmscope.experiments.ablation import ablate, ablation_scan
from lmscope.experiments.ablation_atp import ablation_estimate
from lmscope.service import Service
from lmscope.web.server import api_app

PROMPT = "When Mary and John went to the store, John gave a drink to"
ANSWER, WRONG = " Mary", " John"


def assert_checked_heads_are_single_ablations(lm, doc: dict, mode: str) -> None:
    """Each checked head's exact value is the metric change of `ablate()` on that head alone."""
    assert doc["checked"], "AtP checked no head"
    for item in doc["checked"]:
        alone = ablate(lm, PROMPT, [tuple(item["head"])], mode, target=ANSWER, wrong=WRONG,
                       new_tokens=0)  # fmt: skip
        assert item["exact"] == pytest.approx(alone.to_dict()["metric"]["change"], abs=1e-5)


def test_cli_ablation_scan_atp_is_the_library_estimate_checked_by_ablating_each_head(
    tiny_gpt2_folder, tiny_gpt2, capsys
):
    args = ["ablation-scan", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT,
            "--target", ANSWER, "--wrong", WRONG]  # fmt: skip
    assert main([*args, "--mode", "mean", "--check", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    expected = ablation_estimate(tiny_gpt2, PROMPT, "mean", ANSWER, WRONG, check=3)
    assert doc["method"] == "atp" and doc["exact"] is None and doc["agreement"] is None
    torch.testing.assert_close(torch.tensor(doc["atp"]), expected.atp, atol=1e-5, rtol=0)
    assert [c["head"] for c in doc["checked"]] == [c["head"] for c in expected.checked]
    assert len(doc["checked"]) == 3
    assert_checked_heads_are_single_ablations(tiny_gpt2, doc, "mean")

    assert main([*args, "--method", "both"]) == 0
    out = capsys.readouterr().out
    both = ablation_estimate(tiny_gpt2, PROMPT, "zero", ANSWER, WRONG, exact=True).agreement()
    assert "exact (rows: layers; columns: heads)" in out and "AtP estimate" in out
    assert "AtP's strongest heads, ablated exactly:" in out
    assert f"Spearman {both['spearman']}, top-{both['top_k']} overlap" in out

    assert main([*args, "--method", "exact", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    scan = ablation_scan(tiny_gpt2, PROMPT, target=ANSWER, wrong=WRONG)
    torch.testing.assert_close(torch.tensor(doc["effect"]), scan.effect, atol=1e-5, rtol=0)

    assert main([*args, "--check", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "lmscope: 'check' must be a whole number of cells (0 or more), got -1."


@pytest.fixture(scope="module")
def client(hub_cache):
    return api_app(Service(models=ModelCache(budget=2**30))).test_client()


def test_api_ablation_scan_takes_a_method_and_refuses_bad_ones_with_400(client, tiny_gpt2):
    body = {"model": "gpt2", "prompt": PROMPT, "target": ANSWER, "wrong": WRONG}
    response = client.post("/api/ablation-scan", json=body | {"method": "both", "check": 4})
    assert response.status_code == 200
    doc = response.get_json()
    expected = ablation_estimate(tiny_gpt2, PROMPT, "zero", ANSWER, WRONG, exact=True, check=4)
    assert doc["method"] == "both"
    torch.testing.assert_close(torch.tensor(doc["atp"]), expected.atp, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(doc["exact"]), expected.exact, atol=1e-5, rtol=0)
    assert doc["agreement"] == expected.agreement()
    assert len(doc["checked"]) == 4
    assert_checked_heads_are_single_ablations(tiny_gpt2, doc, "zero")

    plain = client.post("/api/ablation-scan", json=body | {"method": "exact"}).get_json()
    assert plain["method"] == "exact"
    torch.testing.assert_close(torch.tensor(plain["effect"]), expected.exact, atol=1e-5, rtol=0)
    for bad, message in [
        ({"method": "fast"}, "'method' must be one of exact, atp, both; got 'fast'."),
        ({"method": "atp", "check": -2}, "'check' must be a whole number"),
        ({"method": "atp", "check": "ten"}, "'check' must be an integer"),
        ({"method": "atp", "mode": "half"}, "'mode' must be 'zero' or 'mean'"),
        ({"method": "atp", "wrong": ANSWER}, "are the same token"),
    ]:
        response = client.post("/api/ablation-scan", json=body | bad)
        assert response.status_code == 400, bad
        error = response.get_json()["error"]
        assert message in error and "\n" not in error
