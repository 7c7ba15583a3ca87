"""Unpack one layer tarball into a directory in overlayfs' format (blocking; run in a thread).

Each layer is unpacked once into its own directory and used as an overlay lower dir, so the
layer's whiteouts become overlayfs' own: ``.wh.NAME`` is a 0/0 character device ``NAME``,
``.wh..wh..opq`` marks its directory opaque (``trusted.overlay.opaque=y``). Other
``.wh..wh.*`` entries (aufs hard-link bookkeeping) are dropped.

Safety: a member whose path leaves the layer (``..``), that would be written through a
symbolic link, or a hard link to a target outside the layer, fails the whole unpack with
:class:`UnsafeLayer`; nothing partial survives because the caller unpacks into a temporary
directory and renames it into place only on success. A leading ``/`` is read as relative to
the layer, as Docker does.

The uncompressed stream's sha256 is computed while unpacking, so the caller checks it
against the image config's ``diff_id`` without a second read.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable
from typing import IO, BinaryIO, cast

import zstandard

from agent.images.errors import DigestMismatch, ImageError

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


class UnsafeLayer(ImageError):
    pass


class _Hashing:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def decompressed(raw: BinaryIO, compression: str) -> IO[bytes]:
    if compression == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if compression == "zstd":
        return cast(
            IO[bytes], zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        )
    if compression == "":
        return raw
    raise ImageError(f"unsupported layer compression {compression!r}")


def _clean(name: str, what: str) -> str:
    """``name`` as a path relative to the layer root ('' for the root itself)."""
    norm = posixpath.normpath("/" + name.lstrip("/"))
    # normpath on an absolute path folds '..' at the root away, so look at the original.
    parts = [p for p in name.split("/") if p not in ("", ".")]
    depth = 0
    for part in parts:
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            raise UnsafeLayer(f"{what} {name!r} leaves the layer")
    return norm.lstrip("/")


def _parent_dir(root: str, rel: str, what: str) -> str:
    """Make sure every directory above ``rel`` is a real directory inside ``root`` (created
    when missing) and return the absolute parent path."""
    parent = root
    for part in [p for p in posixpath.dirname(rel).split("/") if p]:
        parent = os.path.join(parent, part)
        try:
            st = os.lstat(parent)
        except FileNotFoundError:
            os.mkdir(parent, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeLayer(f"{what} {rel!r} would be written through the symbolic link {part!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"{what} {rel!r}: {part!r} is not a directory")
    return parent


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def unpack(
    raw: BinaryIO,
    compression: str,
    dest: str,
    expected_diff_id: str | None,
    *,
    as_root: bool | None = None,
) -> int:
    """Unpack the layer read from ``raw`` into the existing empty directory ``dest``.

    Returns the bytes of file content written. Raises :class:`UnsafeLayer`,
    :class:`DigestMismatch` (uncompressed content vs ``expected_diff_id``), or
    :class:`ImageError` for a corrupt stream.
    """
    root = as_root if as_root is not None else os.geteuid() == 0
    stream = _Hashing(decompressed(raw, compression))
    size = 0
    dir_times: list[tuple[str, float]] = []
    try:
        with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as tar:
            for member in tar:
                size += _member(tar, member, dest, root, dir_times)
        stream.drain()
    except (tarfile.TarError, EOFError, OSError, zstandard.ZstdError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"layer is not a readable tar stream: {e}") from e
    for path, mtime in reversed(dir_times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    got = "sha256:" + stream.hash.hexdigest()
    if expected_diff_id is not None and got != expected_diff_id:
        raise DigestMismatch(f"layer content is {got}, the image config says {expected_diff_id}")
    return size


def _member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: str,
    root: bool,
    dir_times: list[tuple[str, float]],
) -> int:
    rel = _clean(member.name, "member")
    base = posixpath.basename(rel)
    if rel == "":
        if member.isdir():
            _attrs(dest, member, root)
            dir_times.append((dest, member.mtime))
        return 0
    parent = _parent_dir(dest, rel, "member")
    if base == OPAQUE:
        _set_opaque(parent)
        return 0
    if base.startswith(WHITEOUT_PREFIX):
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return 0
        target = os.path.join(parent, base[len(WHITEOUT_PREFIX) :])
        _remove(target)
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        return 0
    path = os.path.join(parent, base)
    existing = None
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        pass
    if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
        _remove(path)
    written = 0
    if member.isdir():
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(path, 0o700)
        dir_times.append((path, member.mtime))
    elif member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        with open(path, "wb") as out:
            _copy(src.read, out)
        written = member.size
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        target_rel = _clean(member.linkname, "hard link target")
        target = os.path.join(dest, target_rel)
        _parent_dir(dest, target_rel, "hard link target")
        if not os.path.lexists(target):
            raise UnsafeLayer(f"hard link {rel!r} -> {member.linkname!r}: target not in the layer")
        os.link(target, path, follow_symlinks=False)
        return 0
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        if not root:
            return 0  # devices in images are rare (/dev is mounted fresh); skip without root
        os.mknod(path, 0o600 | kind, os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    else:
        return 0
    _attrs(path, member, root)
    if not member.isdir():
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
    return written


def _copy(read: Callable[[int], bytes], out: IO[bytes]) -> None:
    while chunk := read(1 << 20):
        out.write(chunk)


def _attrs(path: str, member: tarfile.TarInfo, root: bool) -> None:
    if root:
        os.lchown(path, member.uid, member.gid)
    for key, value in (member.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr."):
            try:
                os.setxattr(
                    path,
                    key[len("SCHILY.xattr.") :],
                    value.encode("utf-8", "surrogateescape"),
                    follow_symlinks=False,
                )
            except OSError:
                pass  # an xattr this filesystem refuses (security.*) is not worth a failed pull
    if not member.issym():
        # after chown, which clears setuid/setgid bits
        os.chmod(path, member.mode & 0o7777)


def _set_opaque(directory: str) -> None:
    os.setxattr(directory, OPAQUE_XATTR, b"y", follow_symlinks=False)
