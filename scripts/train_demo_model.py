"""Train the tiny GPT-2 demo model shipped in ``lmscope/demo_model``.

Command that produced the committed model::

    python scripts/train_demo_model.py --seed 0 --threads 1 --out lmscope/demo_model

Recipe: a 2-layer, 4-head GPT-2 (d=120, heads of 30 dims, n_positions=256, full 50,257-token GPT-2
vocabulary, tied embeddings) trained from scratch on one CPU thread (about 3-5 minutes).

* Token embedding: drawn once from N(0, ``--emb-std``) in the first ``--emb-dims`` (30) dimensions,
  zero in the other 90, and FROZEN for the whole run (it is saved as the model's embedding). Every
  token is statistically alike, so a circuit learnt on some ids works for any id.
* Planted previous-token head (``--plant``, ``--plant-layers``): the position embedding starts as 15
  sinusoids in dimensions 30..59 and head 0.0 starts as a previous-token head whose output copies the
  previous token into dimensions 60..89 (see ``plant_circuit``). Head 1.0 keeps its random init.
* The ids split three ways: ids in the training text, a random *pool* of ``--pool`` other ids for
  the random sequences, and the rest, never seen in training: the induction targets are measured on
  those held-out ids.
* Phase A (induction): 256-token sequences made of back-to-back ``r + r`` chunks of random pool ids
  (``len(r)`` from 8 to 32), the loss only on the second copies, a softmax over the batch's ids plus
  ``--negatives`` random seen ids (not the full vocabulary). For the first ``--aux-steps`` (300) steps
  an attention nudge is added (``--aux`` times the mean ``-log`` attention of head 1.0 on the induction
  target and of head 0.0 on the previous token); after that the loss is the LM loss only. Held-out
  induction is measured every ``--eval-every`` steps; the phase ends at the first evaluation at least
  ``--free-steps`` after the nudge where it reaches ``--ind-stop`` (or after ``--phase-a`` steps).
* Phase B (text): natural text (Debian ``fortunes``, 5% of the fortunes held out) mixed 50/50 with
  the random chunk sequences, LM loss only, learning rate decayed to 10%; ``--phase-b`` steps.

Why the plant and the nudge: without them (frozen random 120- or 64-dim embeddings, or trainable
ones) no induction head formed within the CPU budget; with the nudge but no planted layer-0 head it
did not form either; with the planted layer-0 head but no nudge it did not form in 900 steps and the
unused previous-token head decayed (1.0 -> 0.23). See scripts/README-demo-model.md.

Evaluations happen at fixed steps, so the same command gives the same model. The script ends by
saving the model in fp16, reloading it with eager attention and measuring the targets; it exits
non-zero if one is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

VOCAB = 50257
EOS = 50256
SEQ = 256
FORTUNES = Path("/usr/share/games/fortunes")


def load_fortunes(
    tok: GPT2TokenizerFast, rng: np.random.Generator
) -> tuple[np.ndarray, list[list[int]]]:
    """Return the training token stream and held-out fortunes (5%, tokenized)."""
    texts: list[str] = []
    for path in sorted(FORTUNES.iterdir()):
        if path.is_file() and "." not in path.name:
            raw = path.read_text(encoding="utf-8", errors="replace")
            texts += [t.strip() for t in raw.split("\n%\n") if t.strip()]
    order = rng.permutation(len(texts))
    n_eval = len(texts) // 20
    held = [tok.encode(texts[i]) for i in order[:n_eval]]
    stream: list[int] = []
    for i in order[n_eval:]:
        stream += [*tok.encode(texts[i]), EOS]
    return np.array(stream, dtype=np.int64), held


def text_batch(
    stream: np.ndarray, rng: np.random.Generator, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 256-token windows of the text stream; every next-token prediction counts."""
    starts = rng.integers(0, len(stream) - SEQ - 1, size=batch)
    x = torch.from_numpy(np.stack([stream[s : s + SEQ] for s in starts]))
    return x, torch.ones(batch, SEQ - 1, dtype=torch.bool)


