"""The attention stage's per-layer counts: in the GPT-2 overview's words, and equal to the
head report's own counts."""

from __future__ import annotations

from lmscope.core.analysis import analyze
from lmscope.core.heads import LABELS
from lmscope.dashboard.stages.attention.counts import FIRST_TOKEN, counts_table

PROMPT = "When Mary and John went to the store, John gave a drink to"


def rows(table) -> dict[str, tuple[str, list[int], int]]:
    """kind -> (label text, counts per layer, total) read back from the drawn table."""
    body = table.children.children[2]
    out = {}
    for row in body.children:
        label, *cells, total = row.children
        counts = [0 if c.children == "·" else int(c.children) for c in cells]
        out[row.to_plotly_json()["props"]["data-kind"]] = (
            label.children.children,
            counts,
            int(total.children),
        )
    return out


def test_layer_counts_are_the_reports_in_the_learners_words(smollm2):
    analysis = analyze(smollm2, PROMPT)
    report = analysis.heads
    drawn = rows(counts_table(report))
    counts = report.counts_per_layer()
    assert list(drawn)[:2] == ["previous_token", "first_token"]  # the seed's order
    for kind, (label, per_layer, total) in drawn.items():
        expected = report.first_token_counts() if kind == "first_token" else counts[kind]
        assert per_layer == expected and total == sum(expected)
        assert label == (FIRST_TOKEN if kind == "first_token" else LABELS[kind])
    assert set(drawn) - {"first_token"} == set(counts)  # every category, once
    # the categories split every layer's heads; first-token heads are counted apart
    for layer in range(report.layers):
        filed = sum(
            per_layer[layer] for k, (_, per_layer, _) in drawn.items() if k != "first_token"
        )
        assert filed == smollm2.card.heads_per_layer
    # SmolLM2 has both kinds the overview promises on this prompt
    assert drawn["previous_token"][2] > 0 and drawn["first_token"][2] > 0
    # counted by hand from the scores: a first-token head parks at least half on token 0
    sink = report.scores["sink"]
    assert drawn["first_token"][1] == [sum(s >= 0.5 for s in row) for row in sink]
