"""`lmscope run` (an experiment over a dataset, stored and resumable) and `lmscope runs` (the
index of runs, and one run's summary): thin wrappers over `lmscope.runs`."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .core.devices import DTYPES
from .core.errors import LmscopeError

RUN_HELP = "run an experiment over a dataset of prompts; stored, resumable (see lmscope runs)"
PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


def add_parsers(sub, model_help: str) -> None:
    from .runs.spec import BATCH_SIZE, EXPERIMENTS, SETTINGS

    p = sub.add_parser("run", help=RUN_HELP, description=RUN_HELP)
    p.add_argument("--model", required=True, help=model_help)
    where = p.add_argument_group("where each worker runs the model")
    where.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps: as for "
                       "every command (default: auto, a GPU where there is one)")  # fmt: skip
    where.add_argument("--dtype", default="auto", choices=("auto", *DTYPES),
                       help="auto: bfloat16 on a GPU that supports it, float32 on the CPU "
                       "(default: auto)")  # fmt: skip
    p.add_argument(
        "--data",
        required=True,
        help="JSONL, CSV or Parquet file, or a folder saved by Hugging Face datasets; "
        "columns prompt and, for patch, corrupt; answer and wrong where used",
    )
    p.add_argument(
        "--experiment",
        required=True,
        choices=EXPERIMENTS,
        help="what is measured on every row (required)",
    )
    p.add_argument(
        "--out", required=True, help="the run's folder; the same arguments again resume it"
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: actors of a Ray cluster",
    )
    p.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    p.add_argument("--limit", type=int, help="only the first N rows (default: all)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help=f"rows per batch and per stored part (default {BATCH_SIZE})",
    )
    p.add_argument(
        "--workers", type=int, help="Ray actors (default: one per GPU, else one per CPU)"
    )
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    for name, settings in _settings_by_name(SETTINGS).items():
        p.add_argument(f"--{name.replace('_', '-')}", **_flag(name, settings))
    p = sub.add_parser("runs", help="list stored runs, or show one (lmscope runs RUN)")
    p.add_argument("run", nargs="?", help="a run's id (or its start) or folder: show it")
    p.add_argument("--model", help="only runs of this model")
    p.add_argument("--experiment", choices=EXPERIMENTS, help="only runs of this experiment")
    p.add_argument("--status", help="only runs in this state (complete, running, stopped, ...)")
    p.add_argument("--top", type=int, default=5, help="cells shown per quantity (default 5)")
    p.add_argument("--json", action="store_true", help="print as JSON")


def _settings_by_name(table: dict) -> dict[str, list[tuple[str, object]]]:
    """Each setting's name, with the experiments taking it and their settings."""
    merged: dict[str, list] = {}
    for experiment, settings in table.items():
        for setting in settings:
            merged.setdefault(setting.name, []).append((experiment, setting))
    return merged


def _flag(name: str, users: list) -> dict:
    """argparse arguments of one setting flag, its help naming each experiment's default."""
    setting = users[0][1]
    defaults = "; ".join(
        exp
        + (": required" if s.required else "" if s.default is None else f": default {s.default}")
        for exp, s in users
    )
    flag: dict = {"help": f"{setting.help} ({defaults})", "default": None}
    if setting.count > 1:
        flag |= {"nargs": setting.count, "metavar": ("A", "B")}
    elif setting.kind is not str:
        flag["type"] = setting.kind
    if setting.choices:
        flag["choices"] = setting.choices
    return flag


def run_command(args: argparse.Namespace, loading) -> int:
    """`lmscope run`; `loading` hears the model's loading steps (the model loads only if rows
    are missing)."""
    from .runs import RunSpec, execute
    from .runs.spec import SETTINGS

    names = {s.name for settings in SETTINGS.values() for s in settings}
    settings = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    spec = RunSpec(
        model=args.model,
        data=args.data,
        experiment=args.experiment,
        out=args.out,
        settings=settings,
        limit=args.limit,
        engine=args.engine,
        ray_address=args.ray_address,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        dtype=args.dtype,
    ).checked()
    shown = _Progress(args.experiment)
    store = execute(spec, on_progress=shown, loading=loading)
    shown.end()
    return show(store, args.json, 5)


