"""The experiments' metric: log p(answer) or logit(A) - logit(B), and the leading-space warning."""

import pytest
import torch

from lmscope.core.errors import RequestError
from lmscope.experiments.metric import make_metric


def test_contrastive_metric_is_the_logit_difference(tiny_gpt2):
    mary, john = (tiny_gpt2.tokenizer.encode(w)[0] for w in (" Mary", " John"))
    metric, notices = make_metric(tiny_gpt2, " Mary", " John")
    logits = torch.randn(3, tiny_gpt2.card.vocab_size)
    assert torch.allclose(metric(logits), logits[:, mary] - logits[:, john])
    assert notices == [] and metric.label == "logit(' Mary') - logit(' John')"


def test_single_token_metric_is_the_log_probability(tiny_gpt2):
    logits = torch.randn(tiny_gpt2.card.vocab_size)
    metric, _ = make_metric(tiny_gpt2, None, logits=logits)
    assert metric.answer == int(logits.argmax())
    assert torch.isclose(metric(logits), logits.log_softmax(-1).max())


def test_a_target_without_its_leading_space_is_flagged(tiny_gpt2):
    metric, notices = make_metric(tiny_gpt2, "John", " Mary")
    assert (
        metric.answer
        == tiny_gpt2.tokenizer.encode("John")[0]
        != tiny_gpt2.tokenizer.encode(" John")[0]
    )
    assert len(notices) == 1 and "' John'" in notices[0]


def test_the_same_token_twice_is_refused(tiny_gpt2):
    with pytest.raises(RequestError, match="same token"):
        make_metric(tiny_gpt2, " Mary", " Mary")
