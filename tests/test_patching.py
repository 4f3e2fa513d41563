"""Activation patching and attribution patching: each exact cell equals patching that one
activation with a hook written here, the normalization's two ends, AtP equal to gradient x
difference computed here, the demo's induction heads found by a head scan, and bad input refused."""

from __future__ import annotations

import json

import pytest
import torch
from families import POST_NORM_FAMILIES as NEW
from families import build, head_dim

import lmscope
from lmscope.cli import main
from lmscope.core import jobs
from lmscope.core.errors import PromptError, RequestError
from lmscope.core.jobs import Cancelled, Job
from lmscope.core.loading import from_model
from lmscope.core.model_cache import ModelCache
from lmscope.core.profile import head_profile
from lmscope.experiments.ablation import ablate
from lmscope.experiments.ablation_atp import ablation_estimate
from lmscope.experiments.atp import agreement, spearman
from lmscope.experiments.patching import exact, pair, patch, patched_together
from lmscope.service import Service
from lmscope.web.server import api_app

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
ANSWER, WRONG = " Mary", " John"
# The module paths, per family, written here rather than read from lmscope's adapters: blocks,
# what attention adds to the stream, the output projection, what the MLP adds. Gemma and OLMo 2
# add their post-norms' outputs.
POST_NORMED = ("model.layers", "post_attention_layernorm", "self_attn.o_proj",
               "post_feedforward_layernorm")  # fmt: skip
PATHS = {
    "gpt2": ("transformer.h", "attn", "attn.c_proj", "mlp"),
    "llama": ("model.layers", "self_attn", "self_attn.o_proj", "mlp"),
    "gemma2": POST_NORMED,
    "gemma3_text": POST_NORMED,
    "olmo2": POST_NORMED,
}


def _modules(model, component: str, layer: int):
    blocks, attn, proj, mlp = PATHS[model.config.model_type]
    block = model.get_submodule(blocks)[layer]
    return {"resid": block, "attn": block.get_submodule(attn), "mlp": block.get_submodule(mlp),
            "heads": block.get_submodule(proj)}[component]  # fmt: skip


def _hook(model, component: str, layer: int, fn):
    """Register `fn(x) -> x` on the activation of `component` at `layer` (a plain torch hook)."""
    module = _modules(model, component, layer)
    if component in ("resid", "heads"):  # the input of the block / the output projection
        return module.register_forward_pre_hook(lambda m, args: (fn(args[0]), *args[1:]))

    def on_output(m, a, out):  # attention modules return (out, weights), norms and MLPs out
        return (fn(out[0]), *out[1:]) if isinstance(out, tuple) else fn(out)

    return module.register_forward_hook(on_output)


def _ids(lm, text):
    return torch.tensor([lm.tokenizer.encode(text, add_special_tokens=False)])


def _metric(lm, logits):
    a, b = (lm.tokenizer.encode(t, add_special_tokens=False)[0] for t in (ANSWER, WRONG))
    return logits[..., a] - logits[..., b]


def _acts(lm, ids, component):
    """Every layer's activation of `component` on `ids`, read with plain hooks."""
    seen, handles = {}, []
    for layer in range(lm.layers):

        def grab(x, layer=layer):
            seen[layer] = x.detach().clone()
            return x

        handles.append(_hook(lm.model, component, layer, grab))
    try:
        with torch.no_grad():
            lm.model(ids)
    finally:
        for h in handles:
            h.remove()
    return seen


def _patched(lm, ids, component, layer, column, source):
    """The metric with one activation replaced by `source`'s: a position, or a head's columns."""
    d_head = head_dim(lm.model)

    def replace(x):
        x = x.clone()
        if component == "heads":
            cols = slice(column * d_head, (column + 1) * d_head)
            x[..., cols] = source[..., cols]
        else:
            x[:, column] = source[:, column]
        return x

    handle = _hook(lm.model, component, layer, replace)
    try:
        with torch.no_grad():
            return float(_metric(lm, lm.model(ids).logits[0, -1]))
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def new_models(gpt2_tokenizer) -> dict:
    return {name: from_model(build(name), gpt2_tokenizer, name) for name in NEW}


