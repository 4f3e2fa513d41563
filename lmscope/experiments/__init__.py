"""Experiments on a prompt: generation, head ablation, attribution, and model comparison.

Each is a library call returning a small dataclass with `to_dict()`; the CLI and the HTTP API are
thin wrappers over these calls. Interventions go through `trace.run`'s per-request `HeadPatch`es,
so the shared model's weights and hooks are never changed.
"""
