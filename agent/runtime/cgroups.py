"""Flotilla's cgroups: detection of cgroup v1 / v2, one cgroup per container under a
flotilla-owned prefix at the top of each hierarchy, limits from :class:`Resources`, OOM
counters, usage, kill and removal.

Layout: ``<hierarchy>/<prefix>/<pod-uid>/<container-id>`` where ``prefix`` is
``flotilla/<node-name>`` (several agents on one host each own their own subtree). On cgroup
v1 every hierarchy we use (memory, cpu, cpuacct, pids) gets the same relative path; on v2
the unified tree does. Flotilla never writes into a cgroup it did not create: on v2 the
controllers must already be enabled in the hierarchy root's ``cgroup.subtree_control``
(systemd does that); we only enable them further down, in our own directories.

Choice of version: a v1 memory hierarchy wins (a hybrid host such as this one mounts a v2
tree that offers no memory or cpu controller); otherwise v2 if its root delegates memory.

Concurrency: plain synchronous file operations, each a few microseconds except
:meth:`Cgroups.remove`, which may wait up to ``timeout`` for killed processes to leave
(the runtime calls it in a worker thread). Different containers never share a file.
The monitor reads only paths recorded in the container's spec, never this class.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass, field

from agent.runtime.interface import Resources

_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
_V2_CONTROLLERS = ("memory", "cpu", "pids")
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000


@dataclass(frozen=True)
class Hierarchies:
    """Where the cgroup filesystems are mounted: v1 controller -> mount point, and the v2
    mount point (or "")."""

    v1: dict[str, str] = field(default_factory=dict)
    v2: str = ""

    @classmethod
    def from_mountinfo(cls, path: str = "/proc/self/mountinfo") -> Hierarchies:
        v1: dict[str, str] = {}
        v2 = ""
        with open(path) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fstype, _source, options = [*right.split(), "", "", ""][:3]
                mount_point = left.split()[4]
                if fstype == "cgroup2" and not v2:
                    v2 = mount_point
                elif fstype == "cgroup":
                    for option in options.split(","):
                        if option in _V1_CONTROLLERS and option not in v1:
                            v1[option] = mount_point
        return cls(v1, v2)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read_oom_kills(path: str) -> int:
    """The ``oom_kill N`` line of memory.oom_control (v1) or memory.events (v2)."""
    try:
        for line in _read(path).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cpu.weight (1..10000), the conversion runc and the
    kubelet use."""
    shares = max(2, min(262_144, shares))
    return 1 + ((shares - 2) * 9999) // 262_142


