"""The process runtime: containers are process groups started from their image (an overlay
of its layers, ``rootfs.py``) or, for the ``host`` handler, from the host's filesystem,
each owned by a monitor process of its own (``monitor.py``, forked by the runtime's fork
server: ``launcher.py``); with root, each container also
gets private PID, mount and UTS namespaces, the pod's IPC namespace and /dev/shm
(``sandbox_ipc.py``), that overlay root with
its volumes bind-mounted at their mountPath, the pod's hostname, a capability set and user,
and cgroup limits (``cgroups.py``).

State lives only in files under ``root_dir`` (one root per node, so several agents share a
host)::

    sandboxes/<id>/sandbox.json   the pod's sandbox (+ hosts, resolv.conf, hostname files)
    sandboxes/<id>/shm            the pod's /dev/shm (a tmpfs, while the sandbox is ready)
    ipcns/<id>, netns/<id>        the pod's IPC and network namespaces, pinned
    containers/<id>/spec.json     what to run (written here, read by the monitor)
    containers/<id>/monitor.json  monitor and container pids + start times (by the monitor)
    containers/<id>/status.json   exit code, signal, OOM flag, times, message (by the monitor)
    containers/<id>/upper, work   the overlay's writable layer (root, host's filesystem)
    sandboxes/<id>/rootfs/<name>/ upper, work of a container run from its image: one per
                                  container name, kept across its restarts

so a new :class:`ProcessRuntime` on the same ``root_dir`` (after the agent was killed)
lists every sandbox and container with its true state: RUNNING while the recorded pid is
alive *and* still has the recorded start time (pids get reused), EXITED with the code the
monitor wrote.

Without root (or with ``isolate=False``) containers are plain process groups: no
namespaces, cgroups or overlay; a volume can only be used at its own host path, and the
securityContext fields that need root are refused by name (:meth:`isolation_report` says
what is off). The container's stdin is /dev/null and ``tty`` is ignored (there is no attach).

Listing is cheap because the files are cached in memory, never trusted over the disk:
``spec.json`` never changes after creation, so it is parsed once per container (lazily, so
a fresh runtime on the same ``root_dir`` fills the cache from disk); ``sandbox.json``,
``status.json`` and ``monitor.json`` are re-parsed only when a ``stat`` shows a different
file (each write is an atomic replace: a new inode). Which containers and sandboxes exist
is always read from the directory itself (one ``listdir``), and entries of removed ones are
dropped, so another runtime instance removing a container is noticed on the next call.
A listing of one sandbox's containers reads only that sandbox's files.

Concurrency: every method is a coroutine on the agent's loop and keeps no in-memory state
that could disagree with the files (the caches above are checked against them); blocking
work that may take long (removing a
container's files, waiting for a cgroup to empty) runs in worker threads. The kubelet
serialises calls per pod; calls for different pods touch disjoint files. Sandbox creation
takes a lock so that ``run_pod_sandbox`` stays idempotent per pod uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import agent
from agent.network.interface import PodNetwork
from agent.runtime import imagefs, linux, sandbox_ipc, sandbox_net
from agent.runtime.cgroups import Cgroups
from agent.runtime.exec_session import (
    ProcessExecSession,
    kill_exec,
    kill_group,
    spawn_helper,
)
from agent.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    CreateContainerError,
    ExecResult,
    NotFoundError,
    Resources,
    RuntimeError_,
    SandboxConfig,
    SandboxState,
    SandboxStatus,
    StartContainerError,
)
from agent.runtime.launcher import LaunchError, MonitorLauncher
from agent.runtime.monitor import read_json, set_raw, write_json_atomic

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_MAX_FILES = 4
_POLL = 0.02
# A pod annotated so gets a small init as each container's PID 1 (off by default, as in
# Kubernetes): ``sleep`` and other programs without signal handlers then stop on SIGTERM.
INIT_ANNOTATION = "flotilla.io/init"
# Exit code reported when a monitor died without recording the container's status.
LOST_EXIT_CODE = 255


def _helper_env() -> dict[str, str]:
    """The monitor's environment: nothing of the agent's, only what finds our package."""
    package_root = str(Path(agent.__file__).resolve().parent.parent)
    return {"PATH": DEFAULT_PATH, "PYTHONPATH": package_root, "LANG": "C.UTF-8"}


def _launcher_argv(root_dir: Path) -> Callable[[int], list[str]]:
    return lambda fd: _helper_argv("serve", str(root_dir), str(fd))


def _helper_argv(*args: str) -> list[str]:
    # -S: the monitor needs only the standard library and our package (PYTHONPATH), and
    # skipping site saves startup time for every container and every exec.
    return [sys.executable, "-S", "-m", "agent.runtime.monitor", *args]


_Sig = tuple[int, int, int, int]


class _JsonCache:
    """Parsed JSON files, re-read only when ``stat`` shows another file (inode, mtime,
    ctime or size changed: every writer replaces the file atomically)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[_Sig, dict[str, Any]]] = {}

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._entries.pop(path, None)
            return None
        sig = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        hit = self._entries.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        data = read_json(path)  # replaced meanwhile? then the next stat differs: re-read
        if data is None:
            self._entries.pop(path, None)
        else:
            self._entries[path] = (sig, data)
        return data

    def forget(self, path: str) -> None:
        self._entries.pop(path, None)


