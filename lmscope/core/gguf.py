"""GGUF files (llama.cpp's format) as a model source: checked, then dequantized once into a folder.

transformers dequantizes a GGUF file into an ordinary float32 model. lmscope does that once per file
and saves the result as a normal model folder (config, safetensors, tokenizer files) under
`$XDG_CACHE_HOME/lmscope/gguf/<sha256 of the file>/` (else `~/.cache/...`), so every later load is a
plain folder load. The folder is written under a temporary name and renamed into place when
complete: a folder under its final name is always whole. The key is the hash of the whole file
(about 0.2 s per 100 MB here), remembered per (path, size, mtime) so an unchanged file is hashed once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from unittest import mock

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

from .errors import ModelNotFoundError, UnsupportedModelError

MAGIC = b"GGUF"
INFO = "lmscope-gguf.json"  # written last into the folder: what the weights came from
_DIGESTS: dict[tuple[str, int, int], str] = {}


def cache_root() -> Path:
    """Where dequantized GGUF files are kept: `$XDG_CACHE_HOME/lmscope/gguf`, else `~/.cache/...`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmscope" / "gguf"


@dataclass(frozen=True)
class GgufFile:
    """One GGUF file on disk and the cache folder its dequantized weights live (or will live) in."""

    path: Path
    digest: str  # sha256 of the whole file

    @property
    def folder(self) -> Path:
        return cache_root() / self.digest[:32]

    @property
    def cached(self) -> bool:
        return (self.folder / INFO).is_file()

    @property
    def revision(self) -> str:
        return "gguf-" + self.digest[:12]

    def origin(self) -> str:
        """The card's source line, e.g. 'GGUF Q4_1, dequantized to float32'."""
        if self.cached:
            try:
                return json.loads((self.folder / INFO).read_text())["source"]
            except (OSError, ValueError, KeyError):
                pass
        return f"GGUF {file_type(self.path)}, dequantized to float32"


def open_gguf(path: Path, model_id: str) -> GgufFile:
    """The file as a GgufFile, or a clear error when it is not a GGUF file at all."""
    _check_magic(path, model_id)
    return GgufFile(path, content_digest(path))


def _check_magic(path: Path, model_id: str) -> None:
    try:
        with path.open("rb") as file:
            magic = file.read(4)
    except OSError as error:
        raise ModelNotFoundError(f"Cannot read {model_id}: {error.strerror}.") from None
    if magic != MAGIC:
        raise ModelNotFoundError(
            f"{model_id} is not a GGUF file (it does not start with 'GGUF'); --model takes a hub id, "
            "a model folder or a .gguf file."
        )


def content_digest(path: Path) -> str:
    """sha256 of the whole file, remembered in memory and on disk per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    memo = cache_root() / "digests" / hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    try:
        digest = memo.read_text().strip()
    except OSError:
        digest = ""
    if len(digest) != 64:
        sha = hashlib.sha256()
        with path.open("rb") as file:
            while block := file.read(2**22):
                sha.update(block)
        digest = sha.hexdigest()
        _write_atomically(memo, digest)
    _DIGESTS[key] = digest
    return digest


def file_type(path: Path) -> str:
    """The quantization named by the header's `general.file_type` (e.g. 'Q4_1'), read directly.

    A small reader of the key/value header stops at that key; `gguf.GGUFReader` would parse the
    whole file (seconds for a large vocabulary) for this one number.
    """
    import gguf  # only needed for GGUF files

    value = _header_value(path, "general.file_type")
    if value is None:
        return "(quantization not stated)"
    try:
        return gguf.LlamaFileType(value).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return f"file type {value}"


# Sizes of the fixed-width GGUF value types (gguf.GGUFValueType numbering); 8 = string, 9 = array.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_UNPACK = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


# llama.cpp's architecture names that transformers loads under another model type
# (transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint renames them the same way).
_MODEL_TYPES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
    "gemma3": "gemma3_text",
    "gemma4": "gemma4_text",
}


def model_type(path: Path, model_id: str) -> str:
    """The transformers model type of a GGUF file, from its header's `general.architecture` alone:
    milliseconds, where reading the config parses the whole metadata (a 262k-token vocabulary:
    ~15 s). Raises when the file is not GGUF or names an architecture transformers cannot load."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    _check_magic(path, model_id)
    architecture = _header_value(path, "general.architecture")
    if not isinstance(architecture, str):
        raise UnsupportedModelError(
            f"{model_id} is not a readable GGUF file: its header names no architecture."
        )
    kind = _MODEL_TYPES.get(architecture, architecture)
    if (
        architecture not in GGUF_SUPPORTED_ARCHITECTURES
        and kind not in GGUF_SUPPORTED_ARCHITECTURES
    ):
        raise UnsupportedModelError(
            f"{model_id}: transformers cannot dequantize this GGUF file's architecture "
            f"('{architecture}')."
        )
    return kind


