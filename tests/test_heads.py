"""Head scores on hand-built attention patterns, each checked against its formula computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lmscope.core.heads import (
    THRESHOLDS,
    HeadReport,
    chance_scores,
    depth_bin,
    primary_category,
    row_entropy,
    score_heads,
)

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


def test_previous_token_head_scores_one_and_is_filed_as_previous_token() -> None:
    s = scores_of(PREVIOUS, DISTINCT)
    assert s["previous_token"] == pytest.approx(1.0)
    assert s["self"] == pytest.approx(0.0)
    # key 0 is also the previous token of query 1: one row of T - 1 puts its mass there
    assert s["first_token"] == pytest.approx(1 / (T - 1))
    assert s["diffuse"] == pytest.approx(0.0, abs=1e-5)
    assert HeadReport.from_pattern(heads(PREVIOUS), DISTINCT).categories == [["previous_token"]]


def test_uniform_attention_scores_chance_everywhere_and_is_diffuse() -> None:
    s = scores_of(uniform(), DISTINCT)
    for name in ("previous_token", "first_token", "self"):
        assert s[name] == pytest.approx(UNIFORM_CHANCE)
    assert s["diffuse"] == pytest.approx(1.0)
    assert HeadReport.from_pattern(heads(uniform()), DISTINCT).categories == [["diffuse"]]


def test_first_token_and_self_heads_score_one_on_their_own_score() -> None:
    first, own = scores_of(FIRST, DISTINCT), scores_of(SELF, DISTINCT)
    assert first["first_token"] == pytest.approx(1.0)
    assert first["previous_token"] == pytest.approx(1 / (T - 1))
    assert own["self"] == pytest.approx(1.0)
    assert own["first_token"] == pytest.approx(0.0)
    report = HeadReport.from_pattern(heads(FIRST, SELF), DISTINCT)
    assert report.categories == [["first_token", "self"]]


def test_induction_head_on_repeated_sequence_scores_one_and_wins_over_self() -> None:
    s = scores_of(INDUCTION, REPEATED)
    assert s["induction"] == pytest.approx(1.0)
    assert s["duplicate_token"] == pytest.approx(0.0)
    # the first half attends to itself: (L - 1) of the T - 1 scored rows
    assert s["self"] == pytest.approx((L - 1) / (T - 1))
    assert s["self"] >= THRESHOLDS["self"]  # it passes self too, but induction is stronger
    report = HeadReport.from_pattern(heads(INDUCTION), REPEATED)
    assert report.categories == [["induction"]]


def test_duplicate_token_head_scores_one_on_earlier_copies() -> None:
    s = scores_of(DUPLICATE, REPEATED)
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


def test_repeat_scores_on_a_partly_repeated_prompt_match_the_formula() -> None:
    # tokens a b c a x: only query 3 has an earlier copy (key 0); its induction target is key 1
    ids = torch.tensor([1, 2, 3, 1, 9])
    s = scores_of(uniform(5), ids)
    assert s["duplicate_token"] == pytest.approx(1 / 4)
    assert s["induction"] == pytest.approx(1 / 4)
    mixed = 0.3 * one_hot([0, 0, 0, 1, 0]) + 0.7 * uniform(5)  # 0.3 on the induction target
    assert scores_of(mixed, ids)["induction"] == pytest.approx(0.3 + 0.7 / 4)


def test_sparse_repeat_scores_equal_the_dense_sum_over_targets() -> None:
    torch.manual_seed(1)
    size = 12
    ids = torch.tensor([5, 6, 5, 7, 6, 5, 8, 5, 6, 9, 7, 5])
    pattern = torch.rand(3, 2, size, size).tril()
    pattern = pattern / pattern.sum(-1, keepdim=True)
    dup_rows, ind_rows = [], []
    for i in range(size):
        earlier = [j for j in range(i) if ids[j] == ids[i]]
        if earlier:
            dup_rows.append(pattern[..., i, earlier].sum(-1))
        if [j for j in earlier if j + 1 < i]:
            ind_rows.append(pattern[..., i, [j + 1 for j in earlier if j + 1 < i]].sum(-1))
    s = score_heads(pattern, ids)
    torch.testing.assert_close(s["duplicate_token"], torch.stack(dup_rows).mean(0))
    torch.testing.assert_close(s["induction"], torch.stack(ind_rows).mean(0))


def test_diffuse_on_long_prompts_equals_normalised_entropy() -> None:
    # 300 tokens takes the chunked, lower-triangle-only entropy path
    torch.manual_seed(2)
    size = 300
    pattern = torch.rand(2, size, size).tril() ** 4
    pattern = pattern / pattern.sum(-1, keepdim=True)
    expected = torch.special.entr(pattern).sum(-1)
    torch.testing.assert_close(row_entropy(pattern), expected, atol=1e-4, rtol=1e-4)
    ids = torch.arange(size)
    diffuse = score_heads(pattern.unsqueeze(0), ids)["diffuse"][0]
    norm = torch.arange(2, size + 1, dtype=torch.float).log()
    torch.testing.assert_close(diffuse, (expected[:, 1:] / norm).mean(-1), atol=1e-4, rtol=1e-4)
    assert float(score_heads(uniform(size)[None, None], ids)["diffuse"]) == pytest.approx(1.0)


def test_batched_scores_are_the_mean_of_per_item_scores() -> None:
    patterns = torch.stack([heads(PREVIOUS, INDUCTION), heads(uniform(), INDUCTION)])
    ids = torch.stack([REPEATED, DISTINCT])
    report = HeadReport.from_pattern(patterns, ids)
    assert report.scores["previous_token"][0][0] == pytest.approx((1 + UNIFORM_CHANCE) / 2)
    # induction is defined on the first item only: the mean is over the items where it is defined
    assert report.scores["induction"][0][1] == pytest.approx(1.0)
    per_item = score_heads(patterns, ids)["self"]
    assert report.scores["self"][0][1] == pytest.approx(float(per_item[:, 0, 1].mean()))


def test_uniform_attention_on_a_short_prompt_is_not_called_previous_token() -> None:
    # on 3 tokens uniform attention scores (1/2 + 1/3) / 2 = 0.417 >= 0.4: chance, not a behaviour
    ids = torch.tensor([1, 2, 3])
    s = scores_of(uniform(3), ids)
    assert s["previous_token"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert chance_scores(ids)["previous_token"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    report = HeadReport.from_pattern(heads(uniform(3), one_hot([0, 0, 1])), ids)
    assert report.categories == [["diffuse", "previous_token"]]
    assert not report.active(0, 0, "previous_token")


def test_no_category_reached_files_a_head_under_other() -> None:
    scores = dict.fromkeys(THRESHOLDS, 0.1) | {"induction": math.nan}
    assert primary_category(scores) == "other"


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
