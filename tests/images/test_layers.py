"""Unpacking layers into overlayfs' format, and refusing layers that reach outside."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from agent.images.errors import DigestMismatch, ImageError
from agent.images.layers import OPAQUE_XATTR, UnsafeLayer, unpack
from tests.images.builder import Entry, compress, digest, layer_tar
from tests.images.conftest import needs_root


def _unpack(
    tmp: Path, entries: list[Entry], compression: str = "", diff_id: str | None = "auto"
) -> Path:
    raw = layer_tar(entries)
    dest = tmp / "layer"
    dest.mkdir()
    want = digest(raw) if diff_id == "auto" else diff_id
    unpack(io.BytesIO(compress(raw, compression)), compression, str(dest), want)
    return dest


@pytest.mark.parametrize("compression", ["", "gzip", "zstd"])
def test_files_links_modes(tmp_path: Path, compression: str) -> None:
    dest = _unpack(
        tmp_path,
        [
            Entry("usr", kind="dir", mode=0o755),
            Entry("usr/bin", kind="dir", mode=0o755),
            Entry("usr/bin/tool", b"#!/bin/sh\n", 0o4755),
            Entry("bin", kind="symlink", link="usr/bin"),
            Entry("usr/bin/tool2", kind="hardlink", link="usr/bin/tool"),
            Entry("./etc/conf", b"x=1", 0o600),  # parent created, leading ./ ignored
            Entry("/abs", b"a"),  # a leading / is relative to the layer
        ],
        compression,
    )
    assert (dest / "usr/bin/tool").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(os.stat(dest / "usr/bin/tool").st_mode) == 0o4755
    assert os.readlink(dest / "bin") == "usr/bin"
    assert os.stat(dest / "usr/bin/tool2").st_ino == os.stat(dest / "usr/bin/tool").st_ino
    assert (dest / "etc/conf").read_bytes() == b"x=1" and (dest / "abs").read_bytes() == b"a"


@needs_root
def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    dest = _unpack(
        tmp_path,
        [
            Entry("etc", kind="dir", mode=0o755),
            Entry("etc/.wh.old.conf"),
            Entry("var", kind="dir", mode=0o755),
            Entry("var/cache", kind="dir", mode=0o755),
            Entry("var/cache/.wh..wh..opq"),
            Entry("var/cache/new", b"n"),
            Entry(".wh..wh.plnk"),  # aufs bookkeeping: dropped
        ],
    )
    st = os.lstat(dest / "etc/old.conf")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(dest / "var/cache", OPAQUE_XATTR) == b"y"
    assert (dest / "var/cache/new").read_bytes() == b"n"
    assert not (dest / ".wh..wh.plnk").exists()
    assert sorted(os.listdir(dest)) == ["etc", "var"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([Entry("../escape", b"x")], "leaves the layer"),
        ([Entry("a/../../escape", b"x")], "leaves the layer"),
        ([Entry("link", kind="symlink", link="/etc"), Entry("link/passwd", b"x")], "symbolic link"),
        ([Entry("link", kind="symlink", link=".."), Entry("link/x", b"x")], "symbolic link"),
        ([Entry("h", kind="hardlink", link="../../etc/passwd")], "leaves the layer"),
        ([Entry("h", kind="hardlink", link="missing")], "not in the layer"),
        ([Entry("f", b"x"), Entry("f/g", b"y")], "not a directory"),
    ],
)
def test_escapes_refused(tmp_path: Path, entries: list[Entry], message: str) -> None:
    outside = tmp_path / "escape"
    with pytest.raises(UnsafeLayer, match=message):
        _unpack(tmp_path, entries)
    assert not outside.exists()


def test_diff_id_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DigestMismatch, match="the image config says"):
        _unpack(tmp_path, [Entry("f", b"x")], "gzip", "sha256:" + "0" * 64)


def test_corrupt_stream(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(ImageError, match="not a readable tar"):
        unpack(io.BytesIO(b"\x1f\x8bnot gzip at all"), "gzip", str(dest), None)
