"""The read-out that the logit lens and every unembedding use equals the model's own nn.Linear."""

from __future__ import annotations

import pytest
import torch

from lmscope.core.model import read_out


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 4, 5, 13, 15, 16, 31])
def test_read_out_equals_the_linear_layer_for_any_number_of_rows(rows: int, bias: bool) -> None:
    torch.manual_seed(rows)
    head = torch.nn.Linear(64, 3001, bias=bias)
    x = torch.randn(rows, 64)
    torch.testing.assert_close(read_out(head, x), head(x), atol=1e-5, rtol=1e-5)
    # leading axes are kept, as nn.Linear keeps them
    stacked = x.reshape(1, rows, 64)
    torch.testing.assert_close(read_out(head, stacked), head(stacked), atol=1e-5, rtol=1e-5)
    assert read_out(head, x).is_contiguous()
