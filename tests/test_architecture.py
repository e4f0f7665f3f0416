"""The floors of docs/architecture.md, enforced: import-linter contracts (pyproject.toml), no import cycles, ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    res = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_nothing_starts_on_import():
    code = ("import threading, gateway.app, gateway.cli, web, devices.registry; "
            "assert threading.active_count() == 1, threading.enumerate()")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def _import_cycles() -> list[list[str]]:
    """Strongly connected components (more than one module) of the module import graph.

    Every import counts: module level, inside functions, and under ``TYPE_CHECKING``.
    """
    import grimp

    graph = grimp.build_graph("gateway", "devices", "web", "provisioning", exclude_type_checking_imports=False)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(edges):  # Tarjan's algorithm, iterative (no recursion limit on a big graph)
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return cycles


def test_no_import_cycles_between_modules():
    assert _import_cycles() == []


def test_ruff_is_clean():
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    res = subprocess.run([exe, "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_nothing_outside_the_repository_is_cited():
    """The design lives in docs/architecture.md; code and docs cite nothing outside the repository."""
    hits = []
    for path in ROOT.rglob("*"):
        if any(part in (".git", ".venv", "node_modules", "__pycache__") for part in path.parts) or not path.is_file():
            continue
        if path.suffix not in (".py", ".md", ".toml", ".sh", ".html", ".js", ".css", ".service", ".conf"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle in ("DESIGN" + ".md", "../" + "shared/", "reference/protocols" + ".md"):
            if needle in text:
                hits.append(f"{path.relative_to(ROOT)}: {needle}")
    assert hits == []
