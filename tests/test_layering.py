"""The layering contract of docs/architecture.md, checked on the import statements:
control.api <- control.client <- control.runtime <- everything else; agent imports only
those three; only the apiserver and the server wiring import the store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the flotilla packages it may import (besides itself and the layers below)
ALLOWED = {
    "control.api": {"control.api"},
    "control.client": {"control.api", "control.client"},
    "control.runtime": {"control.api", "control.client", "control.runtime"},
    "control.store": {"control.store"},
    "agent": {"control.api", "control.client", "control.runtime", "agent"},
}
STORE_USERS = ("control.apiserver", "control.server", "control.store")


def modules() -> list[tuple[str, Path]]:
    out = []
    for top in ("control", "agent"):
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts).removesuffix(".__init__")
            if not name.startswith("control.api.pb"):
                out.append((name, path))
    return out


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in ("control", "agent")}


def within(module: str, packages: set[str] | tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize(("name", "path"), modules(), ids=lambda v: str(v))
def test_imports_respect_layers(name: str, path: Path) -> None:
    for imported in imports(path):
        if within(imported, ("control.store",)) and not within(name, STORE_USERS):
            pytest.fail(f"{name} imports {imported}: only the apiserver may use the store")
        for package, allowed in ALLOWED.items():
            if within(name, (package,)) and not within(imported, allowed | {"control"}):
                pytest.fail(f"{name} imports {imported}, outside its layer ({sorted(allowed)})")