class Cgroups:
    """Flotilla's cgroups on this host under ``prefix`` (e.g. ``flotilla/node-1``)."""

    def __init__(self, prefix: str, hierarchies: Hierarchies, version: int) -> None:
        parts = [p for p in prefix.split("/") if p not in ("", ".", "..")]
        if not parts:
            raise ValueError("cgroup prefix must name a directory of Flotilla's own")
        self.prefix = "/".join(parts)
        self.version = version
        self._h = hierarchies
        if version == 1:
            # cpu and cpuacct are often co-mounted: one directory serves both.
            self.roots = sorted({hierarchies.v1[c] for c in _V1_CONTROLLERS
                                 if c in hierarchies.v1})
        else:
            self.roots = [hierarchies.v2]

    @classmethod
    def detect(cls, prefix: str) -> Cgroups | None:
        """The usable cgroup setup, or None (no memory controller anywhere we may use)."""
        try:
            h = Hierarchies.from_mountinfo()
        except OSError:
            return None
        if "memory" in h.v1 and os.access(h.v1["memory"], os.W_OK):
            return cls(prefix, h, 1)
        if h.v2:
            try:
                delegated = _read(os.path.join(h.v2, "cgroup.subtree_control")).split()
            except OSError:
                delegated = []
            if "memory" in delegated and os.access(h.v2, os.W_OK):
                return cls(prefix, h, 2)
        return None

    def describe(self) -> list[str]:
        """What is missing, for the agent's isolation report."""
        missing: list[str] = []
        if self.version == 1:
            for c in ("cpu", "pids"):
                if c not in self._h.v1:
                    missing.append(f"cgroup v1 controller {c} is not mounted: no {c} limits")
        else:
            delegated = self._v2_delegated()
            for c in ("cpu", "pids"):
                if c not in delegated:
                    missing.append(f"cgroup v2 controller {c} is not delegated at the root")
        return missing

    def _v2_delegated(self) -> list[str]:
        try:
            return _read(os.path.join(self._h.v2, "cgroup.subtree_control")).split()
        except OSError:
            return []

    # ---- paths ---------------------------------------------------------------------------

    def dirs(self, rel: str) -> list[str]:
        """Absolute directories of ``<prefix>/<rel>`` in every hierarchy we use."""
        return [os.path.join(root, self.prefix, rel) for root in self.roots]

    def procs_files(self, rel: str) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs(rel)]

    def controller_dir(self, controller: str, rel: str) -> str | None:
        if self.version == 2:
            return os.path.join(self._h.v2, self.prefix, rel)
        root = self._h.v1.get(controller)
        return os.path.join(root, self.prefix, rel) if root else None

    def oom_file(self, rel: str) -> str:
        d = self.controller_dir("memory", rel)
        assert d is not None
        return os.path.join(d, "memory.oom_control" if self.version == 1 else "memory.events")

    # ---- lifecycle -----------------------------------------------------------------------

    def create(self, rel: str, resources: Resources | None = None) -> None:
        """Create ``<prefix>/<rel>`` (and our parents) in every hierarchy and apply the
        limits. Raises OSError naming the file that could not be written."""
        for root in self.roots:
            path = root
            for part in [*self.prefix.split("/"), *rel.split("/")]:
                if self.version == 2:
                    # Enable controllers for the child we are about to create; the first
                    # step (root) is not ours and must already delegate them.
                    if path != root:
                        self._enable_v2_controllers(path)
                path = os.path.join(path, part)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path)
        if resources is not None:
            self._apply(rel, resources)

    def _enable_v2_controllers(self, path: str) -> None:
        try:
            enabled = _read(os.path.join(path, "cgroup.subtree_control")).split()
            available = _read(os.path.join(path, "cgroup.controllers")).split()
        except OSError:
            return
        wanted = [c for c in _V2_CONTROLLERS if c in available and c not in enabled]
        if wanted:
            _write(os.path.join(path, "cgroup.subtree_control"),
                   " ".join("+" + c for c in wanted))

    def _apply(self, rel: str, r: Resources) -> None:
        def put(controller: str, name: str, value: str, optional: bool = False) -> None:
            d = self.controller_dir(controller, rel)
            if d is None:
                if optional:
                    return
                raise OSError(errno.ENOENT, f"cgroup controller {controller} is not available")
            target = os.path.join(d, name)
            if optional and not os.path.exists(target):
                return
            try:
                _write(target, value)
            except OSError as e:
                raise OSError(e.errno, f"writing {value!r} to {target}: {e.strerror}") from e

        quota = None
        if r.cpu_quota_millis is not None and r.cpu_quota_millis > 0:
            quota = max(MIN_CFS_QUOTA_US, r.cpu_quota_millis * CFS_PERIOD_US // 1000)
        if self.version == 1:
            if r.memory_limit_bytes:
                put("memory", "memory.limit_in_bytes", str(r.memory_limit_bytes))
                # Without this a host with swap would page the container out instead of
                # OOM-killing it; memsw must be set after (and >=) limit_in_bytes.
                put("memory", "memory.memsw.limit_in_bytes", str(r.memory_limit_bytes),
                    optional=True)
            if quota is not None:
                put("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US))
                put("cpu", "cpu.cfs_quota_us", str(quota))
            if r.cpu_shares:
                put("cpu", "cpu.shares", str(max(2, r.cpu_shares)))
        else:
            if r.memory_limit_bytes:
                put("memory", "memory.max", str(r.memory_limit_bytes))
                put("memory", "memory.swap.max", "0", optional=True)
                # Kill the whole container on OOM, as the kubelet configures it on v2.
                put("memory", "memory.oom.group", "1", optional=True)
            if quota is not None:
                put("cpu", "cpu.max", f"{quota} {CFS_PERIOD_US}")
            if r.cpu_shares:
                put("cpu", "cpu.weight", str(shares_to_weight(r.cpu_shares)), optional=True)

    def pids(self, rel: str) -> list[int]:
        found: set[int] = set()
        for f in self.procs_files(rel):
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in _read(f).split())
        return sorted(found)

    def kill(self, rel: str) -> None:
        """SIGKILL every process in the cgroup (v2: cgroup.kill, which also catches forks
        in flight; v1: one pass over cgroup.procs)."""
        if self.version == 2:
            kill_file = os.path.join(self._h.v2, self.prefix, rel, "cgroup.kill")
            if os.path.exists(kill_file):
                with contextlib.suppress(OSError):
                    _write(kill_file, "1")
                    return
        for pid in self.pids(rel):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, rel: str, timeout: float = 5.0) -> None:
        """Kill what is left and remove ``<prefix>/<rel>`` and every cgroup below it,
        deepest first. Missing directories are fine (idempotent)."""
        deadline = time.monotonic() + timeout
        for d in self.dirs(rel):
            if not os.path.isdir(d):
                continue
            subdirs = [os.path.join(dp, n) for dp, dns, _ in os.walk(d) for n in dns]
            for sub in [*sorted(subdirs, key=len, reverse=True), d]:
                self._rmdir(sub, rel, deadline)

    def remove_all(self, timeout: float = 5.0) -> None:
        """Kill and remove everything under our prefix, then the prefix's own directories
        where they are empty (another node's agent may share ``flotilla/``)."""
        for root in self.roots:
            top = os.path.join(root, self.prefix)
            if not os.path.isdir(top):
                continue
            for entry in os.listdir(top):
                if os.path.isdir(os.path.join(top, entry)):
                    self.remove(entry, timeout)
        self.remove_empty_prefix()

    def remove_empty_prefix(self) -> None:
        """Remove our prefix's directories that are empty (no pod cgroups left under them);
        a prefix still holding running containers stays, and ``flotilla/`` stays while
        another agent uses it."""
        parts = self.prefix.split("/")
        for root in self.roots:
            for depth in range(len(parts), 0, -1):
                try:
                    os.rmdir(os.path.join(root, *parts[:depth]))
                except OSError:
                    break

    def _rmdir(self, path: str, rel: str, deadline: float) -> None:
        while True:
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
            # Busy: processes are still leaving (killed ones take a moment to exit).
            self.kill(rel)
            time.sleep(0.02)

    def usage(self, rel: str) -> dict[str, int]:
        """Current memory bytes, cumulative CPU nanoseconds, pids (what ``top`` needs)."""
        out: dict[str, int] = {}

        def read_int(controller: str, name: str) -> int | None:
            d = self.controller_dir(controller, rel)
            try:
                return int(_read(os.path.join(d, name)).split()[0]) if d else None
            except (OSError, ValueError, IndexError):
                return None

        if self.version == 1:
            mem = read_int("memory", "memory.usage_in_bytes")
            cpu = read_int("cpuacct", "cpuacct.usage")
        else:
            mem = read_int("memory", "memory.current")
            cpu = None
            d = self.controller_dir("cpu", rel)
            with contextlib.suppress(OSError, ValueError):
                for line in _read(os.path.join(d or "", "cpu.stat")).splitlines():
                    if line.startswith("usage_usec "):
                        cpu = int(line.split()[1]) * 1000
        pids = read_int("pids", "pids.current")
        if mem is not None:
            out["memory_bytes"] = mem
        if cpu is not None:
            out["cpu_nanos"] = cpu
        if pids is not None:
            out["pids"] = pids
        return out
