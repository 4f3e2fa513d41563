"""One default per setting: the CLI's options and the API's missing fields take the library
function's own keyword default, and the CLI's help says what it is."""

from __future__ import annotations

import argparse

import pytest

from lmscope import cli
from lmscope.core.model_cache import ModelCache
from lmscope.experiments.ablation import ablate
from lmscope.experiments.ablation_atp import head_scan
from lmscope.experiments.defaults import default
from lmscope.experiments.generation import GenerationSettings
from lmscope.experiments.patching import patch
from lmscope.experiments.steering import steer
from lmscope.service import Service
from lmscope.web.server import api_app

# (CLI command, option dest, library function, keyword)
SETTINGS = [
    ("generate", "max_new_tokens", GenerationSettings, "max_new_tokens"),
    ("ablate", "mode", ablate, "mode"),
    ("ablate", "new_tokens", ablate, "new_tokens"),
    ("ablation-scan", "mode", head_scan, "mode"),
    ("ablation-scan", "method", head_scan, "method"),
    ("ablation-scan", "check", head_scan, "check"),
    ("steer", "new_tokens", steer, "new_tokens"),
    ("steer", "coefficient", steer, "coefficient"),
    ("patch", "scan", patch, "scan"),
    ("patch", "component", patch, "component"),
    ("patch", "direction", patch, "direction"),
    ("patch", "check", patch, "check"),
]


def option(command: str, dest: str) -> argparse.Action:
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if a.dest == dest)


@pytest.mark.parametrize(("command", "dest", "function", "name"), SETTINGS)
def test_the_cli_default_is_the_librarys_and_its_help_says_it(command, dest, function, name):
    action = option(command, dest)
    assert action.default == default(function, name)
    assert "(default: %(default)s)" in action.help


def test_steering_takes_the_librarys_layer_and_coefficient_everywhere(tiny_gpt2):
    """Left out, the layer is the library's (None: 30% of the way in) in the CLI, the API and the
    page, and so is the coefficient."""
    from lmscope.dashboard.stages.investigate.steering import FIELD
    from lmscope.experiments.steering import default_layer

    assert option("steer", "layer").default is default(steer, "layer") is None
    assert FIELD["inv-steer-layer"] is None
    assert FIELD["inv-steer-coefficient"] == default(steer, "coefficient")
    service = Service(ModelCache(budget=2**30))
    service.models.add(tiny_gpt2)
    client = api_app(service).test_client()
    body = {"model": tiny_gpt2.model_id, "prompt": "I think that you are",
            "from_prompts": ["Love", "Hate"], "new_tokens": 0}  # fmt: skip
    answer = client.post("/api/steer", json=body)
    assert answer.status_code == 200, answer.json
    assert answer.json["layer"] == default_layer(tiny_gpt2)
    assert answer.json["coefficient"] == default(steer, "coefficient")


def test_the_two_scans_default_to_the_same_method():
    assert default(head_scan, "method") == default(patch, "scan") == "atp"


def test_the_api_takes_the_librarys_default_for_a_setting_left_out(tiny_gpt2):
    service = Service(ModelCache(budget=2**30))
    service.models.add(tiny_gpt2)
    client = api_app(service).test_client()
    body = {"model": tiny_gpt2.model_id, "prompt": "When Mary and John went to the store, John"}
    answer = client.post("/api/ablation-scan", json=body)
    assert answer.status_code == 200, answer.json
    assert answer.json["method"] == default(head_scan, "method")
    heads = tiny_gpt2.layers * tiny_gpt2.heads
    assert len(answer.json["checked"]) == min(default(head_scan, "check"), heads)
    patched = client.post(
        "/api/patch",
        json={"model": tiny_gpt2.model_id, "clean": "Mary went home", "corrupt": "John went home"},
    )
    assert patched.status_code == 200, patched.json
    assert patched.json["scan"] == default(patch, "scan")
    assert patched.json["component"] == default(patch, "component")
    assert patched.json["direction"] == default(patch, "direction")
