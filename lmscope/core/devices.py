"""Where a model runs and in what precision: the device and dtype settings, resolved once at load.

`--device auto|cpu|cuda|cuda:N|mps` and `--dtype auto|float32|bfloat16|float16` (the CLI, `serve`
and `lmscope.load`) become a `Placement`. auto picks a GPU where there is one, in bfloat16 where
the GPU supports it (else float16), and float32 on the CPU. `--device-map auto|balanced` with
`--max-memory` spreads a model over several devices instead (core/placement.py plans it).

`TOLERANCE` is the one statement of how far a value computed in each dtype may be from the same
value in float32, relative to the largest value it is compared among: the parity check at load,
direct logit attribution's sum check and the tests all read it. `onloaded` is the one way code
reads a module's weights directly (not by calling the module): accelerate keeps weights it
offloaded to the CPU or disk on the `meta` device outside their module's own forward.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import LmscopeError, SettingError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DEVICE_MAPS = ("auto", "balanced")
# The largest difference allowed between a value computed in a dtype and the same value in float32,
# as a share of the largest value compared (logits: the largest logit). float32 differs from
# itself by summation order only (sdpa and eager attention: about 1e-6); float16 keeps 11
# significant bits and bfloat16 8, and a 30-layer pass adds the rounding of every layer.
TOLERANCE: dict[torch.dtype, float] = {
    torch.float32: 1e-4,
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
}


class PlacementError(LmscopeError):
    """A device, dtype or device-map setting this machine cannot honour (no CUDA, a bad name)."""

    status = 400


def parse_bytes(text: str) -> int:
    """'8G', '512M', '1.5GB' or a plain number of bytes."""
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def size_setting(name: str, default: str) -> int:
    """A size in bytes from environment variable `name` (`default` where unset), or a
    `SettingError` naming the variable."""
    raw = os.environ.get(name, "").strip() or default
    try:
        value = parse_bytes(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingError(f"{name} must be a size such as 4G or 512M, got {raw!r}.")
    return value


def tolerance(dtype: torch.dtype) -> float:
    """How far a value computed in `dtype` may be from float32's, relative (`TOLERANCE`)."""
    return TOLERANCE.get(dtype, TOLERANCE[torch.float16])


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def bytes_per_parameter(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str | None = "auto") -> torch.device:
    """`auto`: the first CUDA GPU, else Apple's MPS, else the CPU; a named device must exist."""
    text = (name or "auto").strip().lower()
    if text == "auto":
        if gpu_count():
            return torch.device("cuda", 0)
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise PlacementError(
            f"Unknown device {name!r}: use one of {', '.join(DEVICES)} (N: a GPU's number)."
        ) from None
    if device.type == "cuda":
        count = gpu_count()
        index = device.index or 0
        if not count:
            raise PlacementError(
                f"--device {name}: this machine has no CUDA GPU that torch can use (torch "
                f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)."
            )
        if index >= count:
            raise PlacementError(f"--device {name}: this machine has CUDA GPUs 0 to {count - 1}.")
        return torch.device("cuda", index)
    if device.type == "mps" and not mps_available():
        raise PlacementError(f"--device {name}: Apple's MPS backend is not available here.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise PlacementError(f"Unknown device {name!r}: use one of {', '.join(DEVICES)}.")
    return device


def supports_bfloat16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on a GPU that supports it (else float16), float32 on the CPU."""
    text = (name or "auto").strip().lower()
    if text == "auto":
        if device.type == "cpu":
            return torch.float32
        return torch.bfloat16 if supports_bfloat16(device) else torch.float16
    if text not in DTYPES:
        raise PlacementError(f"Unknown dtype {name!r}: use auto, {', '.join(DTYPES)}.")
    dtype = DTYPES[text]
    if dtype is torch.bfloat16 and device.type == "cuda" and not supports_bfloat16(device):
        raise PlacementError(
            f"--dtype bfloat16: {torch.cuda.get_device_name(device)} does not support it; use "
            "float16 or float32."
        )
    return dtype


@dataclass(frozen=True)
class Placement:
    """Where a model's weights go and what precision it computes in, resolved (no 'auto' left).

    `device` is where a one-piece model runs, and where a spread one (`device_map`) takes its
    input and keeps each analysis: the first GPU of the map, else the CPU. `max_memory` bounds
    each device of a device map (`{0: bytes, "cpu": bytes}`); weights past every budget go to
    `offload_folder` on disk.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    device_map: str | None = None
    max_memory: dict[int | str, int] | None = None
    offload_folder: str | None = None

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)

    @property
    def key(self) -> str:
        """A short text that tells placements apart (model caches key on it)."""
        memory = ",".join(f"{k}={v}" for k, v in sorted((self.max_memory or {}).items(), key=str))
        parts = [str(self.device), self.dtype_name, self.device_map or "", memory]
        return "@".join(p for p in parts if p)

    def describe(self) -> str:
        """'bfloat16 on cuda:0', or 'float32, spread by accelerate (balanced)'."""
        if self.device_map:
            return f"{self.dtype_name}, spread over devices by accelerate ({self.device_map})"
        return f"{self.dtype_name} on {self.device}"


