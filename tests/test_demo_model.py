"""The bundled demo model: small enough to ship, and it has the heads the dashboard teaches."""

from __future__ import annotations

import pytest
import torch

from lmscope.core import attention
from lmscope.core.analysis import analyze
from lmscope.core.catalog import DEMO_PATH
from lmscope.core.heads import HeadReport
from lmscope.core.loading import load_model
from lmscope.core.model import LoadedModel
from lmscope.core.profile import compare, head_profile
from lmscope.core.trace import run

REPEATED_WORDS = " apple river violin candle pepper lantern apple river violin candle pepper"
NO_REPEATS = "The quick brown fox jumps over a lazy dog near my house"


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return load_model("demo")


@pytest.fixture(scope="module")
def profile(demo: LoadedModel) -> HeadReport:
    return head_profile(demo)


def strongest(report: HeadReport, category: str) -> tuple[int, int, float]:
    """The head with the highest `category` score: layer, head, score."""
    score, layer, head = max(
        (value, layer, head)
        for layer, row in enumerate(report.scores[category])
        for head, value in enumerate(row)
    )
    return layer, head, score


def random_repeated(demo: LoadedModel, half: int = 25, seed: int = 7) -> torch.Tensor:
    """`(1, 2 * half)`: a random sequence of distinct ordinary tokens, then the same again."""
    generator = torch.Generator().manual_seed(seed)
    r = torch.randperm(demo.tokenizer.eos_token_id, generator=generator)[:half]
    return torch.cat([r, r]).unsqueeze(0)


def test_demo_model_folder_is_at_most_15_mb() -> None:
    size = sum(path.stat().st_size for path in DEMO_PATH.iterdir() if path.is_file())
    assert size <= 15_000_000


def test_demo_profile_files_a_previous_token_head_found_on_natural_text(profile) -> None:
    layer, head, score = strongest(profile, "previous_token")
    assert score >= 0.5
    assert profile.categories[layer][head] == "previous_token"


def test_demo_profile_files_an_induction_head_found_on_repeated_random_tokens(profile) -> None:
    layer, head, score = strongest(profile, "induction")
    assert score >= 0.5
    assert profile.categories[layer][head] == "induction"


def test_demo_induction_head_is_active_on_repeats_and_not_applicable_without(demo, profile) -> None:
    layer, head, _ = strongest(profile, "induction")
    words = analyze(demo, REPEATED_WORDS).heads
    assert words.active(layer, head, "induction")
    assert compare(profile, words)[layer][head].active is True

    ids = random_repeated(demo)
    with torch.inference_mode(), attention.eager(demo.model):
        patterns = torch.stack(demo.model(ids, output_attentions=True).attentions)[:, 0]
    tokens = HeadReport.from_pattern(patterns, ids[0])
    assert tokens.active(layer, head, "induction")

    plain = analyze(demo, NO_REPEATS)
    assert len({t.id for t in plain.tokens}) == len(plain.tokens)  # the prompt repeats no token
    assert not plain.heads.applicable("induction")
    assert compare(profile, plain.heads)[layer][head].active is None


def test_demo_predicts_the_second_half_of_a_repeated_random_sequence(demo) -> None:
    ids = random_repeated(demo)
    half = ids.shape[1] // 2
    with torch.inference_mode():
        logits, _ = run(demo, ids, capture=False, logits_to_keep=0)
    losses = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="none")
    first, second = losses[: half - 1].mean(), losses[half:].mean()
    print(f"demo loss: first half {first:.2f}, second half {second:.2f} nats/token")
    assert second < 0.5 * first
