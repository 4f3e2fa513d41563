"""Head scores on hand-built attention patterns, each checked against its formula computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import lmscope
from lmscope.core.analysis import analyze
from lmscope.core.heads import (
    MIN_EVIDENCE,
    THRESHOLDS,
    HeadReport,
    chance_scores,
    depth_bin,
    primary_category,
    row_entropy,
    score_heads,
    softmax_entropy,
)
from lmscope.core.loading import from_model

T = 16
L = 8  # half of a repeated sequence r + r


def uniform(size: int = T) -> torch.Tensor:
    """Causal uniform attention: A[i, j] = 1 / (i + 1) for j <= i."""
    return torch.tensor(
        [[1 / (i + 1) if j <= i else 0.0 for j in range(size)] for i in range(size)]
    )


def one_hot(targets: list[int]) -> torch.Tensor:
    """Row i puts all its attention on key targets[i]."""
    pattern = torch.zeros(len(targets), len(targets))
    for i, j in enumerate(targets):
        pattern[i, j] = 1.0
    return pattern


def heads(*patterns: torch.Tensor) -> torch.Tensor:
    """One layer whose heads are the given `(T, T)` patterns: `(1, heads, T, T)`."""
    return torch.stack(patterns).unsqueeze(0)


DISTINCT = torch.arange(100, 100 + T)  # no token repeats
REPEATED = torch.cat([torch.arange(200, 200 + L)] * 2)  # r + r, r of distinct ids
PREVIOUS = one_hot([0, *range(T - 1)])
FIRST = one_hot([0] * T)
SELF = torch.eye(T)
INDUCTION = one_hot([i if i < L else i - L + 1 for i in range(T)])
DUPLICATE = one_hot([i if i < L else i - L for i in range(T)])
UNIFORM_CHANCE = sum(1 / (i + 1) for i in range(1, T)) / (T - 1)  # mean over i >= 1 of 1/(i+1)


def scores_of(pattern: torch.Tensor, ids: torch.Tensor) -> dict[str, float]:
    return {k: float(v[0, 0]) for k, v in score_heads(heads(pattern), ids).items()}


def rest_scores(pattern: torch.Tensor, ids: list[int]) -> dict[str, float]:
    """The documented formulas, by hand, one row at a time: each behaviour's mass as a share of
    the attention off key 0, over rows i >= 2; diffuse the r-weighted normalised entropy."""
    size = len(ids)
    rows = range(2, size)
    rest = {i: 1 - float(pattern[i, 0]) for i in rows}
    out = {"sink": sum(float(pattern[i, 0]) for i in rows) / len(rows)}
    out["previous_token"] = sum(float(pattern[i, i - 1]) for i in rows) / sum(rest.values())
    out["self"] = sum(float(pattern[i, i]) for i in rows) / sum(rest.values())
    spread = 0.0
    for i in rows:
        share = [float(pattern[i, j]) / rest[i] for j in range(1, i + 1)]
        entropy = -sum(p * math.log(p) for p in share if p > 0)
        spread += rest[i] * entropy / math.log(i)
    out["diffuse"] = spread / sum(rest.values())
    for name, targets in (
        ("duplicate_token", lambda i: [j for j in range(1, i) if ids[j] == ids[i]]),
        ("induction", lambda i: [j + 1 for j in range(i - 1) if ids[j] == ids[i]]),
    ):
        used = [i for i in rows if targets(i)]
        mass = sum(float(pattern[i, targets(i)].sum()) for i in used)
        out[name] = mass / sum(rest[i] for i in used) if used else math.nan
    return out


def with_sink(pattern: torch.Tensor, sink: float) -> torch.Tensor:
    """`pattern` with `sink` of every row from 2 on moved to key 0 (rows 0-1 all on key 0)."""
    out = pattern * (1 - sink)
    out[:, 0] += sink
    out[:2] = 0.0
    out[:2, 0] = 1.0
    return out


def test_previous_token_head_scores_one_and_is_filed_as_previous_token() -> None:
    s = scores_of(PREVIOUS, DISTINCT)
    assert s["previous_token"] == pytest.approx(1.0)
    assert s["self"] == pytest.approx(0.0)
    assert s["sink"] == pytest.approx(0.0)  # rows from 2 on: key 0 is nobody's previous token
    assert s["diffuse"] == pytest.approx(0.0, abs=1e-5)
    assert HeadReport.from_pattern(heads(PREVIOUS), DISTINCT).categories == [["previous_token"]]


def test_a_sink_plus_previous_token_stripe_is_a_previous_token_head_with_its_sink_share() -> None:
    # 70% parked on key 0, the other 30% on the previous token: what real models do
    striped = with_sink(PREVIOUS, 0.7)
    s = scores_of(striped, DISTINCT)
    assert s["sink"] == pytest.approx(0.7)
    assert s["previous_token"] == pytest.approx(1.0)
    report = HeadReport.from_pattern(heads(striped, with_sink(SELF, 0.9)), DISTINCT)
    assert report.categories[0][0] == "previous_token"
    assert report.sink(0, 0) == pytest.approx(0.7)
    assert report.evidence_of(0, 0, "previous_token") == pytest.approx(0.3 * (T - 2))
    # 90% on the sink over 14 rows leaves 1.4 rows' worth: too little to call it a self head
    assert report.scores["self"][0][1] == pytest.approx(1.0)
    assert report.categories[0][1] == "insufficient"
    assert report.sink_heads() == ["L0-H1", "L0-H0"]


def test_scores_on_the_rest_of_the_attention_equal_a_row_by_row_computation() -> None:
    torch.manual_seed(3)
    ids = [5, 6, 7, 5, 6, 8, 5, 9, 6, 7, 5, 6]
    size = len(ids)
    pattern = torch.rand(4, size, size).tril() ** 3
    pattern[:, :, 0] += 3 * torch.rand(4, 1)  # a sink of a different size per head
    pattern = pattern / pattern.sum(-1, keepdim=True)
    s = score_heads(pattern.unsqueeze(0), torch.tensor(ids))
    for head in range(4):
        expected = rest_scores(pattern[head], ids)
        for name, value in expected.items():
            assert float(s[name][0, head]) == pytest.approx(value, abs=1e-5), name


def test_uniform_attention_scores_chance_everywhere_and_is_diffuse() -> None:
    s = scores_of(uniform(), DISTINCT)
    chance = chance_scores(DISTINCT)
    for name in ("previous_token", "self", "sink"):
        assert s[name] == pytest.approx(chance[name])
    assert s["previous_token"] == pytest.approx(rest_scores(uniform(), DISTINCT.tolist())["self"])
    assert s["diffuse"] == pytest.approx(1.0)
    assert HeadReport.from_pattern(heads(uniform()), DISTINCT).categories == [["diffuse"]]


def test_a_head_that_only_parks_on_the_first_token_is_a_sink_not_a_behaviour() -> None:
    first, own = scores_of(FIRST, DISTINCT), scores_of(SELF, DISTINCT)
    assert first["sink"] == pytest.approx(1.0)
    assert first["previous_token"] == pytest.approx(0.0)
    assert own["self"] == pytest.approx(1.0)
    assert own["sink"] == pytest.approx(0.0)
    report = HeadReport.from_pattern(heads(FIRST, SELF), DISTINCT)
    assert report.categories == [["other", "self"]]
    assert report.sink_heads() == ["L0-H0"]


def test_induction_head_on_repeated_sequence_scores_one_and_wins_over_self() -> None:
    s = scores_of(INDUCTION, REPEATED)
    assert s["induction"] == pytest.approx(1.0)
    assert s["duplicate_token"] == pytest.approx(0.0)
    # the first half attends to itself: rows 2..L-1 of the T - 2 scored rows
    assert s["self"] == pytest.approx((L - 2) / (T - 2))
    report = HeadReport.from_pattern(heads(INDUCTION), REPEATED)
    assert report.categories == [["induction"]]


def test_duplicate_token_head_scores_one_on_earlier_copies() -> None:
    s = scores_of(DUPLICATE, REPEATED)
    # the copy of token 0 is the sink's key: the row at L is left out of duplicate-token
    assert s["duplicate_token"] == pytest.approx(1.0)
    assert s["induction"] == pytest.approx(0.0)
    assert HeadReport.from_pattern(heads(DUPLICATE), REPEATED).categories == [["duplicate_token"]]


def test_repeat_scores_are_not_applicable_without_repeated_tokens() -> None:
    report = HeadReport.from_pattern(heads(INDUCTION, uniform()), DISTINCT)
    assert all(math.isnan(v) for v in report.scores["induction"][0])
    assert all(math.isnan(v) for v in report.scores["duplicate_token"][0])
    assert not report.applicable("induction")
    assert not report.active(0, 0, "induction")
    assert report.to_dict()["scores"]["induction"] == [[None, None]]
    assert report.to_dict()["applicable"]["induction"] is False


def test_one_repeated_token_is_too_little_evidence_for_an_induction_verdict() -> None:
    # a b c d a x ... : only query 4 has an earlier copy; a perfect induction head there
    ids = torch.tensor([1, 2, 3, 4, 1, 9, 10, 11])
    pattern = uniform(8)
    pattern[4] = 0.0
    pattern[4, 1] = 1.0
    report = HeadReport.from_pattern(heads(pattern), ids)
    assert report.scores["induction"][0][0] == pytest.approx(1.0)
    assert report.evidence_of(0, 0, "induction") == pytest.approx(1.0)
    assert report.categories == [["insufficient"]]
    assert not report.decided(0, 0, "induction") and not report.active(0, 0, "induction")
    assert report.to_dict()["evidence"]["induction"] == [[1.0]]
    # the same head on a full repeated sequence is an induction head
    assert HeadReport.from_pattern(heads(INDUCTION), REPEATED).categories == [["induction"]]


def test_rest_amplified_from_a_nearly_full_sink_is_too_little_evidence() -> None:
    # 99.9% on the sink: the last 0.1% on the induction target would score 1.0 on the rest
    parked = with_sink(INDUCTION, 0.999)
    report = HeadReport.from_pattern(heads(parked), REPEATED)
    assert report.scores["induction"][0][0] == pytest.approx(1.0, abs=1e-3)
    assert report.evidence_of(0, 0, "induction") < MIN_EVIDENCE
    assert report.categories == [["insufficient"]]


def test_sparse_repeat_scores_equal_the_dense_sum_over_targets() -> None:
    torch.manual_seed(1)
    size = 12
    ids = torch.tensor([5, 6, 5, 7, 6, 5, 8, 5, 6, 9, 7, 5])
    pattern = torch.rand(3, 2, size, size).tril()
    pattern = pattern / pattern.sum(-1, keepdim=True)
    dup_mass, dup_rest, ind_mass, ind_rest = 0, 0, 0, 0
    for i in range(2, size):
        earlier = [j for j in range(1, i) if ids[j] == ids[i]]
        if earlier:
            dup_mass = dup_mass + pattern[..., i, earlier].sum(-1)
            dup_rest = dup_rest + 1 - pattern[..., i, 0]
        after = [j + 1 for j in range(i - 1) if ids[j] == ids[i]]
        if after:
            ind_mass = ind_mass + pattern[..., i, after].sum(-1)
            ind_rest = ind_rest + 1 - pattern[..., i, 0]
    s = score_heads(pattern, ids)
    torch.testing.assert_close(s["duplicate_token"], dup_mass / dup_rest)
    torch.testing.assert_close(s["induction"], ind_mass / ind_rest)


def test_diffuse_on_long_prompts_equals_normalised_entropy_of_the_rest() -> None:
    # 300 tokens takes the chunked, lower-triangle-only entropy path
    torch.manual_seed(2)
    size = 300
    pattern = torch.rand(2, size, size).tril() ** 4
    pattern = pattern / pattern.sum(-1, keepdim=True)
    expected = torch.special.entr(pattern).sum(-1)
    torch.testing.assert_close(row_entropy(pattern), expected, atol=1e-4, rtol=1e-4)
    ids = torch.arange(size)
    diffuse = score_heads(pattern.unsqueeze(0), ids)["diffuse"][0]
    rest = 1 - pattern[..., 2:, 0]
    share = pattern[..., 2:, 1:] / rest.unsqueeze(-1)
    norm = torch.arange(2, size, dtype=torch.float).log()
    spread = (rest * torch.special.entr(share).sum(-1) / norm).sum(-1) / rest.sum(-1)
    torch.testing.assert_close(diffuse, spread, atol=1e-4, rtol=1e-4)
    assert float(score_heads(uniform(size)[None, None], ids)["diffuse"]) == pytest.approx(1.0)


def test_batched_scores_are_the_mean_of_per_item_scores() -> None:
    patterns = torch.stack([heads(PREVIOUS, INDUCTION), heads(uniform(), INDUCTION)])
    ids = torch.stack([REPEATED, DISTINCT])
    report = HeadReport.from_pattern(patterns, ids)
    uniform_previous = scores_of(uniform(), DISTINCT)["previous_token"]
    assert report.scores["previous_token"][0][0] == pytest.approx((1 + uniform_previous) / 2)
    # induction is defined on the first item only: the mean is over the items where it is defined
    assert report.scores["induction"][0][1] == pytest.approx(1.0)
    per_item = score_heads(patterns, ids)["self"]
    assert report.scores["self"][0][1] == pytest.approx(float(per_item[:, 0, 1].mean()))
    # evidence adds up over the items: 14 rows all off the sink, then uniform rows' i / (i + 1)
    uniform_rest = sum(i / (i + 1) for i in range(2, T))
    assert report.evidence_of(0, 0, "previous_token") == pytest.approx(T - 2 + uniform_rest)


def test_uniform_attention_on_a_short_prompt_is_not_called_previous_token() -> None:
    # 4 tokens, rows 2-3: uniform over keys 1..i scores (1/2 + 1/3) / 2 on the rest: chance
    ids = torch.tensor([1, 2, 3, 4])
    s = scores_of(uniform(4), ids)
    assert s["previous_token"] == pytest.approx(chance_scores(ids)["previous_token"])
    assert s["previous_token"] >= THRESHOLDS["previous_token"]
    report = HeadReport.from_pattern(heads(uniform(4)), ids)
    assert report.categories == [["insufficient"]]  # diffuse, but on 2 rows only
    assert not report.active(0, 0, "previous_token")


def test_no_category_reached_files_a_head_under_other() -> None:
    scores = dict.fromkeys(THRESHOLDS, 0.1) | {"induction": math.nan}
    assert primary_category(scores) == "other"
    # a passing score on thin evidence is not "other": it is too little evidence
    thin = scores | {"previous_token": 0.9}
    assert primary_category(thin, evidence={"previous_token": MIN_EVIDENCE / 2}) == "insufficient"
    assert primary_category(thin, evidence={"previous_token": MIN_EVIDENCE}) == "previous_token"


def test_summary_lists_heads_strongest_first_and_counts_them_per_layer() -> None:
    weak = 0.5 * PREVIOUS + 0.5 * SELF  # previous 0.5, self 0.5: a tie goes to previous-token
    strong = 0.9 * PREVIOUS + 0.1 * SELF
    report = HeadReport.from_pattern(
        torch.stack([torch.stack([weak, uniform()]), torch.stack([strong, SELF])]), DISTINCT
    )
    summary = report.summary()
    assert summary["previous_token"] == ["L1-H0", "L0-H0"]
    assert summary["self"] == ["L1-H1"]
    assert summary["diffuse"] == ["L0-H1"]
    counts = report.counts_per_layer()
    assert counts["previous_token"] == [1, 1]
    assert counts["diffuse"] == [1, 0]
    assert sum(sum(c) for c in counts.values()) == 4


def test_depth_bins_split_models_of_any_depth_into_even_slices() -> None:
    for layers in (2, 12, 24, 36):
        bins = [depth_bin(layer, layers) for layer in range(layers)]
        assert bins == sorted(bins)
        sizes = [bins.count(b) for b in range(5)]
        if layers >= 5:
            assert bins[0] == 0 and bins[-1] == 4
            assert max(sizes) - min(sizes) <= 1
    assert [depth_bin(layer, 2) for layer in range(2)] == [1, 3]  # layer middles at 1/4 and 3/4
    report = HeadReport.from_scores(
        {k: [[0.0]] * 12 for k in THRESHOLDS} | {"previous_token": [[0.9]] * 12}
    )
    # 12 layers in fifths: layer l goes to bin floor((l + 0.5) / 12 * 5)
    expected = [0] * 5
    for layer in range(12):
        expected[math.floor((layer + 0.5) / 12 * 5)] += 1
    assert report.counts_by_depth()["previous_token"] == expected


IOI = "When Mary and John went to the store, John gave a drink to"


def test_random_gpt2_gets_no_repeat_verdicts_from_one_repeated_name(gpt2_tokenizer) -> None:
    # GPT-2 Small's shape, random weights at 5x the usual spread: peaked, meaningless attention
    # (the evidence-free rule filed 12 induction and 16 duplicate-token heads on this prompt)
    torch.manual_seed(0)
    config = GPT2Config(attn_implementation="eager", initializer_range=0.1)
    lm = from_model(GPT2LMHeadModel(config), gpt2_tokenizer, "openai-community/gpt2")
    report = analyze(lm, IOI).heads
    names = report.summary()
    assert names["induction"] == [] and names["duplicate_token"] == []
    evidence_free = [
        primary_category({k: report.scores[k][l][h] for k in THRESHOLDS}, report.chance)
        for l in range(lm.layers)
        for h in range(lm.heads)
    ]
    assert {"induction", "duplicate_token"} & set(evidence_free)  # the rule is what stops them
    for layer in range(lm.layers):
        for head in range(lm.heads):
            assert not report.decided(layer, head, "induction")  # two rows, one name and "to"


def test_demo_models_previous_token_and_induction_heads_are_still_found() -> None:
    demo = lmscope.load("demo")
    generator = torch.Generator().manual_seed(7)
    r = torch.randint(1000, 40000, (20,), generator=generator).tolist()
    prompt = demo.tokenizer.decode(r + r)
    report = analyze(demo, prompt).heads
    assert report.categories[0][1] == "previous_token"
    assert report.scores["previous_token"][0][1] > 0.8
    assert [c for c in report.categories[1]].count("induction") >= 3
    assert report.sink_heads() == []  # this small model parks little on the first token


def test_grid_cells_carry_score_sink_share_and_evidence_in_colour_and_tooltip() -> None:
    from lmscope.dashboard import figures
    from lmscope.dashboard.stages.attention import head_grid, kv_groups

    weak = with_sink(0.4 * PREVIOUS + 0.6 * uniform(), 0.5)
    strong = with_sink(PREVIOUS, 0.5)
    parked = with_sink(SELF, 0.9)  # 1.4 rows' worth off the sink
    report = HeadReport.from_pattern(heads(weak, strong, parked), DISTINCT)
    assert report.categories == [["previous_token", "previous_token", "insufficient"]]
    grid = head_grid(report).to_plotly_json()["props"]  # drawn in the browser from this JSON
    cells = json.loads(grid["data-cells"])["cells"][0]  # layer 0
    assert grid["data-pick"] == "head-pick" and grid["data-cols"] == "3"
    low, high = (cell["s"]["backgroundColor"] for cell in cells[:2])
    assert report.scores["previous_token"][0][0] < 0.6
    assert low != high  # a .4x and a 1.00 previous-token head do not look alike
    assert high == figures.CATEGORY_COLORS["previous_token"]
    assert "50%" in cells[1]["s"]["backgroundImage"]  # the sink bar, half the cell wide
    assert "90%" in cells[2]["s"]["backgroundImage"]
    assert cells[1]["d"] == {"head": "L0-H1", "category": "previous_token"}
    assert cells[1]["title"] == (
        "L0-H1: previous-token, score 1.00 (share of its attention off the first token); "
        "sink share 0.50 (attention on the first token)"
    )
    assert "too little evidence" in cells[2]["title"] and "1.4 rows' worth" in cells[2]["title"]
    assert cells[2]["t"] == "?"
    text = kv_groups(9, 3)
    assert "heads 0-2 share group 0" in text and "heads 6-8 share group 2" in text
    assert kv_groups(12, 12) is None


def test_softmax_entropy_equals_softmax_and_the_entropy_of_the_weights() -> None:
    logits = torch.randn(2, 3, 5, 40) * 6
    logits[..., 30:] = torch.finfo(torch.float32).min  # masked keys
    expected = logits.softmax(-1)
    entropy = -torch.xlogy(expected.double(), expected.double()).sum(-1)
    out = torch.empty_like(logits)
    weights, got = softmax_entropy(logits.clone(), out=out)
    assert weights.data_ptr() == out.data_ptr()
    assert torch.allclose(weights, expected, atol=1e-7, rtol=1e-6)
    assert (weights[..., 30:] == 0).all()
    assert torch.allclose(got.double(), entropy, atol=1e-5)


def windowed(pattern: torch.Tensor, window: int) -> torch.Tensor:
    """A causal pattern cut to a sliding window (keys i - j < window), rows renormalised."""
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    cut = pattern * ((i - j) < window) * (j <= i)
    return cut / cut.sum(-1, keepdim=True)


def windowed_scores(pattern: torch.Tensor, ids: list[int], window: int) -> dict[str, float]:
    """The documented formulas for a sliding-window head, by hand, row by row: only the keys a
    row sees count (j > i - window); the sink on rows that still see key 0; diffuse normalised by
    the log of the keys it sees other than key 0."""
    rows = range(2, len(ids))

    def seen(i):
        return range(max(0, i - window + 1), i + 1)

    rest = {i: 1 - float(pattern[i, 0]) for i in rows}
    sink_rows = [i for i in rows if i < window]
    out = {"sink": sum(float(pattern[i, 0]) for i in sink_rows) / len(sink_rows)}
    spread = 0.0
    for i in rows:
        share = [float(pattern[i, j]) / rest[i] for j in seen(i) if j >= 1]
        entropy = -sum(p * math.log(p) for p in share if p > 0)
        spread += rest[i] * entropy / math.log(min(i, window))
    out["diffuse"] = spread / sum(rest.values())
    for name, targets in (
        ("duplicate_token", lambda i: [j for j in seen(i) if 1 <= j < i and ids[j] == ids[i]]),
        ("induction", lambda i: [j + 1 for j in range(i - 1) if ids[j] == ids[i] and j + 1 in seen(i)]),
    ):  # fmt: skip
        used = [i for i in rows if targets(i)]
        mass = sum(float(pattern[i, targets(i)].sum()) for i in used)
        out[name] = mass / sum(rest[i] for i in used) if used else math.nan
    return out


def test_a_sliding_window_head_is_judged_on_what_it_can_see() -> None:
    """Uniform attention over a window of 4 is fully diffuse for what it can see, and an induction
    target 8 tokens back, out of its sight, makes no induction verdict possible."""
    window = 4
    local = windowed(uniform(), window)
    got = {k: float(v[0, 0]) for k, v in score_heads(heads(local), REPEATED, window).items()}
    assert got["diffuse"] == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(got["induction"]) and math.isnan(got["duplicate_token"])
    unjudged = scores_of(local, REPEATED)  # the same head judged as if it saw everything
    assert unjudged["diffuse"] < 0.85 and not math.isnan(unjudged["induction"])
    assert chance_scores(REPEATED, window)["diffuse"] == pytest.approx(1.0, abs=1e-6)


def test_sliding_window_scores_equal_the_formulas_by_hand() -> None:
    torch.manual_seed(0)
    ids = torch.tensor([5, 6, 7, 5, 6, 8, 5, 9, 6, 7, 5, 6, 1, 2, 5, 6])
    pattern = windowed(torch.rand(T, T).tril() + 0.01, 6)
    got = {k: float(v[0, 0]) for k, v in score_heads(heads(pattern), ids, 6).items()}
    expected = windowed_scores(pattern, ids.tolist(), 6)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-5), name
    report = HeadReport.from_scores(
        {k: [[v]] for k, v in got.items()},
        chance_scores(ids),
        layer_chance={0: chance_scores(ids, 6)},
    )
    assert report.chance_of(0) == chance_scores(ids, 6)
