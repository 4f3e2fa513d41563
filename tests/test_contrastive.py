"""Contrastive targets: logit(A) - logit(B) in direct logit attribution, token attribution, the
ablation scan and ablation, each checked against the single-token results or a plain pass; the
leading-space notice reaches the API answer; bad targets are a 400 with one line."""

from __future__ import annotations

import pytest
import torch

from lmscope.cli import main
from lmscope.core.analysis import analyze
from lmscope.experiments.ablation import ablate, ablation_scan
from lmscope.experiments.attribution import direct_logit_attribution, token_attribution
from lmscope.service import Service
from lmscope.web.server import api_app

PROMPT = "When Mary and John went to the store, John gave a drink to"
FAMILIES = ("tiny_gpt2", "tiny_llama")


def plain_logits(lm, text: str) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(torch.tensor([lm.tokenizer.encode(text)])).logits[0, -1]


def token(lm, text: str) -> int:
    return lm.tokenizer.encode(text, add_special_tokens=False)[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_contrastive_dla_is_the_difference_of_two_dlas_and_sums_to_the_logit_difference(
    request, family
):
    lm = request.getfixturevalue(family)
    analysis = analyze(lm, PROMPT)
    both = direct_logit_attribution(analysis, " Mary", " John")
    mary = direct_logit_attribution(analysis, " Mary")
    john = direct_logit_attribution(analysis, " John")
    for part in ("heads", "mlps", "attention_bias"):
        expected = getattr(mary, part) - getattr(john, part)
        torch.testing.assert_close(getattr(both, part), expected, atol=1e-5, rtol=1e-5)
    assert both.embeddings == pytest.approx(mary.embeddings - john.embeddings, abs=1e-5)
    logits = plain_logits(lm, PROMPT)
    difference = float(logits[token(lm, " Mary")] - logits[token(lm, " John")])
    assert both.total == pytest.approx(difference, abs=1e-4)
    assert both.logit == pytest.approx(difference, abs=1e-4)
    doc = both.to_dict()
    assert doc["attributes"] == "logit(' Mary') - logit(' John')"
    assert doc["metric"]["wrong"]["id"] == token(lm, " John")
    assert mary.to_dict()["attributes"] == "logit(' Mary')"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_contrastive_scan_is_the_difference_of_the_single_token_scans(request, family, mode):
    """log p(A) - log p(B) = logit(A) - logit(B): the single-token scans give the difference."""
    lm = request.getfixturevalue(family)
    both = ablation_scan(lm, PROMPT, mode, target=" Mary", wrong=" John")
    mary = ablation_scan(lm, PROMPT, mode, target=" Mary")
    john = ablation_scan(lm, PROMPT, mode, target=" John")
    ablated = mary.ablated_logprob - john.ablated_logprob
    clean = mary.clean_logprob - john.clean_logprob
    torch.testing.assert_close(both.effect, ablated - clean, atol=1e-4, rtol=0)
    assert both.clean_metric == pytest.approx(clean, abs=1e-4)
    assert both.to_dict()["metric"]["label"] == "logit(' Mary') - logit(' John')"
    torch.testing.assert_close(mary.effect, mary.ablated_logprob - mary.clean_logprob)


def test_contrastive_ablation_reports_the_logit_difference_before_and_after(tiny_gpt2):
    result = ablate(tiny_gpt2, PROMPT, [(1, 2)], target=" Mary", wrong=" John", new_tokens=0)
    a, b = token(tiny_gpt2, " Mary"), token(tiny_gpt2, " John")
    before, after = result.metric_values
    assert before == pytest.approx(float(result.before[a] - result.before[b]), abs=1e-5)
    assert after == pytest.approx(float(result.after[a] - result.after[b]), abs=1e-5)
    doc = result.to_dict()["metric"]
    assert doc["change"] == pytest.approx(after - before, abs=1e-5)
    single = ablate(tiny_gpt2, PROMPT, [(1, 2)], target=" Mary", new_tokens=0).to_dict()
    assert single["metric"]["label"] == "log p(' Mary')"
    assert single["metric"]["before"] == pytest.approx(
        float(result.before.log_softmax(-1)[a]), abs=1e-5
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_contrastive_integrated_gradients_explain_the_logit_difference(request, family):
    lm = request.getfixturevalue(family)
    result = token_attribution(lm, PROMPT, " Mary", wrong=" John")
    logits = plain_logits(lm, PROMPT)
    difference = float(logits[token(lm, " Mary")] - logits[token(lm, " John")])
    assert result.f_input == pytest.approx(difference, abs=1e-4)
    assert result.complete
    assert float(result.integrated_gradients.sum()) == pytest.approx(
        result.f_input - result.f_baseline, rel=0.05
    )
    assert result.to_dict()["metric"]["label"] == "logit(' Mary') - logit(' John')"


class _Models:
    def __init__(self, lm) -> None:
        self.lm = lm

    def get(self, model_id: str, progress=None):
        return self.lm

    def cached(self) -> list[str]:
        return []


@pytest.fixture(scope="module")
def client(tiny_gpt2):
    return api_app(Service(models=_Models(tiny_gpt2))).test_client()


ROUTES = {
    "/api/logit-attribution": {},
    "/api/token-attribution": {"steps": 9},
    "/api/ablation-scan": {},
    "/api/ablate": {"heads": [[0, 1]], "new_tokens": 0},
}


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_takes_wrong_and_returns_the_metric(client, route):
    body = {"model": "demo", "prompt": PROMPT, "target": " Mary", "wrong": " John"}
    response = client.post(route, json=body | ROUTES[route])
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["metric"]["label"] == "logit(' Mary') - logit(' John')"
    assert doc["notices"] == []


@pytest.mark.parametrize("route", ROUTES)
def test_a_target_typed_without_its_space_is_flagged_in_the_answer(client, route):
    body = {"model": "demo", "prompt": PROMPT, "target": "Mary", "wrong": " John"}
    doc = client.post(route, json=body | ROUTES[route]).get_json()
    assert doc["metric"]["answer"]["text"] == "Mary"  # used as typed, never silently changed
    assert any("' Mary'" in notice for notice in doc["notices"])


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("wrong", "message"),
    [(" Mary", "are the same token"), (" Mary and John", "pick a single token"), ([1], "token id")],
)
def test_a_bad_wrong_token_is_a_400_with_one_line(client, route, wrong, message):
    body = {"model": "demo", "prompt": PROMPT, "target": " Mary", "wrong": wrong}
    response = client.post(route, json=body | ROUTES[route])
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert message in error and "\n" not in error


def test_cli_ablate_takes_wrong(tiny_gpt2_folder, capsys):
    args = ["ablate", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--heads", "0.1",
            "--target", " Mary", "--wrong", " John", "--new-tokens", "0"]  # fmt: skip
    assert main(args) == 0
    assert "logit(' Mary') - logit(' John')" in capsys.readouterr().out