@pytest.fixture(params=["tiny_gpt2", "tiny_llama", *NEW])
def lm(request):
    if request.param in NEW:
        return request.getfixturevalue("new_models")[request.param]
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("component", ["resid", "attn", "mlp", "heads"])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_every_exact_cell_equals_patching_that_activation_with_a_plain_hook(
    lm, component, direction
):
    p = pair(lm, CLEAN, CORRUPT, ANSWER, WRONG)
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    with torch.no_grad():
        m_clean = float(_metric(lm, lm.model(clean).logits[0, -1]))
        m_corrupt = float(_metric(lm, lm.model(corrupt).logits[0, -1]))
    assert p.clean_metric == pytest.approx(m_clean, abs=1e-5)
    assert p.corrupt_metric == pytest.approx(m_corrupt, abs=1e-5)
    base, source = (corrupt, clean) if direction == "denoising" else (clean, corrupt)
    sources = _acts(lm, source, component)
    result = exact(p, component, direction, batch_tokens=64)  # several passes
    columns = lm.heads if component == "heads" else clean.shape[1]
    assert result.shape == (lm.layers * columns,)
    expected = [
        (_patched(lm, base, component, layer, c, sources[layer]) - m_corrupt)
        / (m_clean - m_corrupt)
        for layer in range(lm.layers)
        for c in range(columns)
    ]
    torch.testing.assert_close(result, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    assert result.std() > 1e-3  # the cells differ: the test can tell them apart


@pytest.mark.parametrize("component", ["resid", "attn", "mlp", "heads"])
def test_patching_nothing_gives_0_and_patching_the_whole_stream_gives_1(lm, component):
    p = pair(lm, CLEAN, CORRUPT, ANSWER, WRONG)
    assert patched_together(p, component, "denoising", []) == pytest.approx(0, abs=1e-5)
    assert patched_together(p, component, "noising", []) == pytest.approx(1, abs=1e-5)
    everything = [(layer, t) for layer in (0, lm.layers - 1) for t in range(p.tokens)]
    assert patched_together(p, "resid", "denoising", everything) == pytest.approx(1, abs=1e-5)
    assert patched_together(p, "resid", "noising", everything) == pytest.approx(0, abs=1e-5)
    # the exact scan's cells are the same runs as `patched_together` of one cell
    cells = p.cells(component)[-2:]
    alone = [patched_together(p, component, "denoising", [c]) for c in cells]
    torch.testing.assert_close(exact(p, component, "denoising", cells), torch.tensor(alone))


def _gradient_times_difference(lm, component, base, source):
    """grad of the metric at `base`'s activations x (target - base), by autograd on plain hooks;
    the target is `source`'s activations, or `source(layer, activation)`."""
    sources = _acts(lm, source, component) if isinstance(source, torch.Tensor) else None
    kept, handles = {}, []
    for layer in range(lm.layers):

        def keep(x, layer=layer):
            kept[layer] = x
            return x

        handles.append(_hook(lm.model, component, layer, keep))
    embeds = lm.model.get_input_embeddings()(base).detach().requires_grad_(True)
    try:
        value = _metric(lm, lm.model(inputs_embeds=embeds).logits[0, -1])
        grads = torch.autograd.grad(value, [kept[l] for l in range(lm.layers)])
    finally:
        for h in handles:
            h.remove()
    acts = [kept[l][0].detach() for l in range(lm.layers)]
    targets = [sources[l][0] if sources else source(l, acts[l]) for l in range(lm.layers)]
    products = [g[0] * (targets[l] - acts[l]) for l, g in enumerate(grads)]
    if component == "heads":
        return torch.stack([p.unflatten(-1, (lm.heads, -1)).sum((0, 2)) for p in products])
    return torch.stack([p.sum(-1) for p in products])


@pytest.mark.parametrize("component", ["resid", "attn", "mlp", "heads"])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_the_atp_estimate_is_the_gradient_times_the_activation_difference(lm, component, direction):
    result = patch(lm, CLEAN, CORRUPT, ANSWER, WRONG, component=component, direction=direction,
                   scan="atp", check=0)  # fmt: skip
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    base, source = (corrupt, clean) if direction == "denoising" else (clean, corrupt)
    change = _gradient_times_difference(lm, component, base, source)
    p = result.pair
    unpatched = 0.0 if direction == "denoising" else 1.0
    expected = unpatched + change / (p.clean_metric - p.corrupt_metric)
    torch.testing.assert_close(result.atp, expected, atol=1e-5, rtol=1e-4)
    assert change.abs().max() > 1e-4


def test_the_top_k_check_patches_atps_strongest_cells_exactly(tiny_gpt2):
    result = patch(
        tiny_gpt2, CLEAN, CORRUPT, ANSWER, WRONG, component="resid", scan="both", check=5
    )
    assert len(result.checked) == 5
    strengths = [abs(c["atp"]) for c in result.checked]
    assert strengths == sorted(strengths, reverse=True)
    assert max(strengths) == pytest.approx(float(result.atp.abs().max()), abs=1e-6)
    for item in result.checked:
        layer, position = item["cell"]
        assert item["exact"] == pytest.approx(float(result.exact[layer, position]), abs=1e-5)
    doc = result.to_dict()
    assert doc["agreement"]["top_k"] == 10 and 0 <= doc["agreement"]["top_k_overlap"] <= 10
    assert len(doc["columns"]) == result.pair.tokens and doc["columns"][9] == "␣John / ␣Mary"


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_the_ablation_estimate_is_checked_against_ablating_each_head_alone(tiny_llama, mode):
    est = ablation_estimate(tiny_llama, CLEAN, mode, ANSWER, WRONG, exact=True, check=3)
    assert est.atp.shape == est.exact.shape == (2, 4)
    for layer, head in [(0, 1), (1, 3)]:
        alone = ablate(tiny_llama, CLEAN, [(layer, head)], mode, new_tokens=0)
        expected = float(_metric(tiny_llama, alone.after) - _metric(tiny_llama, alone.before))
        assert float(est.exact[layer, head]) == pytest.approx(expected, abs=1e-5)
    for item in est.checked:
        assert item["exact"] == pytest.approx(float(est.exact[tuple(item["head"])]), abs=1e-5)

    # to first order: grad . (replacement - z), the replacement 0 or z's mean over positions
    def replacement(layer, z):
        return torch.zeros_like(z) if mode == "zero" else z.mean(0).expand_as(z)

    change = _gradient_times_difference(tiny_llama, "heads", _ids(tiny_llama, CLEAN), replacement)
    torch.testing.assert_close(est.atp, change, atol=1e-5, rtol=1e-4)
    assert change.abs().max() > 1e-4


def test_rank_correlation_and_overlap_are_those_of_hand_made_rankings():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 3.0, 2.0])) == pytest.approx(
        0.5
    )
    assert spearman(a, torch.ones(2, 2)) is None
    assert agreement(a, torch.tensor([[0.0, 0.1], [-5.0, 4.0]]), k=2) == {
        "spearman": pytest.approx(0.4), "top_k": 2, "top_k_overlap": 2,
    }  # fmt: skip


