"""Train the tiny GPT-2 demo model shipped in ``lmscope/demo_model``.

Command that produced the committed model::

    python scripts/train_demo_model.py --seed 0 --threads 1 --out lmscope/demo_model

Recipe: a 2-layer, 4-head GPT-2 (d=120, full 50,257-token GPT-2 vocabulary,
tied embeddings) trained from scratch on one CPU core in three phases:

1. *induction*: sequences of random tokens from a pool of 100 ids in which a
   random span is repeated; the loss covers only the repeated span and is a
   softmax over the pool.  A layer-0 previous-token head and a layer-1
   induction head form within a few hundred steps.
2. *widen*: the pool grows to 1,000 ids and then to the whole vocabulary (loss
   is a sampled softmax over the batch's own tokens plus random negatives), with
   natural text (Debian ``fortunes``) mixed in, so the circuit works for any id.
3. *text*: mostly natural text (sampled softmax) with repeated-random batches
   still mixed in, keeping the previous-token head positional.

The script ends by saving the model in fp16, reloading it with eager attention
and measuring the targets; it exits non-zero if one is missed.
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
FORTUNES = Path("/usr/share/games/fortunes")
Phase = tuple[str, int, float, int]  # name, steps, share of random batches, pool size (0: full vocab)
PHASES: list[Phase] = [
    ("induction", 300, 1.0, 100),
    ("widen-1k", 300, 0.75, 1000),
    ("widen-full", 600, 0.6, 0),
    ("text", 1200, 0.35, 0),
]


def load_fortunes(tok: GPT2TokenizerFast, rng: np.random.Generator) -> tuple[np.ndarray, list[list[int]]]:
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
        stream += tok.encode(texts[i]) + [EOS]
    return np.array(stream, dtype=np.int64), held


def text_batch(stream: np.ndarray, rng: np.random.Generator, batch: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the text stream; every next-token prediction counts."""
    starts = rng.integers(0, len(stream) - seq - 1, size=batch)
    x = torch.from_numpy(np.stack([stream[s : s + seq] for s in starts]))
    return x, torch.ones(batch, seq - 1, dtype=torch.bool)


def repeat_batch(pool: np.ndarray, rng: np.random.Generator, batch: int, seq: int,
                 whole: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens with one span repeated (``whole``: the sequence is r + r); the loss covers the repeat."""
    x = pool[rng.integers(0, len(pool), size=(batch, seq))]
    mask = np.zeros((batch, seq - 1), dtype=bool)
    for b in range(batch):
        span = seq // 2 if whole else int(rng.integers(4, seq // 2 + 1))
        off = 0 if whole else int(rng.integers(0, seq - 2 * span + 1))
        x[b, off + span : off + 2 * span] = x[b, off : off + span]
        mask[b, off + span : off + 2 * span - 1] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def sampled_loss(model: GPT2LMHeadModel, x: torch.Tensor, mask: torch.Tensor, negatives: np.ndarray) -> torch.Tensor:
    """Cross-entropy over the batch's own tokens plus ``negatives`` (not the full vocabulary)."""
    hidden = model.transformer(input_ids=x).last_hidden_state[:, :-1][mask]
    targets = x[:, 1:][mask]
    cand, inverse = torch.unique(torch.cat([x.flatten(), torch.from_numpy(negatives)]), return_inverse=True)
    target_idx = inverse[: x.numel()].view_as(x)[:, 1:][mask]
    logits = hidden @ model.transformer.wte.weight[cand].T
    assert torch.equal(cand[target_idx], targets)
    return F.cross_entropy(logits, target_idx)


@torch.no_grad()
def attentions(model: GPT2LMHeadModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention patterns [layers, batch, heads, T, T] and logits."""
    out = model(input_ids=x, output_attentions=True)
    assert len(out.attentions) == model.config.n_layer, "needs attn_implementation='eager'"
    return torch.stack(out.attentions), out.logits


def prev_token_scores(model: GPT2LMHeadModel, prompts: list[list[int]]) -> torch.Tensor:
    """Mean of A[i, i-1] over query positions 1..T-1 and prompts, per [layer, head]."""
    scores = []
    for p in prompts:
        att, _ = attentions(model, torch.tensor([p]))
        scores.append(att[:, 0].diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1))
    return torch.stack(scores).mean(0)


def induction_scores(model: GPT2LMHeadModel, ids: np.ndarray, span: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Induction/duplicate scores per [layer, head] and copy losses on ``r + r`` prompts."""
    rng = np.random.default_rng(seed)
    r = torch.from_numpy(ids[rng.integers(0, len(ids), size=(n, span))])
    x = torch.cat([r, r], dim=1)
    att, logits = attentions(model, x)
    q = torch.arange(span, 2 * span)
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), x[:, 1:], reduction="none")
    return {
        "induction": att[..., q, q - span + 1].mean((1, 3)),
        "duplicate": att[..., q, q - span].mean((1, 3)),
        "loss_first": nll[:, : span - 1].mean(),
        "loss_second": nll[:, span : 2 * span - 1].mean(),
    }


def head_table(name: str, scores: torch.Tensor) -> str:
    """One row per layer, one column per head."""
    rows = [f"{name:<24}" + "".join(f"   h{h}  " for h in range(scores.shape[1]))]
    rows += [f"  layer {layer:<16}" + "".join(f"{v:7.3f} " for v in scores[layer].tolist()) for layer in range(scores.shape[0])]
    return "\n".join(rows)


