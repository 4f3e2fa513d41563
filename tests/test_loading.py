"""Loading models from the offline HF cache or a folder, refusing clearly what cannot be loaded."""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from hub import save_hub_snapshot
from transformers import AutoConfig, BertConfig, GPT2Config, PhiConfig, T5Config

from lmscope.core import model_cache
from lmscope.core.errors import (
    ModelNotFoundError,
    ModelTooLargeError,
    UnsupportedModelError,
)
from lmscope.core.loading import load_model, revision_of
from lmscope.core.model_cache import ModelCache

GiB = 2**30


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text.strip() == text and text
    return text


def config_folder(root: Path, config) -> str:
    """A model folder with a config and no weights (loading weights from it would fail)."""
    config.save_pretrained(root)
    return str(root)


def test_gpt2_and_its_org_id_load_as_one_model(hub_cache, tiny_gpt2_model):
    cache = ModelCache(budget=100 * GiB)
    first = cache.get("gpt2")
    second = cache.get("openai-community/gpt2")
    assert first is second
    assert cache.loads == 1
    assert cache.cached() == ["openai-community/gpt2"]
    assert first.model_id == "openai-community/gpt2"
    assert first.revision == "0" * 40  # the snapshot's commit
    # What was loaded is the model that was put in the cache.
    for name, value in tiny_gpt2_model.state_dict().items():
        assert torch.equal(first.model.state_dict()[name], value), name


def test_loading_reports_progress(hub_cache):
    messages: list[str] = []
    load_model("gpt2", progress=messages.append)
    assert len(messages) >= 3
    assert "configuration" in messages[0]
    assert any("Loading" in m and "parameters" in m for m in messages)
    assert messages[-1].endswith("is ready")


def test_offline_without_a_cached_copy_says_which_model_and_why(hub_cache):
    with pytest.raises(ModelNotFoundError) as raised:
        load_model("openai-community/gpt2-medium")
    text = one_line(raised.value)
    assert "openai-community/gpt2-medium" in text
    assert "no network connection" in text and "no cached copy" in text


@pytest.mark.parametrize("model_id", ["has space", "org/a..b", "a/b/c", "-flag", "x/..", ""])
def test_an_invalid_model_id_is_refused(model_id):
    with pytest.raises(ModelNotFoundError) as raised:
        load_model(model_id)
    assert "not a valid model id" in one_line(raised.value)


@pytest.mark.parametrize("model_id", ["../etc", "/tmp", "~/models/x", "./here"])
def test_a_path_is_refused_unless_local_paths_are_allowed(model_id):
    with pytest.raises(ModelNotFoundError) as raised:
        load_model(model_id)
    assert "local folders can be given only by the operator" in one_line(raised.value)


def test_a_local_folder_loads_when_allowed(tmp_path, tiny_gpt2_model, gpt2_tokenizer):
    tiny_gpt2_model.save_pretrained(tmp_path)
    gpt2_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelNotFoundError):
        load_model(str(tmp_path))
    lm = load_model(str(tmp_path), allow_local_path=True)
    assert lm.card.layers == 2
    assert lm.revision.startswith("local-")
    saved, loaded = tiny_gpt2_model.state_dict(), lm.model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[name], loaded[name]) for name in saved)
    ids = torch.tensor([[464, 3797, 3332]])
    with torch.no_grad():  # lmscope's sdpa against the fixture's attention (eager unless wrapped)
        torch.testing.assert_close(
            lm.model(ids).logits, tiny_gpt2_model(ids).logits, atol=1e-5, rtol=0
        )


def test_a_local_folder_retrained_in_place_gets_a_new_revision(tmp_path, tiny_gpt2_model):
    """Same config, same shape, new weights: the cached head profile must not be reused."""
    tiny_gpt2_model.save_pretrained(tmp_path)
    config_file = (tmp_path / "config.json").read_bytes()
    config = AutoConfig.from_pretrained(tmp_path)
    before = revision_of(config, str(tmp_path))
    assert revision_of(config, str(tmp_path)) == before  # stable while nothing changes
    retrained = copy.deepcopy(tiny_gpt2_model)
    with torch.no_grad():
        for parameter in retrained.parameters():
            parameter.add_(torch.randn_like(parameter) * 1e-3)
    retrained.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_bytes() == config_file
    assert revision_of(AutoConfig.from_pretrained(tmp_path), str(tmp_path)) != before


def test_a_folder_without_a_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        load_model(str(tmp_path), allow_local_path=True)


