"""The tour's head step opens a head whose role a learner can see, and says what it does in the
numbers of the loaded model, checked against transformers' own attention weights."""

from __future__ import annotations

import re

import torch

from lmscope.core.analysis import analyze
from lmscope.core.heads import HeadReport
from lmscope.core.loading import load_model
from lmscope.dashboard.figures import percent
from lmscope.dashboard.stages.attention.head import tour_text as head_text
from lmscope.dashboard.tour import IOI, main_tour, mover_job
from lmscope.experiments.ablation import ablate
from lmscope.experiments.induction import SEQUENCE, induction_prompt, second_copy_loss


def report(categories, strength, sink) -> HeadReport:
    """A one-layer report with hand-set categories, their scores and sink shares."""
    names = ("previous_token", "self", "diffuse", "duplicate_token", "induction")
    scores = {
        n: [[strength[h] if c == n else 0.0 for h, c in enumerate(categories)]] for n in names
    }
    scores["sink"] = [list(sink)]
    return HeadReport(scores, [list(categories)])


def test_a_diffuse_head_is_never_the_one_shown_even_with_the_highest_score():
    shown = report(["diffuse", "self", "previous_token"], [0.99, 0.9, 0.6], [0.0, 0.0, 0.0])
    assert shown.clearest_head() == (0, 2)  # previous-token before self; diffuse never
    assert report(["diffuse", "other"], [0.99, 0.0], [0.0, 0.0]).clearest_head() is None


def test_a_head_that_parks_its_attention_on_the_first_token_loses_to_one_that_shows_its_role():
    shown = report(["previous_token", "previous_token"], [0.95, 0.7], [0.8, 0.05])
    assert shown.clearest_head() == (0, 1)  # 0.95 x 0.2 of the heatmap vs 0.7 x 0.95


