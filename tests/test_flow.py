"""The flow view's numbers (core/flow.py) equal a plain transformers pass with hand-written hooks:
the stream's length entering and leaving each layer, what attention and the MLP added, the final
norm, the logit lens and the top predictions; and the line view's rows equal the analysis's own
patterns. GPT-2-style (learned positions, LayerNorm), Llama-style (rotary, RMSNorm, gated MLP)
and Gemma 3 (norms after each sublayer, scaled embeddings), and SmolLM2 itself (slow)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from families import build
from transformers import PreTrainedModel

from lmscope.core.analysis import analyze
from lmscope.core.flow import LINE_FLOOR, flow, head_lines, line_window
from lmscope.core.loading import from_model
from lmscope.core.model import LoadedModel
from lmscope.dashboard.stages.attention.lines import read_ask

PROMPT = "The cat sat on the mat. The cat sat on the"


@dataclass(frozen=True)
class Parts:
    """Where this test reads a family's parts (its own knowledge, not lmscope's adapters)."""

    blocks: str
    attn_writes: str  # inside a block: its output is what attention adds to the stream
    mlp_writes: str
    final_norm: str
    lm_head: str = "lm_head"


GPT2 = Parts("transformer.h", "attn", "mlp", "transformer.ln_f")
LLAMA = Parts("model.layers", "self_attn", "mlp", "model.norm")
GEMMA3 = Parts(
    "model.layers", "post_attention_layernorm", "post_feedforward_layernorm", "model.norm"
)


def first(out):
    return out[0] if isinstance(out, tuple) else out


def reference(model: PreTrainedModel, parts: Parts, ids: list[int], position: int) -> dict:
    """Lengths at `position` from hooks on the model's own modules and `output_hidden_states`."""
    writes: dict[str, list[torch.Tensor]] = {"attn": [], "mlp": [], "out": []}
    handles = []
    for block in model.get_submodule(parts.blocks):
        for name, path in (("attn", parts.attn_writes), ("mlp", parts.mlp_writes)):
            module = block.get_submodule(path)
            handles.append(
                module.register_forward_hook(
                    lambda _m, _i, out, key=name: writes[key].append(first(out)[0, position])
                )
            )
        handles.append(
            block.register_forward_hook(
                lambda _m, _i, out: writes["out"].append(first(out)[0, position])
            )
        )
    try:
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    streams = [out.hidden_states[0][0, position], *writes["out"]]  # entering layer 0, leaving each
    with torch.no_grad():
        lens = model.get_submodule(parts.lm_head)(
            model.get_submodule(parts.final_norm)(torch.stack(streams))
        )
    probs = out.logits[0, position].softmax(-1)
    return {
        "streams": [float(s.norm()) for s in streams],
        "attn": [float(w.norm()) for w in writes["attn"]],
        "mlp": [float(w.norm()) for w in writes["mlp"]],
        "final_out": float(out.hidden_states[-1][0, position].norm()),  # HF's last: final-normed
        "lens": lens.argmax(-1).tolist(),
        "top": probs.topk(5),
    }


def check_flow(lm: LoadedModel, model: PreTrainedModel, parts: Parts, position: int) -> None:
    analysis = analyze(lm, PROMPT)
    ids = [t.id for t in analysis.tokens]
    ref = reference(model, parts, ids, position)
    doc = flow(analysis, position)
    close = {"rel": 1e-4, "abs": 1e-4}
    assert doc.position == position % len(ids)
    assert doc.token_id == ids[position]
    assert doc.stream_start == pytest.approx(ref["streams"][0], **close)
    assert [s.stream_in for s in doc.layers] == pytest.approx(ref["streams"][:-1], **close)
    assert [s.stream_out for s in doc.layers] == pytest.approx(ref["streams"][1:], **close)
    assert [s.attention for s in doc.layers] == pytest.approx(ref["attn"], **close)
    assert [s.mlp for s in doc.layers] == pytest.approx(ref["mlp"], **close)
    assert doc.final_in == pytest.approx(ref["streams"][-1], **close)
    assert doc.final_out == pytest.approx(ref["final_out"], **close)
    assert [doc.embedding_lens.id] + [s.lens.id for s in doc.layers] == ref["lens"]
    assert [p.id for p in doc.predictions] == ref["top"].indices.tolist()
    assert [p.probability for p in doc.predictions] == pytest.approx(
        ref["top"].values.tolist(), abs=1e-5
    )
    answer, guesses = ref["top"].indices[0], ref["lens"][1:]
    settled = next(i for i in range(len(guesses)) if all(g == answer for g in guesses[i:]))
    assert doc.settled_layer == settled
    assert doc.largest_write[2] == pytest.approx(max(ref["attn"] + ref["mlp"]), **close)
    # the document is the analysis's own numbers as well
    assert [s.attention for s in doc.layers] == analysis.attn_norms[:, position].tolist()
    assert doc.predictions == analysis.top_predictions(5, position)