def _header_value(path: Path, wanted: str) -> int | str | None:
    """An integer or string value of the GGUF header, or None when the key is absent or
    unreadable."""

    def take(file, n: int) -> bytes:
        data = file.read(n)
        if len(data) != n:
            raise EOFError
        return data

    def skip(file, kind: int) -> None:
        if kind in _FIXED:
            file.seek(_FIXED[kind], os.SEEK_CUR)
        elif kind == 8:
            file.seek(struct.unpack("<Q", take(file, 8))[0], os.SEEK_CUR)
        elif kind == 9:
            inner, count = struct.unpack("<IQ", take(file, 12))
            if inner in _FIXED:
                file.seek(_FIXED[inner] * count, os.SEEK_CUR)
            else:
                for _ in range(count):
                    skip(file, inner)
        else:
            raise EOFError

    try:
        with path.open("rb") as file:
            _magic, _version, _tensors, pairs = struct.unpack("<4sIQQ", take(file, 24))
            for _ in range(min(pairs, 1 << 20)):
                (length,) = struct.unpack("<Q", take(file, 8))
                key = take(file, min(length, 1 << 16)).decode("utf-8", "replace")
                (kind,) = struct.unpack("<I", take(file, 4))
                if key == wanted and kind in _UNPACK:
                    return struct.unpack(_UNPACK[kind], take(file, _FIXED[kind]))[0]
                if key == wanted and kind == 8:
                    (size,) = struct.unpack("<Q", take(file, 8))
                    return take(file, min(size, 1 << 16)).decode("utf-8", "replace")
                skip(file, kind)
    except (OSError, EOFError, struct.error):
        return None
    return None


def read_config(gf: GgufFile, model_id: str) -> PretrainedConfig:
    """The model's config from the GGUF metadata (no tensor is dequantized); clear errors."""
    try:
        return AutoConfig.from_pretrained(
            gf.path.parent, gguf_file=gf.path.name, trust_remote_code=False
        )
    except Exception as error:
        raise _read_error(model_id, error) from None


def _read_error(model_id: str, error: Exception) -> UnsupportedModelError:
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    text = text.rstrip(".")
    if "not supported" in text and "architecture" in text.lower():
        return UnsupportedModelError(
            f"{model_id}: transformers cannot dequantize this GGUF file's architecture ({text})."
        )
    return UnsupportedModelError(
        f"{model_id} is not a readable GGUF file: it looks truncated or corrupt ({text})."
    )


def dequantize(gf: GgufFile, model_id: str, config: PretrainedConfig | None = None) -> Path:
    """The cache folder holding the file's float32 weights, written now if not there yet.

    `config`, the one `read_config` gave, spares transformers a second parse of the file.
    """
    if gf.cached:
        return gf.folder
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{gf.digest[:12]}-", dir=root))
    try:
        try:
            _write_folder(gf, work, config)
        except Exception as error:
            raise _read_error(model_id, error) from None
        try:
            os.rename(work, gf.folder)
        except OSError:
            if not gf.cached:  # not another process that finished first: a real failure
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return gf.folder


def _write_folder(gf: GgufFile, folder: Path, config: PretrainedConfig | None) -> None:
    """Dequantize with transformers and save as an ordinary model folder, INFO last."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    directory, name = gf.path.parent, gf.path.name
    quiet = partial(gguf_utils.tqdm, disable=True)  # its own bar ignores transformers' switch
    with mock.patch.object(gguf_utils, "tqdm", quiet):
        loaded = AutoModelForCausalLM.from_pretrained(
            directory, gguf_file=name, config=config, dtype=torch.float32, trust_remote_code=False
        )
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained; the same tensors in a model built from its
    # config without the quantization entry save normally (assign: no copy of the weights).
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(loaded.config).from_dict(settings)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True)
    plain.tie_weights()
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    info = {
        "file": name,
        "sha256": gf.digest,
        "quantization": file_type(gf.path),
        "source": f"GGUF {file_type(gf.path)}, dequantized to float32",
    }
    (folder / INFO).write_text(json.dumps(info, indent=1))


def _remove_stale(root: Path, age: float = 3600) -> None:
    """Temporary folders left by a process that died part way (over an hour old)."""
    for entry in root.glob(".tmp-*"):
        try:
            if time.time() - entry.stat().st_mtime > age:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only cache costs a rehash next time, nothing more