def chunk_batch(
    pool: np.ndarray, rng: np.random.Generator, batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """256 random pool ids laid out as back-to-back ``r + r`` chunks; the loss covers the second copies.

    Also returns, per position of a second copy, the induction target (the position after the same
    token's first occurrence; -1 elsewhere).
    """
    x = pool[rng.integers(0, len(pool), size=(batch, SEQ))]
    mask = np.zeros((batch, SEQ - 1), dtype=bool)
    key = np.full((batch, SEQ), -1, dtype=np.int64)
    for b in range(batch):
        pos = 0
        while pos < SEQ - 2:
            span = min(int(rng.integers(8, 33)), (SEQ - pos) // 2)
            x[b, pos + span : pos + 2 * span] = x[b, pos : pos + span]
            # predicting token t+1 from position t: targets inside the second copy (its 2nd token on)
            mask[b, pos + span : pos + 2 * span - 1] = True
            key[b, pos + span : pos + 2 * span] = np.arange(pos + 1, pos + span + 1)
            pos += 2 * span
    return torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(key)


def sampled_loss(
    model: GPT2LMHeadModel,
    x: torch.Tensor,
    mask: torch.Tensor,
    negatives: np.ndarray,
    aux: float = 0.0,
    key: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over the batch's own ids plus ``negatives`` (not the full vocabulary).

    ``aux`` > 0 adds ``aux`` times the attention nudge: the mean ``-log A[i, i-1]`` of layer 0, head 0
    (previous token) plus, where ``key`` is given, the mean ``-log A[i, key[i]]`` of layer 1, head 0
    (induction).
    """
    out = model.transformer(input_ids=x, output_attentions=aux > 0)
    hidden = out.last_hidden_state[:, :-1][mask]
    targets = x[:, 1:][mask]
    cand, inverse = torch.unique(
        torch.cat([x.flatten(), torch.from_numpy(negatives)]), return_inverse=True
    )
    target_idx = inverse[: x.numel()].view_as(x)[:, 1:][mask]
    logits = hidden @ model.transformer.wte.weight[cand].T
    assert torch.equal(cand[target_idx], targets)
    loss = F.cross_entropy(logits, target_idx)
    if aux > 0:
        prev = out.attentions[0][:, 0].diagonal(offset=-1, dim1=-2, dim2=-1)
        loss = loss + aux * -prev.clamp_min(1e-6).log().mean()
        if key is not None:
            b, q = (key >= 0).nonzero(as_tuple=True)
            ind = out.attentions[1][b, 0, q, key[b, q]]
            loss = loss + aux * -ind.clamp_min(1e-6).log().mean()
    return loss


@torch.no_grad()
def attentions(
    model: GPT2LMHeadModel, x: torch.Tensor, logits: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention patterns [layers, batch, heads, T, T] and (full-vocabulary) logits."""
    if logits:
        out = model(input_ids=x, output_attentions=True)
    else:
        out = model.transformer(input_ids=x, output_attentions=True)
    assert len(out.attentions) == model.config.n_layer, "needs attn_implementation='eager'"
    return torch.stack(out.attentions), out.logits if logits else None


def prev_token_scores(model: GPT2LMHeadModel, prompts: list[list[int]]) -> torch.Tensor:
    """Mean of A[i, i-1] over query positions 1..T-1 and prompts, per [layer, head]."""
    scores = []
    for p in prompts:
        att, _ = attentions(model, torch.tensor([p]), logits=False)
        scores.append(att[:, 0].diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1))
    return torch.stack(scores).mean(0)


def induction_scores(
    model: GPT2LMHeadModel, ids: np.ndarray, span: int, n: int, seed: int, losses: bool = True
) -> dict[str, torch.Tensor]:
    """Induction/duplicate scores per [layer, head] and full-vocabulary copy losses on ``r + r`` prompts."""
    rng = np.random.default_rng(seed)
    r = torch.from_numpy(ids[rng.integers(0, len(ids), size=(n, span))])
    x = torch.cat([r, r], dim=1)
    att, logits = attentions(model, x, logits=losses)
    q = torch.arange(span, 2 * span)
    res = {
        "induction": att[..., q, q - span + 1].mean((1, 3)),
        "duplicate": att[..., q, q - span].mean((1, 3)),
    }
    if logits is not None:
        nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), x[:, 1:], reduction="none")
        res["loss_first"] = nll[:, : span - 1].mean()
        res["loss_second"] = nll[:, span : 2 * span - 1].mean()
    return res


