"""Train the tiny GPT-2 demo model shipped in ``lmscope/demo_model``.

Command that produced the model::

    python scripts/train_demo_model.py --seed 0 --threads 1 --out lmscope/demo_model

Recipe: a 2-layer, 4-head GPT-2 (d=120, heads of 30 dims, n_positions=256, full 50,257-token GPT-2
vocabulary, tied embeddings) trained from scratch on one CPU thread (about 9-10 minutes). Both heads
come from the ordinary next-token loss alone: no attention weight is set by hand and no loss term
looks at attention patterns.

Initialisation (all random except the sinusoidal start of the position embedding):

* Token embedding: drawn once from N(0, ``--emb-std``) in the first ``--emb-dims`` (40) dimensions,
  zero in the other 80, and FROZEN for the whole run (it is saved as the model's tied embedding and
  unembedding). Every id is statistically alike, so a circuit learnt on some ids works for any id,
  including ids never seen in training.
* Position embedding: *initialised* as ``--pos-dims``/2 (20) sinusoid pairs (frequencies 0.05..3
  rad/token) in dimensions 40..79, then trained like every other weight.
* Everything else: GPT-2's own random initialisation (N(0, 0.02) weights).

Data: the ids split in two: ``--held`` (8,000) random ids that do not occur in the training text are
held out (never in an input, a target or a softmax candidate during training); the induction
targets are measured on them. All other ids make the random sequences.

* Phase 1 (text, ``--phase-text`` steps): 64-token windows of Debian ``fortunes`` (5% of the
  fortunes held out for the previous-token score), every next-token prediction counts. Each window
  gets a random absolute-position offset (``position_ids``), so short windows train every position.
  A previous-token head (layer 0) forms on its own here: it is what a model with a frozen
  token embedding needs to use the token before the current one.
* Phase 2 (induction, ``--phase-rr`` steps): batches of ``r + r`` sequences (``len(r)`` from 4 to 24
  random ids, random position offset), the loss only on the second copy; a share ``--text-share`` of
  the batches stays fortunes text. With the previous-token head already in place an induction head
  appears in layer 1 within a few hundred steps. Learning rate decays (cosine) to 10% over this phase.

The softmax during training is sampled: the batch's own ids plus ``--negatives`` random training
ids (never the held-out ones) instead of all 50,257. Evaluation uses the full vocabulary.

Evaluations happen at fixed steps and use their own random generator, so the same command gives the
same model. The script ends by saving the model in fp16, reloading it with eager attention and
measuring the targets; it exits non-zero if one is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

VOCAB = 50257
EOS = 50256
NPOS = 256
FORTUNES = Path("/usr/share/games/fortunes")
TOKENIZER_FILES = ("vocab.json", "merges.txt")


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


def offsets(rng: np.random.Generator, batch: int, length: int, max_pos: int) -> torch.Tensor:
    """Position ids: each row starts at a random absolute position, so all positions get trained."""
    off = rng.integers(0, max_pos - length + 1, size=(batch, 1))
    return torch.from_numpy(off + np.arange(length)[None])


def text_batch(
    stream: np.ndarray, rng: np.random.Generator, batch: int, length: int, max_pos: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random windows of the text stream; every next-token prediction counts."""
    starts = rng.integers(0, len(stream) - length - 1, size=batch)
    x = torch.from_numpy(np.stack([stream[s : s + length] for s in starts]))
    mask = torch.ones(batch, length - 1, dtype=torch.bool)
    return x, mask, offsets(rng, batch, length, max_pos)


