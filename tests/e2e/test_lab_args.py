"""``scripts/lab up --registry`` takes a loopback address only (the lab dials nothing else
on the host), refused before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.lab import lab


@pytest.mark.parametrize("registry", ["10.1.2.3:5000", "registry.example:5000",
                                      "127.0.0.1", "127.0.0.1:99999"])
def test_registry_must_be_a_loopback_host_port(tmp_path: Path, registry: str) -> None:
    d = tmp_path / "lab"
    r = lab(d, "up", "--registry", registry, timeout=60)
    assert r.returncode == 1
    assert f"--registry {registry!r}: expected a loopback HOST:PORT" in r.stderr
    assert not d.exists()
