"""The package's layers, read from its imports: the core and the experiments import no front-end,
the dashboard builds on the service and never on the API or the web server, and no two modules
import each other (directly or around a circle), in functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "lmscope"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every lmscope module `name` imports, at any depth of its code."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import submodule` imports the submodule; the package's own code
            # counts only where a name is not a submodule (an attribute of its __init__)
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = subs if all(sub in MODULES for sub in subs) else [base, *subs]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    return found - {name}


GRAPH = {name: imports(name) for name in MODULES}


def reaches(start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        here = stack.pop()
        for nxt in GRAPH[here]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("lmscope.core", ("lmscope.experiments", "lmscope.service", "lmscope.api", "lmscope.web",
                          "lmscope.dashboard", "lmscope.cli")),
        ("lmscope.experiments", ("lmscope.service", "lmscope.api", "lmscope.web",
                                 "lmscope.dashboard", "lmscope.cli")),
        ("lmscope.service", ("lmscope.api", "lmscope.web", "lmscope.dashboard", "lmscope.cli")),
        ("lmscope.api", ("lmscope.web", "lmscope.dashboard", "lmscope.cli")),
        ("lmscope.dashboard", ("lmscope.api", "lmscope.web", "lmscope.cli")),
    ],
)  # fmt: skip
def test_each_layer_imports_only_the_layers_below_it(layer, forbidden):
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name == layer or name.startswith(layer + ".")
        for target in targets
        if target.startswith(forbidden)
    )
    assert not wrong, wrong


def test_no_module_imports_itself_around_a_circle():
    circles = sorted(f"{a} <-> {b}" for a in GRAPH for b in GRAPH[a] if a < b and reaches(b, a))
    assert not circles, circles


def test_the_graph_sees_imports_inside_functions():
    # the CLI imports the web server inside its `serve` command (Dash loads only for it)
    assert "lmscope.web.server" in GRAPH["lmscope.cli"]


def test_the_dashboard_runs_no_forward_pass_of_its_own():
    """Passes, patches and hooks live in the library: no dashboard module imports them."""
    passes = ("lmscope.core.trace", "lmscope.core.attention")
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name.startswith("lmscope.dashboard")
        for target in targets
        if target in passes
    )
    assert not wrong, wrong
