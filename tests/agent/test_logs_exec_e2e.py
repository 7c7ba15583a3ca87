"""Logs and exec end to end: ApiClient (and the CLI) -> apiserver (NodeProxy) -> the agent's
own gRPC server (AgentServer on an ephemeral port, advertised in the Node's status) -> a
stub runtime whose containers have CRI log files written here and whose exec runs real
processes. Also: a pod whose node's agent is down fails fast with ServiceUnavailable.

Every wait is bounded; servers are stopped in finally blocks.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from agent.kubelet.logs import format_rfc3339_nano
from agent.runtime.interface import ContainerState, ContainerStatus, NotFoundError
from agent.server import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    AgentServer,
)
from control.api import convert, errors
from control.api.pb import core_pb2
from control.cli.main import main as cli_main
from control.client.retry import guaranteed_update
from tests.conftest import Cluster

NODE = "n1"


# -- a stub runtime ------------------------------------------------------------------------


class StubSession:
    """An exec as a real child process (so stdin, output and exit codes are real)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def write_stdin(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

        async def pump(name: str, stream: asyncio.StreamReader | None) -> None:
            assert stream is not None
            while data := await stream.read(65536):
                await queue.put((name, data))
            await queue.put(None)

        tasks = [asyncio.create_task(pump("stdout", self.proc.stdout)),
                 asyncio.create_task(pump("stderr", self.proc.stderr))]
        try:
            ended = 0
            while ended < 2:
                item = await queue.get()
                if item is None:
                    ended += 1
                else:
                    yield item
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self) -> int:
        return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class StubRuntime:
    name = "stub"
    version = "0"

    def __init__(self) -> None:
        self.containers: dict[str, ContainerStatus] = {}

    def add(self, pod: Any, container: str, attempt: int, log_path: Path,
            state: ContainerState = ContainerState.RUNNING) -> str:
        cid = f"{pod.metadata.name}-{container}-{attempt}"
        self.containers[cid] = ContainerStatus(
            id=cid, sandbox_id=pod.metadata.uid, name=container, state=state,
            created_at=time.time() + attempt, attempt=attempt, log_path=str(log_path),
            labels={LABEL_POD_NAMESPACE: pod.metadata.namespace,
                    LABEL_POD_NAME: pod.metadata.name, LABEL_POD_UID: pod.metadata.uid,
                    LABEL_CONTAINER_NAME: container})
        return cid

    def exit(self, cid: str, code: int = 0) -> None:
        self.containers[cid] = replace(self.containers[cid], state=ContainerState.EXITED,
                                       exit_code=code)

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        return list(self.containers.values())

    async def container_status(self, container_id: str) -> ContainerStatus:
        try:
            return self.containers[container_id]
        except KeyError:
            raise NotFoundError(container_id) from None

    async def exec(self, container_id: str, argv: Sequence[str], *, stdin: bool,
                   tty: bool) -> StubSession:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return StubSession(proc)


# -- helpers -------------------------------------------------------------------------------


def cri(at: float, text: str, stream: str = "stdout", tag: str = "F") -> str:
    seconds = int(at)
    return f"{format_rfc3339_nano(seconds, int((at - seconds) * 1e9))} {stream} {tag} {text}\n"


def write_log(path: Path, *lines: str, append: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a" if append else "w") as f:
        f.write("".join(lines))
    return path


def pod_manifest(name: str, containers: Sequence[str], node: str = NODE) -> core_pb2.Pod:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox",
                                            "command": ["sleep", "3600"]} for c in containers]}
    if node:
        spec["nodeName"] = node
    return convert.from_dict({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": name, "namespace": "default"},
                              "spec": spec}, core_pb2.Pod())


async def set_status(cluster: Cluster, pod: Any, *, running: Sequence[str] = (),
                     waiting: dict[str, str] | None = None,
                     restarted: Sequence[str] = (), phase: str = "Running") -> Any:
    pod = await cluster.client.get("pods", pod.metadata.name, "default")
    pod.status.phase = phase
    del pod.status.container_statuses[:]
    for name in running:
        cs = pod.status.container_statuses.add(name=name)
        cs.state.running.SetInParent()
    for name, reason in (waiting or {}).items():
        cs = pod.status.container_statuses.add(name=name)
        cs.state.waiting.reason = reason
    for cs in pod.status.container_statuses:
        if cs.name in restarted:
            cs.last_state.terminated.exit_code = 1
            cs.restart_count = 1
    return await cluster.client.update_status(pod)


