"""Guard: every sleep and every ``while True`` in the library is bounded.

A loop or sleep passes when the function around it works against a deadline
(it mentions ``Deadline``, ``deadline``, ``timeout`` or ``monotonic``), or
when it is listed below with the reason it needs none. The real proof is the
robustness matrix (issue 9); this catches a new unbounded wait at review time.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("dcnlab",)
BOUNDED_BY = ("Deadline", "deadline", "timeout", "monotonic")

# (file, function): why no deadline is needed.
EXEMPT = {
    ("dcnlab/fleet/libvirt/hvsupervisor.py", "reap_all"): "drains exited children with WNOHANG; ends when none is left",
    ("dcnlab/fleet/libvirt/hvsupervisor.py", "main"): "the supervisor's life: ends on a signal or when a daemon dies",
    ("dcnlab/fleet/libvirt/hypervisor.py", "run_events"): "libvirt's event loop, a daemon thread",
}


def _waits(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.While) and isinstance(node.test, ast.Constant) and node.test.value is True:
            found.append((node, "while True"))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "sleep"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "time"
        ):
            found.append((node, "time.sleep"))
    return found


def _enclosing(tree: ast.AST, target: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for child in ast.walk(node):
                if child is target and (best is None or node.lineno >= best.lineno):
                    best = node
    return best


def unbounded_waits(rel: str, text: str, exempt_seen: set[tuple[str, str]]) -> list[str]:
    tree = ast.parse(text)
    out = []
    for node, what in _waits(tree):
        func = _enclosing(tree, node)
        name = func.name if func is not None else "<module>"
        if (rel, name) in EXEMPT:
            exempt_seen.add((rel, name))
            continue
        body = ast.get_source_segment(text, func) if func is not None else text
        if not any(word in (body or "") for word in BOUNDED_BY):
            out.append(f"{rel}:{getattr(node, 'lineno', '?')} {what} in {name}()")
    return out


def test_every_wait_has_a_deadline_or_a_reason() -> None:
    unbounded: list[str] = []
    seen_exempt: set[tuple[str, str]] = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            unbounded += unbounded_waits(path.relative_to(ROOT).as_posix(), path.read_text(), seen_exempt)
    assert not unbounded, "waits without a deadline (bound them, or list them in EXEMPT with why):\n" + "\n".join(
        unbounded
    )
    assert seen_exempt == set(EXEMPT), f"stale EXEMPT entries: {set(EXEMPT) - seen_exempt}"


def test_the_guard_catches_an_unbounded_wait() -> None:
    bad = (
        "import time\n\ndef poll(ready):\n    while True:\n"
        "        if ready():\n            return\n        time.sleep(1)\n"
    )
    assert unbounded_waits("x.py", bad, set()) == ["x.py:4 while True in poll()", "x.py:7 time.sleep in poll()"]
    good = bad.replace("def poll(ready):", "def poll(ready, deadline):")
    assert unbounded_waits("x.py", good, set()) == []
