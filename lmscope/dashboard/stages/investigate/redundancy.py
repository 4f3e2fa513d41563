"""Why an ablation can barely move the prediction: the note shown beside a small effect."""

from __future__ import annotations

from dash import html

from ....core.heads import LABELS, SCORES, HeadReport, head_name
from ....experiments.ablation import barely_moved

REDUNDANCY = (
    "Models are redundant: several heads often do the same job, and some heads take "
    "over when another is removed (the 'backup name mover' heads of GPT-2's "
    "indirect-object circuit, Wang et al. 2022; 'self-repair', McGrath et al. 2023). "
    "Removing a few heads of a kind leaves the others doing it. Run the scan below to see "
    "which single heads this prediction leans on, or remove more heads of the same kind "
    "together."
)


def _named(report: HeadReport | None, heads: list[tuple[int, int]]) -> str:
    """The ablated heads lmscope itself files under a behaviour on this input, in words."""
    if report is None:
        return ""
    groups: dict[str, list[str]] = {}
    for layer, head in heads:
        category = report.categories[layer][head]
        if category in SCORES:
            groups.setdefault(LABELS[category], []).append(head_name(layer, head))
    if not groups:
        return ""
    parts = [f"{', '.join(names)} as {label}" for label, names in groups.items()]
    return (
        f"lmscope files {'; '.join(parts)} on this input: a category says where a head looks, "
        "not how much this prediction needs it. "
    )


def small_effect_note(
    report: HeadReport | None, heads: list[tuple[int, int]], p_before: float, p_after: float
) -> html.P | None:
    """A paragraph explaining a small ablation effect (None when the effect is not small)."""
    if not barely_moved(p_before, p_after):
        return None
    return html.P(
        [
            html.Strong("Why so little? "),
            _named(report, heads),
            REDUNDANCY,
        ],
        className="hint",
        id="inv-small-effect",
    )
