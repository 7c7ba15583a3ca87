"""The mounts below a pod's volume directory: a tmpfs for memory-backed volumes, the list of
mount points from ``/proc/self/mountinfo``, and unmount-then-remove of a volume tree.

The syscalls are the thin bindings of :mod:`agent.runtime.linux`; what this module adds is
what the volume manager needs on top of them: tmpfs options, an unmount that detaches a
mount a container still holds, and a removal that never deletes through a mount it could
not undo (that would delete the mounted file system's content, e.g. a hostPath's).

Concurrency contract: synchronous, blocking calls; the volume manager runs them in worker
threads. Mounts are process-wide, so callers serialise work on one directory (the volume
manager's per-pod lock does).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import structlog

from agent.runtime import linux

log = structlog.get_logger(__name__)


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mount_points(mountinfo: str) -> list[str]:
    """The mount points listed in a ``/proc/<pid>/mountinfo`` text, in order."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape_mountinfo(fields[4]))
    return points


def mounts_under(points: Iterable[str], root: str) -> list[str]:
    """Mount points at or below ``root``, deepest first (the order to unmount them)."""
    root = root.rstrip("/")
    found = {p for p in points if p == root or p.startswith(root + "/")}
    return sorted(found, key=lambda p: (p.count("/"), p), reverse=True)


def read_mount_points() -> list[str]:
    """This process's mount points (empty if ``/proc`` cannot be read)."""
    try:
        return parse_mount_points(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return []


def can_mount() -> bool:
    """Whether this process may try to mount (it may still lack CAP_SYS_ADMIN)."""
    return os.geteuid() == 0


def mount_tmpfs(path: str, size: int | None, mode: int) -> None:
    """A tmpfs of at most ``size`` bytes (unbounded if None) on ``path``, root mode ``mode``."""
    opts = f"mode={mode:o}" + (f",size={size}" if size else "")
    linux.mount("tmpfs", path, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, opts)


def unmount(path: str) -> None:
    """Unmount ``path``; one still in use by a container is detached, and the kernel frees
    it when the last user goes."""
    try:
        linux.umount2(path)
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        linux.umount2(path, linux.MNT_DETACH)


def remove_tree(root: Path) -> None:
    """Unmount everything below ``root``, then remove it; keep a subtree whose mount would
    not go (removing it would delete the mounted file system's content)."""
    # mountinfo lists resolved paths (``/tmp`` may be a link).
    root = Path(os.path.realpath(root))
    stuck: list[str] = []
    for point in mounts_under(read_mount_points(), str(root)):
        try:
            unmount(point)
        except OSError as e:
            log.error("cannot unmount volume; leaving its directory", path=point, error=str(e))
            stuck.append(point)
    if not stuck:
        shutil.rmtree(root, ignore_errors=True)
        return
    # Remove what we can around the stuck mounts.
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in stuck]
        for f in filenames:
            try:
                os.unlink(os.path.join(dirpath, f))
            except OSError:
                pass
