"""Devices and precision on the CPU: half-precision analyses agree with float32 within the stated
tolerance (core/devices.py's TOLERANCE), and a model spread by accelerate with some layers offloaded
to disk (on `meta` outside their forward) gives the same values in every view as in one piece.

The tests at the end need a CUDA GPU: they skip here (benchmarks/gpu_check.sh runs them on one).
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from lmscope.core import speed
from lmscope.core.analysis import analyze
from lmscope.core.catalog import DEMO_ID, SMOLLM2_ID
from lmscope.core.devices import placement, tolerance
from lmscope.core.embeddings import nearest_tokens
from lmscope.core.head_steps import head_steps
from lmscope.core.loading import analysis_reserve, inspect_model, load_model
from lmscope.core.model import LoadedModel
from lmscope.core.placement import plan
from lmscope.experiments.ablation_atp import head_scan
from lmscope.experiments.attribution import direct_logit_attribution, token_attribution
from lmscope.experiments.generation import GenerationSettings, generate
from lmscope.experiments.patching import patch
from lmscope.experiments.steering import steer

PROMPTS = [
    "The capital of France is",
    "The opposite of hot is",
    "When Mary and John went to the store, John gave a drink to",
]
IOI = PROMPTS[2]
INDUCTION = ["one two three four five one two three four", "red green blue yellow red green blue"]
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (gpu_check.sh)")


@pytest.fixture(scope="module", params=["bfloat16", "float16"])
def smollm2_half(request, smollm2) -> LoadedModel:
    """SmolLM2 loaded again in half precision on the CPU (from the session's dequantized folder)."""
    return load_model(SMOLLM2_ID, placement=placement("cpu", request.param))


def test_the_card_says_where_and_in_what_precision(smollm2, smollm2_half):
    assert (smollm2.card.device, smollm2.card.dtype) == ("cpu", "float32")
    assert smollm2.card.placement == "float32 on cpu"
    name = str(smollm2_half.dtype).removeprefix("torch.")
    assert (smollm2_half.card.dtype, smollm2_half.card.placement) == (name, f"{name} on cpu")
    assert smollm2_half.card.parity_ok, smollm2_half.card.parity  # within the dtype's tolerance


def test_the_python_api_and_the_service_load_in_the_placement_asked_for(tiny_gpt2_folder):
    import lmscope
    from lmscope.core.model_cache import ModelCache
    from lmscope.service import Service

    lm = lmscope.load(str(tiny_gpt2_folder), device="cpu", dtype="bfloat16")
    assert (lm.card.dtype, lm.dtype, lm.device.type) == ("bfloat16", torch.bfloat16, "cpu")
    assert lmscope.load(str(tiny_gpt2_folder), device="cpu", dtype="float32").dtype == torch.float32
    service = Service(ModelCache(placement=placement("cpu", "float16")))
    service.serve(str(tiny_gpt2_folder))
    assert service.model(None).card.placement == "float16 on cpu"
    _, needed_half = service.inspect("demo")[1:]
    assert needed_half < Service(ModelCache()).inspect("demo")[2]  # the check counts the dtype


@pytest.mark.parametrize("prompt", PROMPTS)
def test_half_precision_predicts_what_float32_predicts(smollm2, smollm2_half, prompt):
    full, half = analyze(smollm2, prompt), analyze(smollm2_half, prompt)
    assert [p.id for p in half.top_predictions(1)] == [p.id for p in full.top_predictions(1)]
    allowed = tolerance(smollm2_half.dtype) * float(full.logits.abs().max())
    assert float((half.logits - full.logits).abs().max()) <= allowed
    assert half.residual.dtype == smollm2_half.dtype  # held in the model's dtype: half the bytes
    assert half.logits.dtype == torch.float32


def test_half_precision_attribution_sums_and_agrees_with_float32(smollm2, smollm2_half):
    full = direct_logit_attribution(analyze(smollm2, IOI), " Mary", " John")
    half = direct_logit_attribution(analyze(smollm2_half, IOI), " Mary", " John")
    allowed = tolerance(smollm2_half.dtype)
    assert abs(half.total - half.logit) <= allowed * abs(full.logit)
    # measured: 0.064 (bfloat16) and 0.006 (float16) of heads up to 2.9
    assert float((half.heads - full.heads).abs().max()) <= allowed * float(full.heads.abs().max())
    strongest = full.heads.abs().flatten().argmax()
    assert half.heads.abs().flatten().argmax() == strongest


def test_half_precision_gradients_rank_the_cells_as_float32_does(smollm2, smollm2_half):
    """AtP in half precision: the pass and its backward in the model's dtype, the products and
    sums in float32; the estimate's strongest cells are float32's."""
    kwargs = dict(component="resid", scan="atp", check=0)
    full = patch(smollm2, IOI, CORRUPT, " Mary", " John", **kwargs)
    half = patch(smollm2_half, IOI, CORRUPT, " Mary", " John", **kwargs)
    assert torch.isfinite(half.atp).all()
    # measured: 0.024 (bfloat16) and 0.002 (float16) of cells up to 0.99
    allowed = tolerance(smollm2_half.dtype) * float(full.atp.abs().max())
    assert float((half.atp - full.atp).abs().max()) <= allowed
    top = set(full.atp.flatten().abs().topk(5).indices.tolist())
    assert half.atp.flatten().abs().argmax().item() in top


def _folder(tmp_path_factory, gpt2_tokenizer, family: str):
    torch.manual_seed(2)
    if family == "gpt2":  # LayerNorm (its weights are read directly), tied unembedding
        config = GPT2Config(n_layer=4, n_head=4, n_embd=64, n_positions=128)
        model = GPT2LMHeadModel(config)
    else:  # RMSNorm, rotary, grouped queries, the mean-embedding attribution baseline
        config = LlamaConfig(
            vocab_size=len(gpt2_tokenizer), hidden_size=64, intermediate_size=128,
            num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, tie_word_embeddings=True,
        )  # fmt: skip
        model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp(f"offload-{family}")
    model.save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def family_folder(request, tmp_path_factory, gpt2_tokenizer):
    return _folder(tmp_path_factory, gpt2_tokenizer, request.param)


def _offloaded(folder, tmp_path, share: float) -> LoadedModel:
    """The model loaded with a CPU budget of `share` of its weights (plus the analysis reserve):
    the layers past it go to disk."""
    config, _, card = inspect_model(str(folder), allow_local_path=True)
    whole = plan(config, torch.float32, {"cpu": 2**40}).sizes[""]
    budget = int(whole * share) + analysis_reserve(card)
    where = placement("cpu", "float32", "auto", {"cpu": budget}, str(tmp_path / "offload"))
    return load_model(str(folder), allow_local_path=True, placement=where)


def _values(lm: LoadedModel) -> dict[str, torch.Tensor]:
    """What every view shows of one prompt, as tensors."""
    analysis = analyze(lm, IOI)
    dla = direct_logit_attribution(analysis, " Mary", " John")
    steps = head_steps(analysis, 3, 1)
    patched = patch(lm, IOI, CORRUPT, " Mary", " John", component="heads", scan="both", check=3)
    scan = head_scan(lm, IOI, method="atp", check=2)
    attribution = token_attribution(lm, "The cat sat on the", " mat", steps=17)
    steered = steer(lm, IOI, 2, 4.0, token=" Mary", new_tokens=3)
    greedy = generate(lm, IOI, GenerationSettings(max_new_tokens=4))
    return {
        "logits": analysis.logits,
        "lens_last": torch.tensor([[p.logit for p in row] for row in analysis.logit_lens()]),
        "lens_first": torch.tensor([[p.logit for p in row] for row in analysis.logit_lens(0)]),
        "lens_ids": torch.tensor([[p.id for p in row] for row in analysis.logit_lens(3)]),
        "dla_heads": dla.heads,
        "dla_mlps": dla.mlps,
        "dla_rest": torch.tensor([dla.embeddings, dla.constant, dla.total]),
        "steps_weights": steps.weights,
        "steps_output": steps.output,
        "patch_exact": patched.exact,
        "patch_atp": patched.atp,
        "scan_atp": scan.atp,
        "ig": attribution.integrated_gradients,
        "steered": steered.after,
        "nearest": torch.tensor([n.id for n in nearest_tokens(lm, 262, 5)]),
        "generated": torch.tensor(greedy.ids),
    }


def test_an_offloaded_model_is_timed_by_the_speed_probe_and_analyzed(
    family_folder, tmp_path, monkeypatch
):
    """Every other test runs at an assumed speed; a real machine measures it first: the probe
    put its ids where the first weight sits, `meta` for an offloaded model, so every analysis
    failed ("Cannot copy out of meta tensor")."""
    monkeypatch.delenv(speed.SPEED_ENV, raising=False)
    monkeypatch.setattr(speed, "_cache_file", lambda lm: None)
    spread = _offloaded(family_folder, tmp_path, 0.5)
    assert spread.card.offloaded
    analysis = analyze(spread, IOI)
    assert speed.speed_of(spread).measured and analysis.logits.isfinite().all()


@pytest.mark.parametrize("share", [0.99, 0.5], ids=["some-layers-on-disk", "all-on-disk"])
def test_an_offloaded_model_shows_what_the_whole_model_shows(family_folder, tmp_path, share):
    whole = load_model(str(family_folder), allow_local_path=True)
    spread = _offloaded(family_folder, tmp_path, share)
    on_meta = [n for n, p in spread.model.named_parameters() if p.device.type == "meta"]
    assert on_meta, "nothing was offloaded: the test would not test the trap"
    assert spread.card.offloaded and "on disk" in spread.card.placement
    if share > 0.9:
        assert "layer" in spread.card.placement.split("on the CPU")[0]  # layers on both sides
    expected, got = _values(whole), _values(spread)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-5, msg=name)
    # the weights went back to `meta` after each use: onloading changed nothing for good
    assert on_meta == [n for n, p in spread.model.named_parameters() if p.device.type == "meta"]


