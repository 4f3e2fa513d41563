"""The `lmscope` command: analyze a prompt, print JSON, list models, fail with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from lmscope.cli import main

PROMPT = "The cat sat on the mat"
IDS = [464, 3797, 3332, 319, 262, 2603]


def expected_top(model, k: int = 10) -> list[int]:
    with torch.no_grad():
        logits = model(torch.tensor([IDS])).logits[0, -1]
    return logits.softmax(-1).topk(k).indices.tolist()


def test_analyze_prints_tokens_predictions_and_the_card(
    tiny_gpt2_folder, tiny_gpt2_model, gpt2_tokenizer, capsys
):
    assert main(["analyze", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT]) == 0
    out = capsys.readouterr().out
    assert "6 tokens:" in out
    assert "The[464]  ␣cat[3797]  ␣sat[3332]  ␣on[319]  ␣the[262]  ␣mat[2603]" in out
    assert "next token:" in out
    top = gpt2_tokenizer.decode([expected_top(tiny_gpt2_model)[0]])
    assert repr(top) in out.split("next token:")[1].splitlines()[1]
    assert "2 layers x 4 heads (8 total)" in out
    assert "learned absolute positions" in out and "LayerNorm" in out


def test_analyze_json_holds_tokens_predictions_and_the_card(
    tiny_gpt2_folder, tiny_gpt2_model, capsys
):
    assert main(["analyze", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in doc["tokens"]] == IDS
    assert [t["display"] for t in doc["tokens"]][:2] == ["The", "␣cat"]
    assert [p["id"] for p in doc["predictions"]] == expected_top(tiny_gpt2_model)
    probabilities = [p["probability"] for p in doc["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    card = doc["model"]
    assert (card["layers"], card["heads_per_layer"], card["hidden_size"]) == (2, 4, 64)
    assert card["parameters"] == sum(p.numel() for p in tiny_gpt2_model.parameters())
    assert len(doc["logit_lens"]["layers"]) == 3


def test_analyze_reports_progress_on_stderr(tiny_gpt2_folder, capsys):
    main(["analyze", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--json"])
    err = capsys.readouterr().err
    assert "Reading the configuration" in err and "is ready" in err


def test_models_lists_the_catalog(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "GPT-2 (124M)" in out and "GPT-2 Medium (355M)" in out
    assert "openai-community/gpt2" in out


def test_an_empty_prompt_fails_with_one_line(tiny_gpt2_folder, capsys):
    assert main(["analyze", "--model", str(tiny_gpt2_folder), "--prompt", "  "]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lmscope: The prompt is only whitespace")


def test_offline_without_the_model_exits_nonzero_with_one_line_and_no_traceback(tmp_path):
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmscope.cli",
            "analyze",
            "--model",
            "gpt2-medium",
            "--prompt",
            "hi",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lmscope:")]
    assert len(errors) == 1
    assert "gpt2-medium" in errors[0] and "no cached copy" in errors[0]
    assert result.stdout == ""


def test_device_and_dtype_options_reach_the_card(tiny_gpt2_folder, capsys):
    args = ["analyze", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--json"]
    assert main([*args, "--device", "cpu", "--dtype", "bfloat16"]) == 0
    card = json.loads(capsys.readouterr().out)["model"]
    assert (card["device"], card["dtype"], card["placement"]) == (
        "cpu",
        "bfloat16",
        "bfloat16 on cpu",
    )
    assert main(args) == 0  # auto on a machine without a GPU: float32 on the CPU
    card = json.loads(capsys.readouterr().out)["model"]
    assert (card["device"], card["dtype"]) == (
        ("cuda:0", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32")
    )


def test_a_device_map_with_a_small_budget_offloads_to_disk_and_says_so(
    tiny_gpt2_folder, tmp_path, capsys
):
    folder = tmp_path / "offload"
    args = ["analyze", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--device-map", "auto"]
    assert main([*args, "--max-memory", "cpu=1M", "--offload-folder", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "runs in float32, spread by accelerate (auto): everything on disk" in out
    assert "on disk" in err  # the load's progress line names where the layers go
    assert (
        main([*args, "--max-memory", "cpu=1M"]) == 2
    )  # no folder: refused, saying what fits where
    err = capsys.readouterr().err
    assert "float32 weights do not fit in 1 MiB on the CPU" in err and "everything on disk" in err


def test_the_same_model_options_on_every_command_that_loads_one():
    from lmscope.cli import parser

    commands = [
        "analyze",
        "heads",
        "serve",
        "generate",
        "ablate",
        "ablation-scan",
        "steer",
        "patch",
        "attribute",
        "compare",
    ]
    sub = next(a for a in parser()._actions if a.dest == "command")
    for name in commands:
        options = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {"--model", "--device", "--dtype", "--device-map", "--max-memory"} <= options, name


def test_a_device_this_machine_lacks_is_one_clear_line(tiny_gpt2_folder, capsys):
    if torch.cuda.is_available():
        return
    code = main(
        ["analyze", "--model", str(tiny_gpt2_folder), "--prompt", PROMPT, "--device", "cuda"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "no CUDA GPU" in err[0]


def test_attribute_and_compare_print_what_the_library_computes(tiny_gpt2_folder, capsys):
    from lmscope.core.analysis import analyze
    from lmscope.core.loading import load_model
    from lmscope.experiments.attribution import direct_logit_attribution, token_attribution
    from lmscope.experiments.comparison import compare

    lm = load_model(str(tiny_gpt2_folder), allow_local_path=True)
    folder = str(tiny_gpt2_folder)
    capsys.readouterr()
    assert main(["attribute", "--model", folder, "--prompt", PROMPT, "--target", " mat",
                 "--json"]) == 0  # fmt: skip
    dla = direct_logit_attribution(analyze(lm, PROMPT), " mat")
    doc = json.loads(capsys.readouterr().out)
    torch.testing.assert_close(torch.tensor(doc["heads"]), dla.heads, atol=1e-5, rtol=0)
    assert doc["logit"] == round(dla.logit, 5)
    assert main(["attribute", "--tokens", "--model", folder, "--prompt", PROMPT, "--json"]) == 0
    tokens = token_attribution(lm, PROMPT)
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(json.dumps(tokens.to_dict()))
    assert main(["compare", "--model", folder, "--other", "demo", "--prompt", PROMPT]) == 0
    demo = load_model("demo")
    same = compare(lm, demo, PROMPT).same_top_prediction
    out = capsys.readouterr().out
    assert f"make {'the same' if same else 'different'} top prediction" in out