def head_table(name: str, scores: torch.Tensor) -> str:
    """One row per layer, one column per head."""
    rows = [f"{name:<32}" + "".join(f"   h{h}  " for h in range(scores.shape[1]))]
    rows += [
        f"  layer {layer:<24}" + "".join(f"{v:7.3f} " for v in scores[layer].tolist())
        for layer in range(scores.shape[0])
    ]
    return "\n".join(rows)


def best(scores: torch.Tensor) -> tuple[float, str]:
    """Highest score and its head as 'layer.head'."""
    idx = int(scores.argmax())
    return float(scores.flatten()[idx]), f"{idx // scores.shape[1]}.{idx % scores.shape[1]}"


def evaluate(
    model: GPT2LMHeadModel,
    prompts: list[list[int]],
    held_ids: np.ndarray,
    pool: np.ndarray,
    seed: int,
    full: bool = False,
) -> dict[str, float]:
    """Print per-head tables (if ``full``) and return the headline numbers."""
    model.eval()
    prev = prev_token_scores(model, prompts)
    res: dict[str, float] = {"prev": best(prev)[0]}
    if full:
        print(head_table("previous-token (held-out text)", prev))
    for span in (10, 20, 40) if full else (20,):
        ind = induction_scores(model, held_ids, span, 16, seed, losses=full)
        res[f"ind{span}"] = best(ind["induction"])[0]
        if full:
            res[f"loss1_{span}"], res[f"loss2_{span}"] = (
                float(ind["loss_first"]),
                float(ind["loss_second"]),
            )
            print(head_table(f"induction P={span}, held-out ids", ind["induction"]))
            print(head_table(f"duplicate P={span}, held-out ids", ind["duplicate"]))
            print(
                f"  best induction {best(ind['induction'])}, full-vocab loss first copy {res[f'loss1_{span}']:.3f}, "
                f"second copy {res[f'loss2_{span}']:.3f}"
            )
    res["ind20_pool"] = best(
        induction_scores(model, pool, 20, 16, seed, losses=False)["induction"]
    )[0]
    if full:
        ordinary = np.arange(256, EOS)
        ind = induction_scores(model, ordinary, 20, 16, seed + 1)
        res["ind20_ordinary"] = best(ind["induction"])[0]
        print(head_table("induction P=20, any ids 256..50255", ind["induction"]))
        print(
            f"  best induction {best(ind['induction'])}, full-vocab loss first copy {float(ind['loss_first']):.3f}, "
            f"second copy {float(ind['loss_second']):.3f}"
        )
        print(f"  best previous-token {best(prev)}")
    model.train()
    return res


def save(model: GPT2LMHeadModel, out: Path, note: dict[str, object]) -> None:
    """Write config + fp16 safetensors + a small tokenizer config (vocab/merges stay untouched)."""
    model.config.lmscope_demo = note
    model.half().save_pretrained(out, safe_serialization=True)
    model.float()
    tok_cfg = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model.config.n_positions,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "add_prefix_space": False,
        "add_bos_token": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    (out / "generation_config.json").unlink(missing_ok=True)