class _Progress:
    """The run's progress on stderr: one line redrawn on a terminal, else every few seconds."""

    def __init__(self, label: str) -> None:
        self.label, self.tty, self.last = label, sys.stderr.isatty(), 0.0

    def __call__(self, progress) -> None:
        line = f"{self.label}: {progress.line()}"
        if self.tty:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        elif time.monotonic() - self.last >= PROGRESS_EVERY or progress.state != "running":
            print(line, file=sys.stderr, flush=True)
            self.last = time.monotonic()

    def end(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def runs_command(args: argparse.Namespace) -> int:
    from .runs import RunIndex, RunStore

    index = RunIndex()
    if args.run is not None:
        found = index.get(args.run)
        if found is None:
            raise LmscopeError(f"No run {args.run!r} in {index.path} (lmscope runs lists them).")
        return show(RunStore(found["path"]), args.json, args.top)
    runs = index.runs(model=args.model, experiment=args.experiment, status=args.status)
    if args.json:
        print(json.dumps(runs, ensure_ascii=False))
        return 0
    if not runs:
        print(f"No runs in {index.path}.")
        return 0
    print(
        f"{'id':12s}  {'status':11s}  {'experiment':13s}  {'prompts':>13s}  {'updated':25s}  model / folder"
    )
    for r in runs:
        counts = f"{r['done']}/{r['total']}" + (f" -{r['skipped']}" if r["skipped"] else "")
        print(
            f"{r['id']:12s}  {r['status']:11s}  {r['experiment']:13s}  {counts:>13s}  "
            f"{r['updated']:25s}  {r['model']}\n{'':71s}{r['path']}"
        )
    return 0


def show(store, as_json: bool, top: int) -> int:
    """A run's summary: what ran, its counts, skipped rows, each quantity's strongest cells."""
    from .runs import aggregates

    manifest = store.manifest()
    if manifest is None:
        raise LmscopeError(f"{store.path} holds no run.")
    done = manifest["status"] == "complete"
    summary = aggregates(store) if done else None
    if as_json:
        doc = {"path": str(store.path), "manifest": manifest, "skipped": store.skipped()}
        print(
            json.dumps(
                doc | {"aggregates": summary.to_dict() if summary else None}, ensure_ascii=False
            )
        )
        return 0
    counts, model = manifest["counts"], manifest["model"]
    print(
        f"{manifest['experiment']} on {model.get('public_id', model['id'])}, "
        f"{manifest['data']['path']}: {manifest['status']}"
    )
    print(
        f"  {counts['done']:,} of {counts['total']:,} prompts, {counts['skipped']:,} skipped; "
        f"settings {json.dumps(manifest['settings'])}; run {manifest['id']} in {store.path}"
    )
    for row, reason in store.skipped()[:10]:
        print(f"  row {row} skipped: {reason}")
    if len(store.skipped()) > 10:
        print(f"  ... {len(store.skipped()) - 10} more (lmscope runs {manifest['id']} --json)")
    if summary is not None:
        _print_aggregates(summary, manifest["cells"], top)
    return 0


def _print_aggregates(summary, cells: dict, top: int) -> None:
    table = summary.cells.to_pylist()
    for quantity, axes in cells.items():
        rows = [r for r in table if r["quantity"] == quantity]
        if not rows:
            continue
        rows.sort(key=lambda r: -abs(r["mean"]))
        print(f"\n{quantity}: mean over prompts [95% interval] (n), strongest first")
        for r in rows[:top]:
            print(
                f"  {_cell_name(r, axes):16s} {r['mean']:10.4f}  [{r['ci_low']:.4f}, "
                f"{r['ci_high']:.4f}]  ({r['n']})"
            )
    by_quantity: dict[str, list] = {}
    for r in summary.top_k.to_pylist():
        by_quantity.setdefault(r["quantity"], []).append(r)
    for quantity, rows in by_quantity.items():
        names = ", ".join(
            f"{_cell_name(r, cells[quantity])} {r['frequency']:.0%}" for r in rows[:top]
        )
        print(f"\n{quantity}: most often among a prompt's top {summary.k}: {names}")
    if summary.agreement:
        a = summary.agreement
        print(
            f"\nAtP vs exact over {a['pairs']:,} (prompt, cell) pairs: Spearman "
            f"{_number(a['spearman'])}, Pearson {_number(a['pearson'])}, same sign "
            f"{a['same_sign']:.0%}, mean |difference| {a['mean_abs_difference']:.4g}"
        )


def _cell_name(row: dict, axes: list) -> str:
    """`L3-H5`, `L3 @ 5` (`@ -1`: counted from the end), `L3`, or `prompt` for a per-prompt number."""
    layer, column = row["layer"], row["column"]
    if axes[1] == "head":
        return f"L{layer}-H{column}"
    if axes[1] == "position":
        return f"L{layer} @ {column}"
    return f"L{layer}" if axes[0] else "prompt"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