async def register_node(cluster: Cluster, name: str, port: int, ip: str = "127.0.0.1") -> None:
    node = convert.from_dict({"apiVersion": "v1", "kind": "Node",
                              "metadata": {"name": name}}, core_pb2.Node())
    node = await cluster.client.create(node)

    def advertise(n: core_pb2.Node) -> bool:
        n.status.addresses.add(type="Hostname", address=name)
        n.status.addresses.add(type="InternalIP", address=ip)
        n.status.daemon_endpoints.kubelet_endpoint.port = port
        return True

    # The node IPAM controller writes the new Node too: retry on its Conflict.
    await guaranteed_update(cluster.client, core_pb2.Node, "", name, advertise, current=node,
                            status=True)


async def read_all(cluster: Cluster, name: str, **options: Any) -> bytes:
    return b"".join([c async for c in cluster.client.logs("default", name, **options)])


@dataclass
class Env:
    cluster: Cluster
    runtime: StubRuntime
    agent: AgentServer
    logs: Path


@pytest.fixture
async def env(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Env]:
    runtime = StubRuntime()
    agent = AgentServer(runtime, None, NODE, poll_interval=0.02)  # type: ignore[arg-type]
    _, serving = cluster.plane.node_identity(NODE, ["127.0.0.1"])
    port = await agent.start("127.0.0.1", serving=serving, client_ca=cluster.credentials.ca_pem
                             or b"")
    try:
        await register_node(cluster, NODE, port)
        yield Env(cluster, runtime, agent, tmp_path / "logs")
    finally:
        await agent.stop(0.1)


async def web(env: Env) -> tuple[Any, str]:
    """Pod "web" (one container "app", running) with ten log lines, two of them old."""
    pod = await env.cluster.client.create(pod_manifest("web", ["app"]))
    now = time.time()
    lines = [cri(now - 3600 + i, f"old {i}") for i in range(2)]
    lines += [cri(now - 5 + i * 0.1, f"line {i}") for i in range(8)]
    cid = env.runtime.add(pod, "app", 0, write_log(env.logs / "web/app/0.log", *lines))
    await set_status(env.cluster, pod, running=["app"])
    return pod, cid


# -- logs ----------------------------------------------------------------------------------


async def test_logs_with_each_option(env: Env) -> None:
    await web(env)
    everything = await read_all(env.cluster, "web")
    assert everything == b"old 0\nold 1\n" + b"".join(f"line {i}\n".encode() for i in range(8))
    assert await read_all(env.cluster, "web", container="app") == everything
    assert await read_all(env.cluster, "web", tail_lines=2) == b"line 6\nline 7\n"
    assert await read_all(env.cluster, "web", since_seconds=60) == everything[len(
        b"old 0\nold 1\n"):]
    stamped = await read_all(env.cluster, "web", tail_lines=1, timestamps=True)
    stamp, _, text = stamped.partition(b" ")
    assert text == b"line 7\n" and stamp.endswith(b"Z") and b"T" in stamp
    assert await read_all(env.cluster, "web", limit_bytes=8) == b"old 0\nol"


async def test_logs_options_validated(env: Env) -> None:
    await web(env)
    for option, value, text in [("tail_lines", -1, "tailLines: Invalid value: -1"),
                                ("since_seconds", 0, "sinceSeconds: Invalid value: 0"),
                                ("limit_bytes", -5, "limitBytes: Invalid value: -5")]:
        with pytest.raises(errors.Invalid, match=text):
            await read_all(env.cluster, "web", **{option: value})
    assert await read_all(env.cluster, "web", tail_lines=0) == b""


async def test_a_large_log_arrives_in_bounded_chunks(env: Env) -> None:
    pod = await env.cluster.client.create(pod_manifest("big", ["app"]))
    line = "x" * 999
    n = 6000  # about 6 MB
    env.runtime.add(pod, "app", 0, write_log(env.logs / "big/app/0.log",
                                              *[cri(time.time(), line) for _ in range(n)]))
    await set_status(env.cluster, pod, running=["app"])
    sizes = [len(c) async for c in env.cluster.client.logs("default", "big")]
    assert sum(sizes) == n * 1000
    assert max(sizes) <= 64 * 1024 and len(sizes) >= n * 1000 // (64 * 1024)


