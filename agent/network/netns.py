"""Network namespaces as files: create one pinned at a path, run code inside one, remove it.
(``create`` pins other kinds of namespace the same way: the runtime pins each pod's IPC
namespace with it.)

A pod's network namespace lives as long as a bind mount of it exists (``ip netns add`` does
the same under /run/netns; we pin under the runtime's own state dir so several agents on a
host never share a directory). Code that must run inside a namespace (configure the pod's
eth0, read its sysctls) runs in a *dedicated thread* that ``setns``-es into it: namespaces
belong to a thread, so the agent's other threads and the event loop never change namespace,
and the thread ends after the call, so a failed return trip cannot leak a namespace into
a pooled thread. Nothing here forks: the agent's process is multi-threaded (gRPC).

Concurrency contract: every function blocks (call through ``asyncio.to_thread``); calls for
different paths are independent; one path must not be created and removed concurrently
(the runtime serialises per pod).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
_KINDS = {"net": CLONE_NEWNET, "ipc": CLONE_NEWIPC}
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread and return its result (or raise its exception)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=target, name="netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def is_pinned(path: str | Path) -> bool:
    """True when ``path`` is a mounted namespace (not just the empty mount point)."""
    try:
        with open(path, "rb") as f:
            # A pinned namespace file is an nsfs inode; the bare mount point is an empty file
            # on the ordinary filesystem: compare the device with the directory's.
            return os.fstat(f.fileno()).st_dev != os.stat(Path(path).parent).st_dev
    except OSError:
        return False


def create(path: str | Path, kind: str = "net") -> None:
    """A new namespace of ``kind`` ("net" or "ipc") pinned at ``path`` (its directory must
    exist). Idempotent: an already pinned path is kept as it is."""
    path = str(path)
    flag = _KINDS[kind]
    if is_pinned(path):
        return
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o444)
    os.close(fd)

    def make() -> None:
        own = f"/proc/thread-self/ns/{kind}"
        home = os.open(own, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.unshare(flag), f"unshare({kind} namespace)")
            try:
                _check(_libc.mount(own.encode(), path.encode(), b"none", MS_BIND, None),
                       f"bind-mounting the namespace at {path}")
            finally:
                _check(_libc.setns(home, flag), "setns back to the agent's namespace")
        finally:
            os.close(home)

    try:
        _in_thread(make)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def remove(path: str | Path) -> None:
    """Unpin and delete ``path``; the namespace goes once nothing else holds it (its last
    process exits). Idempotent."""
    path = str(path)
    if is_pinned(path):
        _check(_libc.umount2(path.encode(), MNT_DETACH), f"unmounting {path}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def run_in(path: str | Path, fn: Callable[[], T]) -> T:
    """``fn()`` run inside the network namespace pinned at ``path`` (in its own thread)."""
    target = os.open(str(path), os.O_RDONLY | os.O_CLOEXEC)

    def inside() -> T:
        try:
            _check(_libc.setns(target, CLONE_NEWNET), f"setns into {path}")
        finally:
            os.close(target)
        # No way back is needed: this thread ends with the call.
        return fn()

    return _in_thread(inside)


def open_fd(path: str | Path) -> int:
    """An fd of the namespace at ``path`` (for moving links into it); the caller closes it."""
    return os.open(str(path), os.O_RDONLY | os.O_CLOEXEC)
