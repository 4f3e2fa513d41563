"""Errors a user can act on. Each carries one clear sentence; no traceback is meant to reach a user."""


class LmscopeError(Exception):
    """Base class: `str(error)` is the message shown to the user."""

    status = 400  # HTTP status the API answers with


class PromptError(LmscopeError):
    """The prompt cannot be analyzed (empty, invalid Unicode, too long)."""


class ModelNotFoundError(LmscopeError):
    """The id names no model that can be had (unknown id, or offline and not cached)."""

    status = 404


class UnsupportedModelError(LmscopeError):
    """The model exists but lmscope cannot trace it (not a causal LM, unknown family, remote code)."""

    status = 422


class ModelTooLargeError(LmscopeError):
    """The model would not fit in the memory available; refused before loading."""

    status = 507  # Insufficient Storage: the request is fine, this machine cannot hold the model


class RequestError(LmscopeError):
    """A request's arguments are malformed (bad head index, bad JSON field)."""


class SettingError(LmscopeError):
    """A setting's environment variable does not parse (the operator's mistake, not the user's)."""

    status = 500


def positive_setting(name: str, raw: str) -> float:
    """A positive number from an environment variable's text (`inf` allowed), or a
    `SettingError` naming the variable."""
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also refuses NaN
        raise SettingError(f"{name} must be a positive number (or inf for no limit), got {raw!r}.")
    return value
