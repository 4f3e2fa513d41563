"""The `lmscope` command: thin wrappers over the library. Errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .cli_runs import add_parsers as add_run_parsers
from .core.analysis import Analysis, analyze
from .core.catalog import CATALOG, DEMO_ID, hub_aliases, installed, terms_path
from .core.devices import DEVICE_MAPS, DEVICES, DTYPES, Placement, placement
from .core.errors import LmscopeError
from .core.loading import load_model
from .experiments.ablation import ablate
from .experiments.ablation_atp import AblationEstimate, head_scan
from .experiments.attribution import token_attribution
from .experiments.defaults import default
from .experiments.generation import MAX_NEW_TOKENS, Generation, GenerationSettings, generate
from .experiments.inputs import parse_heads
from .experiments.patching import patch
from .experiments.steering import DEPTH, steer

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
MODEL_HELP = "hub id, 'demo', catalog id (lmscope models), local folder or .gguf file"


def command(name: str):
    def register(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = fn
        return fn

    return register


def _progress(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


def add_model_options(p: argparse.ArgumentParser, default: str | None = "gpt2") -> None:
    """--model and where and how it runs (--device, --dtype, --device-map, --max-memory,
    --offload-folder): every command that loads a model takes them the same way, read back by
    `placement_of` and `load`."""
    p.add_argument("--model", default=default, help=MODEL_HELP)
    where = p.add_argument_group("where the model runs")
    where.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                       help="auto: the first GPU where there is one, else the CPU (default: auto)")  # fmt: skip
    where.add_argument("--dtype", default="auto", choices=("auto", *DTYPES),
                       help="auto: bfloat16 on a GPU that supports it (else float16), float32 on "
                       "the CPU (default: auto)")  # fmt: skip
    where.add_argument("--device-map", choices=DEVICE_MAPS,
                       help="spread a model too large for one device over the GPUs, the CPU (and "
                       "disk) with accelerate: auto fills the first GPU first, balanced spreads "
                       "the layers evenly")  # fmt: skip
    where.add_argument("--max-memory", metavar="DEV=SIZE,...",
                       help="each device's budget for --device-map, e.g. 0=20GiB,1=20GiB,cpu=64GiB "
                       "(default: what each device has free)")  # fmt: skip
    where.add_argument("--offload-folder", metavar="DIR",
                       help="with --device-map: weights that fit nowhere go to this folder (slow)")  # fmt: skip


def placement_of(args: argparse.Namespace) -> Placement:
    """The placement the model options of `add_model_options` ask for, checked on this machine."""
    return placement(args.device, args.dtype, args.device_map, args.max_memory, args.offload_folder)


def load(args: argparse.Namespace):
    """The operator's model (`--model`: hub id, `demo`, a catalog id, a local folder or a .gguf
    file) where the model options put it; a failed parity check (core/parity.py) is printed as
    a warning on stderr."""
    lm = load_model(
        args.model, allow_local_path=True, progress=_progress, placement=placement_of(args)
    )
    if lm.card.parity_ok is False:
        print(f"warning: {lm.card.parity}", file=sys.stderr, flush=True)
    return lm


def print_analysis(analysis: Analysis) -> None:
    card = analysis.lm.card
    for notice in analysis.notices:
        print(f"note: {notice}")
    print(
        f"{card.name}: {card.parameters:,} parameters, {card.layers} layers x "
        f"{card.heads_per_layer} heads ({card.total_heads} total), d={card.hidden_size}, "
        f"MLP {card.mlp_size}, vocab {card.vocab_size:,}, {card.positional_encoding} positions, "
        f"context {card.context_length:,}, {card.normalization}, {card.activation}"
    )
    print(f"runs in {card.placement}")
    if card.parity:
        print(f"{'warning: ' if card.parity_ok is False else ''}{card.parity}.")
    print(f"\n{len(analysis.tokens)} tokens:")
    print("  " + "  ".join(f"{t.display}[{t.id}]" for t in analysis.tokens))
    print("\nnext token:")
    for p in analysis.top_predictions(10):
        print(f"  {p.probability:8.2%}  {p.text!r}")
    summary = analysis.heads.summary()
    print("\nheads on this prompt:")
    for category, heads in summary.items():
        if heads and category != "other":
            print(f"  {category:16s} {', '.join(heads[:8])}{' …' if len(heads) > 8 else ''}")


@command("analyze")
def _analyze(args: argparse.Namespace) -> int:
    analysis = analyze(load(args), args.prompt)
    if args.json:
        print(json.dumps(analysis.to_dict(), ensure_ascii=False))
    else:
        print_analysis(analysis)
    return 0


@command("models")
def _models(args: argparse.Namespace) -> int:
    from huggingface_hub import try_to_load_from_cache

    for entry in CATALOG:
        cached = entry.id == DEMO_ID or any(
            isinstance(try_to_load_from_cache(alias, "config.json"), str)
            for alias in hub_aliases(entry.id)
        )
        state = "bundled" if entry.id == DEMO_ID else ("cached" if cached else "not cached")
        if entry.package:
            state = "installed" if installed(entry) else "not installed"
        print(f"{entry.id:32s} {entry.name:32s} {state:13s} {entry.description}")
        if state == "not installed":
            print(f"{'':32s} install it with: {entry.install}")
        if entry.terms:
            terms = terms_path(entry)
            print(f"{'':32s} terms: {entry.terms}{f', {terms}' if terms else ''}")
    print(
        "\nAny other Hugging Face causal-LM id works too (gpt2-large, gpt2-xl, EleutherAI/pythia-70m, ...)."
    )
    return 0


@command("serve")
def _serve(args: argparse.Namespace) -> int:
    from .web.server import serve  # Dash is imported only for this command

    return serve(args.model, args.host, args.port, args.allowed_host, placement_of(args))


@command("heads")
def _heads(args: argparse.Namespace) -> int:
    from .core.heads import CATEGORIES, LABELS, SCORES
    from .core.profile import active_roles, compare, head_profile

    lm = load(args)
    profile = head_profile(lm)
    analysis = analyze(lm, args.prompt) if args.prompt is not None else None
    if args.json:
        document = {"model": lm.card.to_dict() | {"revision": lm.revision}}
        document["profile"] = profile.to_dict()
        if analysis is not None:
            document["prompt"] = {
                "text": args.prompt,
                "heads": analysis.heads.to_dict(),
                "roles": [[r.to_dict() for r in row] for row in compare(profile, analysis.heads)],
                "active_roles": active_roles(profile, analysis.heads),
            }
        print(json.dumps(document, ensure_ascii=False))
        return 0
    summary, per_layer = profile.summary(), profile.counts_per_layer()
    print(f"{lm.card.name}: head profile, {lm.layers} layers x {lm.heads} heads")
    for category in CATEGORIES:
        names = summary[category]
        scores = [_head_score(profile, category, name) for name in names]
        shown = ", ".join(f"{n} {s}" if s else n for n, s in zip(names, scores, strict=True))
        print(f"  {LABELS[category]:34s} {len(names):3d}  {shown}")
    print("\nheads per layer:")
    print(f"  {'':34s} " + " ".join(f"L{l:<3d}" for l in range(lm.layers)))
    for category in CATEGORIES:
        print(f"  {LABELS[category]:34s} " + " ".join(f"{n:<4d}" for n in per_layer[category]))
    by_depth = profile.counts_by_depth()
    print("\nheads per fifth of the model's depth (compare models of different depth):")
    print(f"  {'':34s} " + " ".join(f"{f'{20 * b}-{20 * b + 20}%':<8s}" for b in range(5)))
    for category in CATEGORIES:
        print(f"  {LABELS[category]:34s} " + " ".join(f"{n:<8d}" for n in by_depth[category]))
    if analysis is not None:
        active = active_roles(profile, analysis.heads)
        print(
            f"\non this prompt ({len(analysis.tokens)} tokens), heads playing their general role:"
        )
        states = [r.state for row in compare(profile, analysis.heads) for r in row]
        roles = [r.role for row in compare(profile, analysis.heads) for r in row]
        for category in SCORES:
            mine = {st for st, role in zip(states, roles, strict=True) if role == category}
            if not analysis.heads.applicable(category):
                state = "not applicable (no repeated tokens)"
            elif mine == {"too little evidence"}:
                state = "too little evidence on this prompt"
            else:
                state = ", ".join(active[category]) or "none"
            print(f"  {LABELS[category]:34s} {state}")
    return 0


def _head_score(report, category: str, name: str) -> str:
    if category in ("other", "insufficient"):
        return ""
    layer, head = (int(part[1:]) for part in name.split("-"))
    return f"{report.scores[category][layer][head]:.2f}"


def print_generation(result: Generation) -> None:
    print(f"{result.prompt}[{result.text}]  (stopped: {result.stopped})")
    for i, step in enumerate(result.steps):
        others = ", ".join(f"{p.text!r} {p.probability:.2%}" for p in step.alternatives)
        chosen = step.chosen
        print(f"  {i + 1:2d}. {chosen.text!r:16s} {chosen.probability:7.2%}  rank {step.rank}")
        print(f"      top: {others}")


@command("generate")
def _generate(args: argparse.Namespace) -> int:
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    sampling = {k: v for k, v in sampling.items() if v is not None}
    if args.seed is not None or sampling:
        if args.beams is not None:
            raise LmscopeError("Choose beam search (--beams) or sampling options, not both.")
        settings = GenerationSettings("sample", args.max_new_tokens, seed=args.seed, **sampling)
    elif args.beams is not None:
        settings = GenerationSettings("beam", args.max_new_tokens, beams=args.beams)
    else:
        settings = GenerationSettings("greedy", args.max_new_tokens)
    result = generate(load(args), args.prompt, settings)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print_generation(result)
        if result.seed is not None:
            print(f"seed {result.seed} (pass --seed {result.seed} to repeat)")
    return 0


@command("ablate")
def _ablate(args: argparse.Namespace) -> int:
    heads = parse_heads(args.heads)
    result = ablate(
        load(args),
        args.prompt,
        heads,
        args.mode,
        target=args.target,
        wrong=args.wrong,
        new_tokens=args.new_tokens,
    )
    doc = json_or_notes(result, args.json)
    if doc is None:
        return 0
    print(f"{args.mode} ablation of {', '.join(doc['head_names'])}\n")
    print_side_by_side(result, "before", "after")
    t = doc["target"]
    print(
        f"\ntarget {t['text']!r}: {t['probability_before']:.2%} -> {t['probability_after']:.2%}; "
        f"KL(before || after) = {doc['kl_divergence']:.4f} nats"
    )
    m = doc["metric"]
    print(f"{m['label']}: {m['before']:.4f} -> {m['after']:.4f} (change {m['change']:+.4f})")
    print_continuations(result, "before", "after")
    return 0


def json_or_notes(result, as_json: bool) -> dict | None:
    """Print `result` as JSON (and answer None), or print its notices and answer its document."""
    doc = result.to_dict()
    if as_json:
        print(json.dumps(doc, ensure_ascii=False))
        return None
    for notice in doc["notices"]:
        print(f"note: {notice}")
    return doc


def print_side_by_side(result, before: str, after: str) -> None:
    """An intervention's top next tokens, before and after it, in two columns."""
    print(f"  {before:>28s}   {after:>28s}")
    for b, a in zip(result.top("before"), result.top("after"), strict=True):
        print(f"  {b.text!r:>19s} {b.probability:7.2%}   {a.text!r:>19s} {a.probability:7.2%}")