class ProcessRuntime:
    """The real runtime (see the module docstring)."""

    name = "flotilla-process"
    version = "0.1.0"

    def __init__(self, root_dir: Path, cgroup_prefix: str | None = None, *,
                 isolate: bool | None = None, log_max_bytes: int = LOG_MAX_BYTES,
                 log_max_files: int = LOG_MAX_FILES, start_timeout: float = 30.0,
                 mask_paths: Sequence[str] = (), network: PodNetwork | None = None) -> None:
        self.root_dir = Path(root_dir).resolve()
        self._sandboxes = self.root_dir / "sandboxes"
        self._containers = self.root_dir / "containers"
        self._sandboxes.mkdir(parents=True, exist_ok=True)
        self._containers.mkdir(parents=True, exist_ok=True)
        self.isolate = linux.is_root() if isolate is None else isolate
        if self.isolate and not linux.is_root():
            raise ValueError("isolation (namespaces, cgroups, overlay root) needs root")
        self.cgroup_prefix = cgroup_prefix or f"flotilla/{socket.gethostname()}"
        self.cgroups = Cgroups.detect(self.cgroup_prefix) if self.isolate else None
        self.log_max_bytes = log_max_bytes
        self.log_max_files = log_max_files
        self.start_timeout = start_timeout
        # Host directories hidden (empty, read-only) inside every container's overlay
        # root: always our own state (every container's env is in it), plus what the
        # agent names (its data directory, with every pod's secrets).
        self.mask_paths = [str(self.root_dir), *(str(Path(p).resolve()) for p in mask_paths)]
        self._sandbox_lock = asyncio.Lock()
        # The pod network (None: every pod shares the machine's network); pods' network
        # namespaces are pinned under netns/ (see sandbox_net.py).
        if network is not None and not self.isolate:
            raise ValueError("a pod network needs isolation (root)")
        self.network = network
        self.netns_dir = self.root_dir / "netns"
        # pods' IPC namespaces (with root; see sandbox_ipc.py)
        self.ipcns_dir = self.root_dir / "ipcns"
        # container id -> its spec.json (immutable once written); see the module docstring
        self._specs: dict[str, dict[str, Any]] = {}
        self._files = _JsonCache()  # sandbox.json, status.json, monitor.json
        # Forks every container's monitor (started on first use; see launcher.py).
        self._launcher = MonitorLauncher(_launcher_argv(self.root_dir), _helper_env(),
                                         self.root_dir / "launcher.log")

    # ---- reporting -----------------------------------------------------------------------

    def isolation_report(self) -> list[str]:
        """One line per isolation feature that is off (empty: everything is on)."""
        if not self.isolate:
            why = "not running as root" if not linux.is_root() else "isolation disabled"
            return [
                f"{why}: containers are plain process groups on the host "
                "(no PID, mount, UTS or IPC namespaces; no pod hostname)",
                f"{why}: no cgroup limits (memory and cpu limits are not enforced)",
                f"{why}: no overlay root; volumes work only at their own host path, "
                "read-only mounts are not enforced",
                f"{why}: securityContext runAsUser/runAsGroup/supplementalGroups (other than "
                "the agent's), readOnlyRootFilesystem, privileged and capabilities.add "
                "are refused",
                f"{why}: no pod network namespaces; every pod shares the machine's network",
            ]
        report = [] if self.network is not None else [
            "no pod network: every pod shares the machine's network"]
        if self.cgroups is None:
            report.insert(0, "no usable cgroup memory controller (v1 or delegated v2): "
                             "memory and cpu limits are not enforced")
        else:
            report[:0] = self.cgroups.describe()
        return report

    # ---- sandboxes -----------------------------------------------------------------------

    def _sandbox_dir(self, sandbox_id: str) -> Path:
        return self._sandboxes / sandbox_id

    def _sandbox_file(self, sandbox_id: str) -> str:
        return f"{self._sandboxes}/{sandbox_id}/sandbox.json"

    def _load_sandbox(self, sandbox_id: str) -> dict[str, Any]:
        data = self._files.get(self._sandbox_file(sandbox_id)) \
            if _safe_id(sandbox_id) else None
        if data is None:
            raise NotFoundError(f"sandbox {sandbox_id!r} not found")
        return dict(data)  # callers may change it: never the cached copy

    def _all_sandboxes(self) -> list[dict[str, Any]]:
        """Every sandbox (the cached dicts: read only)."""
        found = []
        for entry in sorted(os.listdir(self._sandboxes)):
            data = self._files.get(self._sandbox_file(entry))
            if data is not None:
                found.append(data)
        return found

    async def run_pod_sandbox(self, config: SandboxConfig) -> str:
        async with self._sandbox_lock:
            for existing in self._all_sandboxes():
                if existing["pod_uid"] == config.pod_uid and \
                        existing["state"] == SandboxState.READY.value:
                    return str(existing["id"])
            sandbox_id = uuid.uuid4().hex
            sdir = self._sandbox_dir(sandbox_id)
            sdir.mkdir(mode=0o700)
            (sdir / "hostname").write_text(config.hostname + "\n")
            if config.hosts_file is not None:
                (sdir / "hosts").write_text(config.hosts_file)
            if config.resolv_conf is not None:
                (sdir / "resolv.conf").write_text(config.resolv_conf)
            if self.cgroups is not None:
                try:
                    self.cgroups.create(config.pod_uid)
                except OSError as e:
                    shutil.rmtree(sdir, ignore_errors=True)
                    raise RuntimeError_(f"creating the pod's cgroup: {e}") from e
            ipcns_path, shm_path = "", ""
            if self.isolate and not config.host_ipc:
                try:
                    ipcns_path, shm_path = await asyncio.to_thread(
                        sandbox_ipc.create, self.ipcns_dir, sdir, sandbox_id)
                except OSError as e:
                    await self._undo_sandbox(sdir, config.pod_uid)
                    raise RuntimeError_(f"creating the pod's IPC namespace and /dev/shm: "
                                        f"{e}") from e
            netns_path, ip = "", ""
            if self.network is not None and not config.host_network:
                try:
                    netns_path, ip = await sandbox_net.attach(self.network, self.netns_dir,
                                                              sandbox_id, config)
                except BaseException:
                    if ipcns_path:
                        await asyncio.to_thread(sandbox_ipc.remove, self.ipcns_dir, sdir,
                                                sandbox_id)
                    await self._undo_sandbox(sdir, config.pod_uid)
                    raise
            write_json_atomic(str(sdir / "sandbox.json"), {
                "id": sandbox_id, "pod_uid": config.pod_uid, "namespace": config.namespace,
                "name": config.name, "hostname": config.hostname, "pod_dir": config.pod_dir,
                "labels": dict(config.labels), "annotations": dict(config.annotations),
                "host_network": config.host_network, "host_ipc": config.host_ipc,
                "ipcns": ipcns_path, "shm": shm_path,
                "hosts_file": config.hosts_file is not None,
                "resolv_conf": config.resolv_conf is not None,
                "netns": netns_path, "ip": ip,
                "created_at": time.time(), "state": SandboxState.READY.value})
            return sandbox_id

    async def _undo_sandbox(self, sdir: Path, pod_uid: str) -> None:
        """A sandbox that failed half-way: its files go, and the pod's cgroup unless
        another sandbox of the pod still has it."""
        shutil.rmtree(sdir, ignore_errors=True)
        if self.cgroups is not None and \
                not any(s["pod_uid"] == pod_uid for s in self._all_sandboxes()):
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.cgroups.remove, pod_uid)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sandbox = self._load_sandbox(sandbox_id)
        containers = self._containers_of(sandbox_id)
        await asyncio.gather(*(self.stop_container(c, 0) for c in containers))
        if sandbox.get("netns"):
            # As CRI's StopPodSandbox: the network goes with the last container.
            await sandbox_net.detach(self.network, self.netns_dir, sandbox_id, sandbox)
        if sandbox.get("ipcns") or sandbox.get("shm"):
            # Likewise the pod's IPC (CRI: containerd unmounts the sandbox's /dev/shm).
            try:
                await asyncio.to_thread(sandbox_ipc.remove, self.ipcns_dir,
                                        self._sandbox_dir(sandbox_id), sandbox_id)
            except OSError as e:
                raise RuntimeError_(f"removing the pod's IPC namespace and /dev/shm: "
                                    f"{e}") from e
        if sandbox["state"] != SandboxState.NOTREADY.value:
            sandbox["state"] = SandboxState.NOTREADY.value
            write_json_atomic(str(self._sandbox_dir(sandbox_id) / "sandbox.json"), sandbox)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Idempotent, as CRI's RemovePodSandbox: a missing sandbox is already removed."""
        try:
            sandbox = self._load_sandbox(sandbox_id)
        except NotFoundError:
            return
        await self.stop_pod_sandbox(sandbox_id)
        for cid in self._containers_of(sandbox_id):
            with contextlib.suppress(NotFoundError):
                await self.remove_container(cid)
        pod_uid = str(sandbox["pod_uid"])
        others = [s for s in self._all_sandboxes()
                  if s["pod_uid"] == pod_uid and s["id"] != sandbox_id]
        if self.cgroups is not None and not others:
            try:
                await asyncio.to_thread(self.cgroups.remove, pod_uid)
            except OSError as e:
                raise RuntimeError_(f"removing the pod's cgroup: {e}") from e
        await asyncio.to_thread(shutil.rmtree, self._sandbox_dir(sandbox_id), True)
        self._files.forget(self._sandbox_file(sandbox_id))

    async def list_pod_sandboxes(self) -> list[SandboxStatus]:
        return [SandboxStatus(
            id=s["id"], pod_uid=s["pod_uid"], namespace=s["namespace"], name=s["name"],
            state=SandboxState(s["state"]), created_at=float(s["created_at"]),
            ip=str(s.get("ip") or "") if s["state"] == SandboxState.READY.value else "")
            for s in self._all_sandboxes()]

    async def reclaim_ipc(self) -> None:
        """At start: remove the IPC namespaces and /dev/shm mounts of sandboxes that are
        gone or stopped (an agent killed between stopping a sandbox and tidying up), and
        make them again for ready sandboxes that lost theirs (the machine rebooted)."""
        ready = [s for s in self._all_sandboxes() if s["state"] == SandboxState.READY.value]
        await asyncio.to_thread(sandbox_ipc.remove_orphans, self.ipcns_dir,
                                self._sandboxes, {str(s["id"]) for s in ready})
        for s in ready:
            if s.get("ipcns"):
                sid = str(s["id"])
                await asyncio.to_thread(sandbox_ipc.create, self.ipcns_dir,
                                        self._sandbox_dir(sid), sid)

    async def reclaim_network(self) -> None:
        """At start: release the pod network's leases and namespaces of sandboxes that no
        longer exist (an agent killed between removing a sandbox and releasing them)."""
        if self.network is None:
            return
        ready = {str(s["id"]) for s in self._all_sandboxes()
                 if s["state"] == SandboxState.READY.value and s.get("netns")}
        await self.network.gc(ready)
        await sandbox_net.remove_orphans(self.netns_dir, ready)

    # ---- containers: create / start ------------------------------------------------------

    def _container_dir(self, container_id: str) -> Path:
        if not _safe_id(container_id):
            raise NotFoundError(f"container {container_id!r} not found")
        return self._containers / container_id

    def _cached_spec(self, container_id: str) -> dict[str, Any] | None:
        """spec.json, parsed once (it never changes); None while it does not exist.
        Read only: never change the returned dict."""
        spec = self._specs.get(container_id)
        if spec is None and _safe_id(container_id):
            spec = read_json(f"{self._containers}/{container_id}/spec.json")
            if spec is not None:
                self._specs[container_id] = spec
        return spec

    def _load_spec(self, container_id: str) -> dict[str, Any]:
        self._container_dir(container_id)  # NotFoundError for an unsafe id
        spec = self._cached_spec(container_id)
        if spec is None:
            raise NotFoundError(f"container {container_id!r} not found")
        return spec

    def _container_ids(self) -> list[str]:
        # ".removing-<id>" directories are on their way out: not containers any more.
        ids = sorted(e for e in os.listdir(self._containers) if _safe_id(e))
        if len(self._specs) > len(ids) or any(c not in self._specs for c in ids):
            present = set(ids)
            for gone in [c for c in self._specs if c not in present]:
                self._forget_container(gone)  # removed, maybe by another runtime
        return ids

    def _forget_container(self, container_id: str) -> None:
        self._specs.pop(container_id, None)
        for name in ("status.json", "monitor.json"):
            self._files.forget(f"{self._containers}/{container_id}/{name}")

    def _sandbox_of(self, container_id: str) -> str | None:
        spec = self._cached_spec(container_id)
        return None if spec is None else str(spec["sandbox_id"])

    def _containers_of(self, sandbox_id: str) -> list[str]:
        return [c for c in self._container_ids() if self._sandbox_of(c) == sandbox_id]

    def _validate(self, config: ContainerConfig) -> None:
        if not config.argv:
            raise CreateContainerError("no command specified")
        if config.rootfs_layers and not self.isolate:
            raise CreateContainerError(
                "running a container in its image needs the process runtime to run as root")
        for layer in config.rootfs_layers:
            if not os.path.isdir(layer):
                raise CreateContainerError(f"image layer {layer} is missing on this node")
        sec = config.security
        for m in config.mounts:
            if not os.path.isabs(m.container_path):
                raise CreateContainerError(
                    f"volume mount {m.container_path!r}: mountPath must be absolute")
            if not os.path.exists(m.host_path):
                raise CreateContainerError(
                    f"volume mount {m.container_path}: source {m.host_path} does not exist")
        try:
            linux.effective_capabilities(sec.capabilities_add, sec.capabilities_drop,
                                         sec.privileged)
        except ValueError as e:
            raise CreateContainerError(f"securityContext.capabilities: {e}") from e
        if self.isolate:
            return
        why = "needs the process runtime to run as root"
        for m in config.mounts:
            if os.path.normpath(m.container_path) != os.path.normpath(m.host_path):
                raise CreateContainerError(
                    f"volume mount {m.container_path}: showing {m.host_path} at another "
                    f"path {why} (without root containers see the host's filesystem)")
        if sec.run_as_user is not None and sec.run_as_user != os.getuid():
            raise CreateContainerError(f"securityContext.runAsUser {why}")
        if sec.run_as_group is not None and sec.run_as_group != os.getgid():
            raise CreateContainerError(f"securityContext.runAsGroup {why}")
        if set(sec.supplemental_groups) - set(os.getgroups()) - {os.getgid()}:
            raise CreateContainerError(f"securityContext.supplementalGroups {why}")
        if sec.read_only_root_filesystem:
            raise CreateContainerError(f"securityContext.readOnlyRootFilesystem {why}")
        if sec.privileged:
            raise CreateContainerError(f"securityContext.privileged {why}")
        if sec.capabilities_add:
            raise CreateContainerError(f"securityContext.capabilities.add {why}")

    def _image_user(self, config: ContainerConfig) -> imagefs.ResolvedUser | None:
        """The identity an image's container runs as (None on the host's filesystem)."""
        if not config.rootfs_layers:
            return None
        sec = config.security
        try:
            return imagefs.image_user(config.rootfs_layers, config.image_user,
                                      run_as_user=sec.run_as_user,
                                      run_as_group=sec.run_as_group)
        except imagefs.UserError as e:
            raise CreateContainerError(f"image user {config.image_user!r}: {e}") from e

    @staticmethod
    def _image_rw_dirs(sandbox_dir: Path, name: str) -> tuple[Path, Path]:
        base = sandbox_dir / "rootfs" / name
        return base / "upper", base / "work"

    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               attempt: int = 0) -> str:
        return self._create(sandbox_id, config, attempt)

    def _create(self, sandbox_id: str, config: ContainerConfig, attempt: int) -> str:
        """Validate and write spec.json: a few small files, cheap enough for the loop."""
        sandbox = self._load_sandbox(sandbox_id)
        if sandbox["state"] != SandboxState.READY.value:
            raise CreateContainerError(f"sandbox {sandbox_id} is not ready")
        self._validate(config)
        sec = config.security
        container_id = uuid.uuid4().hex
        cdir = self._containers / container_id
        sdir = self._sandbox_dir(sandbox_id)
        env = dict(config.env)
        env.setdefault("PATH", DEFAULT_PATH)
        if self.isolate:
            env.setdefault("HOSTNAME", str(sandbox["hostname"]))
        user = self._image_user(config)
        if user is not None:
            env.setdefault("HOME", user.home or "/")
        env.setdefault("HOME", "/root" if not sec.run_as_user else "/")
        spec: dict[str, Any] = {
            "id": container_id, "sandbox_id": sandbox_id, "pod_uid": sandbox["pod_uid"],
            "name": config.name, "attempt": attempt, "created_at": time.time(),
            "argv": list(config.argv), "env": list(env.items()),
            "working_dir": config.working_dir, "image": config.image,
            "labels": dict(config.labels),
            "log_path": config.log_path or str(cdir / "container.log"),
            "log_max_bytes": self.log_max_bytes, "log_max_files": self.log_max_files,
            "termination_message_path": config.termination_message_path,
            "isolate": self.isolate, "hostname": sandbox["hostname"],
            # a small init as PID 1 (reaps, passes signals on), when the pod asks for it
            "init": self.isolate and (sandbox.get("annotations") or {}).get(INIT_ANNOTATION)
            == "true",
            "netns": sandbox.get("netns") or "",
            # the pod's IPC namespace to join; none and not hostIPC (a sandbox made before
            # pods had one): the container gets one of its own
            "ipcns": sandbox.get("ipcns") or "", "host_ipc": bool(sandbox.get("host_ipc")),
            "resources": {
                "cpu_quota_millis": config.resources.cpu_quota_millis,
                "cpu_shares": config.resources.cpu_shares,
                "memory_limit_bytes": config.resources.memory_limit_bytes},
        }
        if self.isolate:
            mounts = [[m.host_path, m.container_path, m.read_only] for m in config.mounts]
            taken = {os.path.normpath(m.container_path) for m in config.mounts}
            for name, flag in (("hosts", "hosts_file"), ("resolv.conf", "resolv_conf"),
                               ("hostname", None)):
                target = f"/etc/{name}"
                if (flag is None or sandbox.get(flag)) and target not in taken:
                    mounts.append([str(sdir / name), target, False])
            upper, work = cdir / "upper", cdir / "work"
            if config.rootfs_layers:
                # one writable layer per container name, kept across its restarts and
                # removed with the sandbox (as containerd keeps a container's snapshot)
                upper, work = self._image_rw_dirs(sdir, config.name)
            spec["rootfs"] = {
                "merged": str(cdir / "merged"), "upper": str(upper),
                "work": str(work), "mounts": mounts,
                "read_only": sec.read_only_root_filesystem, "privileged": sec.privileged,
                "masks": self.mask_paths, "lower": list(reversed(config.rootfs_layers)),
                "shm": sandbox_ipc.HOST_SHM if sandbox.get("host_ipc")
                else str(sandbox.get("shm") or "")}
            spec["uid"] = sec.run_as_user
            spec["gid"] = sec.run_as_group
            spec["groups"] = list(sec.supplemental_groups)
            if user is not None:
                spec["uid"], spec["gid"] = user.uid, user.gid
                spec["groups"] = sorted({*user.groups, *sec.supplemental_groups})
            spec["capabilities"] = sorted(linux.effective_capabilities(
                sec.capabilities_add, sec.capabilities_drop, sec.privileged))
            if self.cgroups is not None:
                rel = f"{sandbox['pod_uid']}/{container_id}"
                spec["cgroup_rel"] = rel
                spec["cgroup_procs"] = self.cgroups.procs_files(rel)
                spec["oom_file"] = self.cgroups.oom_file(rel)
        cdir.mkdir(mode=0o700)
        if self.isolate:
            for sub in ("upper", "work", "merged"):
                (cdir / sub).mkdir()
            if config.rootfs_layers:
                for d in self._image_rw_dirs(sdir, config.name):
                    d.mkdir(parents=True, exist_ok=True)
        write_json_atomic(str(cdir / "spec.json"), spec)
        self._specs[container_id] = spec
        return container_id

    async def start_container(self, container_id: str) -> None:
        spec = self._load_spec(container_id)
        cdir = self._container_dir(container_id)
        if (cdir / "monitor.json").exists() or (cdir / "status.json").exists() or \
                (cdir / "monitor.log").exists():
            raise StartContainerError(f"container {container_id} was already started")
        if self.cgroups is not None and spec.get("cgroup_rel"):
            try:
                self.cgroups.create(spec["cgroup_rel"], Resources(**spec["resources"]))
            except OSError as e:
                raise StartContainerError(f"cgroup: {e}") from e
        Path(spec["log_path"]).parent.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        monitor_log = os.open(cdir / "monitor.log",
                              os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            # The fork server (launcher.py) forks the monitor; it reports on the pipe.
            await self._launcher.launch(str(cdir), write_fd, monitor_log)
        except LaunchError as e:
            os.close(read_fd)
            raise StartContainerError(f"starting the monitor: {e}") from e
        finally:
            os.close(write_fd)
            os.close(monitor_log)
        raw = await _read_until_eof(read_fd, self.start_timeout)
        try:
            result = json.loads(raw.splitlines()[0]) if raw.strip() else None
        except (json.JSONDecodeError, IndexError):
            result = None
        if result is None:
            message = "the container's monitor exited without reporting: " + \
                _tail(cdir / "monitor.log")
            if not (cdir / "monitor.json").exists() and not (cdir / "status.json").exists():
                # Nothing was started: record the failure so the container reads EXITED.
                write_json_atomic(str(cdir / "status.json"), {
                    "exit_code": 128, "signal": 0, "oom_killed": False,
                    "reason": "StartError", "message": message[:4096], "started_at": 0.0,
                    "finished_at": time.time(), "pid": 0})
            raise StartContainerError(message)
        if not result.get("ok"):
            raise StartContainerError(str(result.get("error")))

    # ---- containers: state ---------------------------------------------------------------

    async def container_status(self, container_id: str) -> ContainerStatus:
        spec = self._load_spec(container_id)
        cdir = self._container_dir(container_id)
        base: dict[str, Any] = {
            "id": container_id, "sandbox_id": spec["sandbox_id"], "name": spec["name"],
            "created_at": float(spec["created_at"]), "log_path": spec["log_path"],
            "labels": spec.get("labels") or {}, "attempt": int(spec.get("attempt", 0))}
        status_file, mon_file = f"{cdir}/status.json", f"{cdir}/monitor.json"
        status = self._files.get(status_file)
        mon = self._files.get(mon_file)
        if status is None and mon is None and not cdir.is_dir():
            self._forget_container(container_id)  # removed by another runtime instance
            raise NotFoundError(f"container {container_id!r} not found")
        if status is None and mon is not None:
            if _alive(mon, "pid"):
                return ContainerStatus(state=ContainerState.RUNNING,
                                       started_at=float(mon["started_at"]),
                                       pid=int(mon["pid"]), **base)
            # Exited: the monitor is writing its status (give it a moment), or it is gone.
            deadline = time.monotonic() + 2.0
            while status is None and _alive(mon, "monitor") and time.monotonic() < deadline:
                await asyncio.sleep(_POLL)
                status = self._files.get(status_file)
            if status is None:
                return ContainerStatus(
                    state=ContainerState.EXITED, started_at=float(mon["started_at"]),
                    finished_at=time.time(), exit_code=LOST_EXIT_CODE, reason="Error",
                    message="the container's monitor died: its exit status is lost",
                    pid=int(mon["pid"]), **base)
        if status is not None:
            return ContainerStatus(
                state=ContainerState.EXITED,
                started_at=float(status.get("started_at") or 0.0),
                finished_at=float(status["finished_at"]), exit_code=int(status["exit_code"]),
                reason=str(status["reason"]), message=str(status.get("message") or ""),
                pid=int(status.get("pid") or 0), **base)
        return ContainerStatus(state=ContainerState.CREATED, **base)

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        out = []
        for cid in self._container_ids():
            if sandbox_id is not None and self._sandbox_of(cid) != sandbox_id:
                continue
            if self._sandbox_of(cid) is None:
                continue  # being created (no spec.json yet)
            with contextlib.suppress(NotFoundError):  # removed while we looked
                out.append(await self.container_status(cid))
        return out

    async def container_stats(self, container_id: str) -> dict[str, int]:
        """Current usage from the container's cgroup: ``memory_bytes``, ``cpu_nanos``
        (cumulative), ``pids``; empty without cgroups."""
        spec = self._load_spec(container_id)
        if self.cgroups is None or not spec.get("cgroup_rel"):
            return {}
        return self.cgroups.usage(spec["cgroup_rel"])

    # ---- containers: stop / remove -------------------------------------------------------

    async def stop_container(self, container_id: str,
                             timeout: float) -> None:  # noqa: ASYNC109 - the contract
        spec = self._load_spec(container_id)
        cdir = self._container_dir(container_id)
        mon = read_json(str(cdir / "monitor.json"))
        if (cdir / "status.json").exists():
            return
        if mon is None:
            if not (cdir / "monitor.log").exists():
                # Created, never started: stopping makes it EXITED (and unstartable), as in
                # CRI. (monitor.log exists once a start is under way.)
                write_json_atomic(str(cdir / "status.json"), {
                    "exit_code": 0, "signal": 0, "oom_killed": False, "reason": "",
                    "message": "", "started_at": 0.0, "finished_at": time.time(), "pid": 0})
            return
        if timeout > 0:
            _signal_group(mon, signal.SIGTERM)
            if await _wait_exited(cdir, mon, timeout):
                return
        _signal_group(mon, signal.SIGKILL)
        if self.cgroups is not None and spec.get("cgroup_rel"):
            self.cgroups.kill(spec["cgroup_rel"])
        if not await _wait_exited(cdir, mon, 10.0):
            raise RuntimeError_(f"container {container_id} did not exit after SIGKILL")

    async def remove_container(self, container_id: str) -> None:
        """Idempotent; a running container is killed first (CRI: "forcibly removed")."""
        try:
            spec = self._load_spec(container_id)
        except NotFoundError:
            return
        cdir = self._container_dir(container_id)
        await self.stop_container(container_id, 0)
        if self.cgroups is not None and spec.get("cgroup_rel"):
            try:
                await asyncio.to_thread(self.cgroups.remove, spec["cgroup_rel"])
            except OSError as e:
                raise RuntimeError_(f"removing the container's cgroup: {e}") from e
        # Rename first so that a concurrent list never sees a half-deleted container.
        trash = self._containers / f".removing-{container_id}"
        try:
            os.replace(cdir, trash)
        except FileNotFoundError:
            return
        finally:
            self._forget_container(container_id)
        await asyncio.to_thread(shutil.rmtree, trash, True)

    # ---- exec ----------------------------------------------------------------------------

    async def _exec_target(self, container_id: str) -> Path:
        status = await self.container_status(container_id)
        if status.state != ContainerState.RUNNING:
            raise RuntimeError_(f"container {container_id} is not running "
                                f"({status.state.value})")
        return self._container_dir(container_id)

    async def exec_sync(self, container_id: str, argv: Sequence[str],
                        timeout: float) -> ExecResult:  # noqa: ASYNC109 - the contract
        cdir = await self._exec_target(container_id)
        if not argv:
            raise RuntimeError_("exec: no command specified")
        proc = await spawn_helper(_helper_argv("exec", str(cdir), "--", *argv),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=_helper_env())
        communicate = asyncio.ensure_future(proc.communicate())
        try:
            out, err = await asyncio.wait_for(asyncio.shield(communicate),
                                              timeout if timeout > 0 else None)
        except TimeoutError:
            await kill_exec(proc)
            try:
                out, err = await asyncio.wait_for(communicate, 5.0)
            except TimeoutError:  # a straggler keeps the pipes open: give up the output
                out, err = b"", b""
                proc.close_pipes()
            return ExecResult(exit_code=128 + signal.SIGKILL, stdout=out, stderr=err,
                              timed_out=True)
        except BaseException:
            kill_group(proc.pid)
            proc.reap_on_exit()  # reaped when the kill lands, even as we are cancelled
            communicate.cancel()
            proc.close_pipes()
            raise
        code = proc.returncode if proc.returncode is not None else 1
        return ExecResult(exit_code=code if code >= 0 else 128 - code, stdout=out,
                          stderr=err)

    async def exec(self, container_id: str, argv: Sequence[str], *, stdin: bool,
                   tty: bool) -> ProcessExecSession:
        cdir = await self._exec_target(container_id)
        if not argv:
            raise RuntimeError_("exec: no command specified")
        if tty:
            master, slave = os.openpty()
            if self.isolate:
                # The helper relays to a pty inside the container, which echoes and
                # edits lines; this outer one must pass bytes through untouched (set
                # here too, so input written before the helper runs is not echoed).
                set_raw(slave)
            try:
                proc = await spawn_helper(
                    _helper_argv("exec", "--tty", str(cdir), "--", *argv),
                    stdin=slave, stdout=slave, stderr=slave, env=_helper_env())
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            return ProcessExecSession(proc, master)
        proc = await spawn_helper(_helper_argv("exec", str(cdir), "--", *argv),
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=_helper_env())
        return ProcessExecSession(proc, None)

    async def close(self) -> None:
        """Monitors and containers live on by design; the monitors' fork server stops, and
        this node's cgroup prefix goes, only when no container cgroup is left under it."""
        await self._launcher.close()
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.remove_empty_prefix)


