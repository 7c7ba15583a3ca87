"""A container's root filesystem: an overlay over the image's layers (or, for the ``host``
handler, over the host's ``/``), with upper and work directories from the runtime, with a fresh /proc and /sys, a
small /dev (its /dev/shm the pod's, bind-mounted), the volumes bind-mounted at their mountPath, /etc/hosts, /etc/resolv.conf and
/etc/hostname from the sandbox, the runtime's own state masked, then ``pivot_root``.

Every mount point a volume needs is created inside the overlay, so it lands in the
container's upper directory and nothing is ever created on the host's filesystem. Paths
are resolved with :func:`secure_join`, which follows symlinks *inside* the new root (an
absolute symlink such as /var/run -> /run must not lead back to the host).

For the host handler only the host's root filesystem is layered: other host mounts (a separate /home, tmpfs
mounts) are not visible unless given as volumes.

Concurrency: :func:`setup_rootfs` runs in the container's child process, after it has
unshared its mount namespace and before it execs; it is single-threaded by construction.
:func:`host_path_of` is pure path arithmetic, used by the monitor after the container exits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field

from agent.runtime import linux

# Device nodes a container gets (bind-mounted from the host's /dev), as runc's defaults.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_MAX_SYMLINKS = 40


@dataclass(frozen=True)
class BindMount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class RootfsPlan:
    merged: str
    upper: str
    work: str
    mounts: list[BindMount] = field(default_factory=list)
    read_only: bool = False
    privileged: bool = False
    # host directories hidden from the container (the runtime's own state, with the env of
    # every container in it)
    masks: list[str] = field(default_factory=list)
    # overlay lower dirs, top first (an image's layers); empty: the host's root
    lower: list[str] = field(default_factory=list)
    # host directory shown at /dev/shm (the pod's tmpfs, or the host's for hostIPC);
    # empty: a tmpfs of the container's own
    shm: str = ""

    @classmethod
    def from_json(cls, d: dict[str, object]) -> RootfsPlan:
        raw_mounts = d.get("mounts") or []
        assert isinstance(raw_mounts, list)
        return cls(
            merged=str(d["merged"]), upper=str(d["upper"]), work=str(d["work"]),
            mounts=[BindMount(str(m[0]), str(m[1]), bool(m[2])) for m in raw_mounts],
            read_only=bool(d.get("read_only")), privileged=bool(d.get("privileged")),
            masks=[str(m) for m in d.get("masks") or []],  # type: ignore[attr-defined]
            lower=[str(x) for x in d.get("lower") or []],  # type: ignore[attr-defined]
            shm=str(d.get("shm") or ""),
        )


def secure_join(root: str, unsafe_path: str) -> str:
    """``root`` + ``unsafe_path`` with every symlink resolved as if ``root`` were ``/``;
    ``..`` never climbs above ``root``. Missing components are kept as they are."""
    pending = [p for p in unsafe_path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, f"too many symlinks resolving {unsafe_path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _ensure_mount_point(target: str, like_dir: bool) -> None:
    if like_dir:
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target):
        with open(target, "a"):
            pass


def _bind(source: str, target: str, read_only: bool) -> None:
    linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
    if read_only:
        # A bind mount only becomes read-only by a remount of the new mount point.
        linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)


def _setup_dev(merged: str, shm_source: str = "") -> None:
    dev = secure_join(merged, "/dev")
    os.makedirs(dev, exist_ok=True)
    for name in DEVICES:
        target = os.path.join(dev, name)
        if not os.path.exists(f"/dev/{name}"):
            continue
        if os.path.islink(target):
            os.unlink(target)
        _ensure_mount_point(target, like_dir=False)
        linux.mount(f"/dev/{name}", target, None, linux.MS_BIND)
    pts = os.path.join(dev, "pts")
    os.makedirs(pts, exist_ok=True)
    linux.mount("devpts", pts, "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620")
    ptmx = os.path.join(dev, "ptmx")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ptmx)
    os.symlink("pts/ptmx", ptmx)
    shm = os.path.join(dev, "shm")
    if os.path.islink(shm):
        os.unlink(shm)
    os.makedirs(shm, exist_ok=True)
    if shm_source:
        # Shared by the pod's containers; a bind keeps the source's nosuid,nodev,noexec.
        linux.mount(shm_source, shm, None, linux.MS_BIND)
    else:
        linux.mount("shm", shm, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                    "mode=1777,size=65536k")
    mqueue = os.path.join(dev, "mqueue")
    os.makedirs(mqueue, exist_ok=True)
    with contextlib.suppress(OSError):  # the queues of our IPC namespace; optional
        linux.mount("mqueue", mqueue, "mqueue", linux.MS_NOSUID | linux.MS_NODEV |
                    linux.MS_NOEXEC)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.symlink(target, path)


def setup_rootfs(plan: RootfsPlan) -> None:
    """Build the container's root and pivot into it. The caller has unshared its mount
    namespace (and its PID namespace, so that the new /proc is the container's)."""
    # Slave, not private: unmounts on the host still reach the container's copies (so a
    # volume unmounted by the kubelet does not stay busy), and nothing leaks back out.
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    merged = plan.merged
    lower = ":".join(plan.lower) if plan.lower else "/"
    linux.mount("overlay", merged, "overlay", 0,
                f"lowerdir={lower},upperdir={plan.upper},workdir={plan.work}")

    proc = secure_join(merged, "/proc")
    os.makedirs(proc, exist_ok=True)
    linux.mount("proc", proc, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    sys_dir = secure_join(merged, "/sys")
    os.makedirs(sys_dir, exist_ok=True)
    sys_flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    if not plan.privileged:
        sys_flags |= linux.MS_RDONLY
    linux.mount("sysfs", sys_dir, "sysfs", sys_flags)
    # Before the volumes: an emptyDir mounted at /dev/shm (to enlarge it) lands on top.
    _setup_dev(merged, plan.shm)

    for mask in plan.masks:
        target = secure_join(merged, mask)
        if os.path.isdir(target):
            linux.mount("tmpfs", target, "tmpfs", linux.MS_RDONLY | linux.MS_NOSUID |
                        linux.MS_NODEV | linux.MS_NOEXEC, "size=4k,mode=0755")

    # Parents before children, so /data/sub lands inside the volume mounted at /data.
    for m in sorted(plan.mounts, key=lambda m: len(m.container_path.rstrip("/").split("/"))):
        target = secure_join(merged, m.container_path)
        _ensure_mount_point(target, like_dir=os.path.isdir(m.host_path))
        _bind(m.host_path, target, m.read_only)

    if plan.read_only:
        linux.mount(None, merged, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)

    # pivot_root(".", "."): the old root ends up stacked on the new one and is detached
    # at once, so no directory for it is needed in the (possibly read-only) new root.
    os.chdir(merged)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def host_path_of(plan: RootfsPlan, container_path: str) -> str | None:
    """Where a file the container wrote at ``container_path`` lives on the host once the
    container has exited: in the volume mounted over it, else in the overlay's upper
    directory (None when the container never wrote it there)."""
    norm = os.path.normpath("/" + container_path.lstrip("/"))
    best: BindMount | None = None
    for m in plan.mounts:
        cp = os.path.normpath(m.container_path)
        if (norm == cp or norm.startswith(cp.rstrip("/") + "/")) and (
                best is None or len(cp) > len(best.container_path)):
            best = m
    if best is not None:
        rest = norm[len(os.path.normpath(best.container_path)):].lstrip("/")
        return secure_join(best.host_path, rest) if rest else best.host_path
    # Resolve inside the upper directory: a symlink the container made must not lead
    # the (root) monitor to a host file.
    candidate = secure_join(plan.upper, norm)
    return candidate if os.path.lexists(candidate) else None