def print_continuations(result, before: str, after: str) -> None:
    if result.generation_before and result.generation_after:
        width = max(len(before), len(after)) + 1
        print(f"\ncontinuation {before + ':':{width}s} {result.generation_before.text!r}")
        print(f"continuation {after + ':':{width}s} {result.generation_after.text!r}")


@command("steer")
def _steer(args: argparse.Namespace) -> int:

    result = steer(
        load(args),
        args.prompt,
        args.layer,
        args.coefficient,
        prompts=args.from_prompts,
        token=args.token,
        position=args.position,
        new_tokens=args.new_tokens,
    )
    doc = json_or_notes(result, args.json)
    if doc is None:
        return 0
    print(
        f"steering at layer {doc['layer']} with {doc['coefficient']:g} x {result.vector.description}"
    )
    print(
        f"  added length {doc['added_norm']:g}; the stream there is {doc['stream_norm']:g} long\n"
    )
    print_side_by_side(result, "without", "with the vector")
    print(f"\nKL(without || with) = {doc['kl_divergence']:.4f} nats")
    print_continuations(result, "without", "with")
    return 0


@command("patch")
def _patch(args: argparse.Namespace) -> int:

    result = patch(
        load(args),
        args.clean,
        args.corrupt,
        args.answer,
        args.wrong,
        component=args.component,
        direction=args.direction,
        scan=args.scan,
        check=args.check,
    )
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print_patching(result)
    return 0


