"""Imports flow one way, and the module graph has no cycles. The walker reads source with `ast` instead of
importing it, so it sees every import statement -- including the function-level ones that only exist to
dodge a cycle at import time.

The layers, lowest first (a module may import only from its own layer or lower ones):

    trainables       the training function, models, data, defaults: knows nothing of Ray Tune or sweeps
    sweeps.results   the results format (store, table schemas, progress lines): no torch, no Ray
    sweeps.engine    flags, plans, search, Ray Tune, the Recorder, console and trackers
    analysis         reports, status and export: read results; no study file
    sweeps           the study files (sweeps/depth_grid.py, ...): a Sweep and a call to the engine
    benchmarks

Within the engine the order is ENGINE_ORDER: a module imports only modules before it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"trainables": 0, "sweeps.results": 1, "sweeps.engine": 2, "analysis": 3, "sweeps": 4, "benchmarks": 5}
TOP = {name.split(".")[0] for name in LAYERS}
CORE = ("trainables", "sweeps", "analysis")  # the cycle check covers the library; benchmarks only the layers
# a package ranks as one entry: trackers/ (its callback imports the recorder, the runner imports the callback)
ENGINE_ORDER = ["grid", "space", "cells", "cellsearch", "feeder", "schedulers", "search", "flags", "preflight", "tune_state", "recorder",
                "console", "trackers", "planner", "confirm", "phase", "runner"]


def layer_of(module: str) -> int:
    """The layer of the longest LAYERS prefix of `module` (sweeps.engine.runner -> sweeps.engine)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise KeyError(module)


class Edge(NamedTuple):
    src: str   # importing module, dotted
    dst: str   # imported module, dotted
    where: str  # file:line of the import statement


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def walk(root: Path, packages=tuple(sorted(TOP))) -> list[Edge]:
    """Every import anywhere in `packages` under `root` (module level, functions, classes, if/try blocks)
    that targets one of our layered packages. No implicit edges to parent __init__ modules."""
    files = {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    edges = []
    for src, path in files.items():
        # the package that relative imports are resolved against
        base = src if path.name == "__init__.py" else src.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    anchor = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                    mod = ".".join(anchor + ([mod] if mod else []))
                # `from pkg.mod import name` points at pkg.mod.name when that is a module of ours
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod for a in node.names]
            else:
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            for dst in dict.fromkeys(targets):  # dedupe, keep order
                if dst.split(".")[0] in TOP and dst != src:
                    edges.append(Edge(src, dst, where))
    return edges


def layer_violations(edges: list[Edge]) -> list[str]:
    return [f"{e.where} imports {e.dst} (layer {layer_of(e.src)} -> layer {layer_of(e.dst)})"
            for e in edges if layer_of(e.dst) > layer_of(e.src)]


def engine_order_violations(edges: list[Edge]) -> list[str]:
    def rank(mod: str) -> int | None:
        parts = mod.split(".")
        if parts[:2] != ["sweeps", "engine"] or len(parts) < 3:
            return None
        return ENGINE_ORDER.index(parts[2]) if parts[2] in ENGINE_ORDER else len(ENGINE_ORDER)
    return [f"{e.where} imports {e.dst}, which comes after it in ENGINE_ORDER"
            for e in edges if rank(e.src) is not None and rank(e.dst) is not None and rank(e.dst) > rank(e.src)]


def find_cycles(edges: list[Edge]) -> list[str]:
    """An edge u -> v lies on a cycle iff v can reach u again. For each such edge not already shown, report
    the shortest cycle through it (BFS), so every edge that takes part in some cycle appears at least once."""
    graph: dict[str, dict[str, str]] = {}
    for e in edges:
        graph.setdefault(e.src, {}).setdefault(e.dst, e.where)  # first statement per module pair

    def path(start: str, goal: str) -> list[str] | None:
        prev, todo = {start: None}, deque([start])
        while todo:
            node = todo.popleft()
            if node == goal:
                out = []
                while node is not None:
                    out.append(node)
                    node = prev[node]
                return out[::-1]
            for nxt in sorted(graph.get(node, ())):
                if nxt not in prev:
                    prev[nxt] = node
                    todo.append(nxt)
        return None

    covered, cycles = set(), []
    for u in sorted(graph):
        for v in sorted(graph[u]):
            back = path(v, u)
            if (u, v) in covered or back is None:
                continue
            chain = [u] + back
            hops = list(zip(chain, chain[1:]))
            covered.update(hops)
            cycles.append(" -> ".join(chain) + "\n      " +
                          "\n      ".join(f"{a} -> {b} at {graph[a][b]}" for a, b in hops))
    return cycles


