"""Steering: coefficient 0 changes nothing, and the vector lmscope adds gives the same logits as
one computed and added here by plain forward hooks on the transformers model."""

from __future__ import annotations

import pytest
import torch

from lmscope.cli import main
from lmscope.core.errors import LmscopeError
from lmscope.experiments.steering import steer
from lmscope.service import Service
from lmscope.web.server import api_app

PROMPT = "I think that you are"
LOVE, HATE = "Love", "Hate"
FAMILIES = ("tiny_gpt2", "tiny_llama")


def ids_of(lm, text: str) -> torch.Tensor:
    return torch.tensor([lm.tokenizer.encode(text, add_special_tokens=False)])


def stream_entering(lm, text: str, layer: int) -> torch.Tensor:
    """The hidden state entering block `layer`, grabbed by a plain forward pre-hook `(T, d)`."""
    block = lm.adapter.block_list(lm.model)[layer]
    grabbed = {}

    def grab(module, args, kwargs):
        grabbed["x"] = (args[0] if args else kwargs["hidden_states"])[0].clone()

    handle = block.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            lm.model(ids_of(lm, text))
    finally:
        handle.remove()
    return grabbed["x"]


def added_logits(lm, text: str, layer: int, vector: torch.Tensor, start: int = 0):
    """Last-position logits with `vector` added entering `layer` at positions >= start."""
    block = lm.adapter.block_list(lm.model)[layer]

    def add(module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).clone()
        hidden[:, start:] += vector
        if args:
            return (hidden, *args[1:]), kwargs
        return args, kwargs | {"hidden_states": hidden}

    handle = block.register_forward_pre_hook(add, with_kwargs=True)
    try:
        with torch.no_grad():
            return lm.model(ids_of(lm, text)).logits[0, -1]
    finally:
        handle.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_coefficient_zero_changes_nothing(request, family):
    lm = request.getfixturevalue(family)
    result = steer(lm, PROMPT, 1, 0.0, prompts=[LOVE, HATE], new_tokens=5)
    assert torch.equal(result.before, result.after)
    assert result.generation_after.ids == result.generation_before.ids
    assert result.kl == 0.0


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("layer", "position"), [(0, None), (1, 2)])
def test_activation_addition_matches_a_vector_added_by_hand(request, family, layer, position):
    lm = request.getfixturevalue(family)
    vector = stream_entering(lm, LOVE, layer).mean(0) - stream_entering(lm, HATE, layer).mean(0)
    coefficient = 4.0
    expected = added_logits(lm, PROMPT, layer, coefficient * vector, position or 0)
    result = steer(lm, PROMPT, layer, coefficient, prompts=[LOVE, HATE], position=position,
                   new_tokens=0)  # fmt: skip
    torch.testing.assert_close(result.vector.vector, vector, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.after, expected.float(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(result.after, result.before, atol=1e-3)  # it did steer


@pytest.mark.parametrize("family", FAMILIES)
def test_token_direction_is_the_unit_unembedding_row(request, family):
    lm = request.getfixturevalue(family)
    token = lm.tokenizer.encode(" love", add_special_tokens=False)[0]
    row = lm.model.get_output_embeddings().weight[token].detach().float()
    direction = row / row.norm()
    expected = added_logits(lm, PROMPT, 1, 8.0 * direction)
    result = steer(lm, PROMPT, 1, 8.0, token=" love", new_tokens=0)
    torch.testing.assert_close(result.vector.vector, direction, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result.after, expected.float(), atol=1e-5, rtol=1e-5)
    doc = result.to_dict()
    assert doc["vector"]["normalized"] is True
    assert doc["vector"]["norm"] == pytest.approx(1.0)
    assert doc["added_norm"] == pytest.approx(8.0)


def test_steered_generation_is_the_hand_steered_greedy_continuation(tiny_gpt2):
    """Every generated token (past the prompt) is steered too, through the KV cache."""
    layer, coefficient = 1, 6.0
    vector = stream_entering(tiny_gpt2, LOVE, layer).mean(0)
    vector = vector - stream_entering(tiny_gpt2, HATE, layer).mean(0)
    text, expected = PROMPT, []
    for _ in range(4):  # greedy, recomputing the whole sequence each step: no cache involved
        token = int(added_logits(tiny_gpt2, text, layer, coefficient * vector).argmax())
        expected.append(token)
        text += tiny_gpt2.tokenizer.decode([token])
    result = steer(tiny_gpt2, PROMPT, layer, coefficient, prompts=[LOVE, HATE], new_tokens=4)
    assert result.generation_after.ids == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": 2}, "Layer 2 does not exist"),
        ({"layer": "1"}, "'layer' must be an integer"),
        ({"coefficient": float("nan")}, "'coefficient' must be a number"),
        ({"prompts": None}, "either from two prompts"),
        ({"token": " love"}, "not both"),
        ({"prompts": ["only one"]}, "'from_prompts' must be two prompts"),
        ({"prompts": [LOVE, ""]}, "The second steering prompt: The prompt is empty"),
        ({"position": 99}, "'position' must be a token position from 0 to"),
        ({"prompts": None, "token": " lovely day"}, "pick a single token"),
    ],
)
def test_bad_steering_requests_are_refused(tiny_gpt2, kwargs, message):
    args = {"layer": 1, "coefficient": 2.0, "prompts": [LOVE, HATE]} | kwargs
    with pytest.raises(LmscopeError, match=message):
        steer(tiny_gpt2, PROMPT, args.pop("layer"), args.pop("coefficient"), new_tokens=0, **args)


class _Models:
    def __init__(self, lm) -> None:
        self.lm = lm

    def get(self, model_id: str, progress=None):
        return self.lm

    def cached(self) -> list[str]:
        return []


