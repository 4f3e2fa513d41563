"""Every number an analysis holds equals what a plain transformers forward pass computes.

The reference is the model itself run the ordinary way (`output_attentions=True`,
`output_hidden_states=True`, all logits), for GPT-2 Small's exact shape and a tiny model of every
supported family (today's families: tests/families.py). Module paths below are written out per
family on purpose: they are the test's own knowledge of each architecture, not read from lmscope's
adapters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from families import NEW_FAMILIES, SMALL, block, build, head_dim
from torch.testing import assert_close
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from lmscope.core import attention
from lmscope.core.analysis import Analysis, analyze
from lmscope.core.heads import score_heads_with_evidence
from lmscope.core.loading import from_model
from lmscope.core.model import LoadedModel
from lmscope.core.trace import Recorder, recording

VOCAB = 50257  # the real GPT-2 tokenizer drives every family here
PROMPT = "The cat sat on the mat. The cat sat on the"
LONG_PROMPT = (
    "When Mary and John went to the store, John gave a drink to Mary because she was thirsty."
)


@dataclass(frozen=True)
class Family:
    """How to build a tiny model of one family, and where its parts live."""

    name: str
    build: Callable[[], PreTrainedModel]
    final_norm: str  # HF's last hidden state has this norm applied
    out_proj: str  # inside each block: the heads' output projection
    embedding: str
    attn_out_norm: str | None = None  # inside each block: a norm on attention's output
    embed_scale: float = 1.0  # the embedding module multiplies its rows by this
    windows: tuple[int | None, ...] = (None, None)  # each layer's sliding window


def _common(**extra) -> dict:
    return {"vocab_size": VOCAB, "attn_implementation": "eager", **extra}


FAMILIES = [
    Family(
        "gpt2",
        lambda: GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=64, **_common())),
        "transformer.ln_f",
        "attn.c_proj",
        "transformer.wte",
    ),
    Family(
        "gpt_neo",
        lambda: GPTNeoForCausalLM(
            GPTNeoConfig(
                num_layers=2,
                num_heads=4,
                hidden_size=64,
                attention_types=[[["global", "local"], 1]],
                window_size=4,  # shorter than the prompts: the local layer's band shows
                max_position_embeddings=128,
                **_common(),
            )
        ),
        "transformer.ln_f",
        "attn.attention.out_proj",
        "transformer.wte",
        windows=(None, 4),
    ),
    Family(
        "gpt_neox",
        lambda: GPTNeoXForCausalLM(
            GPTNeoXConfig(
                num_hidden_layers=2,
                num_attention_heads=4,
                hidden_size=64,
                intermediate_size=128,
                max_position_embeddings=128,
                use_parallel_residual=True,
                **_common(),
            )
        ),
        "gpt_neox.final_layer_norm",
        "attention.dense",
        "gpt_neox.embed_in",
    ),
    Family(
        "opt",
        lambda: OPTForCausalLM(
            OPTConfig(
                num_hidden_layers=2,
                num_attention_heads=4,
                hidden_size=64,
                word_embed_proj_dim=64,
                ffn_dim=128,
                max_position_embeddings=128,
                **_common(),
            )
        ),
        "model.decoder.final_layer_norm",
        "self_attn.out_proj",
        "model.decoder.embed_tokens",
    ),
    Family(
        "llama",
        lambda: LlamaForCausalLM(
            LlamaConfig(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                hidden_size=64,
                intermediate_size=128,
                max_position_embeddings=128,
                **_common(),
            )
        ),
        "model.norm",
        "self_attn.o_proj",
        "model.embed_tokens",
    ),
    Family(
        "qwen2",
        lambda: Qwen2ForCausalLM(
            Qwen2Config(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                hidden_size=64,
                intermediate_size=128,
                max_position_embeddings=128,
                **_common(),
            )
        ),
        "model.norm",
        "self_attn.o_proj",
        "model.embed_tokens",
    ),
    Family(
        "mistral",
        lambda: MistralForCausalLM(
            MistralConfig(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,  # grouped-query attention: 2 query heads per key/value head
                hidden_size=64,
                intermediate_size=128,
                max_position_embeddings=128,
                sliding_window=None,
                **_common(),
            )
        ),
        "model.norm",
        "self_attn.o_proj",
        "model.embed_tokens",
    ),
    *[
        Family(
            name,
            parts.build,
            parts.final_norm,
            parts.out_proj,
            parts.embedding,
            None if parts.attn_writes == "self_attn" else parts.attn_writes,
            parts.embed_scale,
            parts.windows,
        )
        for name, parts in NEW_FAMILIES.items()
    ],
]


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda f: f.name)
def family_model(request, gpt2_tokenizer) -> tuple[Family, LoadedModel]:
    family: Family = request.param
    torch.manual_seed(0)
    model = family.build().eval()
    _perturb_norms(model)
    return family, from_model(model, gpt2_tokenizer, f"tiny-{family.name}")


def _perturb_norms(model: torch.nn.Module) -> None:
    """Random weights leave norms at identity and biases at zero; make every parameter matter."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "ln" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))


