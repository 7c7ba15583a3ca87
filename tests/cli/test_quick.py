"""The CLI's start-up stays small: what a verb imports is most of what a call costs.

``version --client`` imports neither grpc nor protobuf nor YAML nor asyncio; the kinds
registry imports a message module only when its class is first used; :data:`VERB_MODULES`
(which module a verb's parser comes from) agrees with what the modules register.
Import checks run in a fresh interpreter, since this one has imported everything.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from control.api import kinds
from control.cli import main as cli_main
from control.version import VERSION

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("grpc", "google.protobuf", "yaml", "asyncio", "structlog")


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("FLOTILLA_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def under(modules: set[str], package: str) -> set[str]:
    return {m for m in modules if m == package or m.startswith(package + ".")}


@pytest.mark.e2e
def test_version_client_imports_no_grpc_protobuf_yaml_or_asyncio() -> None:
    mods = loaded_after(
        "from control.cli.main import main\nassert main(['version', '--client']) == 0"
    )
    for package in HEAVY:
        assert not under(mods, package), f"version --client imported {package}"
    # argparse sizes its help with shutil, which imports bz2, lzma and zlib
    assert not {"shutil", "bz2", "lzma"} & mods


@pytest.mark.parametrize(("columns", "width"), [("100", 100), ("0", None), ("x", None)])
def test_help_width_follows_columns(monkeypatch: pytest.MonkeyPatch, columns: str,
                                    width: int | None) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    got = cli_main._terminal_width()
    assert got == width if width is not None else got > 0


@pytest.mark.e2e
def test_version_client_output() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "control.cli.main", "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"clientVersion": {"gitVersion": f"v{VERSION}"}}


def test_version_is_pyprojects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == VERSION


def test_kind_lookups_import_no_message_module() -> None:
    mods = loaded_after(
        "from control.api import kinds\n"
        "kinds.resolve('po'); kinds.by_resource('deployments'); kinds.by_kind('Role')\n"
        "assert kinds.by_message(kinds.resolve('deploy').message).kind == 'Deployment'\n"
        "import sys\n"
        "assert 'control.api.pb.apps_pb2' in sys.modules\n"
        "assert 'control.api.pb.rbac_pb2' not in sys.modules"
    )
    assert "control.api.pb.batch_pb2" not in mods


def test_every_kind_resolves_its_message() -> None:
    for info in kinds.KINDS:
        assert info.message.DESCRIPTOR.full_name == info.full_name
        assert info.message.DESCRIPTOR.name == info.kind
        assert kinds.by_message(info.message) is info
        assert kinds.by_message(info.message()) is info


def test_verb_modules_match_what_the_modules_register() -> None:
    full = cli_main.build_parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(cli_main.VERB_MODULES)
    for name in set(cli_main.VERB_MODULES.values()):
        parser = argparse.ArgumentParser()
        verbs = parser.add_subparsers()
        importlib.import_module(f"control.cli.{name}").register(verbs)
        assert set(verbs.choices) == {v for v, m in cli_main.VERB_MODULES.items() if m == name}


def test_one_verb_parser_parses_like_the_full_one() -> None:
    argv = ["get", "pods", "-o", "wide", "-l", "app=web"]
    one = vars(cli_main.build_parser("get").parse_args(argv))
    full = vars(cli_main.build_parser().parse_args(argv))
    assert one == full
