"""An in-memory :class:`~agent.runtime.interface.Runtime` double for unit tests.

Owns nothing outside the process: sandboxes and containers are records in dictionaries,
"processes" are state transitions computed from a :class:`~control.runtime.clock.Clock`.
Tests script what a container does with :class:`Behaviour` (run for N seconds then exit
with a code, be OOM-killed, ignore SIGTERM, print lines into its log file, carry a
termination message) and what ``exec_sync`` answers, then assert on :attr:`FakeRuntime.calls`.

How a container's behaviour is chosen, first match wins:

1. behaviours scripted with :meth:`FakeRuntime.script` for the container's name (optionally
   narrowed to one pod name); the n-th *start* of that (pod, container) uses the n-th
   behaviour of the list, the last one repeating;
2. a tiny interpreter of common argv shapes, so manifests work unchanged: ``true``,
   ``false``, ``sleep N``, ``exit N`` and ``sh -c "...; exit N"`` / ``sh -c "sleep N"``;
3. otherwise the container runs until it is stopped.

Exits are *lazy*: a running container whose scripted lifetime has passed on the clock is
observed as exited by the next ``container_status`` / ``list_containers`` call, with
``finished_at`` equal to its start plus its lifetime. No background task exists, so a
:class:`FakeClock` drives everything deterministically, and tests can also force an exit
with :meth:`FakeRuntime.exit` or :meth:`FakeRuntime.oom_kill`.

``stop_container`` honours the scripted SIGTERM reaction: a container exits at once with
143 (128 + SIGTERM), after ``term_delay`` seconds if that is shorter than the timeout, or is
killed with 137 at the timeout (``ignore_sigterm``); the waiting is a ``clock.sleep``.

Concurrency contract: one event loop, no threads; every method may be called concurrently
for different pods. The state survives a kubelet "restart" because it belongs to the
runtime object, not to the kubelet, which is what re-adoption tests rely on.
"""

from __future__ import annotations

import itertools
import os
import shlex
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from agent.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    CreateContainerError,
    ExecResult,
    NotFoundError,
    RuntimeError_,
    SandboxConfig,
    SandboxState,
    SandboxStatus,
    StartContainerError,
)
from control.runtime.clock import Clock, RealClock

SIGTERM_EXIT = 143
SIGKILL_EXIT = 137


@dataclass(frozen=True)
class Behaviour:
    """What one start of a container does.

    ``run_for`` None runs until stopped; otherwise the container exits ``run_for`` seconds
    after it starts with ``exit_code`` (``oom`` makes it 137/OOMKilled).
    """

    run_for: float | None = None
    exit_code: int = 0
    oom: bool = False
    # reaction to stop_container: exit after term_delay (< timeout) with term_exit_code
    ignore_sigterm: bool = False
    term_delay: float = 0.0
    term_exit_code: int = SIGTERM_EXIT
    # the termination message the runtime "read" from the container's file
    message: str = ""
    # lines written to the container's log file at start (stdout), in CRI format
    output: Sequence[str] = ()
    # start_container raises StartContainerError with this message
    start_error: str = ""


def forever() -> Behaviour:
    return Behaviour()


def exits(code: int = 0, after: float = 0.0, message: str = "") -> Behaviour:
    return Behaviour(run_for=after, exit_code=code, message=message)


def oom(after: float = 0.0) -> Behaviour:
    return Behaviour(run_for=after, exit_code=SIGKILL_EXIT, oom=True)


ExecHandler = Callable[[Sequence[str]], ExecResult]


@dataclass
class _Container:
    id: str
    sandbox_id: str
    pod_uid: str
    pod_name: str
    config: ContainerConfig
    attempt: int
    created_at: float
    state: ContainerState = ContainerState.CREATED
    behaviour: Behaviour = field(default_factory=Behaviour)
    started_at: float = 0.0
    started_mono: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    pid: int = 0

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class _Sandbox:
    id: str
    config: SandboxConfig
    created_at: float
    state: SandboxState = SandboxState.READY
    ip: str = ""