@pytest.fixture(scope="module")
def client(tiny_gpt2):
    return api_app(Service(models=_Models(tiny_gpt2))).test_client()


def test_api_steer_answers_the_library_result(client, tiny_gpt2):
    body = {"model": "demo", "prompt": PROMPT, "layer": 1, "coefficient": 3.0,
            "from_prompts": [LOVE, HATE], "new_tokens": 3}  # fmt: skip
    response = client.post("/api/steer", json=body)
    assert response.status_code == 200
    doc = response.get_json()
    expected = steer(tiny_gpt2, PROMPT, 1, 3.0, prompts=[LOVE, HATE], new_tokens=3).to_dict()
    assert [p["id"] for p in doc["after"]] == [p["id"] for p in expected["after"]]
    assert doc["generation_after"]["text"] == expected["generation_after"]["text"]
    assert doc["vector"]["kind"] == "prompts" and doc["vector"]["normalized"] is False


def test_api_steer_flags_a_token_typed_without_its_space(client):
    body = {"model": "demo", "prompt": PROMPT, "layer": 0, "coefficient": 1.0, "token": "love"}
    doc = client.post("/api/steer", json=body | {"new_tokens": 0}).get_json()
    assert any("' love'" in n for n in doc["notices"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"layer": 7}, "Layer 7 does not exist"),
        ({"coefficient": "big"}, "'coefficient' must be a number"),
        ({"token": " love"}, "not both"),
        ({"new_tokens": 500}, "'new_tokens' must be an integer from 0 to 50"),
    ],
)
def test_api_steer_refuses_bad_input_in_one_line(client, body, message):
    base = {"model": "demo", "prompt": PROMPT, "layer": 1, "coefficient": 1.0,
            "from_prompts": [LOVE, HATE]}  # fmt: skip
    response = client.post("/api/steer", json=base | body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert message in error and "\n" not in error
    assert client.post("/api/steer", json=base | {"new_tokens": 0}).status_code == 200


def test_cli_steer_prints_both_continuations(tiny_gpt2_folder, capsys):
    args = ["steer", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--layer", "1",
            "--coefficient", "3", "--from-prompts", LOVE, HATE, "--json"]  # fmt: skip
    assert main(args) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["layer"] == 1 and doc["coefficient"] == 3.0
    assert doc["generation_before"]["text"] and doc["generation_after"]["text"]
    assert main(args[:-1]) == 0
    out = capsys.readouterr().out
    assert "with the vector" in out and "KL" in out


def test_cli_steer_refuses_two_sources_in_one_line(tiny_gpt2_folder, capsys):
    args = ["steer", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--layer", "1",
            "--coefficient", "3", "--from-prompts", LOVE, HATE, "--token", " love"]  # fmt: skip
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("lmscope: Steer either")


@pytest.mark.parametrize("long_part", ["prompt", "from_prompts"])
def test_api_steer_over_the_cost_limit_is_a_413(client, tiny_gpt2, monkeypatch, long_part):
    """The whole request is costed: the steered prompt as an ablation, and each steering prompt
    as a pass; a long prompt in either place takes it over the limit."""
    from lmscope.core import budget

    long = "the cat sat on the mat and " * 10
    short = {"model": "demo", "prompt": PROMPT, "layer": 1, "coefficient": 1.0,
             "from_prompts": [LOVE, HATE], "new_tokens": 0}  # fmt: skip
    body = short | ({"prompt": long} if long_part == "prompt" else {"from_prompts": [long, HATE]})
    monkeypatch.setenv(budget.SPEED_ENV, "1e-6")  # flop, not the per-call overhead, decides
    lengths = [len(ids_of(tiny_gpt2, text)[0]) for text in (PROMPT, LOVE, HATE)]  # the model
    cheap = budget.steering(tiny_gpt2, lengths[0], 0, lengths[1:]).seconds  # "demo" names here
    monkeypatch.setenv(budget.SECONDS_ENV, str(cheap * 2))
    response = client.post("/api/steer", json=body)
    assert response.status_code == 413
    assert "\n" not in response.get_json()["error"]
    assert client.post("/api/steer", json=short).status_code == 200


@pytest.mark.parametrize(
    "prompt", [PROMPT, "When Mary and John went to the store, John gave a drink to"]
)
def test_the_default_moves_smollm2s_prediction_without_wrecking_the_text(smollm2, prompt):
    """Love - Hate with the library's default layer and coefficient (measured on SmolLM2, see
    benchmarks/results/steering-defaults.md): the next-token distribution moves (the top token
    changes or loses at least a tenth of its probability; KL > 1 nat), and the continuation stays
    text: under half of it newlines (the old default, layer 0 x 4, gave 20 of 20) and no token
    repeated for most of it."""
    from lmscope.experiments.steering import default_layer

    result = steer(smollm2, prompt, prompts=[LOVE, HATE])
    assert result.vector.layer == default_layer(smollm2) == 9
    before, after = result.before.softmax(-1), result.after.softmax(-1)
    top = int(before.argmax())
    assert int(after.argmax()) != top or after[top] < before[top] - 0.1
    assert result.kl > 1.0
    ids = result.generation_after.ids
    pieces = [smollm2.tokenizer.decode([i]) for i in ids]
    newlines = sum(piece.strip() == "" and "\n" in piece for piece in pieces)
    assert newlines / len(ids) < 0.5
    assert len(set(ids)) / len(ids) > 0.5
    # the added vector is of the stream's own scale, not many times it
    doc = result.to_dict()
    assert doc["added_norm"] < 1.5 * doc["stream_norm"]
