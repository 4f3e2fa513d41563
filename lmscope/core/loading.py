"""Load a model the standard way (`from_pretrained` through the HF cache), or refuse it clearly.

Order of work: resolve the id, read the config (cache first, then the hub), pick the family adapter,
estimate memory from the config and refuse a model that will not fit, and only then load weights.
Remote code is never run.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig
from transformers.utils import logging as hf_logging

from . import parity
from .adapters import adapter_for, check_model_type
from .availability import WEIGHT_FILES
from .card import ModelCard, model_card
from .catalog import (
    DEMO_ID,
    DEMO_PATH,
    canonical_id,
    display_name,
    hub_aliases,
    is_valid_hub_id,
    packaged_file,
)
from .devices import (
    Placement,
    bytes_per_parameter,
    dtype_name,
    execution_device,
    onloaded,
    parse_bytes,
)
from .errors import LmscopeError, ModelNotFoundError, ModelTooLargeError, UnsupportedModelError
from .gguf import GgufFile, dequantize, open_gguf, read_config
from .gguf import model_type as gguf_model_type
from .model import LoadedModel
from .placement import Layout, budget_text, device_label, plan
from .trace import install_hooks

Progress = Callable[[str], None]
LOCAL_PREFIX = "local:"  # the public id of an operator's folder or file
# what a hub download fetches: config, safetensors weights, tokenizer files
DOWNLOADED = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
_REACHABLE: dict[str, tuple[float, bool]] = {}


def no_progress(message: str) -> None:
    pass


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all (one quick TCP connect, remembered for 60 s)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    seen = _REACHABLE.get(host)
    if seen and time.monotonic() - seen[0] < 60:
        return seen[1]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        reachable = True
    except OSError:
        reachable = False
    _REACHABLE[host] = (time.monotonic(), reachable)
    return reachable


def available_memory() -> int:
    """Bytes this process may still use: `LMSCOPE_MEMORY_LIMIT` if set, else MemAvailable."""
    limit = os.environ.get("LMSCOPE_MEMORY_LIMIT")
    if limit:
        return parse_bytes(limit)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gib(n: int) -> str:
    """A size for people: 1.5 GiB, or 12 MiB below one GiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def memory_needed(card: ModelCard, dtype: torch.dtype = torch.float32) -> int:
    """The weights in `dtype` plus one full-context analysis (`analysis_reserve`)."""
    return int(card.parameters * bytes_per_parameter(dtype) * 1.1) + analysis_reserve(card, dtype)


def analysis_reserve(card: ModelCard, dtype: torch.dtype = torch.float32) -> int:
    """What one full-context analysis may add beside the weights, on the device it runs on: its
    streams in `dtype`, and the float32 attention blocks of the pass (at most 2 GiB)."""
    patterns = card.total_heads * card.context_length**2 * 4
    stream = 4 * (card.layers + 1) * card.context_length * card.hidden_size
    return int(min(patterns, 2**31) + stream * bytes_per_parameter(dtype))


def device_memory(device: torch.device) -> int:
    """Bytes free on `device`: a CUDA GPU's free memory, else what this process may use."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory()


def machine_budgets(placement: Placement) -> dict[int | str, int]:
    """Each device's budget for a device map: `--max-memory` where given, else every GPU's free
    memory and the CPU's available memory."""
    if placement.max_memory:
        return dict(placement.max_memory)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    budgets: dict[int | str, int] = {i: device_memory(torch.device("cuda", i)) for i in range(gpus)}
    return budgets | {"cpu": available_memory()}