def test_a_model_too_big_for_memory_is_refused_before_loading_with_the_figures(tmp_path):
    huge = GPT2Config(n_layer=96, n_embd=12288, n_head=96)  # GPT-3 175B's shape
    folder = config_folder(tmp_path, huge)
    with pytest.raises(ModelTooLargeError) as raised:
        load_model(folder, allow_local_path=True)
    text = one_line(raised.value)
    d, layers = 12288, 96  # per layer 12 d^2 + 13 d; embeddings, positions, final norm
    expected = layers * (12 * d * d + 13 * d) + 50257 * d + 1024 * d + 2 * d
    assert f"{expected / 1e9:.2f}B parameters" in text  # counted on the meta device
    assert "GiB" in text and "available" in text


def test_the_memory_limit_setting_refuses_a_model_that_would_not_fit(tmp_path, monkeypatch):
    folder = config_folder(tmp_path, GPT2Config())  # config only: loading weights would fail
    monkeypatch.setenv("LMSCOPE_MEMORY_LIMIT", "300M")
    with pytest.raises(ModelTooLargeError) as raised:
        load_model(folder, allow_local_path=True)
    text = one_line(raised.value)
    assert "0.12B parameters" in text and "only 300 MiB is available" in text


def test_a_model_that_fits_is_not_refused_for_memory(tmp_path, monkeypatch):
    folder = config_folder(tmp_path, GPT2Config(n_layer=1, n_embd=32, n_head=2))
    monkeypatch.setenv("LMSCOPE_MEMORY_LIMIT", "64G")
    with pytest.raises(ModelNotFoundError, match="Cannot load the weights"):
        load_model(folder, allow_local_path=True)  # got past the memory check to the weights


def test_an_encoder_model_is_refused_as_not_a_causal_language_model(tmp_path):
    bert = BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2)
    bert.architectures = ["BertForMaskedLM"]
    with pytest.raises(UnsupportedModelError) as raised:
        load_model(config_folder(tmp_path, bert), allow_local_path=True)
    assert "not a causal (next-token) language model" in one_line(raised.value)


def test_an_encoder_decoder_model_is_refused_as_not_a_causal_language_model(tmp_path):
    t5 = T5Config(num_layers=1, d_model=32, num_heads=2)
    with pytest.raises(UnsupportedModelError, match="not a causal"):
        load_model(config_folder(tmp_path, t5), allow_local_path=True)


def test_an_unknown_decoder_family_is_refused_naming_the_supported_ones(tmp_path):
    phi = PhiConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2)
    phi.architectures = ["PhiForCausalLM"]
    with pytest.raises(UnsupportedModelError) as raised:
        load_model(config_folder(tmp_path, phi), allow_local_path=True)
    text = one_line(raised.value)
    assert "'phi' model" in text and "does not trace yet" in text
    assert "gpt2" in text and "llama" in text