@gpu
@pytest.mark.parametrize("prompt", INDUCTION)
def test_a_gpu_in_bfloat16_predicts_what_the_cpu_in_float32_predicts(prompt):
    """The bundled demo model (trained: it completes repeated sequences), on the GPU in bfloat16
    and on the CPU in float32 (SmolLM2's package cannot reach a GPU machine with no network)."""
    lm = load_model(DEMO_ID, placement=placement("cuda", "bfloat16"))
    assert lm.card.device == "cuda:0" and lm.card.parity_ok, lm.card.parity
    gpu_analysis, cpu_analysis = analyze(lm, prompt), analyze(load_model(DEMO_ID), prompt)
    assert gpu_analysis.residual.device.type == "cuda"  # the analysis stays where it was made
    assert gpu_analysis.top_predictions(1)[0].id == cpu_analysis.top_predictions(1)[0].id
    allowed = tolerance(torch.bfloat16) * float(cpu_analysis.logits.abs().max())
    assert float((gpu_analysis.logits.cpu() - cpu_analysis.logits).abs().max()) <= allowed


@gpu
def test_a_gpu_with_layers_offloaded_to_the_cpu_shows_what_the_whole_model_shows(
    family_folder, tmp_path
):
    """accelerate's usual offload: the GPU computes, layers past its budget wait on the CPU."""
    whole = load_model(
        str(family_folder), allow_local_path=True, placement=placement("cuda", "float32")
    )
    config, _, card = inspect_model(str(family_folder), allow_local_path=True)
    size = plan(config, torch.float32, {"cpu": 2**40}).sizes[""]
    budget = {0: int(size * 0.99) + analysis_reserve(card), "cpu": 2**34}
    spread = load_model(str(family_folder), allow_local_path=True,
                        placement=placement("cuda", "float32", "auto", budget))  # fmt: skip
    assert spread.card.offloaded and "on the CPU" in spread.card.placement
    expected, got = _values(whole), _values(spread)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-4, msg=name)
