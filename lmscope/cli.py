"""The `lmscope` command: thin wrappers over the library. Errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .core.analysis import Analysis, analyze
from .core.catalog import CATALOG, DEMO_ID, hub_aliases
from .core.errors import LmscopeError
from .core.loading import load_model

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = fn
        return fn

    return register


def _progress(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


def load(model_id: str):
    """The operator's model: hub id, `demo`, or a local folder."""
    return load_model(model_id, allow_local_path=True, progress=_progress)


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
    analysis = analyze(load(args.model), args.prompt)
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
        print(f"{entry.id:32s} {entry.name:28s} {state:10s} {entry.description}")
    print(
        "\nAny other Hugging Face causal-LM id works too (gpt2-large, gpt2-xl, EleutherAI/pythia-70m, ...)."
    )
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lmscope", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("analyze", help="analyze a prompt: tokens, predictions, heads, model card")
    p.add_argument("--model", default="gpt2", help="hub id, 'demo', or a local folder")
    p.add_argument("--prompt", required=True)
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    sub.add_parser("models", help="list the catalog and what is cached")
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