def test_a_model_needing_remote_code_is_refused(tmp_path, monkeypatch):
    config = {
        "model_type": "my_custom_lm",
        "architectures": ["MyCustomForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_custom.MyConfig",
            "AutoModelForCausalLM": "modeling_custom.MyCustomForCausalLM",
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "ran"
    (tmp_path / "configuration_custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    # Were transformers to ask whether to trust the code, the answer would be yes.
    monkeypatch.setattr("builtins.input", lambda *args: "y")
    with pytest.raises(UnsupportedModelError) as raised:
        load_model(str(tmp_path), allow_local_path=True)
    assert "never runs remote code" in one_line(raised.value)
    assert not marker.exists()


def test_the_cache_is_read_under_every_alias_of_a_model(hub_cache, tiny_gpt2_model, gpt2_tokenizer):
    """A copy cached under the short id `gpt2-large` is found when asked for by its org id."""
    snapshot = save_hub_snapshot(tiny_gpt2_model, gpt2_tokenizer, hub_cache, "gpt2-large")
    try:
        lm = load_model("openai-community/gpt2-large")
    finally:  # other tests may rely on gpt2-large not being cached
        shutil.rmtree(snapshot.parent.parent)
    assert lm.model_id == "openai-community/gpt2-large"
    assert lm.card.name == "GPT-2 Large (774M)"


class FakeModel:
    def __init__(self, model_id: str, nbytes: int, device: str = "cpu") -> None:
        self.model_id, self.nbytes, self.device = model_id, nbytes, torch.device(device)


def test_concurrent_requests_for_one_model_load_it_once(monkeypatch):
    calls: list[str] = []

    def slow_load(model_id, **kwargs):
        calls.append(model_id)
        time.sleep(0.3)
        return FakeModel(model_id, 1)

    monkeypatch.setattr(model_cache, "load_model", slow_load)
    cache = ModelCache(budget=100)
    results: list[object] = []
    ids = ["gpt2", "openai-community/gpt2"] * 4
    threads = [threading.Thread(target=lambda m=m: results.append(cache.get(m))) for m in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and cache.loads == 1
    assert len(results) == len(ids) and all(r is results[0] for r in results)


def test_different_models_load_in_parallel(monkeypatch):
    """One slow model does not hold up another."""
    started = threading.Barrier(2, timeout=5)

    def load(model_id, **kwargs):
        started.wait()  # both loads must be under way at once
        return FakeModel(model_id, 1)

    monkeypatch.setattr(model_cache, "load_model", load)
    cache = ModelCache(budget=100)
    threads = [threading.Thread(target=cache.get, args=(m,)) for m in ("gpt2", "gpt2-medium")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.loads == 2


def test_the_least_recently_used_model_is_evicted_under_the_budget(monkeypatch):
    monkeypatch.setattr(model_cache, "load_model", lambda m, **kw: FakeModel(m, 100))
    cache = ModelCache(budget=250)
    for model_id in ("a", "b", "c"):
        cache.get(model_id)
    assert cache.cached() == ["b", "c"]
    cache.get("b")  # b is now the most recently used
    cache.get("d")
    assert cache.cached() == ["b", "d"]
    assert cache.loads == 4


def test_each_device_has_its_own_budget(monkeypatch):
    """A model on a GPU takes nothing from the RAM budget, and a GPU's models are evicted for
    that GPU's new one only (the budgets are faked: this machine has no GPU)."""
    where = {"a": "cpu", "b": "cuda:0", "c": "cuda:0", "d": "cpu", "e": "cuda:1"}
    monkeypatch.setattr(model_cache, "load_model", lambda m, **kw: FakeModel(m, 100, where[m]))
    cache = ModelCache(budget=150)
    budgets = {"cpu": 150, "cuda:0": 250, "cuda:1": 100}
    monkeypatch.setattr(cache, "budget_of", lambda device: budgets[str(device)])
    for model_id in ("a", "b", "c"):
        cache.get(model_id)
    assert cache.cached() == ["a", "b", "c"]  # 300 in all, but 100 in RAM and 200 on cuda:0
    cache.get("d")  # RAM: a out (d fits alone); cuda:0 untouched
    assert cache.cached() == ["b", "c", "d"]
    budgets["cuda:0"] = 150
    cache.get("e")  # another GPU's model: cuda:0 is now over its budget, its oldest goes
    assert cache.cached() == ["c", "d", "e"]


def test_a_model_larger_than_the_budget_is_still_kept_alone(monkeypatch):
    monkeypatch.setattr(model_cache, "load_model", lambda m, **kw: FakeModel(m, 1000))
    cache = ModelCache(budget=10)
    cache.get("a")
    cache.get("b")
    assert cache.cached() == ["b"]


def test_an_operators_folder_is_shown_by_its_name_never_its_path(tiny_gpt2_folder):
    from lmscope.dashboard.layout import card_view

    lm = load_model(str(tiny_gpt2_folder), allow_local_path=True)
    assert lm.model_id == lm.card.name == f"local:{tiny_gpt2_folder.name}"
    assert str(tiny_gpt2_folder.parent) not in repr(lm.card) + repr(card_view(lm.card))
    # once evicted, the name cannot be reloaded by a visitor, and says why
    with pytest.raises(ModelNotFoundError, match="operator"):
        load_model(lm.model_id)


def test_a_notebook_loading_a_folder_does_not_let_a_server_in_its_process_load_paths(
    tiny_gpt2_folder,
):
    """lmscope.load (the operator's) and a server's visitors share one cache: the folder loads
    for the first, and the second is refused by the spelling of its id, cached or not."""
    import lmscope
    from lmscope.service import Service

    service = Service(models=ModelCache())
    lm = lmscope.load(str(tiny_gpt2_folder))
    assert lm.model_id == f"local:{tiny_gpt2_folder.name}"
    for visitor in (lmscope.core.model_cache.default_cache(), service.models):
        with pytest.raises(ModelNotFoundError, match="only by the operator"):
            visitor.get(str(tiny_gpt2_folder))
