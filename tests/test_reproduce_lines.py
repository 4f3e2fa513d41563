"""The command line a panel shows gives the CLI exactly the prompt the page used, whatever the
prompt holds: quotes, $(...), a leading dash, newlines, and terminal controls that would act on
a terminal they are pasted into (the line itself holds only printable characters). Read back
by bash itself, then by lmscope's own argument parser."""

from __future__ import annotations

import argparse
import subprocess

import pytest

from lmscope.cli import parser
from lmscope.dashboard.stages.investigate.reproduce import SWITCHES, generation_code, shell
from lmscope.experiments.generation import GenerationSettings

PROMPTS = [
    "When Mary and John went to the store",
    'it\'s $(touch /tmp/x) `id` "q" \\ ; & | > <',
    "-x",
    "--help",
    "--model=gpt2",
    "line one\nline two\ttabbed",
    "The cat\x1b[201~\x15touch /tmp/lmscope-pwned\r",
    "C1 \x9b31m and a zero-width\u200bspace, naïve ☕ 我",
]


def words_bash_reads(line: str) -> list[str]:
    """The arguments bash gives a command written as `line` (its first word replaced)."""
    script = "printf '%s\\0' " + line.split(" ", 1)[1]
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    return out.decode("utf-8", "surrogateescape").split("\0")[:-1]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_the_shown_command_line_passes_the_prompt_exactly_and_holds_no_control(prompt):
    line = generation_code("demo", prompt, GenerationSettings(max_new_tokens=5), None).cli
    assert line.isprintable(), line
    args = parser().parse_args(words_bash_reads(line))
    assert (args.command, args.model, args.prompt, args.max_new_tokens) == (
        "generate",
        "demo",
        prompt,
        5,
    )


def test_an_option_that_takes_no_value_is_never_joined_to_the_next():
    line = shell("lmscope", "attribute", "--tokens", "--model", "demo", "--prompt", "-x")
    args = parser().parse_args(words_bash_reads(line))
    assert (args.tokens, args.model, args.prompt) == (True, "demo", "-x")


def test_the_switches_are_the_clis_options_that_take_no_value():
    switches = set()
    for action in parser()._subparsers._group_actions[0].choices.values():  # each command
        for option in action._actions:
            if isinstance(option, argparse._StoreTrueAction | argparse._StoreFalseAction):
                switches |= {o for o in option.option_strings if o.startswith("--")}
    assert switches == SWITCHES


def test_a_prompt_with_a_nul_says_no_command_line_can_pass_it():
    line = generation_code("demo", "a\x00b", GenerationSettings(max_new_tokens=5), None).cli
    assert line.startswith("# A NUL character cannot be passed on a command line")