def check_memory(
    model_id: str, card: ModelCard, config, placement: Placement, dequantizing: bool
) -> Layout | None:
    """Refuse a model that will not fit where it is to run, before any weight is read; for a
    device map, the layout of its layers (`placement.plan`) over every device's budget, with
    room kept on the device that runs the analyses."""
    reserve = analysis_reserve(card, placement.dtype)
    if placement.device_map:
        budgets = machine_budgets(placement)
        main: int | str = placement.device.index or 0 if placement.device.type == "cuda" else "cpu"
        room = dict(budgets)
        if main in room:
            room[main] = max(0, room[main] - reserve)
        layout = plan(config, placement.dtype, room, placement.device_map,
                      adapter_for(config, model_id).blocks, disk=True)  # fmt: skip
        if "disk" in layout.device_map.values() and placement.offload_folder is None:
            raise ModelTooLargeError(
                f"{model_id}'s {placement.dtype_name} weights do not fit in "
                f"{budget_text(budgets)} ({gib(reserve)} of {device_label(main)} kept for an "
                f"analysis): {layout.describe()}. Give more memory (--max-memory), a smaller "
                "dtype, or a folder for the weights on disk (--offload-folder, slow)."
            )
        return layout
    needed = memory_needed(card, placement.dtype)
    available = device_memory(placement.device)
    # dequantizing holds the float32 weights about twice over for a moment, on the CPU
    if dequantizing:
        on_cpu = placement.device.type == "cpu"
        peak = max(2 * card.parameters * 4, needed if on_cpu else 0)
        if peak > available_memory():
            raise ModelTooLargeError(
                f"{model_id} has {card.parameters / 1e9:.2f}B parameters and needs about "
                f"{gib(peak)} of memory to dequantize{' and analyze' if on_cpu else ''}; only "
                f"{gib(available_memory())} is available."
            )
    if needed > available:
        where = "" if placement.device.type == "cpu" else f" on {placement.device}"
        raise ModelTooLargeError(
            f"{model_id} has {card.parameters / 1e9:.2f}B parameters and needs about "
            f"{gib(needed)} of memory{where} to analyze in {placement.dtype_name}; only "
            f"{gib(available)} is available{where}. A smaller dtype (--dtype bfloat16) or a "
            "device map over several devices (--device-map auto) may fit it."
        )
    return None


def spelled_as_path(model_id: str) -> bool:
    """Whether an id is spelled as a path or a .gguf file."""
    return model_id.startswith((".", "/", "~")) or model_id.lower().endswith(".gguf")


def refuse_path(model_id: str) -> None:
    """A visitor's id is judged by its spelling alone: what exists on this disk (or was loaded
    from it) must not change the answer, nor be loaded."""
    if spelled_as_path(model_id):
        raise ModelNotFoundError(
            f"'{model_id}' is not a model id; local folders can be given only by the operator "
            "(lmscope serve --model PATH), and so can .gguf files."
        )


def _source(model_id: str, allow_local_path: bool) -> str:
    """Where to load from: the bundled demo, an installed catalog file, an operator's folder or
    .gguf file, or a hub id."""
    if model_id == DEMO_ID:
        return str(DEMO_PATH)
    packaged = packaged_file(model_id)  # a catalog id: the browser may name it, not its path
    if packaged is not None:
        return str(packaged)
    path = Path(model_id).expanduser()
    if not allow_local_path:
        refuse_path(model_id)
    # os.path answers False (no OSError) for a name too long for it.
    if spelled_as_path(model_id) or (allow_local_path and os.path.exists(path)):
        if os.path.isfile(path):
            return str(path.resolve())  # a GGUF file, checked when it is read
        if model_id.lower().endswith(".gguf"):
            raise ModelNotFoundError(f"No GGUF file at {model_id}.")
        if not os.path.isfile(path / "config.json"):
            raise ModelNotFoundError(f"No model folder at {model_id} (no config.json there).")
        return str(path.resolve())
    if model_id.startswith(LOCAL_PREFIX):
        raise ModelNotFoundError(
            f"{model_id} was loaded by the operator from this machine's disk and is no longer in "
            "memory; it can be loaded again only with lmscope serve --model PATH."
        )
    if not is_valid_hub_id(model_id):
        raise ModelNotFoundError(
            f"'{model_id}' is not a valid model id (expected a name like gpt2 or org/name)."
        )
    return canonical_id(model_id)


