"""The note beside an ablation that barely moves the prediction: says why, names the heads."""

from __future__ import annotations

from lmscope.core.heads import HeadReport
from lmscope.dashboard.stages.investigate.redundancy import small_effect_note
from lmscope.experiments.ablation import barely_moved


def text_of(component) -> str:
    children = component.children
    return "".join(c if isinstance(c, str) else text_of(c) for c in children)


def one_layer(categories: list[str]) -> HeadReport:
    scores = {k: [[0.0] * len(categories)] for k in ("previous_token", "self", "diffuse")}
    scores |= {k: [[0.0] * len(categories)] for k in ("duplicate_token", "induction")}
    return HeadReport(scores, [categories])


def test_a_small_change_gets_the_redundancy_note_naming_the_tools_own_heads() -> None:
    # the case: ablating the induction heads moves the induction starter 99.4% -> 98.6%
    assert barely_moved(0.994, 0.986)
    report = one_layer(["induction", "other", "induction"])
    note = small_effect_note(report, [(0, 0), (0, 2), (0, 1)], 0.994, 0.986)
    text = text_of(note)
    assert "L0-H0, L0-H2 as induction" in text and "L0-H1" not in text
    assert "backup" in text and "scan" in text


def test_a_large_change_gets_no_note() -> None:
    assert not barely_moved(0.9, 0.3)
    assert small_effect_note(one_layer(["induction"]), [(0, 0)], 0.9, 0.3) is None
    assert small_effect_note(None, [(0, 0)], 0.5, 0.0) is None  # to zero: not "barely"