def test_on_smollm2_and_the_ioi_prompt_the_tour_opens_a_previous_token_head_and_says_it_truly(
    smollm2, smollm2_hf
):
    analysis = analyze(smollm2, IOI)
    layer, head = analysis.heads.clearest_head()
    assert analysis.heads.categories[layer][head] == "previous_token"
    # transformers' own eager pass: that head's pattern is a stripe below the diagonal.
    model, tokenizer = smollm2_hf
    ids = tokenizer(IOI, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        pattern = model(ids, output_attentions=True).attentions[layer][0, head]
    rows = torch.arange(2, ids.shape[1])
    previous = pattern[rows, rows - 1]
    rest = 1 - pattern[rows, 0]
    assert float(previous.sum() / rest.sum()) > 0.6
    assert all(int(pattern[i, 1:].argmax()) + 1 == i - 1 for i in rows.tolist())
    text = head_text(analysis, layer, head)
    assert f"L{layer}-H{head}, a previous-token head" in text
    share = re.search(r"([\d.]+)% of the attention it does not park", text).group(1)
    assert abs(float(share) / 100 - float(previous.sum() / rest.sum())) < 0.002
    sink = re.search(r"\(([\d.]+)% sits on the first token\)", text).group(1)
    assert abs(float(sink) / 100 - float(pattern[rows, 0].mean())) < 0.002
    last = re.search(r"the last token ␣to gives ([\d.]+)% to ␣drink", text).group(1)
    assert abs(float(last) / 100 - float(pattern[-1, -2])) < 0.002
    # The tour's own step says exactly that, and opens that head.
    shown = next(s for s in main_tour(smollm2, analysis, {}) if s["title"] == "3. One head")
    assert shown["text"] == text
    assert ["click", f'.head-cell[data-head="L{layer}-H{head}"]'] in shown["do"]


def hf_last_row_on(model, ids, position: int) -> torch.Tensor:
    """transformers' own attention from the last token to `position`, `(layers, heads)`."""
    with torch.no_grad():
        attentions = model(ids, output_attentions=True).attentions
    return torch.stack([a[0, :, -1, position] for a in attentions])


def hf_p_without(model, ids, heads, token: int) -> float:
    """p(token) next with `heads` zeroed: a hook zeroes their slice of o_proj's input."""
    size = model.config.hidden_size // model.config.num_attention_heads
    hooks = []
    for layer, head in heads:

        def zero(module, args, head=head):
            x = args[0].clone()
            x[..., head * size : (head + 1) * size] = 0
            return (x,)

        o_proj = model.model.layers[layer].self_attn.o_proj
        hooks.append(o_proj.register_forward_pre_hook(zero))
    try:
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
    finally:
        for hook in hooks:
            hook.remove()
    return float(logits.softmax(-1)[token])


def test_the_name_mover_result_says_whether_the_heads_read_the_name_and_which_heads_do(
    smollm2, smollm2_hf
):
    model, tokenizer = smollm2_hf
    ids = tokenizer(IOI, return_tensors="pt")["input_ids"]
    mary = tokenizer.encode(" Mary")[0]
    assert int(ids[0, 1]) == mary  # the name that appears once, at position 1
    reads = hf_last_row_on(model, ids, 1)
    analysis = analyze(smollm2, IOI)
    # Heads that give ␣Mary almost nothing from the last token: the text says they do not move it.
    quiet = [list(divmod(int(i), reads.shape[1])) for i in reads.flatten().argsort()[:3]]
    result = ablate(smollm2, IOI, quiet, new_tokens=0).to_dict()
    text = mover_job(analysis, result, quiet)
    most = float(max(reads[l, h] for l, h in quiet))
    assert f"none of them gives ␣Mary more than {percent(most)}" in text
    # ... and names the three heads reading it most, and what removing them does.
    top = reads.flatten().argsort(descending=True)[:3]
    candidates = [divmod(int(i), reads.shape[1]) for i in top]
    named = ", ".join(f"L{l}-H{h} ({percent(float(reads[l, h]))})" for l, h in candidates)
    assert f"read ␣Mary most from the last position are {named}" in text
    before = hf_p_without(model, ids, [], mary)
    after = hf_p_without(model, ids, candidates, mary)
    assert f"goes from {percent(before)} to {percent(after)}" in text
    # A head that does read it is called what it is.
    l, h = candidates[0]
    mixed = [[l, h], quiet[0]]
    text = mover_job(analysis, ablate(smollm2, IOI, mixed, new_tokens=0).to_dict(), mixed)
    assert text.startswith(f"L{l}-H{h} ({percent(float(reads[l, h]))}) read ␣Mary from the last")


def test_the_induction_losses_leave_out_each_copys_first_word_and_match_a_plain_pass():
    lm = load_model("demo")
    prompt = induction_prompt(lm)
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    assert ids.shape[1] == 2 * SEQUENCE - 1
    model, size = lm.model, lm.card.hidden_size // lm.card.heads_per_layer

    def zero_head_0(module, args):
        x = args[0].clone()
        x[..., :size] = 0
        return (x,)

    # A plain GPT-2 pass; the ablated one zeroes L1-H0's slice of c_proj's input by a hook.
    hook = model.transformer.h[1].attn.c_proj.register_forward_pre_hook(zero_head_0)
    try:
        with torch.no_grad():
            ablated = model(ids).logits[0].log_softmax(-1)
    finally:
        hook.remove()
    with torch.no_grad():
        clean = model(ids).logits[0].log_softmax(-1)

    def loss(logp, tokens) -> float:  # mean loss of predicting these token positions
        return float(-torch.stack([logp[t - 1, ids[0, t]] for t in tokens]).mean())

    second = range(SEQUENCE + 1, 2 * SEQUENCE - 1)  # the second copy after its first word
    first = range(1, SEQUENCE)  # the first copy after its first word
    losses = second_copy_loss(lm, prompt, [[1, 0]])
    before, after, scale = losses.before, losses.after, losses.first_copy
    assert abs(before - loss(clean, second)) < 1e-3
    assert abs(after - loss(ablated, second)) < 1e-3
    assert abs(scale - loss(clean, first)) < 1e-3
    assert scale > before + 5  # nothing predicts the first copy; copying predicts the second