def _hub_snapshot(folder: Path) -> bool:
    """Whether `folder` is a snapshot in the Hugging Face cache (`models--org--name/snapshots/C`)."""
    return folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--")


def _hub_folder(repo_id: str, model_id: str) -> Path:
    """The cached snapshot folder of a hub repository (under any of its names), fetching its config
    from the hub when none is cached. Only ever this folder is handed to `from_pretrained`: a
    visitor's id is never read as a path on this machine."""
    for alias in hub_aliases(repo_id):
        cached = try_to_load_from_cache(alias, "config.json")
        if isinstance(cached, str):
            return Path(cached).parent
    if not hub_reachable():
        raise ModelNotFoundError(
            f"Cannot load {model_id}: no network connection to the Hugging Face hub and no cached "
            "copy on this machine. Run once online to cache it, or choose a model that is here "
            "(lmscope models)."
        )
    try:
        return Path(hf_hub_download(repo_id, "config.json")).parent
    except Exception as error:  # not found, private, gated, network: all one answer
        raise ModelNotFoundError(
            f"Cannot load {model_id}: the Hugging Face hub has no such model, or it is private "
            f"({_first_line(error)[:160]})."
        ) from None


def _read_config(source: str, model_id: str) -> tuple[PretrainedConfig, str]:
    """The config and the folder it came from: a hub id's cached snapshot (see `_hub_folder`),
    or the demo's, a package's or the operator's folder (absolute paths)."""
    folder = Path(source) if os.path.isabs(source) else _hub_folder(source, model_id)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except OSError:
        raise ModelNotFoundError(f"Could not read the config of {model_id}.") from None
    except ValueError as error:
        raise _config_error(model_id, error) from None
    return config, str(folder)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _config_error(model_id: str, error: ValueError) -> LmscopeError:
    text = str(error)
    if "trust_remote_code" in text or "custom code" in text:
        return UnsupportedModelError(
            f"{model_id} needs its own remote code to run; lmscope never runs remote code."
        )
    return UnsupportedModelError(
        f"{model_id} has a configuration lmscope cannot read: {text[:200]}"
    )


def revision_of(config: PretrainedConfig, source: str) -> str:
    """The hub commit the files came from, or a content hash for a local folder."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return commit
    if _hub_snapshot(Path(source)):  # transformers 5 no longer records the commit on the config
        return Path(source).name
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = Path(source) / name
        if path.is_file():
            size = path.stat().st_size
            digest.update(f"{name}:{size}".encode())
            with path.open("rb") as file:  # large files: their first and last MiB stand for them
                digest.update(file.read(2**20))
                file.seek(max(0, size - 2**20))
                digest.update(file.read(2**20))
    return "local-" + digest.hexdigest()[:12]


def _origin(model_id: str, source: str) -> str:
    """The card's line on where the weights came from (GGUF files say so themselves)."""
    if model_id == DEMO_ID:
        return "bundled with lmscope"
    if not os.path.isabs(source) or _hub_snapshot(Path(source)):
        return "Hugging Face hub"
    return "local folder"


def _public_id(model_id: str, source: str) -> str:
    """The id the page shows and links with: an operator's folder or file is `local:<its name>`,
    so no visitor sees a path on this machine."""
    if model_id != DEMO_ID and os.path.isabs(source) and packaged_file(model_id) is None:
        return LOCAL_PREFIX + Path(source).name
    return canonical_id(model_id)


def _inspect(
    model_id: str, allow_local_path: bool
) -> tuple[PretrainedConfig, str, ModelCard, GgufFile | None]:
    """Config, source, card, and the GGUF file when the model is one (source: its cache folder
    once dequantized, else the file itself)."""
    source = _source(model_id, allow_local_path)
    public = _public_id(model_id, source)
    local_file = os.path.isabs(source) and os.path.isfile(source)  # never a visitor's name
    if local_file:  # a family lmscope has no adapter for is refused from the header
        check_model_type(gguf_model_type(Path(source), model_id), model_id)
    packed = open_gguf(Path(source), model_id) if local_file else None
    if packed is not None and not packed.cached:
        config = read_config(packed, model_id)  # from the metadata: nothing dequantized yet
    else:
        if packed is not None:
            source = str(packed.folder)
        config, source = _read_config(source, model_id)
    adapter = adapter_for(config, model_id)
    origin = packed.origin() if packed is not None else _origin(model_id, source)
    card = model_card(config, adapter, public, display_name(public), origin)
    return config, source, card, packed