def parse_max_memory(text: str | None) -> dict[int | str, int] | None:
    """`--max-memory 0=20GiB,1=20GiB,cpu=64GiB` as accelerate's dict ({0: bytes, "cpu": bytes})."""
    if not text:
        return None
    budgets: dict[int | str, int] = {}
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        name, sep, size = part.partition("=")
        name = name.lower().removeprefix("cuda:")
        try:
            if not sep or not (name.isdigit() or name in ("cpu", "mps", "disk")):
                raise ValueError
            value = parse_bytes(size.upper().removesuffix("IB"))
        except (ValueError, IndexError):
            raise PlacementError(
                f"--max-memory: {part!r} is not DEVICE=SIZE (e.g. 0=20GiB,cpu=64GiB)."
            ) from None
        budgets[int(name) if name.isdigit() else name] = value
    return budgets or None


def placement(
    device: str | None = "auto",
    dtype: str | None = "auto",
    device_map: str | None = None,
    max_memory: str | dict | None = None,
    offload_folder: str | None = None,
) -> Placement:
    """The settings of the CLI and the Python API, checked against this machine."""
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise PlacementError(
            f"Unknown device map {device_map!r}: use {' or '.join(DEVICE_MAPS)} (accelerate's "
            "placement), or leave it out for a one-piece model on --device."
        )
    budgets = parse_max_memory(max_memory) if isinstance(max_memory, str) else max_memory
    if budgets and not device_map:
        raise PlacementError("--max-memory bounds a device map: add --device-map auto or balanced.")
    where = resolve_device(device)
    if device_map:
        gpus = sorted(k for k in budgets or {} if isinstance(k, int))
        where = torch.device("cuda", gpus[0]) if gpus and gpu_count() else resolve_device("auto")
        if where.type == "mps":
            where = torch.device("cpu")  # accelerate's maps place on CUDA GPUs, the CPU and disk
    return Placement(where, resolve_dtype(dtype, where), device_map, budgets, offload_folder)


def offloaded(module: nn.Module) -> bool:
    """Whether accelerate keeps some of `module`'s weights off its device (on `meta`) between uses."""
    return any(p.device.type == "meta" for p in module.parameters())


@contextmanager
def onloaded(*modules: nn.Module | None) -> Iterator[None]:
    """Inside the block, every weight of `modules` (and their submodules) is real and on its
    execution device, also where accelerate offloaded it (to the CPU or disk: then it sits on
    `meta` outside its module's forward); outside it, as it was. Reading `module.weight`
    directly must happen in here: calling the module onloads by itself."""
    from accelerate.utils import align_module_device, has_offloaded_params

    with ExitStack() as stack:
        for module in modules:
            if module is None or not offloaded(module):
                continue
            for part in module.modules():
                if has_offloaded_params(part):
                    stack.enter_context(align_module_device(part))
            if offloaded(module):
                raise PlacementError(
                    f"Some weights of {type(module).__name__} are offloaded where lmscope cannot "
                    "read them (no accelerate hook holds them); load the model without offloading."
                )
        yield


def execution_device(module: nn.Module) -> torch.device:
    """Where `module` computes: its accelerate hook's execution device, else its weights' device."""
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")
