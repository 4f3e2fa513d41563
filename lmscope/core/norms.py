"""A norm frozen at one input: the linear map it applies there, which sums over any split.

LayerNorm and RMSNorm divide their input by a scale computed from it, so what a norm does to a
sum of parts is not the sum of what it does to each part. Direct logit attribution splits a sum
anyway, the standard way: the scale is frozen at its value on the whole (the vector the model
really normalized), which makes the norm linear, `N(x) = gain * centre(x) / s + bias`: exact at
the whole, and additive over every split of it. The gain is read off the module itself (an RMSNorm
of a vector of ones, whose root mean square is 1), so a norm that scales by w (Llama) and one that
scales by 1 + w (Gemma) are both read right, with no family named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .devices import onloaded


def is_norm(module: nn.Module) -> bool:
    """Whether a module is a LayerNorm or an RMSNorm (any family's class of that name)."""
    return isinstance(module, nn.LayerNorm) or "RMSNorm" in type(module).__name__


def _eps(module: nn.Module) -> float:
    for name in ("eps", "variance_epsilon"):
        value = getattr(module, name, None)
        if isinstance(value, float | int):
            return float(value)
    return 1e-6


@dataclass(frozen=True)
class FrozenNorm:
    """A norm with its scale `s` frozen: `N(x) = gain * centre(x) / s + bias` (centred: LayerNorm)."""

    gain: torch.Tensor  # (d,)
    scale: float
    centred: bool
    bias: torch.Tensor | None  # (d,)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """The linear part on vectors `(..., d)`: what a part of the whole contributes."""
        x = x.float()
        if self.centred:
            x = x - x.mean(-1, keepdim=True)
        return x * (self.gain / self.scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return out if self.bias is None else out + self.bias

    def transpose(self, u: torch.Tensor) -> torch.Tensor:
        """g with `g . x == u . linear(x)` for every x: a read-out direction moved before the norm."""
        g = self.gain * u.float() / self.scale
        return g - g.mean() if self.centred else g

    def constant(self, u: torch.Tensor) -> float:
        """`u . bias`: what the norm adds whatever its input."""
        return 0.0 if self.bias is None else float(self.bias @ u.float())


def freeze(module: nn.Module, at: torch.Tensor) -> FrozenNorm:
    """`module` (a LayerNorm or RMSNorm) frozen at the vector `at` `(d,)`; in float32 on `at`'s
    device (a LayerNorm's weights read inside `devices.onloaded`: they may be offloaded)."""
    at = at.float()
    eps = _eps(module)
    if isinstance(module, nn.LayerNorm):
        with onloaded(module):
            weight, bias = module.weight, module.bias
            gain = weight.to(at) if weight is not None else torch.ones_like(at)
            bias = None if bias is None else bias.to(at)
        scale = math.sqrt(float(at.var(unbiased=False)) + eps)
        return FrozenNorm(gain, scale, True, bias)
    with torch.inference_mode():
        ones = torch.ones_like(at, dtype=next(module.parameters(), at).dtype)
        gain = module(ones).to(at) * math.sqrt(1.0 + eps)
    return FrozenNorm(gain.clone(), math.sqrt(float(at.pow(2).mean()) + eps), False, None)
