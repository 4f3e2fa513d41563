"""Stage 3, attention: the head grid, one head, the step view, the token view and the model view."""

from __future__ import annotations

from .grid import head_grid, kv_groups, layout, register

__all__ = ["head_grid", "kv_groups", "layout", "register"]
