"""Reading a request's JSON body and query arguments, each refusal a `RequestError` (a 400)."""

from __future__ import annotations

import re

from flask import Response, jsonify, request

from ..core.analysis import OVERVIEW
from ..core.errors import RequestError
from ..core.model import LoadedModel


def json_body() -> dict:
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise RequestError("The JSON body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise RequestError(
            'The request body must be a JSON object, e.g. {"model": ..., "prompt": ...}.'
        )
    return data


def query_int(name: str) -> int:
    """The integer in `?name=`, written in plain digits (Python's `int` also reads `1_0`, ` 7`
    and other scripts' digits, which a client would not mean)."""
    raw = request.args.get(name, "")
    if not re.fullmatch(r"-?[0-9]{1,15}", raw):
        raise RequestError(f"'{name}' must be an integer, got {raw[:40]!r}.")
    return int(raw)


def int_arg(name: str, upper: int) -> int:
    value = query_int(name)
    if not 0 <= value < upper:
        raise RequestError(f"'{name}' must be between 0 and {upper - 1}, got {value}.")
    return value


def span(name: str, tokens: int) -> slice:
    """The `a:b` window of positions in `?name=` (the whole prompt when absent), at most OVERVIEW."""
    raw = request.args.get(name, f"0:{min(tokens, OVERVIEW)}")
    try:
        start, stop = (int(part) for part in raw.split(":"))
    except ValueError:
        raise RequestError(f"'{name}' must be two positions 'start:stop', got {raw!r}.") from None
    if not 0 <= start < stop <= tokens or stop - start > OVERVIEW:
        raise RequestError(
            f"'{name}' must be a window start:stop with 0 <= start < stop <= {tokens} and at most "
            f"{OVERVIEW} positions, got {raw!r}."
        )
    return slice(start, stop)


def body_int(body: dict, name: str, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(f"'{name}' must be an integer, got {value!r}.")
    return value


def given(body: dict, *names: str) -> dict:
    """The settings among `names` that the body names: passed on as they are, so that one left out
    takes the library function's own default."""
    return {name: body[name] for name in names if name in body}


def answer(doc: dict, *models: LoadedModel) -> Response:
    """An experiment's document as the API answers it, with the `warnings` of its models (a
    failed parity check: what lmscope shows for them may be wrong)."""
    warnings = [w for lm in models for w in lm.warnings()]
    return jsonify(doc | {"warnings": doc.get("warnings", []) + warnings})
