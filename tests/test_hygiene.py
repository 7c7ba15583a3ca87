"""The test suite's own rules, checked: test modules never import each other (shared
helpers live in tests/support or a conftest), there is one ``eventually`` (in
tests/support), and root-only tests say so with the ``root`` marker rather than each
checking ``geteuid()`` in a ``skipif``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TEST_MODULE = re.compile(r"^tests(\.\w+)*\.test_\w+$")


def modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(TESTS.rglob("*.py"))]


def test_no_test_module_imports_another() -> None:
    bad = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad += [f"{path.relative_to(TESTS)}: {n}" for n in names if TEST_MODULE.match(n)]
    assert not bad, "move what they share into tests/support:\n" + "\n".join(bad)


def test_one_eventually() -> None:
    copies = [
        str(path.relative_to(TESTS))
        for path, tree in modules()
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name in ("eventually", "wait_until")
        and path != TESTS / "support" / "__init__.py"
    ]
    assert not copies, f"use tests.support.eventually instead of: {copies}"


def test_root_tests_use_the_root_marker() -> None:
    bad = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "skipif"
                and "geteuid" in ast.unparse(node)
            ):
                bad.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert not bad, f'use pytest.mark.root(reason="...") instead of skipif(geteuid): {bad}'
