"""The container runtime contract (CRI-like) between the kubelet and a runtime.

The kubelet speaks only this interface; ``process.py`` (containers as process groups, with
namespaces and cgroups when root) and ``fake.py`` (in memory, for unit tests) implement it,
and an OCI/containerd runtime can later. Shapes follow Kubernetes' CRI, reduced to what
Flotilla uses:

- A *sandbox* is the pod's shared environment: its directory, hostname, network
  namespace (with the runtime's pod network; host-network pods and runtimes without one
  share the machine's) and the parent cgroup of its containers. ``run_pod_sandbox`` is idempotent per
  pod uid.
- A *container* is created (configured, not running), started, stopped (SIGTERM to its
  process group, SIGKILL after the timeout) and removed. Its exit status and its log file
  belong to a small monitor process of its own, so that the kubelet (agent) may die and
  restart without losing either: ``list_containers`` after a restart returns everything
  the runtime still knows, with true states.
- Logs: each container writes to ``ContainerConfig.log_path`` in the CRI log format, one
  line per chunk: ``<RFC3339Nano time> <stdout|stderr> <F|P> <text>`` (P = partial line).
  The kubelet reads these files itself to serve ``flotilla logs``. The monitor rotates a
  log at 10 MiB: ``X.log`` -> ``X.log.1`` -> ... ``X.log.4`` (oldest dropped), so a reader
  takes ``X.log.N ... X.log.1, X.log`` in that order. Each restart of a container gets a new
  log file (``<pod_dir>/logs/<container>/<attempt>.log``): ``--previous`` reads attempt-1.
- Exec: ``exec_sync`` for probes and hooks; ``exec`` for interactive streams.

Identifiers are opaque strings. Every method may raise :class:`RuntimeError_` subclasses;
a missing id raises :class:`NotFoundError`.

Concurrency: all methods are coroutines on the agent's event loop. The kubelet serialises
operations per pod; the runtime must tolerate concurrent calls for different pods.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.network.interface import PortMapping


class RuntimeError_(Exception):  # trailing _: not the builtin RuntimeError
    """Base of runtime failures; ``reason`` is what a container status shows (e.g.
    CreateContainerError, RunContainerError)."""

    reason = "RuntimeError"


class NotFoundError(RuntimeError_):
    reason = "NotFound"


class CreateContainerError(RuntimeError_):
    reason = "CreateContainerError"


class StartContainerError(RuntimeError_):
    """The container could not be started (e.g. executable not found)."""

    reason = "RunContainerError"


@dataclass(frozen=True)
class SandboxConfig:
    pod_uid: str
    namespace: str
    name: str
    hostname: str
    # directory the kubelet owns for this pod (volumes, logs live below it)
    pod_dir: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    host_network: bool = False
    # hostIPC: the containers stay in the host's IPC namespace, with the host's /dev/shm
    host_ipc: bool = False
    # /etc/hosts and /etc/resolv.conf content to show inside the containers (None = host's)
    hosts_file: str | None = None
    resolv_conf: str | None = None
    # hostPorts of the pod's containers (pod network only; host-network pods bind directly)
    port_mappings: Sequence[PortMapping] = ()


class SandboxState(enum.Enum):
    READY = "READY"
    NOTREADY = "NOTREADY"


@dataclass(frozen=True)
class SandboxStatus:
    id: str
    pod_uid: str
    namespace: str
    name: str
    state: SandboxState
    created_at: float
    ip: str = ""  # the pod's IP on the pod network; "" = the node's (host network)


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class Resources:
    cpu_quota_millis: int | None = None  # limits.cpu in millicores (CFS quota)
    cpu_shares: int | None = None  # from requests.cpu
    memory_limit_bytes: int | None = None  # limits.memory (OOM kill above)


@dataclass(frozen=True)
class Security:
    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: Sequence[int] = ()
    read_only_root_filesystem: bool = False
    privileged: bool = False
    capabilities_add: Sequence[str] = ()
    capabilities_drop: Sequence[str] = ()


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    # argv: the kubelet has already resolved command/args and expanded $(VAR)
    argv: Sequence[str]
    env: Sequence[tuple[str, str]] = ()
    working_dir: str = ""
    mounts: Sequence[Mount] = ()
    log_path: str = ""
    resources: Resources = field(default_factory=Resources)
    security: Security = field(default_factory=Security)
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    image: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    # where the runtime should look for a termination message (containerPath of the file)
    termination_message_path: str = ""
    # The image's unpacked layers, bottom first: the container's root is an overlay of
    # them with a writable layer kept across restarts of the container. Empty: the host's
    # own root (the ``host`` handler).
    rootfs_layers: Sequence[str] = ()
    # The image's User (name or uid[:gid]), resolved in the image's /etc/passwd and
    # /etc/group unless security.run_as_user / run_as_group say otherwise.
    image_user: str = ""


class ContainerState(enum.Enum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    EXITED = "EXITED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    state: ContainerState
    created_at: float
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    # "Completed" (0), "Error" (non-zero), "OOMKilled"; "" while not exited
    reason: str = ""
    message: str = ""  # the termination message, when the runtime read one
    pid: int = 0
    log_path: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class ExecSession(Protocol):
    """An interactive exec: write stdin, read output chunks, then the exit code."""

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    def output(self) -> AsyncIterator[tuple[str, bytes]]:
        """("stdout"|"stderr", chunk) until the process exits."""
        ...

    async def wait(self) -> int: ...

    async def kill(self) -> None: ...


class Runtime(Protocol):
    name: str  # e.g. "flotilla-process"
    version: str

    async def run_pod_sandbox(self, config: SandboxConfig) -> str: ...

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop every container of the sandbox (no grace: the kubelet stops them first)."""
        ...

    async def remove_pod_sandbox(self, sandbox_id: str) -> None: ...

    async def list_pod_sandboxes(self) -> list[SandboxStatus]: ...

    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               attempt: int = 0) -> str: ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, timeout: float) -> None:  # noqa: ASYNC109
        """SIGTERM the container's process group, SIGKILL after ``timeout`` seconds; returns
        once it has exited."""
        ...

    async def remove_container(self, container_id: str) -> None: ...

    async def container_status(self, container_id: str) -> ContainerStatus: ...

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]: ...

    async def exec_sync(self, container_id: str, argv: Sequence[str],
                        timeout: float) -> ExecResult: ...  # noqa: ASYNC109 - CRI's shape

    async def exec(self, container_id: str, argv: Sequence[str], *, stdin: bool,
                   tty: bool) -> ExecSession: ...

    async def close(self) -> None:
        """Release the runtime's own resources; containers keep running."""
        ...
