"""The agent's remembered daemon port: parsing the file, and a write read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import daemon_port


@pytest.mark.parametrize(("text", "port"), [
    ("10250\n", 10250),
    (" 443 ", 443),
    ("65535", 65535),
    ("0", 0),
    ("65536", 0),
    ("-1", 0),
    ("", 0),
    ("12a", 0),
])
def test_parse_port(text: str, port: int) -> None:
    assert daemon_port.parse_port(text) == port


def test_remember_then_remembered(tmp_path: Path) -> None:
    assert daemon_port.remembered(tmp_path) == 0  # a first run: none
    daemon_port.remember(tmp_path, 41234)
    assert daemon_port.remembered(tmp_path) == 41234
    daemon_port.remember(tmp_path, 41235)  # replaced whole
    assert daemon_port.remembered(tmp_path) == 41235
    assert sorted(p.name for p in tmp_path.iterdir()) == [daemon_port.FILE_NAME]