class FakeRuntime:
    """In-memory runtime; see the module docstring."""

    name = "flotilla-fake"
    version = "0.1.0"

    def __init__(self, clock: Clock | None = None, *, pod_ip: str = "") -> None:
        self.clock: Clock = clock or RealClock()
        self.pod_ip = pod_ip  # "" = host network, like the process runtime without root
        self.sandboxes: dict[str, _Sandbox] = {}
        self.containers: dict[str, _Container] = {}
        # every mutating call in order: ("create", pod_name, container_name), ("start", ...)
        self.calls: list[tuple[str, ...]] = []
        self.exec_calls: list[tuple[str, tuple[str, ...]]] = []
        self.closed = False
        self._ids = itertools.count(1)
        self._pids = itertools.count(1000)
        self._scripts: dict[tuple[str | None, str], list[Behaviour]] = {}
        self._starts: dict[tuple[str, str], int] = {}
        self._exec: dict[tuple[str | None, str], ExecHandler] = {}
        # method name -> exceptions to raise on its next calls (fault injection)
        self._faults: dict[str, list[Exception]] = {}

    # -- scripting --------------------------------------------------------------------------

    def script(self, container: str, *behaviours: Behaviour, pod: str | None = None) -> None:
        """The n-th start of ``container`` (in pod ``pod``, or any pod) does behaviours[n]."""
        if not behaviours:
            raise ValueError("script needs at least one behaviour")
        self._scripts[(pod, container)] = list(behaviours)

    def on_exec(self, container: str, handler: ExecHandler | ExecResult,
                pod: str | None = None) -> None:
        """What ``exec_sync`` in ``container`` answers: a fixed result or a function of argv."""
        if isinstance(handler, ExecResult):
            result = handler
            self._exec[(pod, container)] = lambda _argv: result
        else:
            self._exec[(pod, container)] = handler

    def fail_next(self, method: str, exc: Exception) -> None:
        """Make the next call of ``method`` (e.g. "create_container") raise ``exc``."""
        self._faults.setdefault(method, []).append(exc)

    def exit(self, container_id: str, code: int = 0, *, reason: str = "",
             message: str = "") -> None:
        """Make a running container exit now."""
        c = self._get(container_id)
        if c.state is ContainerState.RUNNING:
            self._finish(c, self.clock.now(), code, reason, message)

    def oom_kill(self, container_id: str) -> None:
        self.exit(container_id, SIGKILL_EXIT, reason="OOMKilled")

    def find(self, pod: str, container: str, *, running: bool = False) -> _Container | None:
        """The newest container named ``container`` of the pod with that name or uid."""
        found: _Container | None = None
        for c in self.containers.values():
            if (pod in (c.pod_name, c.pod_uid) and c.config.name == container
                    and (not running or self._refresh(c).state is ContainerState.RUNNING)):
                found = c  # dicts keep insertion order: the last match is the newest
        return found

    def running(self, pod: str | None = None) -> list[_Container]:
        """Every running container (of one pod, by name or uid)."""
        return [c for c in self.containers.values()
                if self._refresh(c).state is ContainerState.RUNNING
                and (pod is None or pod in (c.pod_name, c.pod_uid))]

    def starts(self, pod: str, container: str) -> int:
        """How many times ``container`` of the pod (name or uid) was started."""
        return sum(n for (p, name), n in self._starts.items()
                   if name == container and pod in (p, self._pod_name(p)))

    # -- sandboxes --------------------------------------------------------------------------

    async def run_pod_sandbox(self, config: SandboxConfig) -> str:
        self._fault("run_pod_sandbox")
        for sb in self.sandboxes.values():
            if sb.config.pod_uid == config.pod_uid and sb.state is SandboxState.READY:
                return sb.id
        sid = f"sb-{next(self._ids)}"
        self.sandboxes[sid] = _Sandbox(sid, config, self.clock.now(), ip=self.pod_ip)
        self.calls.append(("run_pod_sandbox", config.name))
        return sid

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self._fault("stop_pod_sandbox")
        sb = self._sandbox(sandbox_id)
        for c in self.containers.values():
            if c.sandbox_id == sandbox_id and self._refresh(c).state is ContainerState.RUNNING:
                self._finish(c, self.clock.now(), SIGKILL_EXIT, "Error", "")
        sb.state = SandboxState.NOTREADY
        self.calls.append(("stop_pod_sandbox", sb.config.name))

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._fault("remove_pod_sandbox")
        sb = self.sandboxes.get(sandbox_id)
        if sb is None:
            return  # idempotent, like CRI's RemovePodSandbox
        await self.stop_pod_sandbox(sandbox_id)
        for cid in [c.id for c in self.containers.values() if c.sandbox_id == sandbox_id]:
            del self.containers[cid]
        del self.sandboxes[sandbox_id]
        self.calls.append(("remove_pod_sandbox", sb.config.name))

    async def list_pod_sandboxes(self) -> list[SandboxStatus]:
        return [SandboxStatus(sb.id, sb.config.pod_uid, sb.config.namespace, sb.config.name,
                              sb.state, sb.created_at, sb.ip)
                for sb in self.sandboxes.values()]

    # -- containers -------------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               attempt: int = 0) -> str:
        self._fault("create_container")
        sb = self._sandbox(sandbox_id)
        if sb.state is not SandboxState.READY:
            raise CreateContainerError(f"sandbox {sandbox_id} is not ready")
        if not config.argv:
            raise CreateContainerError("no command specified")
        cid = f"c-{next(self._ids)}"
        self.containers[cid] = _Container(cid, sandbox_id, sb.config.pod_uid, sb.config.name,
                                          config, attempt, self.clock.now())
        self.calls.append(("create", sb.config.name, config.name))
        return cid

    async def start_container(self, container_id: str) -> None:
        self._fault("start_container")
        c = self._get(container_id)
        if c.state is not ContainerState.CREATED:
            raise StartContainerError(f"container {container_id} is {c.state.value}")
        key = (c.pod_uid, c.config.name)
        n = self._starts.get(key, 0)
        self._starts[key] = n + 1
        c.behaviour = self._behaviour(c, n)
        self.calls.append(("start", c.pod_name, c.config.name))
        if c.behaviour.start_error:
            # like a process runtime whose exec failed: the container never ran
            c.state = ContainerState.EXITED
            c.exit_code, c.reason = 128, "StartError"
            c.message = c.behaviour.start_error
            c.finished_at = self.clock.now()
            raise StartContainerError(c.behaviour.start_error)
        c.state = ContainerState.RUNNING
        c.started_at = self.clock.now()
        c.started_mono = self.clock.monotonic()
        c.pid = next(self._pids)
        if c.behaviour.output and c.config.log_path:
            _write_log(c.config.log_path, c.behaviour.output, c.started_at)

    async def stop_container(self, container_id: str, timeout: float) -> None:  # noqa: ASYNC109
        self._fault("stop_container")
        c = self._refresh(self._get(container_id))
        self.calls.append(("stop", c.pod_name, c.config.name))
        if c.state is not ContainerState.RUNNING:
            if c.state is ContainerState.CREATED:
                c.state = ContainerState.EXITED
                c.finished_at = self.clock.now()
            return
        b = c.behaviour
        if b.ignore_sigterm or b.term_delay >= timeout:
            await self.clock.sleep(max(0.0, timeout))
            c = self._refresh(c)
            if c.state is ContainerState.RUNNING:
                self._finish(c, self.clock.now(), SIGKILL_EXIT, "Error", "")
            return
        if b.term_delay > 0:
            await self.clock.sleep(b.term_delay)
            c = self._refresh(c)
        if c.state is ContainerState.RUNNING:
            self._finish(c, self.clock.now(), b.term_exit_code, "", b.message)

    async def remove_container(self, container_id: str) -> None:
        self._fault("remove_container")
        c = self.containers.get(container_id)
        if c is None:
            return
        if self._refresh(c).state is ContainerState.RUNNING:
            raise RuntimeError_(f"container {container_id} is running")
        del self.containers[container_id]
        self.calls.append(("remove", c.pod_name, c.config.name))

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._status(self._refresh(self._get(container_id)))

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        self._fault("list_containers")
        return [self._status(self._refresh(c)) for c in list(self.containers.values())
                if sandbox_id is None or c.sandbox_id == sandbox_id]

    async def exec_sync(self, container_id: str, argv: Sequence[str],
                        timeout: float) -> ExecResult:  # noqa: ASYNC109 - the contract
        self._fault("exec_sync")
        c = self._refresh(self._get(container_id))
        self.exec_calls.append((c.config.name, tuple(argv)))
        if c.state is not ContainerState.RUNNING:
            raise RuntimeError_(f"container {container_id} is not running")
        handler = self._exec.get((c.pod_name, c.config.name)) or self._exec.get(
            (None, c.config.name))
        if handler is not None:
            return handler(argv)
        return _interpret_exec(argv)

    async def exec(self, container_id: str, argv: Sequence[str], *, stdin: bool,
                   tty: bool) -> FakeExecSession:
        result = await self.exec_sync(container_id, argv, timeout=0)
        return FakeExecSession(result)

    async def close(self) -> None:
        self.closed = True

    # -- internals --------------------------------------------------------------------------

    def _fault(self, method: str) -> None:
        pending = self._faults.get(method)
        if pending:
            raise pending.pop(0)

    def _get(self, container_id: str) -> _Container:
        c = self.containers.get(container_id)
        if c is None:
            raise NotFoundError(f"container {container_id} not found")
        return c

    def _sandbox(self, sandbox_id: str) -> _Sandbox:
        sb = self.sandboxes.get(sandbox_id)
        if sb is None:
            raise NotFoundError(f"sandbox {sandbox_id} not found")
        return sb

    def _pod_name(self, pod_uid: str) -> str:
        for c in self.containers.values():
            if c.pod_uid == pod_uid:
                return c.pod_name
        for sb in self.sandboxes.values():
            if sb.config.pod_uid == pod_uid:
                return sb.config.name
        return ""

    def _behaviour(self, c: _Container, n: int) -> Behaviour:
        script = self._scripts.get((c.pod_name, c.config.name)) or self._scripts.get(
            (None, c.config.name))
        if script:
            return script[min(n, len(script) - 1)]
        return interpret_argv(c.config.argv)

    def _refresh(self, c: _Container) -> _Container:
        """Apply a lazy scripted exit whose time has come."""
        b = c.behaviour
        if c.state is ContainerState.RUNNING and b.run_for is not None:
            if self.clock.monotonic() - c.started_mono >= b.run_for:
                reason = "OOMKilled" if b.oom else ""
                self._finish(c, c.started_at + b.run_for, b.exit_code, reason, b.message)
        return c

    def _finish(self, c: _Container, at: float, code: int, reason: str, message: str) -> None:
        c.state = ContainerState.EXITED
        c.finished_at = at
        c.exit_code = code
        c.reason = reason or ("Completed" if code == 0 else "Error")
        c.message = message
        c.pid = 0

    def _status(self, c: _Container) -> ContainerStatus:
        return ContainerStatus(
            id=c.id, sandbox_id=c.sandbox_id, name=c.config.name, state=c.state,
            created_at=c.created_at, started_at=c.started_at, finished_at=c.finished_at,
            exit_code=c.exit_code, reason=c.reason, message=c.message, pid=c.pid,
            log_path=c.config.log_path, labels=dict(c.config.labels), attempt=c.attempt)