def print_patching(result) -> None:
    p = result.pair
    for notice in p.notices:
        print(f"note: {notice}")
    print(
        f"{result.direction} {result.component} patching of {p.metric.label}: clean "
        f"{p.clean_metric:.4f}, corrupted {p.corrupt_metric:.4f} (shown as 1 and 0)"
    )
    columns = result.columns()
    axis = "heads" if result.component == "heads" else "tokens"
    for name, values in (("exact", result.exact), ("AtP estimate", result.atp)):
        print_grid(f"{name} (rows: layers; columns: {axis})", columns, values)
    checked = [(result.cell_name(tuple(c["cell"])), c["atp"], c["exact"]) for c in result.checked]
    print_checked("AtP's strongest cells, patched exactly:", checked)
    print_agreement(result.agreement())


def print_grid(title: str, columns: list[str], values) -> None:
    """A `(layers, columns)` tensor as rows of numbers under a title (nothing when None)."""
    if values is None:
        return
    print(f"\n{title}")
    print("      " + " ".join(f"{c[:8]:>8s}" for c in columns))
    for layer, row in enumerate(values.tolist()):
        print(f"  L{layer:<3d}" + " ".join(f"{v:8.3f}" for v in row))


def print_checked(title: str, rows: list[tuple[str, float, float]]) -> None:
    """AtP's strongest cells beside their exact values: (name, AtP, exact) per row."""
    if rows:
        print(f"\n{title}")
    for name, atp, exact in rows:
        print(f"  {name:28s} AtP {atp:8.3f}   exact {exact:8.3f}")


