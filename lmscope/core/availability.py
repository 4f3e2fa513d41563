"""Whether a model is already on this machine, so that loading it downloads nothing."""

from __future__ import annotations

from huggingface_hub import try_to_load_from_cache

from .catalog import CATALOG, DEMO_ID, hub_aliases, is_valid_hub_id

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def in_hub_cache(model_id: str) -> bool:
    """True when the HF cache holds a config and weights for the repository `model_id` names."""
    if not is_valid_hub_id(model_id):
        return False
    for alias in hub_aliases(model_id):
        if isinstance(try_to_load_from_cache(alias, "config.json"), str) and any(
            isinstance(try_to_load_from_cache(alias, name), str) for name in WEIGHT_FILES
        ):
            return True
    return False


def on_disk(model_id: str) -> bool:
    """True for the demo, a catalog model installed with a package, or a hub model in the cache."""
    model_id = model_id.strip()
    if model_id == DEMO_ID or any(e.id == model_id and e.package for e in CATALOG):
        return True
    return in_hub_cache(model_id)