def test_no_lower_layer_imports_a_higher_one():
    bad = layer_violations(walk(REPO))
    assert not bad, f"upward imports (layers {LAYERS}):\n" + "\n".join(bad)


def test_engine_modules_import_only_earlier_ones():
    modules = {p.stem for p in (REPO / "sweeps" / "engine").glob("*.py")} - {"__init__"}
    assert modules <= set(ENGINE_ORDER), f"add {sorted(modules - set(ENGINE_ORDER))} to ENGINE_ORDER"
    bad = engine_order_violations(walk(REPO))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", ["analysis.status", "analysis.report", "analysis.export", "sweeps.results.store",
                                    "sweeps.results.lease",
                                    "sweeps.results.progress", "sweeps.engine.runner"])
def test_reading_results_and_parsing_flags_load_no_torch_or_ray(module):
    # a subprocess: this test process has long since imported both
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {module} loads {out.stdout.strip()}"


def test_no_import_cycles():
    cycles = find_cycles(walk(REPO, CORE))
    assert not cycles, f"{len(cycles)} import cycle(s), function-level imports included:\n" + "\n".join(cycles)


def test_walker_sees_the_real_tree():
    # guard against a walker that silently finds nothing (wrong root, wrong glob) and so always passes
    edges = walk(REPO)
    pairs = {(e.src, e.dst) for e in edges}
    assert ("sweeps.engine.runner", "sweeps.engine.grid") in pairs
    assert len({e.src for e in edges}) >= 30 and all(e.dst.split(".")[0] in TOP for e in edges)
    assert layer_of("sweeps.engine.runner") == 2 and layer_of("sweeps.depth_grid") == 4


def test_walker_flags_synthetic_cycle_and_upward_import(tmp_path):
    # the main proof that the two real checks can fail: a tiny tree with exactly one cycle (closed by a
    # function-level relative import) and one upward import hidden inside an if-block
    files = {
        "trainables/__init__.py": "",
        "trainables/models/__init__.py": "from trainables.models import cnn\n",   # -> submodule, not itself
        "trainables/models/cnn.py": "from trainables import train\n",            # -> trainables.train
        "trainables/train.py": "def run():\n    from .models import cnn\n",      # function-level, closes cycle
        "trainables/config.py": "import os\nif os.environ:\n    import analysis.report as r\n",
        "analysis/__init__.py": "",
        "analysis/report.py": "from trainables.config import x\nfrom . import stats\n",
        "analysis/stats.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    edges = walk(tmp_path)
    assert {(e.src, e.dst) for e in edges} == {
        ("trainables.models", "trainables.models.cnn"), ("trainables.models.cnn", "trainables.train"),
        ("trainables.train", "trainables.models.cnn"), ("trainables.config", "analysis.report"),
        ("analysis.report", "trainables.config"), ("analysis.report", "analysis.stats")}
    assert layer_violations(edges) == ["trainables/config.py:3 imports analysis.report (layer 0 -> layer 3)"]
    cycles = [c.splitlines()[0] for c in find_cycles(edges)]
    assert cycles == ["analysis.report -> trainables.config -> analysis.report",
                      "trainables.models.cnn -> trainables.train -> trainables.models.cnn"]
    # and a tree without the back edges is clean
    (tmp_path / "trainables/train.py").write_text("def run():\n    pass\n")
    (tmp_path / "trainables/config.py").write_text("")
    assert find_cycles(walk(tmp_path)) == [] and layer_violations(walk(tmp_path)) == []
