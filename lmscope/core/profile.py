"""A model's head profile: what each head does in general, measured once on a small probe set.

The probe set (docs/head-scores.md): `NATURAL` windows of `PROBE_TOKENS` tokens of plain English
(`probe_text.txt`) and `REPEATED` seeded random token sequences r + r (ids drawn from the vocabulary,
special tokens left out, no id twice within r), the standard test for induction heads. All probes run
as one batch through `trace.run`. The positional scores (previous-token, self, diffuse)
come from the natural text, the duplicate-token and induction scores from the repeated sequences;
each is the mean over its probes (the scores of `heads.score_heads_with_evidence`, computed during
the pass a block of rows at a time: `trace.run(score=True)`), its evidence the sum; the sink share
comes from the natural text.

The profile is cached on disk as JSON under `$XDG_CACHE_HOME/lmscope/profiles/` (else
`~/.cache/lmscope/profiles/`), keyed by model id, revision and probe version, and in memory per
loaded model. A model wrapped in memory (`loading.from_model`, revision "in-memory") has no revision
to key on, so its profile is kept in memory only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

from .heads import (
    POSITIONAL,
    SCORES,
    SINK,
    Category,
    HeadReport,
    chance_scores,
    head_name,
)
from .model import LoadedModel
from .trace import run

# bump when the probe set or a formula changes: old cache files are ignored. 2: scores on the
# attention off the sink, a sink share and evidence per score (docs/head-scores.md).
PROBE_VERSION = 2
PROBE_TOKENS = 48
NATURAL = 8
REPEATED = 4
SEED = 0
IN_MEMORY = "in-memory"  # the revision `loading.from_model` gives: nothing to key a file on
PROBE_TEXT = Path(__file__).resolve().parent / "probe_text.txt"

_MEMO: weakref.WeakKeyDictionary[LoadedModel, HeadReport] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _prefix(tokenizer) -> list[int]:
    """The ids the tokenizer puts before any text (a BOS for Llama-style models, none for GPT-2)."""
    full = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    head = len(full) - len(plain)
    return list(full[:head]) if head > 0 and list(full[head:]) == list(plain) else []


def probe_ids(lm: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe batch: natural-text windows `(NATURAL, T)` and repeated random `(REPEATED, T)`.

    Each probe starts with the tokenizer's own prefix (its BOS, if it adds one), as a prompt would.
    """
    tokenizer = lm.tokenizer
    prefix = _prefix(tokenizer)
    size = min(PROBE_TOKENS, lm.card.context_length)
    body = size - len(prefix)
    text: list[int] = []
    for passage in PROBE_TEXT.read_text(encoding="utf-8").split("\n\n"):
        start = " " if text else ""
        text += tokenizer(start + passage.strip(), add_special_tokens=False)["input_ids"]
    windows = [text[k : k + body] for k in range(0, len(text) - body + 1, body)][:NATURAL]
    natural = torch.tensor([prefix + w for w in windows])

    vocab = min(len(tokenizer), lm.card.vocab_size)
    allowed = torch.ones(vocab, dtype=torch.bool)
    allowed[[i for i in tokenizer.all_special_ids if i < vocab]] = False
    candidates = allowed.nonzero().squeeze(-1)
    generator = torch.Generator().manual_seed(SEED)
    half = math.ceil(body / 2)
    repeated = []
    for _ in range(REPEATED):
        r = candidates[torch.randperm(len(candidates), generator=generator)[:half]].tolist()
        repeated.append(prefix + (r + r)[:body])
    return natural, torch.tensor(repeated)


def measure_profile(lm: LoadedModel) -> HeadReport:
    """Run the probe set through the model (one batched forward pass) and score every head."""
    natural, repeated = probe_ids(lm)
    ids = torch.cat([natural, repeated])
    with torch.inference_mode():  # every head scored during the pass, per probe: (B, layers, heads)
        _, rec = run(lm, ids, score=True, keep_keys=False)
        per_probe, per_probe_evidence = rec.scores(lm.layers)
    split = len(natural)
    on_text = {k: v[:split] for k, v in per_probe.items()}
    on_repeats = {k: v[split:] for k, v in per_probe.items()}
    text_evidence = {k: v[:split] for k, v in per_probe_evidence.items()}
    repeat_evidence = {k: v[split:] for k, v in per_probe_evidence.items()}
    text_chance, repeat_chance = chance_scores(natural), chance_scores(repeated)
    scores, chance, evidence = {}, {}, {}
    for name in (*SCORES, SINK):
        text = name in POSITIONAL or name == SINK
        scores[name] = (on_text if text else on_repeats)[name].nanmean(0).tolist()
        chance[name] = (text_chance if text else repeat_chance)[name]
        if name != SINK:
            evidence[name] = (text_evidence if text else repeat_evidence)[name].sum(0).tolist()
    return HeadReport.from_scores(scores, chance, evidence)


def cache_dir() -> Path:
    """Where profiles are kept: `$XDG_CACHE_HOME/lmscope/profiles`, else `~/.cache/...`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmscope" / "profiles"


def profile_path(lm: LoadedModel) -> Path | None:
    """The profile's file for this model id and revision; None for an in-memory model."""
    if not lm.revision or lm.revision == IN_MEMORY:
        return None
    key = f"{lm.model_id}@{lm.revision}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / f"{readable_name(lm.model_id)}-{digest}.v{PROBE_VERSION}.json"