# ---- helpers ------------------------------------------------------------------------------

def _safe_id(value: str) -> bool:
    return bool(value) and all(c in "0123456789abcdef" for c in value)


def _alive(mon: dict[str, Any], which: str) -> bool:
    pid, start = mon.get(f"{which}_pid" if which == "monitor" else "pid"), \
        mon.get(f"{which}_start" if which == "monitor" else "pid_start")
    return pid is not None and start is not None and linux.process_alive(int(pid), int(start))


def _signal_group(mon: dict[str, Any], sig: int) -> None:
    """Signal the container's process group (its pid is the group's id: the container
    starts a new session). Checked against the recorded start time so a reused pid is
    never signalled. SIGKILL also goes to the process itself: as PID 1 of its namespace
    its death takes every process of the namespace with it."""
    if not _alive(mon, "pid"):
        return
    pid = int(mon["pid"])
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    if sig == signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def _wait_exited(cdir: Path, mon: dict[str, Any],
                       timeout: float) -> bool:  # noqa: ASYNC109 - a grace period
    """Until the monitor has recorded the exit (or, if it died, the container is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        if (cdir / "status.json").exists():
            return True
        if not _alive(mon, "pid") and not _alive(mon, "monitor"):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)


async def _read_until_eof(fd: int, timeout: float) -> bytes:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    done: asyncio.Future[None] = loop.create_future()
    buf = bytearray()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        if chunk:
            buf.extend(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        raise StartContainerError(f"the container did not start within {timeout:g}s") \
            from None
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return bytes(buf)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_bytes()[-limit:].decode(errors="replace").strip() or "(no output)"
    except OSError:
        return "(no monitor log)"
