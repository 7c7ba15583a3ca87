"""The atomic writer's layout: versions, the ..data swap, user-visible links, modes."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from agent.kubelet.atomic_writer import (
    DATA_DIR_NAME,
    AtomicWriter,
    FileProjection,
    PayloadError,
    clean_payload,
    timestamped_dir_name,
    top_level_names,
    validate_path,
)


def versions(target: Path) -> list[str]:
    return sorted(e.name for e in target.iterdir()
                  if e.name.startswith("..") and e.name != DATA_DIR_NAME)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize(("path", "ok"), [
    ("key", True),
    ("dir/key", True),
    ("a.b", True),
    ("..key", False),  # reserved for the layout
    ("..", False),
    ("a/../b", False),
    ("/abs", False),
    ("", False),
    ("a/" + "x" * 256, False),
    ("x" * 5000, False),
])
def test_validate_path(path: str, ok: bool) -> None:
    if ok:
        validate_path(path)
    else:
        with pytest.raises(PayloadError):
            validate_path(path)


def test_clean_payload_normalises() -> None:
    assert list(clean_payload({"a//b/./c": FileProjection(b"")})) == ["a/b/c"]


def test_top_level_names() -> None:
    assert top_level_names(["a", "b/c", "b/d", "e/f/g"]) == {"a", "b", "e"}


def test_timestamped_dir_name() -> None:
    name = timestamped_dir_name(1_704_067_200.5)  # 2024-01-01T00:00:00Z
    assert re.fullmatch(r"\.\.2024_01_01_00_00_00\.\d{9}", name)


def test_create_layout_links_and_modes(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    w = AtomicWriter(target)
    assert w.write({
        "plain": FileProjection(b"one", 0o644),
        "secret": FileProjection(b"two", 0o400),
        "nested/dir/file": FileProjection(b"three", 0o600),
    })
    data = target / DATA_DIR_NAME
    assert data.is_symlink()
    (version,) = versions(target)
    assert os.readlink(data) == version
    assert mode(target / version) == 0o755
    # Each user-visible name is a link into ..data (top-level only for nested paths).
    assert os.readlink(target / "plain") == "..data/plain"
    assert os.readlink(target / "nested") == "..data/nested"
    assert (target / "plain").read_bytes() == b"one"
    assert (target / "nested" / "dir" / "file").read_bytes() == b"three"
    assert mode(target / "secret") == 0o400
    assert mode(target / "nested/dir/file") == 0o600
    assert mode(target / version / "plain") == 0o644
    assert sorted(os.listdir(target)) == sorted(["..data", version, "plain", "secret",
                                                 "nested"])


def test_update_swaps_version_and_removes_stale_keys(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    w = AtomicWriter(target)
    w.write({"a": FileProjection(b"1"), "b": FileProjection(b"2"),
             "d/x": FileProjection(b"3")})
    (old,) = versions(target)
    assert w.write({"a": FileProjection(b"1 updated"), "c": FileProjection(b"new")})
    (new,) = versions(target)
    assert new != old
    assert os.readlink(target / DATA_DIR_NAME) == new
    assert (target / "a").read_bytes() == b"1 updated"
    assert (target / "c").read_bytes() == b"new"
    assert not (target / "b").exists() and not (target / "b").is_symlink()
    assert not (target / "d").is_symlink()
    assert not (target / old).exists()
    assert sorted(os.listdir(target)) == sorted(["..data", new, "a", "c"])


def test_mode_change_alone_is_an_update(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    w.write({"k": FileProjection(b"v", 0o644)})
    assert w.write({"k": FileProjection(b"v", 0o600)})
    assert mode(tmp_path / "k") == 0o600


def test_same_payload_writes_nothing(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    payload = {"k": FileProjection(b"v"), "n/m": FileProjection(b"w")}
    assert w.write(payload)
    before = versions(tmp_path)
    assert not w.write(payload)
    assert versions(tmp_path) == before


def test_missing_link_is_repaired_without_new_version(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    w.write({"k": FileProjection(b"v")})
    before = versions(tmp_path)
    (tmp_path / "k").unlink()
    assert w.write({"k": FileProjection(b"v")})
    assert (tmp_path / "k").read_bytes() == b"v"
    assert versions(tmp_path) == before


def test_empty_payload_and_orphan_versions(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    (tmp_path / "..2020_01_01_00_00_00.000000001").mkdir()  # left by a crash
    assert w.write({})
    assert (tmp_path / DATA_DIR_NAME).is_symlink()
    assert len(versions(tmp_path)) == 1
    assert os.listdir(tmp_path / DATA_DIR_NAME) == []


def test_reader_of_old_version_keeps_consistent_content(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    w.write({"k": FileProjection(b"old")})
    with open(tmp_path / "k", "rb") as f:
        w.write({"k": FileProjection(b"new")})
        # An open file keeps the old version's content; a new open sees the new one.
        assert f.read() == b"old"
    assert (tmp_path / "k").read_bytes() == b"new"


def test_invalid_payload_is_refused_before_writing(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path / "vol")
    with pytest.raises(PayloadError):
        w.write({"ok": FileProjection(b""), "../escape": FileProjection(b"")})
    assert not (tmp_path / "vol").exists()