def best(scores: torch.Tensor) -> tuple[float, str]:
    """Highest score and its head as 'layer.head'."""
    idx = int(scores.argmax())
    return float(scores.flatten()[idx]), f"{idx // scores.shape[1]}.{idx % scores.shape[1]}"


def evaluate(model: GPT2LMHeadModel, prompts: list[list[int]], seed: int, full: bool = False) -> dict[str, float]:
    """Print per-head tables (if ``full``) and return the headline numbers."""
    model.eval()
    wide = np.arange(1000, 50000)
    prev = prev_token_scores(model, prompts)
    res: dict[str, float] = {"prev": best(prev)[0]}
    if full:
        print(head_table("previous-token (text)", prev))
    for span in (10, 20, 40) if full else (20,):
        ind = induction_scores(model, wide, span, 16, seed)
        res[f"ind{span}"] = best(ind["induction"])[0]
        res[f"loss1_{span}"], res[f"loss2_{span}"] = float(ind["loss_first"]), float(ind["loss_second"])
        if full:
            print(head_table(f"induction P={span}", ind["induction"]))
            print(head_table(f"duplicate P={span}", ind["duplicate"]))
            print(f"  best induction {best(ind['induction'])}, loss first copy {res[f'loss1_{span}']:.3f}, "
                  f"second copy {res[f'loss2_{span}']:.3f}")
    if full:
        ordinary = np.arange(256, EOS)
        ind = induction_scores(model, ordinary, 20, 16, seed + 1)
        res["ind20_ordinary"] = best(ind["induction"])[0]
        print(head_table("induction P=20, ids 256..50255", ind["induction"]))
        print(f"  best previous-token {best(prev)}")
    model.train()
    return res


def save(model: GPT2LMHeadModel, out: Path, note: dict[str, object]) -> None:
    """Write config + fp16 safetensors + a small tokenizer config (vocab/merges stay untouched)."""
    model.config.lmscope_demo = note
    model.half().save_pretrained(out, safe_serialization=True)
    model.float()
    tok_cfg = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": model.config.n_positions,
               "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "add_prefix_space": False, "add_bos_token": False}
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    (out / "generation_config.json").unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("lmscope/demo_model"))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every phase's step count")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--stop-after", type=int, default=0, help="debug: stop training after this many steps")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    start = time.time()

    tok = GPT2TokenizerFast.from_pretrained(args.out)
    stream, held = load_fortunes(tok, rng)
    prompts = [p for p in held if 30 <= len(p) <= 100][:24]
    print(f"fortunes: {len(stream)} training tokens, {len(prompts)} held-out prompts", flush=True)

    cfg = GPT2Config(vocab_size=VOCAB, n_positions=256, n_embd=120, n_layer=2, n_head=4, attn_implementation="eager",
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=EOS, eos_token_id=EOS)
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.98))
    total = sum(int(s * args.scale) for _, s, _, _ in PHASES)
    vocab = np.arange(EOS)
    step = 0
    for name, steps, share, pool_size in PHASES:
        pool = rng.choice(vocab, size=pool_size, replace=False) if pool_size else vocab
        print(f"== phase {name}: {int(steps * args.scale)} steps, random share {share}, pool {len(pool)}", flush=True)
        for _ in range(int(steps * args.scale)):
            if step == args.stop_after:
                break
            frac = step / total
            lr = args.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * max(0.0, frac - 0.7) / 0.3)))
            for group in opt.param_groups:
                group["lr"] = lr
            kind = "rand" if rng.random() < share else "text"
            whole = name == "induction" or (kind == "rand" and rng.random() < 0.5)
            seq = 2 * int(rng.integers(8, 49 if name == "induction" else 129)) if whole else 256
            batch = 4096 // seq
            if kind == "rand":
                x, mask = repeat_batch(pool, rng, batch, seq, whole)
                negatives = pool if len(pool) <= 1000 else rng.choice(vocab, size=1024, replace=False)
            else:
                x, mask = text_batch(stream, rng, batch, seq)
                negatives = rng.choice(vocab, size=1024, replace=False)
            loss = sampled_loss(model, x, mask, negatives)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 25 == 0:
                print(f"step {step:5d}  {kind} loss {loss.item():.3f}  "
                      f"lr {lr:.2e}  {time.time() - start:6.0f}s", flush=True)
            if step % args.eval_every == 0:
                r = evaluate(model, prompts, args.seed + 1000)
                if name == "induction":
                    model.eval()
                    r["ind20_pool"] = best(induction_scores(model, pool, 20, 16, args.seed)["induction"])[0]
                    model.train()
                print("  eval " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)

    train_time = time.time() - start
    print(f"training wall time {train_time:.0f}s", flush=True)
    save(model, args.out, {"seed": args.seed, "steps": step, "recipe": "scripts/train_demo_model.py"})
    model = GPT2LMHeadModel.from_pretrained(args.out, attn_implementation="eager", dtype=torch.float32)
    AutoTokenizer.from_pretrained(args.out)
    res = evaluate(model, prompts, args.seed + 1000, full=True)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    checks = {
        "previous-token score >= 0.5 (held-out text)": res["prev"] >= 0.5,
        "induction score >= 0.5 (P=20, ids 1000..50000)": res["ind20"] >= 0.5,
        "induction score >= 0.5 (P=20, ids 256..50255)": res["ind20_ordinary"] >= 0.5,
        "second-copy loss < 1.0 and far below first copy": res["loss2_20"] < 1.0 < res["loss1_20"] - 3,
        "folder size <= 15,000,000 bytes": size <= 15_000_000,
    }
    print(f"folder {args.out}: {size} bytes; training {train_time:.0f}s, total {time.time() - start:.0f}s")
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