@pytest.mark.parametrize("position", [-1, 3])
def test_gpt2_flow_equals_a_plain_pass(tiny_gpt2, tiny_gpt2_model, position):
    check_flow(tiny_gpt2, tiny_gpt2_model, GPT2, position)
    doc = flow(analyze(tiny_gpt2, PROMPT), position)
    assert doc.position_embedding is not None  # learned positions: a vector added at the start
    assert doc.design["learned_positions"] and not doc.design["rotary"]
    assert doc.design["normalization"] == "LayerNorm" and not doc.design["gated_mlp"]


@pytest.mark.parametrize("position", [-1, 3])
def test_llama_flow_equals_a_plain_pass(tiny_llama, position):
    check_flow(tiny_llama, tiny_llama.model, LLAMA, position)
    doc = flow(analyze(tiny_llama, PROMPT), position)
    assert doc.position_embedding is None  # rotary: positions enter inside attention
    assert doc.design["rotary"] and not doc.design["learned_positions"]
    assert doc.design["normalization"] == "RMSNorm" and doc.design["gated_mlp"]


def test_post_norm_flow_reads_what_the_sublayers_add_after_their_norms(gpt2_tokenizer):
    model = build("gemma3")
    lm = from_model(model, gpt2_tokenizer, "tiny-gemma3")
    check_flow(lm, model, GEMMA3, -1)
    assert flow(analyze(lm, PROMPT)).design["post_norms"]


def test_the_flow_grows_with_layers_not_tokens(tiny_gpt2):
    long = analyze(tiny_gpt2, " the" * 120)
    doc = flow(long).to_dict()
    assert len(doc["layers"]) == 2 and len(doc["predictions"]) == 5
    assert doc["tokens"] == 120 and doc["position"] == 119


@pytest.mark.slow
def test_smollm2_flow_equals_transformers_own_load(smollm2, smollm2_hf):
    model, _ = smollm2_hf
    check_flow(smollm2, model, LLAMA, -1)


def test_line_window_pins_the_first_token_of_a_long_prompt():
    assert line_window(5, 4, 48) == [0, 1, 2, 3, 4]
    assert line_window(100, 99, 4) == [0, 96, 97, 98, 99]
    assert line_window(100, 2, 4) == [0, 1, 2]
    assert line_window(100, 500, 3) == [0, 97, 98, 99]  # an end past the prompt is its last token


def test_head_lines_are_the_heads_own_rows(tiny_llama):
    analysis = analyze(tiny_llama, PROMPT)
    position, shown = 9, [0, 5, 6, 7, 8, 9, 10]
    lines = head_lines(analysis, 1, position, [0, 2, 3], shown)
    assert [line.head for line in lines] == [0, 2, 3]
    for line in lines:
        row = analysis.pattern(1, line.head, slice(position, position + 1))[0]
        expected = [k for k in shown if k <= position and row[k] >= LINE_FLOOR]
        assert line.keys == expected  # the later token 10 is never read (causal)
        assert line.weights == pytest.approx(row[expected].tolist(), abs=1e-6)
        visible = [k for k in shown if k <= position]
        assert line.elsewhere == pytest.approx(1 - float(row[visible].sum()), abs=1e-5)


def test_a_line_request_that_does_not_fit_the_analysis_is_refused(tiny_gpt2):
    analysis = analyze(tiny_gpt2, PROMPT)
    good = {"analysis": "k", "layer": 1, "position": 4, "heads": [0, 3], "end": 11, "n": 2}
    assert read_ask(good, analysis, "k") == (1, 4, [0, 3], 11)
    for change in (
        {"analysis": "another"},  # an older page's analysis
        {"layer": 2},
        {"position": 12},
        {"position": True},
        {"heads": [0, 0]},
        {"heads": [4]},
        {"heads": "0"},
        {"end": -1},
        {"end": 3},  # position 4 is not in a window that ends at token 3
    ):
        assert read_ask(good | change, analysis, "k") is None, change
    assert read_ask(None, analysis, "k") is None