async def test_logs_container_choice_and_errors(env: Env) -> None:
    c = env.cluster.client
    pod = await c.create(pod_manifest("multi", ["a", "b"]))
    env.runtime.add(pod, "a", 0, write_log(env.logs / "multi/a/0.log", cri(time.time(), "A")))
    env.runtime.add(pod, "b", 0, write_log(env.logs / "multi/b/0.log", cri(time.time(), "B")))
    await set_status(env.cluster, pod, running=["a", "b"])
    with pytest.raises(errors.BadRequest) as e:
        await read_all(env.cluster, "multi")
    assert str(e.value) == "a container name must be specified for pod multi, choose one of: [a b]"
    assert await read_all(env.cluster, "multi", container="b") == b"B\n"
    with pytest.raises(errors.BadRequest, match="container nope is not valid for pod multi"):
        await read_all(env.cluster, "multi", container="nope")
    with pytest.raises(errors.NotFound):
        await read_all(env.cluster, "ghost")

    # waiting to start, never ran
    pend = await c.create(pod_manifest("pending", ["app"]))
    await set_status(env.cluster, pend, waiting={"app": "ContainerCreating"}, phase="Pending")
    with pytest.raises(errors.BadRequest, match='container "app" in pod "pending" is waiting '
                                                "to start: ContainerCreating"):
        await read_all(env.cluster, "pending")
    # not scheduled
    await c.create(pod_manifest("unscheduled", ["app"], node=""))
    with pytest.raises(errors.BadRequest, match="not scheduled"):
        await read_all(env.cluster, "unscheduled")


async def test_logs_previous(env: Env) -> None:
    pod, _ = await web(env)
    with pytest.raises(errors.BadRequest) as e:
        await read_all(env.cluster, "web", previous=True)
    assert str(e.value) == 'previous terminated container "app" in pod "web" not found'
    # the container restarted: attempt 0 exited, attempt 1 runs
    env.runtime.exit("web-app-0", 1)
    env.runtime.add(pod, "app", 1, write_log(env.logs / "web/app/1.log",
                                              cri(time.time(), "second life")))
    await set_status(env.cluster, pod, running=["app"], restarted=["app"])
    assert await read_all(env.cluster, "web") == b"second life\n"
    previous = await read_all(env.cluster, "web", previous=True, tail_lines=1)
    assert previous == b"line 7\n"
    # crash-looping (waiting to restart): the last terminated attempt is "previous" too
    env.runtime.exit("web-app-1", 2)
    await set_status(env.cluster, pod, waiting={"app": "CrashLoopBackOff"}, restarted=["app"])
    assert await read_all(env.cluster, "web", previous=True) == b"second life\n"
    assert await read_all(env.cluster, "web") == b"second life\n"


