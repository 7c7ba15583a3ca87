"""Guards control/api/pb/ against drift: regenerating from proto/ must change nothing.

Runs scripts/gen-proto into a temporary directory and compares every generated file with
the committed one, so an edited .proto without a regeneration fails the suite. What is
compared is what the code means (the messages' descriptors, the services' stubs), not the
generator's version banners: the generator itself is pinned in uv.lock, and a patch release
of it must not make a clean checkout fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PB = ROOT / "control" / "api" / "pb"

# Lines that name the generator's or the runtime's version, and nothing the code does.
_BANNERS = re.compile(
    rb"^(# Protobuf Python Version: .*|GRPC_GENERATED_VERSION = .*)$",
    re.M,
)


def meaning(text: bytes) -> bytes:
    """A generated file without its version banners."""
    text = re.sub(
        rb"_runtime_version\.ValidateProtobufRuntimeVersion\(.*?\)\n", b"", text, flags=re.S
    )
    return _BANNERS.sub(b"", text)


def test_meaning_ignores_only_version_banners() -> None:
    a = b"GRPC_GENERATED_VERSION = '1.85.1'\nclass S: pass\n"
    b = b"GRPC_GENERATED_VERSION = '1.85.4'\nclass S: pass\n"
    assert meaning(a) == meaning(b)
    assert meaning(a) != meaning(b.replace(b"class S", b"class T"))


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools is not installed"
)
def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "pb"
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-proto"), str(out)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    generated = {p.name for p in out.glob("*_pb2*")}
    committed = {p.name for p in PB.glob("*_pb2*")}
    assert generated, "scripts/gen-proto produced nothing"
    assert committed == generated, (
        f"missing: {sorted(generated - committed)}, stale: {sorted(committed - generated)}; "
        "run scripts/gen-proto"
    )
    stale = [
        n for n in sorted(generated) if meaning((out / n).read_bytes()) != meaning((PB / n).read_bytes())
    ]
    assert not stale, f"stale generated files {stale}: run scripts/gen-proto"
