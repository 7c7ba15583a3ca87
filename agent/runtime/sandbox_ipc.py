"""A sandbox's IPC: the pod's own IPC namespace, pinned under the runtime's state dir
(``<root>/ipcns/<sandbox id>``, beside the network namespaces' pins), and the pod's
/dev/shm, a tmpfs at ``<root>/sandboxes/<sandbox id>/shm``; or nothing at all for a
``hostIPC`` pod, whose containers stay in the host's IPC namespace and see the host's
/dev/shm (as the kubelet and containerd do).

Every container of the pod joins the pinned namespace (setns) and gets the tmpfs
bind-mounted at /dev/shm, so they share System V IPC objects, POSIX message queues and
POSIX shared memory as the containers of a Kubernetes pod share the pause container's; an
exec joins the container's namespaces, hence the pod's. Both go when the sandbox stops
(CRI: the pod's IPC lives as long as its sandbox), and a restarted runtime reclaims those
of sandboxes that are gone or no longer ready.

Concurrency contract: blocking functions (call through ``asyncio.to_thread``); the runtime
serialises calls per sandbox.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from agent.network import netns
from agent.runtime import linux

# Docker's and containerd's default /dev/shm size
SHM_SIZE_BYTES = 64 * 1024 * 1024
SHM_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
SHM_OPTIONS = f"mode=1777,size={SHM_SIZE_BYTES // 1024}k"
# The host's /dev/shm, shown to hostIPC pods.
HOST_SHM = "/dev/shm"


def shm_path(sandbox_dir: Path) -> Path:
    return sandbox_dir / "shm"


def create(ipcns_dir: Path, sandbox_dir: Path, sandbox_id: str) -> tuple[str, str]:
    """Pin a new IPC namespace and mount the pod's /dev/shm tmpfs; returns (namespace
    path, shm path). Nothing is left behind on failure."""
    ipcns_dir.mkdir(parents=True, exist_ok=True)
    pin = ipcns_dir / sandbox_id
    shm = shm_path(sandbox_dir)
    try:
        netns.create(pin, kind="ipc")
        shm.mkdir(mode=0o1777, exist_ok=True)
        if not os.path.ismount(shm):
            linux.mount("shm", str(shm), "tmpfs", SHM_FLAGS, SHM_OPTIONS)
    except BaseException:
        remove(ipcns_dir, sandbox_dir, sandbox_id)
        raise
    return str(pin), str(shm)


def remove(ipcns_dir: Path, sandbox_dir: Path, sandbox_id: str) -> None:
    """Unmount the pod's /dev/shm and unpin its IPC namespace (it goes with the last
    container in it). Idempotent."""
    shm = shm_path(sandbox_dir)
    if os.path.ismount(shm):
        # Detached: an exec helper still inside the pod must not make this fail.
        linux.umount2(str(shm), linux.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        shm.rmdir()
    netns.remove(ipcns_dir / sandbox_id)


def remove_orphans(ipcns_dir: Path, sandboxes_dir: Path, live: set[str]) -> list[str]:
    """Remove the namespaces and /dev/shm mounts of sandboxes not in ``live`` (gone, or
    stopped while no runtime ran to tidy up); returns their ids."""
    found: set[str] = set()
    for base in (ipcns_dir, sandboxes_dir):
        with contextlib.suppress(FileNotFoundError):
            found.update(e for e in os.listdir(base) if not e.startswith("."))
    removed = []
    for entry in sorted(found - live):
        sdir = sandboxes_dir / entry
        if os.path.lexists(ipcns_dir / entry) or os.path.ismount(shm_path(sdir)):
            remove(ipcns_dir, sdir, entry)
            removed.append(entry)
    return removed