def readable_name(model_id: str) -> str:
    """A file-name-safe, readable stem: `org--name` for a hub id, `local-<last part>` for a path.

    Never starts with `-` or `.` (an option to a shell command, a hidden file).
    """
    if model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
        model_id = "local-" + Path(model_id).expanduser().name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id.replace("/", "--"))
    return safe.lstrip("-._")[:80] or "model"


def _write(path: Path, lm: LoadedModel, report: HeadReport) -> None:
    document = {
        "probe_version": PROBE_VERSION,
        "model_id": lm.model_id,
        "revision": lm.revision,
        "probe": {"tokens": PROBE_TOKENS, "natural": NATURAL, "repeated": REPEATED, "seed": SEED},
        "scores": {
            k: [[None if v != v else v for v in row] for row in rows]
            for k, rows in report.scores.items()
        },
        "chance": report.chance,
        "evidence": report.evidence,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(document), encoding="utf-8")
        partial.replace(path)
    except OSError:
        pass  # a read-only cache costs a recomputation next time, nothing more


def _read(path: Path, lm: LoadedModel) -> HeadReport | None:
    """The cached profile, if the file is there, readable and for exactly this model."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if (document["model_id"], document["revision"]) != (lm.model_id, lm.revision):
            return None
        scores = {
            k: [[math.nan if v is None else float(v) for v in row] for row in document["scores"][k]]
            for k in (*SCORES, SINK)
        }
        evidence = {k: [[float(v) for v in row] for row in document["evidence"][k]] for k in SCORES}
        if len(scores["self"]) != lm.layers or len(scores["self"][0]) != lm.heads:
            return None
        if document.get("probe_version") != PROBE_VERSION:
            return None
        return HeadReport.from_scores(scores, document.get("chance"), evidence)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def known_profile(lm: LoadedModel) -> HeadReport | None:
    """The model's head profile if it is at hand (in memory or in the disk cache); None when it
    is still to be measured. Never waits for a measurement under way."""
    report = _MEMO.get(lm)
    if report is None and (path := profile_path(lm)) is not None:
        report = _read(path, lm)
        if report is not None and _LOCK.acquire(blocking=False):
            try:
                _MEMO.setdefault(lm, report)
            finally:
                _LOCK.release()
    return report


def head_profile(lm: LoadedModel, *, refresh: bool = False) -> HeadReport:
    """The model's head profile: from memory, else from the disk cache, else measured (and saved)."""
    with _LOCK:
        if not refresh and lm in _MEMO:
            return _MEMO[lm]
        path = profile_path(lm)
        report = None if refresh or path is None else _read(path, lm)
        if report is None:
            report = measure_profile(lm)
            if path is not None:
                _write(path, lm, report)
        _MEMO[lm] = report
        return report


@dataclass(frozen=True)
class HeadRole:
    """One head's general role (from the profile) and whether it shows that role on this input.

    active: True/False, or None when the role is "other", its score is not applicable on this
    input (a duplicate-token or induction head on a prompt with no repeated token) or the input
    gives too little evidence for a verdict (`state` says which).
    """

    layer: int
    head: int
    role: Category
    profile_score: float | None
    input_score: float | None
    active: bool | None
    state: str = "none"  # active, inactive, not applicable, too little evidence, none (no role)

    @property
    def name(self) -> str:
        return head_name(self.layer, self.head)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "layer": self.layer,
            "head": self.head,
            "role": self.role,
            "profile_score": self.profile_score,
            "input_score": self.input_score,
            "active": self.active,
            "state": self.state,
        }


def _value(report: HeadReport, category: Category, layer: int, head: int) -> float | None:
    if category not in SCORES:
        return None
    value = report.scores[category][layer][head]
    return None if value != value else round(value, 4)


def compare(profile: HeadReport, on_input: HeadReport) -> list[list[HeadRole]]:
    """Per head `[layer][head]`: its general role and whether it plays that role on this input."""
    roles = []
    for layer, row in enumerate(profile.categories):
        line = []
        for head, role in enumerate(row):
            score = _value(on_input, role, layer, head)
            if role not in SCORES:
                active, state = None, "none"
            elif score is None:
                active, state = None, "not applicable"
            elif not on_input.decided(layer, head, role):
                active, state = None, "too little evidence"
            else:
                active = on_input.active(layer, head, role)
                state = "active" if active else "inactive"
            general = _value(profile, role, layer, head)
            line.append(HeadRole(layer, head, role, general, score, active, state))
        roles.append(line)
    return roles


def active_roles(profile: HeadReport, on_input: HeadReport) -> dict[Category, list[str]]:
    """Per general role, the heads that play it on this input, strongest in the profile first."""
    heads = sorted((r for row in compare(profile, on_input) for r in row), key=_strength)
    return {c: [r.name for r in heads if r.role == c and r.active] for c in SCORES}


def _strength(role: HeadRole) -> tuple[float, int, int]:
    return (-(role.profile_score or 0.0), role.layer, role.head)