def print_agreement(agreement: dict | None) -> None:
    if agreement is not None:
        print(
            f"\nagreement: Spearman {agreement['spearman']}, top-{agreement['top_k']} overlap "
            f"{agreement['top_k_overlap']}/{agreement['top_k']}"
        )


@command("run")
def _run(args: argparse.Namespace) -> int:
    from .cli_runs import run_command

    return run_command(args, _progress)


@command("runs")
def _runs(args: argparse.Namespace) -> int:
    from .cli_runs import runs_command

    return runs_command(args)


@command("ablation-scan")
def _ablation_scan(args: argparse.Namespace) -> int:

    lm = load(args)
    result = head_scan(lm, args.prompt, args.mode, args.target, args.wrong, method=args.method,
                       check=args.check)  # fmt: skip
    doc = json_or_notes(result, args.json)
    if doc is None:
        return 0
    metric = doc["metric"]["label"]
    heads = [f"H{h}" for h in range(lm.heads)]
    title = f"{args.mode} ablation of each head alone, change in {metric}"
    if not isinstance(result, AblationEstimate):
        print(f"{title}: {doc['metric']['clean']:.4f} on the prompt")
        print_grid("exact (rows: layers; columns: heads)", heads, result.effect)
        return 0
    print(f"{title}: {result.base_metric:.4f} on the prompt")
    print_grid("exact (rows: layers; columns: heads)", heads, result.exact)
    print_grid("AtP estimate (rows: layers; columns: heads)", heads, result.atp)
    checked = [(c["name"], c["atp"], c["exact"]) for c in result.checked]
    print_checked("AtP's strongest heads, ablated exactly:", checked)
    print_agreement(result.agreement())
    return 0