class FakeExecSession:
    """A finished exec: its output is the scripted result, stdin is recorded."""

    def __init__(self, result: ExecResult) -> None:
        self.result = result
        self.stdin = bytearray()
        self.stdin_closed = False

    async def write_stdin(self, data: bytes) -> None:
        self.stdin.extend(data)

    async def close_stdin(self) -> None:
        self.stdin_closed = True

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        if self.result.stdout:
            yield "stdout", self.result.stdout
        if self.result.stderr:
            yield "stderr", self.result.stderr

    async def wait(self) -> int:
        return self.result.exit_code

    async def kill(self) -> None:
        return None


# -- the tiny argv interpreter ------------------------------------------------------------


def interpret_argv(argv: Sequence[str]) -> Behaviour:
    """A Behaviour for common shell one-liners; anything else runs until stopped.

    >>> interpret_argv(["sh", "-c", "echo hi; exit 3"]).exit_code
    3
    """
    if not argv:
        return Behaviour()
    prog = os.path.basename(argv[0])
    if prog in ("sh", "bash", "ash") and len(argv) >= 3 and argv[1] == "-c":
        return _interpret_script(argv[2])
    return _interpret_words(list(argv))


def _interpret_script(script: str) -> Behaviour:
    total = 0.0
    for raw in script.replace("&&", ";").replace("\n", ";").split(";"):
        try:
            words = shlex.split(raw)
        except ValueError:
            return Behaviour()
        if not words:
            continue
        b = _interpret_words(words)
        if b.run_for is None:
            return Behaviour()  # something we do not understand, or a loop: runs forever
        total += b.run_for
        if words[0] in ("exit", "false") or b.exit_code != 0:
            return replace(b, run_for=total)
    return Behaviour(run_for=total, exit_code=0)


def _interpret_words(words: list[str]) -> Behaviour:
    prog = os.path.basename(words[0])
    if prog in ("true", "echo", "cat", "printenv", "env", "date", "ls", "touch", "mkdir"):
        return Behaviour(run_for=0.0, exit_code=0)
    if prog == "false":
        return Behaviour(run_for=0.0, exit_code=1)
    if prog == "exit":
        code = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        return Behaviour(run_for=0.0, exit_code=code)
    if prog == "sleep" and len(words) == 2:
        try:
            seconds = float(words[1])
        except ValueError:
            return Behaviour()  # "sleep infinity"
        return Behaviour(run_for=seconds, exit_code=0)
    return Behaviour()


def _interpret_exec(argv: Sequence[str]) -> ExecResult:
    b = interpret_argv(argv)
    return ExecResult(exit_code=b.exit_code if b.run_for is not None else 0,
                      stdout=b"", stderr=b"")


def _write_log(path: str, lines: Sequence[str], at: float) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(f"{stamp} stdout F {line}\n")