def plant_circuit(
    model: GPT2LMHeadModel,
    tok_dims: int,
    gains: tuple[float, float, float, float],
    layers: tuple[int, ...] = (0, 1),
) -> None:
    """Initialise head 0.0 as a previous-token head and head 1.0 as an induction head.

    Layout of the residual stream (d=120, heads of 30 dims): token embedding in dims 0..29, sinusoidal
    position embedding in 30..59 (15 frequencies), previous-token slot in 60..89, 90..119 free.
    0.0: query = position rotated back by one step, key = position, value = token, output -> slot.
    1.0: query = token, key = slot (the token before), value = token, output -> token dims.
    ``gains``: (0.0 query scale, 0.0 output gain, 1.0 query scale, 1.0 output gain). Everything
    else keeps GPT-2's random initialisation, and all of it (but the token embedding) trains.
    ``layers``: which of the two heads to plant (the position embedding is always set).
    """
    d_head = model.config.n_embd // model.config.n_head
    assert tok_dims == d_head == 30, (
        "the planted layout needs 30-dim heads and a 30-dim token embedding"
    )
    s0, g0, s1, g1 = gains
    tr = model.transformer
    n = d_head // 2
    freqs = torch.logspace(math.log10(0.05), math.log10(3.0), n)
    pos = torch.arange(model.config.n_positions, dtype=torch.float32)[:, None] * freqs
    with torch.no_grad():
        tr.wpe.weight.zero_()
        tr.wpe.weight[:, 30:60:2] = torch.cos(pos) / math.sqrt(n)
        tr.wpe.weight[:, 31:60:2] = torch.sin(pos) / math.sqrt(n)
        for layer in layers:
            w, proj = (
                tr.h[layer].attn.c_attn.weight,
                tr.h[layer].attn.c_proj.weight,
            )  # Conv1D: (in, out)
            for part in range(3):
                w[:, part * 120 : part * 120 + d_head] = 0.0
            proj[:d_head] = 0.0
            eye = torch.eye(d_head)
            if layer == 0:
                c, s = torch.cos(freqs), torch.sin(freqs)
                q = w[30:60, 0:30]
                q[0::2, 0::2] = torch.diag(c) * s0
                q[1::2, 0::2] = torch.diag(s) * s0
                q[0::2, 1::2] = torch.diag(-s) * s0
                q[1::2, 1::2] = torch.diag(c) * s0
                w[30:60, 120:150] = eye
                w[0:30, 240:270] = eye
                proj[:d_head, 60:90] = eye * g0
            else:
                w[0:30, 0:30] = eye * s1
                w[60:90, 120:150] = eye
                w[0:30, 240:270] = eye
                proj[:d_head, 0:30] = eye * g1


