"""The core's import graph: no cycles at all, and every arrow points down the layers.

Imports under `if TYPE_CHECKING:` count too: a type-only cycle still means two modules
cannot be understood apart. The layers are the packages of `otpserver/`, lowest first; a
module may import its own package and any package on a lower layer, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import otpserver

PACKAGE_ROOT = Path(otpserver.__file__).parent

LAYERS: tuple[frozenset[str], ...] = (
    # The host backends' client imports nothing of the server, so it works on its own.
    frozenset({"client"}),
    # Errors, and text encodings every layer writes its values in (no imports of their own).
    frozenset({"errors", "encoding"}),
    frozenset({"settings"}),
    frozenset({"observability"}),
    frozenset({"crypto", "stores"}),
    frozenset({"otp"}),
    frozenset({"limits", "delivery", "results"}),
    frozenset({"verification"}),
    frozenset({"hooks"}),
    frozenset({"factors", "v1"}),
    frozenset({"http"}),
    frozenset({"asgi"}),
    frozenset({"cli"}),
    frozenset({"__main__", "__init__"}),
)
"""Lowest first. A new package takes its place here, with the reason in its docstring."""


def module_name(path: Path) -> str:
    """`otpserver.http.app` for `otpserver/http/app.py`; packages by their own name."""
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the core by dotted name."""
    return {module_name(path): path for path in PACKAGE_ROOT.rglob("*.py")}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The core modules `path` imports, at run time or for type checking alike."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "otpserver":
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    """Module → the core modules it imports (a package's `__init__` re-exporting its own
    children is not an arrow: it is how a package names its public parts)."""
    known = modules()
    names = set(known)
    edges = {name: imported(path, name, names) for name, path in known.items()}
    for name, targets in edges.items():
        edges[name] = {t for t in targets if not t.startswith(name + ".")}
    return edges


def layer_of(module: str) -> int:
    """The layer index of a module, from its first name under `otpserver`."""
    head = module.split(".")[1] if "." in module else "__init__"
    for index, members in enumerate(LAYERS):
        if head in members:
            return index
    raise AssertionError(f"{module}: package {head!r} has no layer in LAYERS")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(edges.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(edges):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_core_has_no_import_cycle() -> None:
    """No chain of imports, type-only ones included, leads from a module back to itself."""
    assert find_cycle(graph()) is None


def test_imports_point_down_the_layers() -> None:
    """No module imports a package on a higher layer than its own."""
    upward = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(source)
    ]
    assert upward == []


def test_the_cycle_finder_finds_cycles() -> None:
    """The checker itself reports a cycle and an upward arrow when there is one."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("otpserver.http.app") > layer_of("otpserver.crypto.envelope")


def test_few_modules_sit_directly_in_the_package() -> None:
    """The top of `otpserver/` stays a short list; everything else lives in a package."""
    top = list(PACKAGE_ROOT.glob("*.py"))
    assert len(top) <= 12, sorted(p.name for p in top)
