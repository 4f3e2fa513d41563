"""Every experiment setting has ONE default: the keyword default of the library function that
takes it. The CLI, the HTTP API and the dashboard read it from there, so no front-end states a
default of its own (tests/test_defaults.py holds them to it)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def default(function: Callable, name: str) -> Any:
    """The default of `function`'s keyword `name` (a dataclass's field default, for a class)."""
    value = inspect.signature(function).parameters[name].default
    if value is inspect.Parameter.empty:
        raise KeyError(f"{function.__qualname__}'s '{name}' has no default")
    return value