def test_the_demo_models_induction_heads_top_a_head_patching_scan_of_a_repeated_sequence():
    lm = lmscope.load("demo")
    words = " apple river chair cloud stone window garden paper music horse".split()
    other = " table green light money water summer paint bread glass train".split()
    clean = " " + " ".join(words + words[:4])
    corrupt = " " + " ".join(words + other[:4])  # same length, nothing repeats
    result = patch(lm, clean, corrupt, " " + words[4], component="heads", scan="both")
    categories = head_profile(lm).categories
    induction = {(layer, h) for layer, row in enumerate(categories) for h, c in enumerate(row)
                 if c == "induction"}  # fmt: skip
    assert induction  # the profile finds some
    order = result.exact.flatten().argsort(descending=True)[: len(induction)]
    top = {(int(i) // lm.heads, int(i) % lm.heads) for i in order}
    assert top == induction
    assert float(result.exact.max()) > 0.5  # one head alone restores most of the answer


def test_prompts_of_different_token_counts_are_refused_naming_both_counts(tiny_gpt2):
    with pytest.raises(RequestError, match="clean prompt is 14 tokens and the corrupted prompt 3"):
        patch(tiny_gpt2, CLEAN, "Mary gave a", ANSWER, WRONG)
    with pytest.raises(RequestError, match="no difference"):
        patch(tiny_gpt2, CLEAN, CLEAN, ANSWER, WRONG)
    with pytest.raises(RequestError, match="'direction' must be one of denoising, noising"):
        patch(tiny_gpt2, CLEAN, CORRUPT, ANSWER, WRONG, direction="forward")
    for scan in ("exact", "atp"):  # the empty one is named: the page's prompt above is not empty
        with pytest.raises(PromptError, match=r"^The corrupted prompt is empty"):
            patch(tiny_gpt2, CLEAN, "", ANSWER, WRONG, scan=scan)


def test_cli_patch_prints_the_heatmap_and_refuses_bad_input_in_one_line(
    tiny_gpt2_folder, tiny_gpt2, capsys
):
    args = ["patch", "--model", str(tiny_gpt2_folder), "--clean", CLEAN, "--corrupt", CORRUPT,
            "--answer", ANSWER, "--wrong", WRONG]  # fmt: skip
    assert main([*args, "--component", "heads", "--scan", "exact", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    expected = patch(tiny_gpt2, CLEAN, CORRUPT, ANSWER, WRONG, component="heads", scan="exact")
    torch.testing.assert_close(torch.tensor(doc["exact"]), expected.exact, atol=1e-5, rtol=0)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "denoising resid patching of logit(' Mary') - logit(' John')" in out
    assert "AtP estimate" in out and "patched exactly" in out
    assert main([*args[:5], "--corrupt", "Mary gave a"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("lmscope: The clean prompt is 14 tokens and the corrupted prompt 3")


@pytest.fixture(scope="module")
def client(hub_cache):
    return api_app(Service(models=ModelCache(budget=2**30))).test_client()


def test_api_patch_answers_the_library_result_and_refuses_bad_input_with_400(client, tiny_gpt2):
    body = {"model": "gpt2", "clean": CLEAN, "corrupt": CORRUPT, "answer": ANSWER, "wrong": WRONG}
    response = client.post("/api/patch", json=body | {"component": "mlp", "scan": "both"})
    assert response.status_code == 200
    doc = response.get_json()
    expected = patch(tiny_gpt2, CLEAN, CORRUPT, ANSWER, WRONG, component="mlp", scan="both")
    torch.testing.assert_close(torch.tensor(doc["exact"]), expected.exact, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(doc["atp"]), expected.atp, atol=1e-5, rtol=0)
    assert doc["agreement"] == expected.agreement()
    for bad, message in [
        ({"corrupt": "Mary gave a"}, "14 tokens and the corrupted prompt 3"),
        ({"component": "embed"}, "'component' must be one of"),
        ({"scan": "fast"}, "'scan' must be one of"),
        ({"check": "ten"}, "'check' must be an integer"),
        ({"check": -1}, "'check' must be a whole number"),
        ({"wrong": ANSWER}, "are the same token"),
        ({"answer": " Mary Ann"}, "is 2 tokens"),
    ]:
        response = client.post("/api/patch", json=body | bad)
        assert response.status_code == 400, bad
        error = response.get_json()["error"]
        assert message in error and "\n" not in error


def test_the_exact_scan_reports_its_passes_and_stops_when_cancelled(tiny_gpt2):
    p = pair(tiny_gpt2, CLEAN, CORRUPT, ANSWER, WRONG)
    with jobs.running(Job("patching")) as job:
        exact(p, "resid", "denoising", batch_tokens=64)  # 28 cells, 3 per pass
    assert job.total == 10 and job.what == "pass"
    cancelled = Job("patching")
    cancelled.cancel()
    with jobs.running(cancelled), pytest.raises(Cancelled):
        exact(p, "resid", "denoising", batch_tokens=64)