def repeat_batch(
    ids: np.ndarray, rng: np.random.Generator, batch: int, lmin: int, lmax: int, max_pos: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ``r + r`` per row (``len(r)`` in lmin..lmax; shorter rows are padded with random ids).

    The loss mask covers the second copy (predicting its 2nd token onwards).
    """
    spans = rng.integers(lmin, lmax + 1, size=batch)
    length = int(2 * spans.max())
    x = ids[rng.integers(0, len(ids), size=(batch, length))]
    mask = np.zeros((batch, length - 1), dtype=bool)
    for b, span in enumerate(spans):
        x[b, span : 2 * span] = x[b, :span]
        mask[b, span : 2 * span - 1] = True
    return torch.from_numpy(x), torch.from_numpy(mask), offsets(rng, batch, length, max_pos)


def sampled_loss(
    model: GPT2LMHeadModel,
    x: torch.Tensor,
    mask: torch.Tensor,
    pos: torch.Tensor,
    negatives: np.ndarray,
) -> torch.Tensor:
    """Next-token cross-entropy over the batch's own ids plus ``negatives`` (not the full vocabulary)."""
    out = model.transformer(input_ids=x, position_ids=pos)
    hidden = out.last_hidden_state[:, :-1][mask]
    targets = x[:, 1:][mask]
    cand, inverse = torch.unique(
        torch.cat([x.flatten(), torch.from_numpy(negatives)]), return_inverse=True
    )
    target_idx = inverse[: x.numel()].view_as(x)[:, 1:][mask]
    logits = hidden @ model.transformer.wte.weight[cand].T
    assert torch.equal(cand[target_idx], targets)
    return F.cross_entropy(logits, target_idx)


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
    rows = [f"{name:<36}" + "".join(f"   h{h}  " for h in range(scores.shape[1]))]
    rows += [
        f"  layer {layer:<28}" + "".join(f"{v:7.3f} " for v in scores[layer].tolist())
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
    seed: int,
    full: bool = False,
    probe_windows: list[list[int]] | None = None,
) -> dict[str, float]:
    """Print per-head tables (if ``full``) and return the headline numbers."""
    model.eval()
    prev = prev_token_scores(model, prompts)
    res: dict[str, float] = {"prev": best(prev)[0]}
    if full:
        print(head_table("previous-token (held-out fortunes)", prev))
        if probe_windows:
            probe_prev = prev_token_scores(model, probe_windows)
            res["prev_probe_text"] = best(probe_prev)[0]
            print(head_table("previous-token (probe_text.txt)", probe_prev))
    spans = (10, 20, 24, 40) if full else (20,)
    for span in spans:
        ind = induction_scores(model, held_ids, span, 16, seed, losses=True)
        res[f"ind{span}"] = best(ind["induction"])[0]
        res[f"loss1_{span}"] = float(ind["loss_first"])
        res[f"loss2_{span}"] = float(ind["loss_second"])
        if full:
            print(head_table(f"induction P={span}, held-out ids", ind["induction"]))
            print(head_table(f"duplicate P={span}, held-out ids", ind["duplicate"]))
            print(
                f"  best induction {best(ind['induction'])}, full-vocab loss first copy "
                f"{res[f'loss1_{span}']:.3f}, second copy {res[f'loss2_{span}']:.3f}"
            )
    if full:
        ordinary = np.arange(0, EOS)
        ind = induction_scores(model, ordinary, 24, 16, seed + 1)
        res["ind24_any"] = best(ind["induction"])[0]
        res["loss1_any"], res["loss2_any"] = float(ind["loss_first"]), float(ind["loss_second"])
        print(head_table("induction P=24, any ids 0..50255", ind["induction"]))
        print(
            f"  best induction {best(ind['induction'])}, full-vocab loss first copy {res['loss1_any']:.3f}, "
            f"second copy {res['loss2_any']:.3f}"
        )
        print(f"  best previous-token {best(prev)}")
    model.train()
    return res


def save(model: GPT2LMHeadModel, out: Path, tokenizer_dir: Path, note: dict[str, object]) -> None:
    """Write config + fp16 safetensors + a small tokenizer config (vocab/merges copied as they are)."""
    out.mkdir(parents=True, exist_ok=True)
    model.config.lmscope_demo = note
    model.half().save_pretrained(out, safe_serialization=True)
    model.float()
    if tokenizer_dir.resolve() != out.resolve():
        for name in TOKENIZER_FILES:
            shutil.copyfile(tokenizer_dir / name, out / name)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("lmscope/demo_model"))
    ap.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="folder with vocab.json + merges.txt (default: --out)",
    )
    ap.add_argument(
        "--probe-text",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "lmscope" / "core" / "probe_text.txt",
        help="extra text for the final previous-token score (skipped if missing)",
    )
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--emb-std", type=float, default=0.2, help="std of the frozen token embedding")
    ap.add_argument(
        "--emb-dims",
        type=int,
        default=40,
        help="the token embedding lives in the first this many dims",
    )
    ap.add_argument(
        "--pos-dims",
        type=int,
        default=40,
        help="dims (after the token's) of the sinusoidal position init",
    )
    ap.add_argument(
        "--max-pos", type=int, default=NPOS, help="row offsets keep positions below this"
    )
    ap.add_argument("--held", type=int, default=8000, help="ids held out of training entirely")
    ap.add_argument("--negatives", type=int, default=2048, help="extra softmax candidates per step")
    ap.add_argument("--text-len", type=int, default=64, help="tokens per text window")
    ap.add_argument("--span-min", type=int, default=4, help="shortest r in r + r")
    ap.add_argument("--span-max", type=int, default=24, help="longest r in r + r")
    ap.add_argument("--phase-text", type=int, default=2000, help="phase 1 steps (text only)")
    ap.add_argument(
        "--phase-rr", type=int, default=2500, help="phase 2 steps (r + r with some text)"
    )
    ap.add_argument(
        "--text-share", type=float, default=0.2, help="share of text batches in phase 2"
    )
    ap.add_argument("--eval-every", type=int, default=200)
    args = ap.parse_args()
    tokenizer_dir = args.tokenizer or args.out
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    start = time.time()
    print(f"args: {vars(args)}", flush=True)

    tok = GPT2TokenizerFast.from_pretrained(tokenizer_dir)
    stream, held = load_fortunes(tok, rng)
    prompts = [p for p in held if 30 <= len(p) <= 100][:24]
    probe_windows: list[list[int]] = []
    if args.probe_text.is_file():
        text: list[int] = []
        for passage in args.probe_text.read_text(encoding="utf-8").split("\n\n"):
            text += tok.encode((" " if text else "") + passage.strip())
        probe_windows = [text[k : k + 48] for k in range(0, len(text) - 47, 48)][:8]
    text_ids = np.unique(stream)
    held_ids = np.sort(rng.choice(np.setdiff1d(np.arange(EOS), text_ids), args.held, replace=False))
    train_ids = np.setdiff1d(np.arange(VOCAB), held_ids)  # random sequences and softmax negatives
    rand_ids = train_ids[train_ids != EOS]
    print(
        f"fortunes: {len(stream)} training tokens ({len(text_ids)} distinct ids), {len(prompts)} held-out "
        f"prompts; {len(held_ids)} held-out ids (never in training), {len(rand_ids)} ids for r + r",
        flush=True,
    )

    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=NPOS,
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
    tr = model.transformer
    k, nd = args.emb_dims, args.pos_dims
    with torch.no_grad():
        tr.wte.weight.normal_(0.0, args.emb_std)
        tr.wte.weight[:, k:] = 0.0
        n = nd // 2
        freqs = torch.logspace(math.log10(0.05), math.log10(3.0), n)
        angle = torch.arange(NPOS, dtype=torch.float32)[:, None] * freqs
        tr.wpe.weight.zero_()
        tr.wpe.weight[:, k : k + nd : 2] = torch.cos(angle) / math.sqrt(n)
        tr.wpe.weight[:, k + 1 : k + nd : 2] = torch.sin(angle) / math.sqrt(n)
    tr.wte.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.98))
    total = args.phase_text + args.phase_rr
    history: list[str] = []

    for step in range(total):
        if step < args.phase_text:
            lr = args.lr * min(1.0, (step + 1) / args.warmup)
            kind = "text"
        else:
            i = step - args.phase_text
            lr = args.lr * min(1.0, (i + 1) / args.warmup)
            lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / args.phase_rr))
            kind = "text" if rng.random() < args.text_share else "rr"
        if step == args.phase_text:
            print(
                f"== phase 2 (r + r, text share {args.text_share}): {args.phase_rr} steps",
                flush=True,
            )
        elif step == 0:
            print(f"== phase 1 (text): {args.phase_text} steps", flush=True)
        for group in opt.param_groups:
            group["lr"] = lr
        if kind == "text":
            x, mask, pos = text_batch(stream, rng, args.batch, args.text_len, args.max_pos)
        else:
            x, mask, pos = repeat_batch(
                rand_ids, rng, args.batch, args.span_min, args.span_max, args.max_pos
            )
        negatives = rng.choice(train_ids, size=args.negatives, replace=False)
        loss = sampled_loss(model, x, mask, pos, negatives)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % args.eval_every == 0:
            r = evaluate(model, prompts, held_ids, args.seed + 1000)
            line = (
                f"step {step + 1:5d}  {kind:<4} loss {loss.item():6.3f}  lr {lr:.2e}  {time.time() - start:5.0f}s  "
                + "  ".join(f"{key} {v:.3f}" for key, v in r.items())
            )
            history.append(line)
            print(line, flush=True)

    train_time = time.time() - start
    print(
        f"training wall time {train_time:.0f}s ({args.phase_text} + {args.phase_rr} steps)",
        flush=True,
    )
    save(
        model,
        args.out,
        tokenizer_dir,
        {"seed": args.seed, "steps": total, "recipe": "scripts/train_demo_model.py"},
    )
    model = GPT2LMHeadModel.from_pretrained(
        args.out, attn_implementation="eager", dtype=torch.float32
    )
    AutoTokenizer.from_pretrained(args.out)
    res = evaluate(
        model, prompts, held_ids, args.seed + 1000, full=True, probe_windows=probe_windows
    )
    size = sum(p.stat().st_size for p in args.out.iterdir())
    checks = {
        "previous-token score >= 0.5 (held-out fortunes)": res["prev"] >= 0.5,
        "induction score >= 0.5 (P=20, held-out ids never seen in training)": res["ind20"] >= 0.5,
        "induction score >= 0.5 (P=24, any ids 0..50255)": res["ind24_any"] >= 0.5,
        "second-copy loss < 0.5 x first copy (full vocabulary, P=20, held-out ids)": res["loss2_20"]
        < 0.5 * res["loss1_20"],
        "folder size <= 15,000,000 bytes": size <= 15_000_000,
    }
    if probe_windows:
        checks["previous-token score >= 0.5 (probe_text.txt)"] = res["prev_probe_text"] >= 0.5
    print(
        f"folder {args.out}: {size} bytes; training {train_time:.0f}s, total {time.time() - start:.0f}s"
    )
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
