"""What an AtP scan runs, counted on the model itself: one forward pass of each prompt and one
backward pass (issue 12), the differentiable one being the run patched into, and the budget's
estimate equal to what was counted. A scan that starts running a prompt twice fails here."""

from __future__ import annotations

import math

import pytest
import torch

from lmscope.core import budget
from lmscope.experiments.ablation_atp import ablation_estimate
from lmscope.experiments.patching import patch, rows_per_pass

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
ANSWER, WRONG = " Mary", " John"


class Passes:
    """Every call of the model (its input, and whether autograd records it) and every backward."""

    def __init__(self, lm, monkeypatch) -> None:
        self.calls: list[tuple[torch.Tensor, bool]] = []
        self.backward = 0
        grad = torch.autograd.grad

        def counted(*args, **kwargs):
            self.backward += 1
            return grad(*args, **kwargs)

        def seen(module, args, kwargs):
            x = kwargs.get("input_ids")
            if x is None:  # the differentiable pass starts from its embeddings
                x = kwargs["inputs_embeds"]
            recorded = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
            self.calls.append((x.detach().clone(), recorded))

        monkeypatch.setattr(torch.autograd, "grad", counted)
        self.handle = lm.model.register_forward_pre_hook(seen, with_kwargs=True)

    @property
    def rows(self) -> int:
        return sum(x.shape[0] for x, _ in self.calls)

    def close(self) -> None:
        self.handle.remove()


@pytest.fixture
def passes(lm, monkeypatch):
    counter = Passes(lm, monkeypatch)
    yield counter
    counter.close()


@pytest.fixture(params=["tiny_gpt2", "tiny_llama"])
def lm(request):
    return request.getfixturevalue(request.param)


def _ids(lm, text):
    return torch.tensor([lm.tokenizer.encode(text, add_special_tokens=False)])


@pytest.mark.parametrize("component", ["resid", "attn", "mlp", "heads"])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_an_atp_patching_scan_runs_each_prompt_once_and_one_backward_pass(
    lm, passes, component, direction
):
    result = patch(lm, CLEAN, CORRUPT, ANSWER, WRONG, component=component, direction=direction,
                   scan="atp", check=0)  # fmt: skip
    assert result.atp.abs().max() > 0
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    base, source = (corrupt, clean) if direction == "denoising" else (clean, corrupt)
    assert len(passes.calls) == 2 and passes.backward == 1
    (plain, plain_grad), (embeds, embeds_grad) = passes.calls
    assert not plain_grad and torch.equal(plain, source)  # the activations patched in
    assert embeds_grad  # the run patched into, the one the backward pass follows
    torch.testing.assert_close(embeds, lm.model.get_input_embeddings()(base).detach())
    estimate = budget.patching(lm, clean.shape[1], component, "atp", 0)
    assert estimate.passes == pytest.approx(passes.rows + 2 * passes.backward)  # 4


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_an_atp_head_ablation_scan_runs_the_prompt_once_and_one_backward_pass(lm, passes, mode):
    ablation_estimate(lm, CLEAN, mode, ANSWER, WRONG, check=0)
    assert len(passes.calls) == 1 and passes.backward == 1
    embeds, recorded = passes.calls[0]
    assert recorded
    torch.testing.assert_close(embeds, lm.model.get_input_embeddings()(_ids(lm, CLEAN)).detach())
    estimate = budget.ablation_estimate(lm, embeds.shape[1], exact=False, checked=0)
    assert estimate.passes == pytest.approx(passes.rows + 2 * passes.backward)  # 3


def test_the_exact_scan_reuses_the_pairs_pass_and_atps_check_reads_it(lm, passes):
    tokens = _ids(lm, CLEAN).shape[1]
    chunks = math.ceil(lm.layers * tokens / rows_per_pass(lm, tokens))
    patch(lm, CLEAN, CORRUPT, ANSWER, WRONG, component="resid", scan="exact")
    assert len(passes.calls) == 1 + chunks and passes.backward == 0  # no pass for the sources
    assert passes.calls[0][0].shape[0] == 2  # both prompts, batched
    passes.calls.clear()
    result = patch(lm, CLEAN, CORRUPT, ANSWER, WRONG, component="resid", scan="both", check=5)
    assert len(result.checked) == 5
    assert len(passes.calls) == 2 + chunks and passes.backward == 1  # the check adds no pass