def set_mlps(model: GPT2LMHeadModel, on: bool) -> None:
    """Switch the MLPs off (output weights zeroed and every MLP weight frozen) or back on."""
    for block in model.transformer.h:
        if not on:
            with torch.no_grad():
                block.mlp.c_proj.weight.zero_()
                block.mlp.c_proj.bias.zero_()
        for p in block.mlp.parameters():
            p.requires_grad_(on)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("lmscope/demo_model"))
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=8, help="256-token sequences per step")
    ap.add_argument(
        "--emb-std", type=float, default=0.18, help="init std of the frozen token embedding"
    )
    ap.add_argument(
        "--emb-dims",
        type=int,
        default=30,
        help="the token embedding lives in the first this many dimensions (the rest stay zero)",
    )
    ap.add_argument(
        "--plant",
        type=float,
        nargs=4,
        metavar=("S0", "G0", "S1", "G1"),
        default=[2.0, 0.13, 3.0, 0.6],
        help="initialise heads 0.0 / 1.0 as a previous-token / induction circuit with these gains (0 0 0 0: off)",
    )
    ap.add_argument(
        "--plant-layers",
        type=int,
        nargs="+",
        default=[0],
        help="heads to plant: 0 for 0.0, 1 for 1.0",
    )
    ap.add_argument(
        "--pos-std", type=float, default=0.02, help="init std of the position embedding"
    )
    ap.add_argument("--pool", type=int, default=4096, help="ids used by the random sequences")
    ap.add_argument("--negatives", type=int, default=4096, help="extra softmax candidates per step")
    ap.add_argument("--attn-only", type=int, default=0, help="phase A steps with the MLPs off")
    ap.add_argument("--phase-a", type=int, default=900, help="phase A step cap")
    ap.add_argument(
        "--ind-stop", type=float, default=0.75, help="end phase A at this held-out induction score"
    )
    ap.add_argument("--phase-b", type=int, default=300)
    ap.add_argument(
        "--text-share", type=float, default=0.5, help="share of text batches in phase B"
    )
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument(
        "--aux", type=float, default=1.0, help="weight of the attention nudge (0.0 and 1.0 heads 0)"
    )
    ap.add_argument(
        "--aux-steps", type=int, default=300, help="first steps with the attention nudge"
    )
    ap.add_argument(
        "--free-steps",
        type=int,
        default=200,
        help="phase A steps after the nudge before stopping early",
    )
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    start = time.time()
    print(f"args: {vars(args)}", flush=True)

    tok = GPT2TokenizerFast.from_pretrained(args.out)
    stream, held = load_fortunes(tok, rng)
    prompts = [p for p in held if 30 <= len(p) <= 100][:24]
    text_ids = np.unique(stream)
    free = np.setdiff1d(np.arange(EOS), text_ids)
    pool = np.sort(rng.choice(free, size=args.pool, replace=False))
    seen = np.union1d(text_ids, pool)
    held_ids = np.setdiff1d(np.arange(1000, 50000), seen)
    print(
        f"fortunes: {len(stream)} training tokens ({len(text_ids)} distinct ids), {len(prompts)} held-out prompts; "
        f"random-sequence pool {len(pool)} ids; {len(held_ids)} ids in 1000..50000 never seen in training",
        flush=True,
    )

    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=SEQ,
        n_embd=120,
        n_layer=2,
        n_head=4,
        attn_implementation="eager",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=EOS,
        eos_token_id=EOS,
    )
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        model.transformer.wte.weight.normal_(0.0, args.emb_std)
        model.transformer.wte.weight[:, args.emb_dims :] = 0.0
        model.transformer.wpe.weight.normal_(0.0, args.pos_std)
    if any(args.plant):
        plant_circuit(model, args.emb_dims, tuple(args.plant), tuple(args.plant_layers))
    model.transformer.wte.weight.requires_grad_(False)
    set_mlps(model, on=args.attn_only <= 0)
    params = [p for p in model.parameters() if p is not model.transformer.wte.weight]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.98))
    seen_t = seen  # negatives come only from ids seen in training

    def train_step(step: int, lr: float, kind: str) -> float:
        for group in opt.param_groups:
            group["lr"] = lr
        key = None
        if kind == "rand":
            x, mask, key = chunk_batch(pool, rng, args.batch)
        else:
            x, mask = text_batch(stream, rng, args.batch)
        aux = args.aux if step < args.aux_steps else 0.0
        loss = sampled_loss(
            model, x, mask, rng.choice(seen_t, size=args.negatives, replace=False), aux, key
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 25 == 0:
            print(
                f"step {step + 1:5d}  {kind} loss {loss.item():.3f}  lr {lr:.2e}  {time.time() - start:6.0f}s",
                flush=True,
            )
        return loss.item()

    step = 0
    print(
        f"== phase A (induction): up to {args.phase_a} steps, MLPs off for {args.attn_only}",
        flush=True,
    )
    for _ in range(args.phase_a):
        if step == args.attn_only:
            set_mlps(model, on=True)
            print("  MLPs on", flush=True)
        train_step(step, args.lr * min(1.0, (step + 1) / 50), "rand")
        step += 1
        if step % args.eval_every == 0:
            r = evaluate(model, prompts, held_ids, pool, args.seed + 1000)
            print("  eval " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
            if r["ind20"] >= args.ind_stop and step >= max(
                args.attn_only, args.aux_steps + args.free_steps
            ):
                break
    set_mlps(model, on=True)
    a_steps = step
    print(f"== phase B (text): {args.phase_b} steps, text share {args.text_share}", flush=True)
    for i in range(args.phase_b):
        lr = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / args.phase_b)))
        train_step(step, lr, "text" if rng.random() < args.text_share else "rand")
        step += 1
        if step % args.eval_every == 0:
            r = evaluate(model, prompts, held_ids, pool, args.seed + 1000)
            print("  eval " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)

    train_time = time.time() - start
    print(f"training wall time {train_time:.0f}s ({a_steps} + {step - a_steps} steps)", flush=True)
    save(
        model, args.out, {"seed": args.seed, "steps": step, "recipe": "scripts/train_demo_model.py"}
    )
    model = GPT2LMHeadModel.from_pretrained(
        args.out, attn_implementation="eager", dtype=torch.float32
    )
    AutoTokenizer.from_pretrained(args.out)
    res = evaluate(model, prompts, held_ids, pool, args.seed + 1000, full=True)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    checks = {
        "previous-token score >= 0.5 (held-out text)": res["prev"] >= 0.5,
        "induction score >= 0.5 (P=20, held-out ids never seen in training)": res["ind20"] >= 0.5,
        "induction score >= 0.5 (P=20, any ids 256..50255)": res["ind20_ordinary"] >= 0.5,
        "second-copy loss far below first copy (full vocabulary, P=20)": res["loss2_20"]
        < res["loss1_20"] - 3,
        "folder size <= 15,000,000 bytes": size <= 15_000_000,
    }
    print(
        f"folder {args.out}: {size} bytes; training {train_time:.0f}s, total {time.time() - start:.0f}s"
    )
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
