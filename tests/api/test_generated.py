"""Guards control/api/pb/ against drift: regenerating from proto/ must change nothing.

Runs scripts/gen-proto into a temporary directory and compares every generated file with
the committed one, so an edited .proto without a regeneration fails the suite.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PB = ROOT / "control" / "api" / "pb"


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
    stale = [n for n in sorted(generated) if (out / n).read_bytes() != (PB / n).read_bytes()]
    assert not stale, f"stale generated files {stale}: run scripts/gen-proto"
