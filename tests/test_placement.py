"""The placement of a model over devices for given memory budgets (core/placement.py), and the
device and dtype settings (core/devices.py). Pure: the GPUs named here need not exist."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig

from lmscope.core.devices import (
    Placement,
    PlacementError,
    bytes_per_parameter,
    parse_max_memory,
    placement,
    tolerance,
)
from lmscope.core.errors import ModelTooLargeError
from lmscope.core.placement import plan

MIB = 2**20
# 8 layers of ~1.5 MiB each in float32, 0.5 MiB of embeddings and 0.5 MiB of unembedding
CONFIG = LlamaConfig(
    vocab_size=1000, hidden_size=128, intermediate_size=512, num_hidden_layers=8,
    num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
)  # fmt: skip
WHOLE = plan(CONFIG, torch.float32, {0: 2**40}).sizes[""]  # the model's bytes, all on one GPU


def test_a_model_that_fits_goes_whole_onto_the_first_gpu():
    layout = plan(CONFIG, torch.float32, {0: 2**40, 1: 2**40, "cpu": 2**40})
    assert layout.device_map == {"": 0}
    assert layout.describe() == f"everything on cuda:0 ({WHOLE / MIB:,.0f} MiB)"
    assert not layout.offloaded


def test_balanced_spreads_the_layers_evenly_and_in_order_over_the_gpus():
    layout = plan(CONFIG, torch.float32, {0: 2**40, 1: 2**40}, "balanced")
    first, second = layout.layers_on(0), layout.layers_on(1)
    assert sorted(first + second) == list(range(8))
    assert max(first) < min(second)  # the stream flows from GPU 0 to GPU 1 once
    assert abs(len(first) - len(second)) <= 2
    assert "cuda:0" in layout.describe() and "cuda:1" in layout.describe()


def test_auto_fills_the_first_gpu_before_the_next():
    budget = WHOLE // 2
    layout = plan(CONFIG, torch.float32, {0: budget, 1: 2**40}, "auto")
    assert layout.layers_on(0) and layout.layers_on(1)
    assert layout.bytes_on(0) <= budget
    assert max(layout.layers_on(0)) < min(layout.layers_on(1))


def test_a_gpu_too_small_sends_the_last_layers_to_the_cpu_and_says_so():
    layout = plan(CONFIG, torch.float32, {0: WHOLE // 2, "cpu": 2**40})
    assert layout.layers_on(0) and layout.layers_on("cpu")
    assert layout.offloaded  # a GPU computes, some weights wait on the CPU
    text = layout.describe()
    assert "on cuda:0" in text and "on the CPU" in text
    first = min(layout.layers_on("cpu"))
    assert f"layers 0-{first - 1}, embed_tokens on cuda:0" in text
    assert f"layers {first}-7, norm" in text


def test_bfloat16_halves_the_bytes_so_a_budget_between_the_two_sizes_holds_only_it():
    budget = int(WHOLE * 0.7)
    assert plan(CONFIG, torch.bfloat16, {0: budget, "cpu": 2**40}).device_map == {"": 0}
    assert plan(CONFIG, torch.float32, {0: budget, "cpu": 2**40}).layers_on("cpu")
    assert bytes_per_parameter(torch.bfloat16) * 2 == bytes_per_parameter(torch.float32)


def test_what_fits_nowhere_is_refused_naming_the_layers_unless_a_disk_folder_is_given():
    with pytest.raises(ModelTooLargeError, match=r"on disk.*offload folder"):
        plan(CONFIG, torch.float32, {0: WHOLE // 4, "cpu": WHOLE // 4})
    layout = plan(CONFIG, torch.float32, {0: WHOLE // 4, "cpu": WHOLE // 4}, disk=True)
    assert layout.layers_on("disk") and layout.offloaded


def test_the_layout_covers_every_weight_once():
    layout = plan(CONFIG, torch.float32, {0: WHOLE // 3, 1: WHOLE // 3, "cpu": 2**40}, "auto")
    assert sum(layout.bytes_on(d) for d in layout.devices()) == WHOLE
    assert layout.devices() == [0, 1, "cpu"]


def test_max_memory_reads_devices_and_sizes():
    assert parse_max_memory("0=20GiB, 1=512MiB,cpu=64G") == {
        0: 20 * 2**30,
        1: 512 * MIB,
        "cpu": 64 * 2**30,
    }
    assert parse_max_memory("cuda:1=1G") == {1: 2**30}
    assert parse_max_memory(None) is None
    for bad in ("20GiB", "gpu=1G", "0=lots"):
        with pytest.raises(PlacementError, match="DEVICE=SIZE"):
            parse_max_memory(bad)


def test_settings_resolve_on_this_machine():
    here = placement("cpu", "auto")
    assert here == Placement(torch.device("cpu"), torch.float32)
    assert placement("cpu", "bfloat16").dtype is torch.bfloat16
    assert placement("cpu", "float16").describe() == "float16 on cpu"
    with pytest.raises(PlacementError, match="Unknown dtype"):
        placement("cpu", "int8")
    with pytest.raises(PlacementError, match="Unknown device"):
        placement("tpu")
    with pytest.raises(PlacementError, match="--max-memory bounds a device map"):
        placement("cpu", "auto", None, "cpu=1G")
    with pytest.raises(PlacementError, match="Unknown device map"):
        placement("cpu", "auto", "sequential")
    spread = placement("auto", "auto", "auto", "cpu=1G", "/tmp/x")
    assert spread.max_memory == {"cpu": 2**30} and spread.offload_folder == "/tmp/x"


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
def test_cuda_where_there_is_none_is_refused_clearly():
    with pytest.raises(PlacementError, match="no CUDA GPU"):
        placement("cuda")
    assert placement("auto").device.type in ("cpu", "mps")


def test_tolerances_are_stated_per_dtype():
    assert tolerance(torch.float32) < tolerance(torch.float16) < tolerance(torch.bfloat16)
