"""A model spread over devices: which layers go where for given memory budgets, planned before any
weight is read.

`plan` is a pure function of the config, the dtype, the budgets and the strategy: it builds the
model on the `meta` device (no memory) and asks accelerate where each part goes, the way
`from_pretrained(device_map=...)` would, so the memory check can say which layers land where, and
the load then takes exactly that map. Strategies: `auto` fills the GPUs in order, then the CPU,
then the disk (accelerate's "sequential": the fewest devices); `balanced` spreads the layers
evenly over the GPUs first (accelerate's `get_balanced_memory`). Budgets name GPUs by number and
"cpu"; whatever fits in none of them goes to "disk" when an offload folder is given.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from .devices import dtype_name
from .errors import ModelTooLargeError

Device = int | str  # a GPU number, "cpu" or "disk", as accelerate names them


def device_label(device: Device) -> str:
    return (
        f"cuda:{device}" if isinstance(device, int) else ("the CPU" if device == "cpu" else device)
    )


def _meta_model(config: PretrainedConfig, dtype: torch.dtype):
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


@dataclass(frozen=True)
class Layout:
    """Where each part of a model goes (`device_map`: module path -> device) and its bytes."""

    device_map: dict[str, Device]
    sizes: dict[str, int]  # bytes of each entry of the map
    blocks: str  # the path of the block list ("model.layers"), to name layers by number
    layers: int  # how many blocks it holds

    def devices(self) -> list[Device]:
        """The devices used, GPUs in order, then the CPU, then the disk."""
        used = set(self.device_map.values())
        return sorted((d for d in used if isinstance(d, int)), key=int) + [
            d for d in ("cpu", "disk") if d in used
        ]

    def layers_on(self, device: Device) -> list[int]:
        """The block numbers placed on `device` (all of them where the block list is one entry)."""
        pattern = re.compile(re.escape(self.blocks) + r"\.(\d+)$")
        paths = [path for path, d in self.device_map.items() if d == device]
        if self.blocks in paths or "" in paths or self.blocks.split(".")[0] in paths:
            return list(range(self.layers))
        return sorted(int(m.group(1)) for m in map(pattern.match, paths) if m)

    def bytes_on(self, device: Device) -> int:
        return sum(self.sizes.get(p, 0) for p, d in self.device_map.items() if d == device)

    @property
    def offloaded(self) -> bool:
        """Whether some weights live on the CPU or disk while a GPU computes (or on disk)."""
        places = set(self.device_map.values())
        gpus = any(isinstance(d, int) for d in places)
        return "disk" in places or (gpus and "cpu" in places)

    def describe(self) -> str:
        """'layers 0-13 on cuda:0 (1.2 GiB); layers 14-29 and the rest on the CPU (0.9 GiB)'."""
        parts = []
        for device in self.devices():
            if self.device_map == {"": device}:
                parts.append(f"everything on {device_label(device)} ({_size(self.sizes[''])})")
                continue
            layers = self.layers_on(device)
            blocks = re.compile(re.escape(self.blocks) + r"(\.\d+)?$")
            others = [
                _short(p)
                for p, d in self.device_map.items()
                if d == device and self.sizes.get(p) and not blocks.match(p)
            ]  # modules without weights (dropout, rotary tables) are not named
            what = ", ".join(([_spans(layers)] if layers else []) + others)
            parts.append(f"{what} on {device_label(device)} ({_size(self.bytes_on(device))})")
        return "; ".join(parts)


def _short(path: str) -> str:
    return path.rsplit(".", 1)[-1] if path else "everything"


def _spans(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> 'layers 0-2, 5'."""
    runs: list[list[int]] = []
    for layer in layers:
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)
    return f"layer{'s' if len(layers) > 1 else ''} {text}"


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def plan(
    config: PretrainedConfig,
    dtype: torch.dtype,
    budgets: dict[Device, int],
    strategy: str = "auto",
    blocks: str = "model.layers",
    disk: bool = False,
) -> Layout:
    """The device map for `budgets` (bytes per device: GPU numbers and "cpu"); the rest goes to
    "disk" if `disk`, else the plan is refused with what would not fit. Pure: no device is asked."""
    model = _meta_model(config, dtype)
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    quiet = logging.getLogger("accelerate.utils.modeling")  # "Device 1 is not available": a plan
    level = quiet.level  # for budgets of GPUs elsewhere is fine
    quiet.setLevel(logging.ERROR)
    try:
        return _plan(model, no_split, config, dtype, budgets, strategy, blocks, disk)
    finally:
        quiet.setLevel(level)


def _plan(
    model: torch.nn.Module,
    no_split: list[str],
    config: PretrainedConfig,
    dtype: torch.dtype,
    budgets: dict[Device, int],
    strategy: str,
    blocks: str,
    disk: bool,
) -> Layout:
    from accelerate.utils import compute_module_sizes, get_balanced_memory, infer_auto_device_map

    memory = {k: int(v) for k, v in budgets.items() if k != "disk"}
    if disk:
        memory["disk"] = 2**60
    if strategy == "balanced" and sum(isinstance(k, int) for k in memory) > 1:
        gpus = {k: v for k, v in memory.items() if isinstance(k, int)}
        balanced = get_balanced_memory(model, max_memory=gpus, no_split_module_classes=no_split,
                                       dtype=dtype)  # fmt: skip
        memory = memory | {k: balanced[k] for k in gpus if k in balanced}
    elif strategy not in ("auto", "balanced"):
        raise ValueError(f"unknown strategy {strategy!r}")
    device_map = infer_auto_device_map(
        model, max_memory=memory, no_split_module_classes=no_split, dtype=dtype
    )
    sizes = compute_module_sizes(model, dtype=dtype)
    layout = Layout(dict(device_map), {p: int(sizes[p]) for p in device_map}, blocks,
                    config.num_hidden_layers)  # fmt: skip
    if "disk" in layout.device_map.values() and not disk:
        raise ModelTooLargeError(
            f"The model's {dtype_name(dtype)} weights ({_size(int(sizes['']))}) do not fit in "
            f"{budget_text(budgets)}: {layout.describe()}. Give more memory (--max-memory), a "
            "smaller dtype, or an offload folder on disk (slow)."
        )
    return layout


def budget_text(budgets: dict[Device, int]) -> str:
    return ", ".join(f"{_size(v)} on {device_label(k)}" for k, v in budgets.items()) or "nothing"