async def test_logs_follow_streams_until_the_container_exits(env: Env) -> None:
    _, cid = await web(env)
    stream = env.cluster.client.logs("default", "web", follow=True, tail_lines=1)
    it = aiter(stream)
    try:
        assert await asyncio.wait_for(anext(it), 5) == b"line 7\n"
        write_log(env.logs / "web/app/0.log", cri(time.time(), "fresh"), append=True)
        assert await asyncio.wait_for(anext(it), 5) == b"fresh\n"
        write_log(env.logs / "web/app/0.log", cri(time.time(), "bye"), append=True)
        env.runtime.exit(cid)
        rest = await asyncio.wait_for(_drain(it), 5)
        assert rest == b"bye\n"
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _drain(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


async def test_logs_follow_cancelled_by_the_client(env: Env) -> None:
    await web(env)
    stream = env.cluster.client.logs("default", "web", follow=True, tail_lines=0)
    task = asyncio.ensure_future(anext(aiter(stream)))
    await asyncio.sleep(0.2)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()  # type: ignore[attr-defined]


# -- exec ----------------------------------------------------------------------------------


async def test_exec_output_and_exit_code(env: Env) -> None:
    await web(env)
    stream = env.cluster.client.exec("default", "web",
                                     ["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    code, out, err = await asyncio.wait_for(stream.wait(), 10)
    assert (code, out, err) == (3, b"hello\n", b"oops\n")

    async def typed() -> AsyncIterator[bytes]:
        yield b"one\n"
        await asyncio.sleep(0.05)
        yield b"two\n"

    stream = env.cluster.client.exec("default", "web", ["cat"], stdin=typed())
    assert await asyncio.wait_for(stream.wait(), 10) == (0, b"one\ntwo\n", b"")


async def test_exec_refusals(env: Env) -> None:
    c = env.cluster.client
    _, cid = await web(env)
    with pytest.raises(errors.NotFound):
        await c.exec("default", "ghost", ["true"]).wait()
    with pytest.raises(errors.BadRequest, match="argument list too long"):
        await c.exec("default", "web", ["echo"] + ["y" * 100_000] * 25).wait()
    env.runtime.exit(cid)
    with pytest.raises(errors.BadRequest, match="not running"):
        await c.exec("default", "web", ["true"]).wait()
    pod = await c.get("pods", "web", "default")
    await set_status(env.cluster, pod, phase="Succeeded")
    with pytest.raises(errors.BadRequest, match="completed pod; current phase is Succeeded"):
        await c.exec("default", "web", ["true"]).wait()


# -- a node whose agent is gone ---------------------------------------------------------------


async def test_agent_down_or_node_gone_fails_fast(env: Env) -> None:
    c = env.cluster.client
    await web(env)
    await env.agent.stop(0)
    started = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable, match='agent of node "n1"'):
        await read_all(env.cluster, "web")
    with pytest.raises(errors.ServiceUnavailable, match='agent of node "n1"'):
        await c.exec("default", "web", ["true"]).wait()
    assert time.monotonic() - started < 9  # two calls, each within the 3 s connect deadline

    orphan = await c.create(pod_manifest("orphan", ["app"], node="vanished"))
    await set_status(env.cluster, orphan, running=["app"])
    started = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable, match='node "vanished", which no longer'):
        await read_all(env.cluster, "orphan")
    assert time.monotonic() - started < 2


# -- the CLI -------------------------------------------------------------------------------


async def run_cli(cluster: Cluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        cli_main, ["--server", cluster.address, "--config", str(cluster.data_dir / "admin.conf"), *argv], stdout=out, stderr=err,
        stdin=io.StringIO("from stdin\n"))
    return code, out.getvalue(), err.getvalue()


async def test_cli_logs_and_exec(env: Env) -> None:
    await web(env)
    code, out, err = await run_cli(env.cluster, "logs", "web", "--tail", "2")
    assert (code, out, err) == (0, "line 6\nline 7\n", "")
    code, out, _ = await run_cli(env.cluster, "logs", "pod/web", "--since", "1m",
                                 "--limit-bytes", "6")
    assert (code, out) == (0, "line 0")
    code, out, _ = await run_cli(env.cluster, "logs", "web", "--tail=1", "--timestamps")
    assert code == 0 and out.endswith(" line 7\n") and out[:4].isdigit()
    code, _, err = await run_cli(env.cluster, "logs", "web", "-p")
    assert code == 1 and 'previous terminated container "app" in pod "web" not found' in err

    code, out, err = await run_cli(env.cluster, "exec", "web", "--", "sh", "-c",
                                   "echo out; echo err >&2; exit 7")
    assert (code, out) == (7, "out\n")
    assert err == "err\ncommand terminated with exit code 7\n"
    code, out, _ = await run_cli(env.cluster, "exec", "-i", "web", "--", "cat")
    assert (code, out) == (0, "from stdin\n")
    code, out, _ = await run_cli(env.cluster, "exec", "web", "-q", "--", "false")
    assert (code, out) == (1, "")


async def test_cli_exec_defaults_to_the_first_container(env: Env) -> None:
    pod = await env.cluster.client.create(pod_manifest("duo", ["main", "side"]))
    for name in ("main", "side"):
        env.runtime.add(pod, name, 0, write_log(env.logs / f"duo/{name}/0.log"))
    await set_status(env.cluster, pod, running=["main", "side"])
    code, out, err = await run_cli(env.cluster, "exec", "duo", "--", "echo", "hi")
    assert (code, out) == (0, "hi\n")
    assert err == 'Defaulted container "main" out of: main, side\n'
    code, _, err = await run_cli(env.cluster, "logs", "duo")
    assert code == 1 and "choose one of: [main side]" in err