def inspect_model(
    model_id: str, *, allow_local_path: bool = False
) -> tuple[PretrainedConfig, str, ModelCard]:
    """Config, source and card of a model without loading its weights (raises if unusable)."""
    with quiet_transformers():
        config, source, card, _ = _inspect(model_id, allow_local_path)
    return config, source, card


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers warnings or progress bars (lmscope reports its own progress lines)."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # also huggingface_hub's download bars
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_model(
    model_id: str,
    *,
    allow_local_path: bool = False,
    progress: Progress = no_progress,
    placement: Placement | None = None,
) -> LoadedModel:
    """Load a causal LM for tracing, refusing clearly what cannot be loaded.

    `model_id` is a hub id (`gpt2`, `org/name`), `demo`, a catalog id, or, when
    `allow_local_path`, a folder or a .gguf file (dequantized once into a cached folder).
    `placement` (core/devices.py) says where and in what precision: float32 on the CPU by default.
    """
    placement = placement or Placement()
    progress(f"Reading the configuration of {model_id}")
    with quiet_transformers():
        config, source, card, packed = _inspect(model_id, allow_local_path)
        dequantizing = packed is not None and not packed.cached
        layout = check_memory(model_id, card, config, placement, dequantizing)
        if dequantizing:
            progress(f"Dequantizing {card.name} from its GGUF file, once (then cached on disk)")
            source = str(dequantize(packed, model_id, config))
            config, source = _read_config(source, model_id)
        where = layout.describe() if layout else str(placement.device)
        progress(
            f"Loading {card.parameters / 1e6:,.0f}M parameters of {card.name} in "
            f"{placement.dtype_name}: {where}"
        )
        model, tokenizer = _weights(model_id, source, config, placement, layout)
    model.eval().requires_grad_(False)
    lm = LoadedModel(
        model_id=card.model_id,
        model=model,
        tokenizer=tokenizer,
        adapter=adapter_for(config, model_id),
        card=card,
        revision=packed.revision if packed is not None else revision_of(config, source),
        nbytes=memory_needed(card, placement.dtype),
        device=placement.device,
    )
    lm.card = with_placement(lm.card, placement, layout)
    _bind(lm)
    progress(f"{card.name} is ready")
    return lm


def _download_weights(folder: Path) -> None:
    """Fetch a cached hub snapshot's weights and tokenizer files when only its config is here."""
    if not _hub_snapshot(folder) or any((folder / name).exists() for name in WEIGHT_FILES):
        return
    if not hub_reachable():
        return  # loading then says the weights are missing
    repo_id = folder.parent.parent.name.removeprefix("models--").replace("--", "/")
    snapshot_download(repo_id, revision=folder.name, allow_patterns=DOWNLOADED)


def with_placement(card: ModelCard, placement: Placement, layout: Layout | None) -> ModelCard:
    """The card with where the model runs and in what precision (set at load)."""
    if layout is None:
        text = f"{placement.dtype_name} on {placement.device}"
    else:
        text = f"{placement.dtype_name}, spread by accelerate ({placement.device_map}): {layout.describe()}"
        if layout.offloaded:
            text += f"; offloaded weights are brought to {placement.device} for each use"
    return replace(
        card,
        device=str(placement.device),
        dtype=placement.dtype_name,
        placement=text,
        offloaded=bool(layout and layout.offloaded),
    )


