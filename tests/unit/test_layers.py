"""The package's layers (docs/architecture.md): each folder of ``dcnlab`` imports only
from its own layer and those below it, and no module imports itself back through
others. Every import counts, also those made inside functions or for type checking
only: a circle or an upward arrow there is still one in the design."""

from __future__ import annotations

import ast
from pathlib import Path

import dcnlab

PACKAGE = Path(dcnlab.__file__).resolve().parent
# Bottom first. A module of one layer may import from any layer at or before it.
LAYERS = (
    ("core",),
    ("image",),
    ("fleet",),
    ("cluster",),
    ("ready",),
    ("observe",),
    ("faults",),
    ("certify",),
    ("report",),
    ("cli", "pytest_plugin"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from dcnlab.x import y": y may be a module of the package, or a name in x.
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        found.update(n for n in names if n in known)
    return found


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    if not top:
        return 0
    for i, folder in enumerate(LAYERS):
        if top in folder:
            return i
    raise AssertionError(f"{module}: its folder {top!r} is in no layer; add it to LAYERS and docs/architecture.md")


GRAPH = {name: _imports(path, set(_modules())) - {name} for name, path in _modules().items()}


def test_every_module_is_in_a_layer() -> None:
    for module in GRAPH:
        _layer(module)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
        for m, targets in sorted(GRAPH.items())
        for t in sorted(targets)
        if _layer(t) > _layer(m)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _speaks_libvirt(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name == "libvirt" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "libvirt":
            return True
    return False


def test_libvirt_is_spoken_only_in_its_provider_folder() -> None:
    outside = {
        m for m, path in _modules().items() if _speaks_libvirt(path) and not m.startswith("dcnlab.fleet.libvirt")
    }
    assert not outside, f"libvirt imported outside dcnlab.fleet.libvirt: {sorted(outside)}"


SUITES = PACKAGE.parent / "suites"


def test_suites_import_only_the_certify_and_faults_api() -> None:
    # The suites read as certification: what they touch of dcnlab is the API a
    # user's own suites would use too, not the plugin or the layers beneath.
    allowed = ("dcnlab.certify", "dcnlab.faults")
    wrong = []
    for path in sorted(SUITES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "dcnlab" and not any(name == a or name.startswith(a + ".") for a in allowed):
                    wrong.append(f"{path.relative_to(SUITES.parent)}: {name}")
    assert not wrong, "suites import dcnlab beyond dcnlab.certify and dcnlab.faults:\n" + "\n".join(wrong)