@command("attribute")
def _attribute(args: argparse.Namespace) -> int:
    from .experiments.attribution import direct_logit_attribution

    lm = load(args)
    if args.tokens:
        result = token_attribution(lm, args.prompt, args.target, wrong=args.wrong,
                                   steps=args.steps)  # fmt: skip
        doc = json_or_notes(result, args.json)
        if doc is not None:
            print(f"token attribution of {result.metric.label} (converged: {result.valid})")
            values = zip(result.tokens, result.integrated_gradients.tolist(),
                         result.gradient_x_input.tolist(), strict=True)  # fmt: skip
            for token, ig, gxi in values:
                print(f"  {token.display!r:>20s}  integrated gradients {ig:+.4f}  "
                      f"gradient x input {gxi:+.4f}")  # fmt: skip
        return 0
    result = direct_logit_attribution(analyze(lm, args.prompt), args.target, args.wrong)
    doc = json_or_notes(result, args.json)
    if doc is not None:
        print(f"direct logit attribution of {result.label} = {result.logit:.4f}")
        heads = [f"H{h}" for h in range(lm.heads)]
        print_grid("heads (rows: layers)", heads, result.heads)
        print_grid("MLPs (one row per layer)", ["MLP"], result.mlps[:, None])
    return 0


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    from .experiments.comparison import compare

    first = load(args)
    second = load_model(args.other, allow_local_path=True, progress=_progress,
                        placement=placement_of(args))  # fmt: skip
    doc = compare(first, second, args.prompt).to_dict()
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
        return 0
    for side in doc["models"]:
        top = ", ".join(f"{p['text']!r} {p['probability']:.2%}" for p in side["predictions"][:5])
        print(f"{side['model']['name']}: {top}")
    same = "the same" if doc["same_top_prediction"] else "different"
    print(f"the two models make {same} top prediction")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lmscope", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("analyze", help="analyze a prompt: tokens, predictions, heads, model card")
    add_model_options(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    sub.add_parser("models", help="list the catalog and what is cached")
    p = sub.add_parser("heads", help="what each head does: the model's head profile by category")
    add_model_options(p)
    p.add_argument("--prompt", help="also show which heads play their role on this prompt")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")
    p = sub.add_parser("serve", help="open the dashboard (and the JSON API) in a browser")
    add_model_options(p, default=None)  # None: GPT-2 Small, else what is on this machine
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="also answer requests for this host name (repeatable); others get 421",
    )
    p = sub.add_parser("generate", help="continue a prompt, with the alternatives at each step")
    add_model_options(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=default(GenerationSettings, "max_new_tokens"),
                   help=f"1 to {MAX_NEW_TOKENS} (default: %(default)s)")  # fmt: skip
    p.add_argument("--beams", type=int, help="beam search with this many beams (1 to 5)")
    p.add_argument("--temperature", type=float, help="sample at this temperature (> 0)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens (0 = all)")
    p.add_argument("--top-p", type=float, help="sample from the smallest set with this mass")
    p.add_argument("--seed", type=int, help="sample, repeatably, with this seed")
    p.add_argument("--json", action="store_true", help="print the generation as JSON")
    p = sub.add_parser("ablate", help="remove heads; the next-token distribution before and after")
    add_model_options(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--heads", required=True, help="LAYER.HEAD, comma separated: 0.1,3.5")
    p.add_argument("--mode", choices=("zero", "mean"), default=default(ablate, "mode"),
                   help="what replaces the heads' outputs (default: %(default)s)")  # fmt: skip
    p.add_argument("--target", help="token to follow (default: the top prediction)")
    p.add_argument("--wrong", help="metric logit(target) - logit(wrong), e.g. --wrong ' John'")
    p.add_argument("--new-tokens", type=int, default=default(ablate, "new_tokens"),
                   help="greedy continuation length (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = sub.add_parser("ablation-scan", help="remove each head alone: exact, or estimated by AtP")
    add_model_options(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--mode", choices=("zero", "mean"), default=default(head_scan, "mode"),
                   help="what replaces each head's output (default: %(default)s)")  # fmt: skip
    p.add_argument("--target", help="token to follow (default: the top prediction)")
    p.add_argument("--wrong", help="metric logit(target) - logit(wrong), e.g. --wrong ' John'")
    p.add_argument("--method", choices=("atp", "exact", "both"), default=default(head_scan, "method"),
                   help="atp: one gradient estimates every head and its strongest are ablated "
                   "exactly; exact: each removed; both (default: %(default)s)")  # fmt: skip
    p.add_argument("--check", type=int, default=default(head_scan, "check"),
                   help="AtP's strongest heads ablated exactly (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = sub.add_parser(
        "steer", help="add a vector to the residual stream; predictions with and without"
    )
    add_model_options(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--layer", type=int, default=default(steer, "layer"),
                   help="the vector enters before this layer (default: "
                   f"{DEPTH:.0%} of the way through the model)")  # fmt: skip
    p.add_argument("--coefficient", type=float, default=default(steer, "coefficient"),
                   help="how many times the vector (default: %(default)s)")  # fmt: skip
    p.add_argument("--from-prompts", nargs=2, metavar=("A", "B"),
                   help="mean activation of A minus that of B (activation addition)")  # fmt: skip
    p.add_argument("--token", help="the unit unembedding direction of this token, e.g. ' love'")
    p.add_argument("--position", type=int, help="steer from this position on (default: all)")
    p.add_argument("--new-tokens", type=int, default=default(steer, "new_tokens"),
                   help="greedy continuation length (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = sub.add_parser("patch", help="activation patching between a clean and a corrupted prompt")
    add_model_options(p)
    p.add_argument("--clean", required=True, help="the clean prompt")
    p.add_argument("--corrupt", required=True, help="the corrupted prompt (same token count)")
    p.add_argument("--answer", help="the clean answer token (default: the clean top prediction)")
    p.add_argument("--wrong", help="metric logit(answer) - logit(wrong) (default: log p(answer))")
    p.add_argument("--scan", choices=("atp", "exact", "both"), default=default(patch, "scan"),
                   help="atp: attribution patching estimates every cell and its strongest are "
                   "patched exactly; exact: every cell patched; both (default: %(default)s)")  # fmt: skip
    p.add_argument("--component", choices=("resid", "attn", "mlp", "heads"),
                   default=default(patch, "component"), help="(default: %(default)s)")  # fmt: skip
    p.add_argument("--direction", choices=("denoising", "noising"),
                   default=default(patch, "direction"), help="(default: %(default)s)")  # fmt: skip
    p.add_argument("--check", type=int, default=default(patch, "check"),
                   help="AtP's strongest cells patched exactly (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = sub.add_parser("attribute", help="direct logit attribution per head and MLP (or, with "
                       "--tokens, per prompt token)")  # fmt: skip
    add_model_options(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--target", help="token to follow (default: the top prediction)")
    p.add_argument("--wrong", help="metric logit(target) - logit(wrong), e.g. --wrong ' John'")
    p.add_argument("--tokens", action="store_true",
                   help="score the prompt's tokens (integrated gradients, gradient x input)")  # fmt: skip
    p.add_argument("--steps", type=int, default=default(token_attribution, "steps"),
                   help="with --tokens: integrated gradients' path points (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = sub.add_parser("compare", help="a second model on the same prompt: predictions, heads")
    add_model_options(p)
    p.add_argument("--other", required=True, help="the second model (" + MODEL_HELP + ")")
    p.add_argument("--prompt", required=True)
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    add_run_parsers(sub, MODEL_HELP)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LmscopeError as error:
        print(f"lmscope: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
