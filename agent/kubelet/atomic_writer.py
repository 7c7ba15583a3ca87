"""Kubernetes' atomic writer: publish a set of files so readers see all old or all new.

Owns the on-disk layout of configMap, secret, downwardAPI and projected volumes (kubelet's
``pkg/volume/util/atomic_writer.go``)::

    <target>/..2024_01_01_00_00_00.123456789/   the files of one version (modes applied)
    <target>/..data -> ..2024_01_01_00_00_00.123456789
    <target>/<key>  -> ..data/<key>            one link per top-level user-visible name

An update writes a whole new timestamped directory, points a temporary symlink at it and
renames that over ``..data`` (rename is atomic), fixes the top-level links (adding new
names, removing names no longer in the payload), then removes the old directory. A reader
that resolves ``key`` goes through ``..data`` once, so it sees one complete version; an
update reaches a bind-mounted volume because the mount is of ``<target>`` itself and the
links are re-resolved on every open. A payload equal to what is on disk writes nothing.

Names starting with ``..`` are reserved for this layout, so payload paths may not use them
(nor be absolute, contain ``..`` components or be empty), as Kubernetes validates.

Concurrency contract: synchronous file-system code (callers run it in a thread with
``asyncio.to_thread``); one writer per target directory at a time, which the volume manager
guarantees with a per-pod lock. Readers never need a lock.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DATA_DIR_NAME = "..data"
_DATA_TMP_NAME = "..data_tmp"
MAX_PATH_LENGTH = 4096
MAX_FILE_NAME_LENGTH = 255


class PayloadError(ValueError):
    """A payload path that may not be written (absolute, escaping, reserved...)."""


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int = 0o644


def validate_path(path: str) -> None:
    """Kubernetes' ``validatePath``: relative, no ``..`` element, not starting with ``..``."""
    if not path:
        raise PayloadError("invalid path: must not be empty")
    if len(path) > MAX_PATH_LENGTH:
        raise PayloadError(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} "
                           "characters")
    if path.startswith("/"):
        raise PayloadError(f"invalid path {path!r}: must be relative path")
    parts = path.split("/")
    if any(p == ".." for p in parts):
        raise PayloadError(f"invalid path {path!r}: must not contain '..'")
    if path.startswith(".."):
        raise PayloadError(f"invalid path {path!r}: must not start with '..'")
    if any(len(p) > MAX_FILE_NAME_LENGTH for p in parts):
        raise PayloadError(f"invalid path {path!r}: a path element is too long")


def clean_payload(payload: Mapping[str, FileProjection]) -> dict[str, FileProjection]:
    """Validated payload with normalised paths (``a//b/./c`` -> ``a/b/c``)."""
    out: dict[str, FileProjection] = {}
    for path, proj in payload.items():
        validate_path(path)
        clean = str(PurePosixPath(path))
        validate_path(clean)
        if clean in (".", ""):
            raise PayloadError(f"invalid path {path!r}")
        out[clean] = proj
    return out


def top_level_names(paths: Mapping[str, object] | list[str]) -> set[str]:
    """The user-visible names: the first element of each path."""
    return {p.split("/", 1)[0] for p in paths}


def timestamped_dir_name(now: float) -> str:
    """``..YYYY_MM_DD_HH_MM_SS.<9 random digits>`` (UTC), as kubelet names versions."""
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime(now))
    return f"..{stamp}.{secrets.randbelow(10**9):09d}"


class AtomicWriter:
    """Writes payloads into ``target_dir`` with the atomic layout described above."""

    def __init__(self, target_dir: Path) -> None:
        self.target_dir = Path(target_dir)

    def current_dir(self) -> Path | None:
        """The version directory ``..data`` points at, if any."""
        link = self.target_dir / DATA_DIR_NAME
        try:
            return self.target_dir / os.readlink(link)
        except (FileNotFoundError, OSError):
            return None

    def write(self, payload: Mapping[str, FileProjection]) -> bool:
        """Publish ``payload``; True if anything changed on disk."""
        files = clean_payload(payload)
        self.target_dir.mkdir(parents=True, exist_ok=True)
        old = self.current_dir()
        if old is not None and old.is_dir() and self._same(old, files):
            # Still repair the links: a crash between the swap and the links leaves them
            # behind the data.
            return self._link_user_visible(files, old_names=self._user_visible())
        old_names = self._user_visible()
        new_dir = self._write_version(files)
        tmp = self.target_dir / _DATA_TMP_NAME
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(new_dir.name, tmp)
        os.replace(tmp, self.target_dir / DATA_DIR_NAME)
        self._link_user_visible(files, old_names=old_names)
        if old is not None and old != new_dir:
            shutil.rmtree(old, ignore_errors=True)
        self._remove_orphan_versions(keep=new_dir.name)
        return True

    # -- internals -----------------------------------------------------------------------

    def _write_version(self, files: Mapping[str, FileProjection]) -> Path:
        while True:
            path = self.target_dir / timestamped_dir_name(time.time())
            try:
                path.mkdir(mode=0o755)
                break
            except FileExistsError:
                continue
        os.chmod(path, 0o755)  # not subject to the umask, so readers in containers can list
        for rel, proj in sorted(files.items()):
            dest = path / rel
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(proj.data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, proj.mode & 0o7777)
            finally:
                os.close(fd)
        return path

    def _same(self, version: Path, files: Mapping[str, FileProjection]) -> bool:
        on_disk = {str(p.relative_to(version)) for p in version.rglob("*")
                   if p.is_file() and not p.is_symlink()}
        if on_disk != set(files):
            return False
        for rel, proj in files.items():
            p = version / rel
            try:
                if (p.stat().st_mode & 0o7777) != (proj.mode & 0o7777):
                    return False
                if p.read_bytes() != proj.data:
                    return False
            except OSError:
                return False
        return True

    def _user_visible(self) -> set[str]:
        """Top-level symlinks into ``..data`` currently present."""
        out: set[str] = set()
        try:
            entries = list(os.scandir(self.target_dir))
        except FileNotFoundError:
            return out
        for e in entries:
            if e.name.startswith(".."):
                continue
            if e.is_symlink() and os.readlink(e.path).startswith(DATA_DIR_NAME + "/"):
                out.add(e.name)
        return out

    def _link_user_visible(self, files: Mapping[str, FileProjection],
                           old_names: set[str]) -> bool:
        changed = False
        wanted = top_level_names(list(files))
        for name in sorted(wanted):
            link = self.target_dir / name
            target = f"{DATA_DIR_NAME}/{name}"
            try:
                if os.readlink(link) == target:
                    continue
                link.unlink()  # a link pointing elsewhere: replace it
            except FileNotFoundError:
                pass
            except OSError as e:
                raise PayloadError(f"cannot create {name}: a non-link file is in the way") \
                    from e
            os.symlink(target, link)
            changed = True
        for name in sorted(old_names - wanted):
            try:
                (self.target_dir / name).unlink()
                changed = True
            except FileNotFoundError:
                pass
        return changed

    def _remove_orphan_versions(self, keep: str) -> None:
        """Version dirs left by an earlier crash between the swap and the cleanup."""
        for e in os.scandir(self.target_dir):
            if (e.name.startswith("..") and e.name not in (keep, DATA_DIR_NAME, _DATA_TMP_NAME)
                    and e.is_dir(follow_symlinks=False)):
                shutil.rmtree(e.path, ignore_errors=True)
