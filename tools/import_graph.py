"""rawbg's import graph: every import counted, its circles, and imports that run up the layers.

    python -m tools.import_graph            # the circles and upward imports, if any
    python -m tools.import_graph --edges    # every edge, module -> module

Every ``import`` and ``from ... import`` statement of rawbg/ counts: at module
level, under ``if TYPE_CHECKING:``, and inside functions. An import hidden in a
function still ties the two modules together, and a reader still has to hold
both in mind; so does a name imported only for a type annotation.

The layers are `LAYERS`, top to bottom: a module may import its own layer's
modules and those of the layers below, never those above. import-linter holds
the same contract in CI (``[tool.importlinter]`` in pyproject.toml); this tool
adds the circles (import-linter's layers contract says nothing of a circle
inside a layer) and is what tests/support/test_layout.py runs.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "rawbg"

#: top to bottom; a module belongs to the first entry it is or lies under
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "rawbg.__main__",
        "rawbg.cli",
        "rawbg.testing",
        "rawbg.testclient",
        "rawbg.demo",
        "rawbg.openapi",
    ),
    ("rawbg.server",),
    ("rawbg.app", "rawbg.wire"),
    ("rawbg.middleware", "rawbg.exception_handlers"),
    (
        "rawbg.requests",
        "rawbg.responses",
        "rawbg.params",
        "rawbg.background",
        "rawbg.errors",
        "rawbg.datastructures",
        "rawbg.encoders",
        "rawbg.status",
        "rawbg.reason_phrases",
        "rawbg.forms",
        "rawbg.uploads",
        "rawbg.security",
        "rawbg.sse",
        "rawbg.staticfiles",
        "rawbg.templating",
    ),
    ("rawbg.tasks",),
    (
        "rawbg.trace",
        "rawbg.threadpool",
        "rawbg.types",
        "rawbg.culprits",
        "rawbg.missing_modules",
    ),
)
#: siblings in one layer that must not import each other either
INDEPENDENT = (("rawbg.app", "rawbg.wire"),)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The package's modules that `name` imports, by any statement anywhere in it."""
    known = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, is_package, node.level, node.module)
            # `from rawbg.x import y`: y may be a module of its own, else a name in x
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import rawbg.x.y` names rawbg.x.y
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _absolute(name: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    parts = name.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports_of(name, path, found) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(module: str) -> tuple[int, str] | None:
    """The layer's index (0 is the top) and the entry of `LAYERS` that `module` falls under."""
    for depth, entries in enumerate(LAYERS):
        for entry in entries:
            if module == entry or module.startswith(entry + "."):
                return depth, entry
    return None


def upward(edges: dict[str, set[str]]) -> Iterator[str]:
    """Each import that runs up the layers or across independent siblings, as a sentence."""
    for source in sorted(edges):
        placed = layer_of(source)
        if placed is None:
            if source != PACKAGE:
                yield f"{source} is in no layer of tools/import_graph.py LAYERS"
            continue
        for target in sorted(edges[source]):
            other = layer_of(target)
            if other is None:
                continue
            if other[0] < placed[0]:
                yield f"{source} imports {target}, a higher layer"
            elif (placed[1], other[1]) in INDEPENDENT or (other[1], placed[1]) in INDEPENDENT:
                yield f"{source} imports {target}: {placed[1]} and {other[1]} are independent"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every edge")
    args = parser.parse_args(argv)
    edges = graph()
    if args.edges:
        for source in sorted(edges):
            for target in sorted(edges[source]):
                print(f"{source} -> {target}")
    found = circles(edges)
    problems = list(upward(edges))
    count = sum(len(targets) for targets in edges.values())
    print(f"{len(edges)} modules, {count} imports, {len(found)} circles, {len(problems)} upward")
    for circle in found:
        print(f"circle of {len(circle)}: {', '.join(circle)}")
    for problem in problems:
        print(problem)
    return 1 if found or problems else 0


if __name__ == "__main__":
    sys.exit(main())