def _weights(
    model_id: str,
    source: str,
    config: PretrainedConfig,
    placement: Placement,
    layout: Layout | None,
):
    """The model (in the placement's dtype, on its device or spread by `layout`; eager
    attention) and its tokenizer, from a folder: the operator's, a package's or a hub snapshot
    in the cache (its weights downloaded first if need be)."""
    where = (
        {"device_map": layout.device_map, "offload_folder": placement.offload_folder}
        if layout is not None
        else {"device_map": {"": placement.device}}
        if placement.device.type != "cpu"
        else {}  # transformers' own default: no device map
    )
    try:
        _download_weights(Path(source))
        model = AutoModelForCausalLM.from_pretrained(
            source,
            config=config,
            dtype=placement.dtype,
            attn_implementation="eager",  # the only implementation that returns attention patterns
            trust_remote_code=False,
            local_files_only=True,
            **where,
        )
        tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=False, local_files_only=True
        )
    except OSError as error:
        raise ModelNotFoundError(
            f"Cannot load the weights of {model_id}: {_first_line(error)}"
        ) from None
    except Exception as error:  # a corrupt or half-written file fails in many ways
        raise UnsupportedModelError(
            f"Loading {model_id} failed part way ({type(error).__name__}: {_first_line(error)}); "
            "nothing was kept. The files may be incomplete: delete them from the cache and retry."
        ) from None
    return model, tokenizer


def _bind(lm: LoadedModel) -> None:
    """Attach the trace hooks, check the adapter's unembedding really gives vocabulary logits,
    and run the parity check (core/parity.py), whose result goes on the card."""
    install_hooks(lm)
    with torch.inference_mode():
        width = lm.unembed(lm.zeros(1, lm.card.hidden_size)).shape[-1]
    if width != lm.card.vocab_size:
        raise UnsupportedModelError(
            f"{lm.model_id}: the {lm.adapter.family} adapter's unembedding gives {width} values, "
            f"not one per vocabulary entry ({lm.card.vocab_size}); this model's layout differs."
        )
    lm.card = replace(lm.card, embedding_scale=embedding_scale(lm))
    lm.card = parity.with_parity(lm.card, parity.check(lm))


def embedding_scale(lm: LoadedModel) -> float:
    """What the token embedding module multiplies its table's rows by (Gemma: sqrt(d_model)),
    measured on one row."""
    module = lm.model.get_submodule(lm.adapter.token_embedding)
    with torch.inference_mode(), onloaded(module):
        token = module.weight[:64].float().norm(dim=-1).argmax().reshape(1)  # not a padding row
        row, out = module.weight[token].float(), module(token).float()
    size = float((row * row).sum())
    return round(float((out * row).sum()) / size, 6) if size > 0 else 1.0


def from_model(model, tokenizer, model_id: str = "custom") -> LoadedModel:
    """Wrap a model already in memory (a notebook's, or a test's) for tracing.

    The model must use eager attention: `attn_implementation="eager"`.
    """
    config = model.config
    if config._attn_implementation != "eager":
        model.set_attn_implementation("eager")
    adapter = adapter_for(config, model_id)
    card = model_card(config, adapter, model_id, display_name(model_id), "in memory (from_model)")
    model.eval().requires_grad_(False)
    device = execution_device(model.get_submodule(adapter.token_embedding))
    dtype = next(model.parameters()).dtype
    lm = LoadedModel(model_id, model, tokenizer, adapter, card, "in-memory",
                     memory_needed(card, dtype), device=device)  # fmt: skip
    lm.card = replace(
        card,
        device=str(device),
        dtype=dtype_name(dtype),
        placement=f"{dtype_name(dtype)} on {device}" + _map_text(model),
        offloaded=any(p.device.type == "meta" for p in model.parameters()),
    )
    _bind(lm)
    return lm


def _map_text(model) -> str:
    """', spread by accelerate: ...' for a model given a device map, from its `hf_device_map`."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map or len(set(device_map.values())) < 2:
        return ""
    places: dict[str, list[str]] = {}
    for path, device in device_map.items():
        places.setdefault(device_label(device), []).append(path or "everything")
    return ", spread by accelerate: " + "; ".join(
        f"{len(p)} parts on {d}" for d, p in places.items()
    )
