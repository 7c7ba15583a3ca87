"""Thin ctypes bindings to the Linux calls Python 3.11 lacks: unshare, setns, mount, umount2,
pivot_root, sethostname, prctl (capability bounding set, parent-death signal); plus the
capability name table, the default container capability set (Docker's and containerd's) and
``/proc/<pid>/stat`` helpers that tell a live process from a reused pid.

Everything here is synchronous and process-wide: the namespace and mount calls are meant
for the freshly forked, single-threaded children of the monitor and exec helper
(``monitor.py``), never for the agent's own (multi-threaded) process. The ``/proc`` helpers
are safe anywhere. Errors raise ``OSError`` with errno and the call's name, so a container
that fails to start reports, for example, ``mount(/x -> /y): [Errno 2] ...``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Iterable

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24

# pivot_root has no glibc wrapper; its syscall number depends on the architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount({source or fstype} -> {target})")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount({target})")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown syscall on {platform.machine()}")
    _check(_libc.syscall(number, _b(new_root), _b(put_old)), "pivot_root")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_parent_death_signal(signum: int) -> None:
    prctl(PR_SET_PDEATHSIG, signum)


def set_process_name(name: str) -> None:
    """The calling thread's name (``comm``: what ``ps -o comm``, ``top`` and ``pgrep``
    without ``-f`` show; at most 15 bytes)."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    prctl(PR_SET_NAME, ctypes.addressof(buf))


def set_child_subreaper(on: bool) -> None:
    """Orphaned descendants of the caller are re-parented to it (not to init) while on."""
    prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)


# ---- capabilities -----------------------------------------------------------------------

CAPABILITIES: tuple[str, ...] = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
    "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAP_NUMBER = {name: number for number, name in enumerate(CAPABILITIES)}

# What Docker and containerd give a non-privileged container; Kubernetes users expect it.
DEFAULT_CAPABILITIES: frozenset[str] = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})


def normalize_capability(name: str) -> str:
    """``cap_net_admin`` / ``CAP_NET_ADMIN`` / ``NET_ADMIN`` -> ``NET_ADMIN``; ``ALL`` kept;
    raises ValueError for an unknown name."""
    upper = name.strip().upper()
    if upper.startswith("CAP_"):
        upper = upper[4:]
    if upper != "ALL" and upper not in CAP_NUMBER:
        raise ValueError(f"unknown capability {name!r}")
    return upper


def effective_capabilities(add: Iterable[str], drop: Iterable[str],
                           privileged: bool) -> frozenset[str]:
    """The capability set of a container, as containerd computes it: the default set, all
    of them if ``add`` has ALL, none if ``drop`` has ALL, then the named adds, then the
    named drops (a cap both added and dropped is dropped)."""
    adds = {normalize_capability(c) for c in add}
    drops = {normalize_capability(c) for c in drop}
    if privileged:
        return frozenset(CAPABILITIES)
    caps = set(DEFAULT_CAPABILITIES)
    if "ALL" in adds:
        caps = set(CAPABILITIES)
    if "ALL" in drops:
        caps = set()
    caps |= adds - {"ALL"}
    caps -= drops - {"ALL"}
    return frozenset(caps)


def last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(CAPABILITIES) - 1


def limit_bounding_set(keep: Iterable[str]) -> None:
    """Drop every capability not in ``keep`` from the bounding set (needs CAP_SETPCAP).

    For uid 0 the bounding set alone decides the capabilities after execve (a root
    process gains ``bounding & file-permitted`` with file sets taken as full); a non-root
    uid gains none without ambient capabilities, as with containerd."""
    numbers = {CAP_NUMBER[c] for c in keep}
    for cap in range(last_capability() + 1):
        if cap not in numbers and _libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1:
            prctl(PR_CAPBSET_DROP, cap)


# ---- /proc ------------------------------------------------------------------------------

def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or None if the
    pid does not exist or is a zombie (a zombie has exited; only its parent's wait is
    missing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: the fields start after the last ")".
    fields = raw[raw.rfind(b")") + 2:].split()
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def process_alive(pid: int, start_time: int) -> bool:
    """True while ``pid`` is the same (non-zombie) process that had ``start_time``."""
    return pid > 0 and proc_start_time(pid) == start_time


def is_root() -> bool:
    return os.geteuid() == 0