def reference(lm: LoadedModel, ids: list[int]):
    """A plain transformers forward pass on its own eager attention (lmscope runs the model on
    sdpa and rebuilds patterns): all logits, attentions and hidden states."""
    with torch.no_grad(), attention.eager(lm.model):
        return lm.model(
            input_ids=torch.tensor([ids]), output_attentions=True, output_hidden_states=True
        )


def check_against_reference(
    lm: LoadedModel, a: Analysis, final_norm: str, out_proj: str, attn_out_norm: str | None = None
) -> None:
    ids = [t.id for t in a.tokens]
    ref = reference(lm, ids)
    layers = lm.model.config.num_hidden_layers
    T = len(ids)

    # Predictions: the last position's logits and probabilities.
    assert_close(a.logits, ref.logits[0, -1], atol=1e-4, rtol=1e-4)
    assert_close(a.probabilities, ref.logits[0, -1].softmax(-1), atol=1e-4, rtol=0)

    # Attention patterns, against output_attentions, and what a pattern must be.
    expected = torch.stack([layer[0] for layer in ref.attentions])
    assert a.attention.shape == (layers, lm.model.config.num_attention_heads, T, T)
    assert_close(a.attention, expected, atol=1e-5, rtol=0)
    assert_close(a.attention.sum(-1), torch.ones(a.attention.shape[:-1]), atol=1e-5, rtol=0)
    upper = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    assert (a.attention[..., upper] == 0).all()

    # Residual stream: HF's hidden states, whose last one has the final norm applied.
    hidden = ref.hidden_states
    assert a.residual.shape == (layers + 1, T, lm.model.config.hidden_size)
    for layer in range(layers):
        assert_close(a.residual[layer], hidden[layer][0], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        normed = lm.model.get_submodule(final_norm)(a.residual[-1])
    assert_close(normed, hidden[-1][0], atol=1e-4, rtol=1e-4)

    # What each sublayer wrote adds up to how the stream changed (parallel residual included):
    # the MLP wrote the change less the attention's output.
    assert_close(a.attn_norms, a.attn_out.norm(dim=-1), atol=1e-4, rtol=1e-5)
    mlp_writes = a.residual[1:] - a.residual[:-1] - a.attn_out
    assert_close(a.mlp_norms, mlp_writes.norm(dim=-1), atol=1e-4, rtol=1e-4)
    assert_close(a.mlp_last, mlp_writes[:, -1], atol=1e-4, rtol=1e-4)

    # z is what the output projection reads: projecting it (and norming it, where a norm follows
    # the sublayer) gives the attention output.
    with torch.no_grad():
        for layer, block in enumerate(lm.adapter.block_list(lm.model)):
            projected = block.get_submodule(out_proj)(a.z[layer].flatten(-2))
            if attn_out_norm is not None:
                projected = block.get_submodule(attn_out_norm)(projected)
            assert_close(projected, a.attn_out[layer], atol=1e-4, rtol=1e-4)

    # The logit lens's last row is the model's own output.
    lens = a.logit_lens(k=5)
    assert len(lens) == layers + 1
    top = ref.logits[0, -1].softmax(-1).topk(5)
    assert [p.id for p in lens[-1]] == top.indices.tolist()
    assert_close(torch.tensor([p.probability for p in lens[-1]]), top.values, atol=1e-5, rtol=0)
    assert [p.id for p in a.top_predictions(5)] == top.indices.tolist()


@pytest.mark.parametrize("prompt", [PROMPT, LONG_PROMPT])
def test_every_family_matches_a_plain_forward_pass(family_model, prompt):
    family, lm = family_model
    a = analyze(lm, prompt)
    assert [t.id for t in a.tokens] == lm.tokenizer(prompt)["input_ids"]
    check_against_reference(lm, a, family.final_norm, family.out_proj, family.attn_out_norm)


def test_token_embeddings_are_rows_of_the_embedding_table(family_model):
    """Scaled where the family scales them (Gemma: sqrt(d_model), inside the embedding module)."""
    family, lm = family_model
    a = analyze(lm, PROMPT)
    table = lm.model.get_submodule(family.embedding).weight
    assert_close(a.token_embeddings, table[a.ids] * family.embed_scale, atol=0, rtol=0)
    assert lm.card.embedding_scale == pytest.approx(family.embed_scale)


def test_gpt_neo_local_layers_attend_only_within_the_window(gpt2_tokenizer):
    torch.manual_seed(0)
    lm = from_model(FAMILIES[1].build(), gpt2_tokenizer, "tiny-neo")
    a = analyze(lm, LONG_PROMPT)
    T = len(a.tokens)
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    outside = (i - j) >= 4  # beyond the window of 4 (the token itself included)
    assert (a.attention[1][:, outside] == 0).all()  # layer 1 is local
    assert (a.attention[0][:, outside] > 0).any()  # layer 0 is global


def test_grouped_query_attention_reports_every_query_head(family_model):
    _, lm = family_model
    a = analyze(lm, PROMPT)
    config = lm.model.config
    assert a.attention.shape[1] == config.num_attention_heads
    assert a.z.shape[2:] == (config.num_attention_heads, head_dim(lm.model))
    assert lm.card.head_size == head_dim(lm.model)
    assert lm.card.key_value_heads == (
        getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    )


def test_gpt2_small_matches_a_plain_forward_pass(small_gpt2):
    a = analyze(small_gpt2, LONG_PROMPT)
    assert a.attention.shape[:2] == (12, 12)
    check_against_reference(small_gpt2, a, "transformer.ln_f", "attn.c_proj")


def test_gpt2_small_position_embeddings_are_rows_of_wpe(small_gpt2):
    a = analyze(small_gpt2, PROMPT)
    T = len(a.tokens)
    model = small_gpt2.model.transformer
    assert_close(a.position_embeddings, model.wpe.weight[:T], atol=0, rtol=0)
    assert_close(a.token_embeddings, model.wte.weight[a.ids], atol=0, rtol=0)
    assert_close(a.residual[0], a.token_embeddings + a.position_embeddings, atol=1e-6, rtol=0)


def test_opt_350m_style_post_norm_with_projections_matches_a_plain_forward_pass(gpt2_tokenizer):
    """OPT-350m's layout: LayerNorm after each sublayer, no final norm, embeddings projected in
    and out of a narrower width."""
    torch.manual_seed(0)
    config = OPTConfig(
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_size=64,
        word_embed_proj_dim=32,
        ffn_dim=128,
        max_position_embeddings=128,
        do_layer_norm_before=False,
        **_common(),
    )
    model = OPTForCausalLM(config).eval()
    _perturb_norms(model)
    lm = from_model(model, gpt2_tokenizer, "tiny-opt-350m-style")
    a = analyze(lm, LONG_PROMPT)
    ref = reference(lm, [t.id for t in a.tokens])
    assert_close(a.logits, ref.logits[0, -1], atol=1e-4, rtol=1e-4)
    assert_close(a.attention, torch.stack([x[0] for x in ref.attentions]), atol=1e-5, rtol=0)
    for layer in range(2):
        assert_close(a.residual[layer], ref.hidden_states[layer][0], atol=1e-4, rtol=1e-4)
    top = ref.logits[0, -1].softmax(-1).topk(5)
    assert [p.id for p in a.logit_lens(k=5)[-1]] == top.indices.tolist()
    assert_close(a.token_embeddings, model.model.decoder.embed_tokens.weight[a.ids], atol=0, rtol=0)


def test_the_traced_pass_runs_on_sdpa_and_keeps_queries_and_keys_not_patterns(family_model):
    _, lm = family_model
    assert lm.model.config._attn_implementation == attention.IMPLEMENTATION
    a = analyze(lm, LONG_PROMPT)
    config = lm.model.config
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    T = len(a.tokens)
    for keys in a.keys:  # before the grouped-query repeat: one key per key/value head
        assert keys.query.shape[:3] == (1, config.num_attention_heads, T)
        assert keys.key.shape[:3] == (1, kv, T)


def test_rows_and_heads_rebuilt_on_request_equal_eager_attention(family_model):
    _, lm = family_model
    a = analyze(lm, LONG_PROMPT)
    expected = torch.stack([x[0] for x in reference(lm, [t.id for t in a.tokens]).attentions])
    for layer in range(len(a.keys)):
        assert_close(a.layer_patterns(layer), expected[layer], atol=1e-5, rtol=0)
        assert_close(
            a.pattern(layer, 1, rows=slice(3, 9)), expected[layer, 1, 3:9], atol=1e-5, rtol=0
        )
        pooled = torch.nn.functional.max_pool2d(expected[layer, 2][None], 3, ceil_mode=True)[0]
        assert_close(
            a.pattern_overview(layer, 2, size=-(-len(a.tokens) // 3)), pooled, atol=1e-5, rtol=0
        )


def test_streamed_head_scores_equal_the_scores_of_full_eager_patterns(family_model, monkeypatch):
    """A sliding-window layer's heads are scored on what they can see (its window)."""
    family, lm = family_model
    monkeypatch.setattr(attention, "ROW_BLOCK", 5)  # several blocks on a short prompt
    a = analyze(lm, LONG_PROMPT + " " + PROMPT)
    ids = a.ids
    eager = torch.stack([x[0] for x in reference(lm, ids.tolist()).attentions])
    per_layer = [
        score_heads_with_evidence(eager[layer], ids, family.windows[layer])
        for layer in range(len(eager))
    ]
    scores, evidence = (
        {k: torch.stack([p[part][k] for p in per_layer]) for k in per_layer[0][part]}
        for part in (0, 1)
    )
    for name, expected in scores.items():
        got = torch.tensor(a.heads.scores[name])
        assert torch.equal(got.isnan(), expected.isnan()), name
        assert_close(got.nan_to_num(), expected.nan_to_num(), atol=1e-6, rtol=0)
    for name, expected in evidence.items():
        assert_close(torch.tensor(a.heads.evidence[name]), expected, atol=1e-5, rtol=1e-6)


def test_padded_batches_rebuild_the_eager_patterns(family_model):
    """Left padding: the mask the model passed is part of the rule a pattern is rebuilt with."""
    _, lm = family_model
    ids = torch.tensor([lm.tokenizer(LONG_PROMPT)["input_ids"][:12]] * 2)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    rec = Recorder()
    with torch.no_grad(), recording(rec):
        lm.model(input_ids=ids, attention_mask=mask)
    with torch.no_grad(), attention.eager(lm.model):
        expected = lm.model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    for layer, keys in rec.keys.items():  # rows of padding tokens read nothing: each
        rebuilt = keys.rows()  # implementation fills them its own way (GPT-Neo's differs)
        for item in range(2):
            real = mask[item].bool()
            assert_close(rebuilt[item][:, real], expected[layer][item][:, real], atol=1e-5, rtol=0)


def test_mistral_sliding_window_patterns_rebuild_with_the_window(gpt2_tokenizer):
    torch.manual_seed(0)
    config = MistralConfig(
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_size=64,
        intermediate_size=128,
        max_position_embeddings=128,
        sliding_window=5,
        **_common(),
    )
    lm = from_model(MistralForCausalLM(config).eval(), gpt2_tokenizer, "tiny-mistral-window")
    a = analyze(lm, LONG_PROMPT)
    ref = reference(lm, [t.id for t in a.tokens])
    assert_close(a.attention, torch.stack([x[0] for x in ref.attentions]), atol=1e-5, rtol=0)
    i, j = torch.meshgrid(torch.arange(len(a.tokens)), torch.arange(len(a.tokens)), indexing="ij")
    assert (a.attention[..., (i - j) >= 5] == 0).all()
    assert_close(a.logits, ref.logits[0, -1], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module", params=sorted(NEW_FAMILIES))
def new_family(request, gpt2_tokenizer) -> tuple[str, LoadedModel]:
    return request.param, from_model(build(request.param), gpt2_tokenizer, request.param)


def _hooked_writes(lm: LoadedModel, name: str, ids: list[int]) -> dict[str, list[torch.Tensor]]:
    """Each block's input and output and what its attention and MLP add to the stream, read with
    plain hooks on the model's own modules (the post-norm's output where the family has one)."""
    parts = NEW_FAMILIES[name]
    seen: dict[str, list[torch.Tensor]] = {"pre": [], "post": [], "attn": [], "mlp": []}

    def keep(key):
        return lambda module, args, out: seen[key].append(out[0] if isinstance(out, tuple) else out)

    handles = []
    for layer in range(lm.layers):
        blk = block(lm.model, layer)
        handles += [
            blk.register_forward_pre_hook(
                lambda module, args, kwargs: seen["pre"].append(
                    args[0] if args else kwargs["hidden_states"]
                ),
                with_kwargs=True,
            ),
            blk.register_forward_hook(keep("post")),
            blk.get_submodule(parts.attn_writes).register_forward_hook(keep("attn")),
            blk.get_submodule(parts.mlp_writes).register_forward_hook(keep("mlp")),
        ]
    try:
        with torch.no_grad(), attention.eager(lm.model):
            lm.model(input_ids=torch.tensor([ids]))
    finally:
        for handle in handles:
            handle.remove()
    return {k: [x[0] for x in v] for k, v in seen.items()}


def test_each_sublayers_contribution_is_the_change_of_the_stream_around_it(new_family):
    """What the residual-writes view shows for a sublayer is what it adds to the stream: after
    Gemma's and OLMo 2's post-norms, so resid[l + 1] - resid[l] == attn_out + mlp_out."""
    name, lm = new_family
    a = analyze(lm, LONG_PROMPT)
    hooked = _hooked_writes(lm, name, a.ids.tolist())
    for layer in range(lm.layers):
        change = hooked["post"][layer] - hooked["pre"][layer]
        assert_close(hooked["attn"][layer] + hooked["mlp"][layer], change, atol=1e-5, rtol=0)
        assert_close(a.attn_out[layer], hooked["attn"][layer], atol=1e-5, rtol=1e-5)
        assert_close(a.attn_norms[layer], hooked["attn"][layer].norm(dim=-1), atol=1e-5, rtol=1e-5)
        assert_close(a.mlp_norms[layer], hooked["mlp"][layer].norm(dim=-1), atol=1e-5, rtol=1e-5)
        assert_close(a.mlp_last[layer], hooked["mlp"][layer][-1], atol=1e-5, rtol=1e-5)
        change = a.residual[layer + 1] - a.residual[layer]
        assert_close(a.attn_out[layer] + hooked["mlp"][layer], change, atol=1e-5, rtol=1e-5)


def test_the_card_states_each_familys_architecture(new_family):
    """The facts views branch on, read off the config, and the window each layer really used."""
    name, lm = new_family
    card = lm.card
    windows = NEW_FAMILIES[name].windows
    assert card.head_size == head_dim(lm.model)
    assert card.rotary and card.gated_mlp
    assert card.tied_embeddings == (
        lm.model.get_output_embeddings().weight is lm.model.get_input_embeddings().weight
    )
    assert card.post_norms == (name in ("gemma2", "gemma3", "olmo2"))
    assert card.qk_norm == (name in ("gemma3", "qwen3", "olmo2"))
    assert card.attention_softcap == (2.0 if name == "gemma2" else None)
    assert card.final_softcap == (0.5 if name == "gemma2" else None)
    assert card.local_layers == tuple(i for i, w in enumerate(windows) if w)
    assert card.sliding_window == next((w for w in windows if w), None)
    assert card.activation == ("GELU (tanh approx.)" if name.startswith("gemma") else "SiLU")
    assert card.parity_ok and card.parity.startswith("lmscope's trace reproduces")
    a = analyze(lm, PROMPT)
    assert [keys.window for keys in a.keys] == list(windows)


def test_llama3_rope_scaling_is_live_and_traced(gpt2_tokenizer):
    """Llama 3's rope scaling changes the logits of a prompt longer than its original context,
    and lmscope's trace follows it (the plain pass is the reference)."""
    model = build("llama3")
    lm = from_model(model, gpt2_tokenizer, "tiny-llama3")
    assert lm.card.positional_encoding == "rotary (RoPE), llama3 scaling"
    a = analyze(lm, LONG_PROMPT)
    check_against_reference(lm, a, "model.norm", "self_attn.o_proj")
    plain = LlamaForCausalLM(
        LlamaConfig(**{**SMALL, "rope_parameters": {"rope_theta": 500000.0}})
    ).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        unscaled = plain(input_ids=a.ids[None]).logits[0, -1]
    assert (unscaled - a.logits).abs().max() > 1e-3


def test_an_adapter_that_does_not_fit_its_model_is_a_visible_warning(
    gpt2_tokenizer, monkeypatch, capsys
):
    """The parity check at load: Gemma 2's adapter with its logit soft-cap forgotten reads
    different logits off the stream than the model computes; the card says so, and the CLI too."""
    from dataclasses import replace

    from lmscope import cli
    from lmscope.core import adapters
    from lmscope.core.adapters import gemma

    good = from_model(build("gemma2"), gpt2_tokenizer, "tiny-gemma2")
    assert good.card.parity_ok and good.card.parity_error < 1e-5
    exact = "lmscope's trace reproduces this model's logits exactly (on the load probe)"
    close = f"lmscope's trace reproduces this model's logits to {good.card.parity_error:.0e}"
    assert good.card.parity == (exact if good.card.parity_error == 0 else close)
    broken = replace(gemma.GEMMA2, final_softcap=None)
    monkeypatch.setitem(adapters._BY_MODEL_TYPE, "gemma2", broken)
    lm = from_model(build("gemma2"), gpt2_tokenizer, "tiny-gemma2-broken")
    assert lm.card.parity_ok is False
    assert lm.card.parity_error > 0.01
    assert "does NOT reproduce this model's logits" in lm.card.parity
    monkeypatch.setattr(cli, "load_model", lambda *args, **kwargs: lm)
    cli.load(cli.parser().parse_args(["analyze", "--model", "anything", "--prompt", "x"]))
    assert "warning: lmscope's trace does NOT reproduce" in capsys.readouterr().err
    # The API answers carry it, and the page's model card shows it as a warning.
    from lmscope.core.model_cache import ModelCache
    from lmscope.dashboard.layout import card_view
    from lmscope.service import Service
    from lmscope.web.server import api_app

    service = Service(ModelCache(budget=2**30))
    service.models.add(lm)
    client = api_app(service).test_client()
    doc = client.post("/api/analyze", json={"model": lm.model_id, "prompt": "one two"}).json
    assert doc["warnings"] == [lm.card.parity]
    body = {"model": lm.model_id, "prompt": "one two three", "heads": [[0, 0]], "new_tokens": 0}
    assert client.post("/api/ablate", json=body).json["warnings"] == [lm.card.parity]
    shown = json.dumps(card_view(lm.card).to_plotly_json(), default=str)
    assert "parity-warning" in shown and "does NOT reproduce" in shown
    assert "parity-warning" not in json.dumps(card_view(good.card).to_plotly_json(), default=str)
