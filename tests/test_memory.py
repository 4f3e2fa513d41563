"""Memory that grows with the prompt, not with layers x heads x tokens^2 (issue 11).

At 4,096 tokens an analysis must hold no attention pattern, make no tensor as large as one head's
whole pattern while it runs, and answer a head's view from its queries and keys.
"""

from __future__ import annotations

import base64
import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from lmscope.core import attention
from lmscope.core.analysis import Analysis, analyze
from lmscope.core.loading import from_model
from lmscope.core.model import LoadedModel
from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web.server import api_app

T = 4096
WORDS = "the cat sat on a mat and the dog ran to the park while people were talking".split()


def prompt_of(tokenizer, length: int) -> str:
    text = "".join(" " + WORDS[i % len(WORDS)] for i in range(length))
    assert len(tokenizer(text)["input_ids"]) == length
    return text


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def long_model(request, gpt2_tokenizer) -> LoadedModel:
    """A tiny model that reads 4,096 tokens (GPT-2, and a Llama with grouped-query attention)."""
    torch.manual_seed(0)
    if request.param == "gpt2":
        config = GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=T)
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            hidden_size=64,
            intermediate_size=128,
            max_position_embeddings=T,
            vocab_size=50257,
        )
        model = LlamaForCausalLM(config)
    gpt2_tokenizer.model_max_length = T
    return from_model(model.eval(), gpt2_tokenizer, f"tiny-{request.param}-4k")


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operator produces while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.numel, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, tuple | list) else (out,):
            if isinstance(value, torch.Tensor) and value.numel() > self.numel:
                self.numel, self.op = value.numel(), func
        return out


def held_tensors(root: Analysis) -> list[torch.Tensor]:
    """Every tensor reachable from an analysis (through objects, dicts, lists), not its model's."""
    seen, found, stack = set(), [], [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, LoadedModel | torch.nn.Module):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.append(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.append(vars(obj))
    return found


@pytest.fixture(scope="module")
def long_analysis(long_model) -> tuple[Analysis, LargestTensor]:
    largest = LargestTensor()
    with largest:
        a = analyze(long_model, prompt_of(long_model.tokenizer, T))
    return a, largest


def test_an_analysis_at_4096_tokens_holds_no_attention_pattern(long_analysis):
    a, _ = long_analysis
    assert len(a.tokens) == T
    tensors = held_tensors(a)
    assert tensors, "the walk must reach the analysis's tensors"
    layers, heads = len(a.keys), a.heads_per_layer
    assert all(t.numel() < layers * heads * T * T for t in tensors)
    assert all(t.numel() < T * T for t in tensors)  # not even one head's whole pattern
    held = sum(
        t.untyped_storage().nbytes()
        for t in {t.untyped_storage().data_ptr(): t for t in tensors}.values()
    )
    assert held < 64 * 2**20  # residual, sublayer outputs, z, q, k: tens of MB, linear in T


def test_no_operator_makes_a_tensor_as_large_as_one_heads_pattern_during_the_analysis(
    long_analysis,
):
    """Scores stream over 256-row blocks: the largest intermediate is a block of every head
    (heads x 256 x T), far below heads x T x T, and below one head's T x T."""
    a, largest = long_analysis
    assert largest.numel <= a.heads_per_layer * attention.ROW_BLOCK * T, largest.op
    assert largest.numel < T * T


def test_a_heads_view_at_4096_tokens_is_an_overview_or_a_window(long_model, long_analysis):
    a, _ = long_analysis
    models = ModelCache()
    models.add(long_model)
    service = Service(models)
    key = service.store.put(a)
    client = api_app(service).test_client()

    answer = client.get(f"/api/analysis/{key}/attention?layer=1&head=2")
    assert answer.status_code == 200
    body = answer.json
    assert body["overview"] == {"factor": 8, "pool": "max"}
    overview = torch.tensor(body["pattern"])
    assert overview.shape == (512, 512)
    # each cell is the largest weight of its 8 x 8 tile: check some tiles against a rebuilt row
    rows = a.pattern(1, 2, rows=slice(4000, 4008))
    assert overview[500].tolist() == pytest.approx(
        rows.reshape(8, 512, 8).amax((0, 2)).tolist(), abs=1e-5
    )
    assert len(answer.data) < 4 * 2**20  # the whole T x T pattern as JSON would be ~150 MB
    compact = client.get(f"/api/analysis/{key}/attention?layer=1&head=2&format=uint8")
    assert compact.status_code == 200 and compact.json["shape"] == [512, 512]
    cells = torch.frombuffer(bytearray(base64.b64decode(compact.json["uint8"])), dtype=torch.uint8)
    assert (
        cells.reshape(512, 512).float() / 255 - overview
    ).abs().max() <= 0.5 / 255 + 1e-5  # JSON rounds to 1e-5
    assert len(compact.data) < 360_000, len(compact.data)  # 512 x 512 bytes, base64

    window = client.get(
        f"/api/analysis/{key}/attention?layer=1&head=2&rows=3000:3100&keys=2900:3100"
    )
    assert window.status_code == 200
    assert window.json["rows"] == [3000, 3100] and window.json["keys"] == [2900, 3100]
    expected = a.pattern(1, 2, rows=slice(3000, 3100))[:, 2900:3100]
    assert torch.tensor(window.json["pattern"]) == pytest.approx(expected, abs=1e-5)

    refused = client.get(f"/api/analysis/{key}/attention?layer=1")
    assert refused.status_code == 400 and "too large" in refused.json["error"]
    wide = client.get(f"/api/analysis/{key}/attention?layer=1&head=0&rows=0:4096")
    assert wide.status_code == 400 and "at most 512" in wide.json["error"]


def test_store_counts_the_queries_and_keys_an_analysis_holds(long_analysis):
    from lmscope.service.store import analysis_bytes

    a, _ = long_analysis
    qk = sum(k.query.untyped_storage().nbytes() + k.key.untyped_storage().nbytes() for k in a.keys)
    assert qk > 0
    held = sum(
        t.untyped_storage().nbytes()
        for t in {t.untyped_storage().data_ptr(): t for t in held_tensors(a)}.values()
    )
    assert held <= analysis_bytes(a) <= held + 8 * 2**20
    json.dumps(a.to_dict())  # the document the browser gets holds no pattern either
