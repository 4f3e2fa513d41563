"""Helpers that put models into a Hugging Face cache folder the way a download leaves them."""

from __future__ import annotations

from pathlib import Path


def save_hub_snapshot(
    model, tokenizer, hub_cache: Path, repo_id: str, commit: str = "0" * 40
) -> Path:
    """Put a model into a Hugging Face cache folder exactly as a download would have left it."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
