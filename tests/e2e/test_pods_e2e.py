"""Pods run for real: an in-process control plane, an agent with the process runtime, and
pods bound to its node by spec.nodeName (the scheduler is not needed for that).

Every timing is shortened through AgentOptions/KubeletOptions and probe fields; every wait
is bounded; the ``agent`` fixture deletes every pod (and waits for the agent to confirm)
before it stops, so no container outlives a test, passed or failed.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from agent.main import Agent
from control.api import convert, errors
from control.api.pb import core_pb2
from tests.conftest import Cluster
from tests.support.agents import NODE, pod, wait_pod
from tests.support.runtimeclasses import HOST


async def test_pod_runs_logs_exec_and_deletes(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    node = await wait_node(cluster)
    assert node.status.daemon_endpoints.kubelet_endpoint.port > 0
    await c.create(pod("hello", ["sh", "-c", "echo hello from $HOSTNAME; exec sleep 60"]))
    p = await wait_pod(cluster, "hello", lambda p: p.status.phase == "Running" and any(
        cs.ready for cs in p.status.container_statuses))
    assert p.status.host_ip and p.status.start_time.seconds > 0
    assert {c.type for c in p.status.conditions} >= {"Ready", "Initialized", "PodScheduled"}

    async def read_logs() -> str:
        return b"".join([chunk async for chunk in c.logs("default", "hello")]).decode()

    async with asyncio.timeout(10):
        while "hello from" not in (text := await read_logs()):
            await asyncio.sleep(0.2)
    assert "hello from" in text
    code, stdout, _ = await c.exec("default", "hello", ["sh", "-c", "echo out; exit 3"]).wait()
    assert code == 3 and b"out" in stdout
    _, pending = await c.delete(core_pb2.Pod, "hello", "default")
    assert pending  # bound to a node: graceful, the agent confirms
    async with asyncio.timeout(20):
        while True:
            try:
                await c.get(core_pb2.Pod, "hello", "default")
            except errors.NotFound:
                break
            await asyncio.sleep(0.1)


async def wait_node(cluster: Cluster) -> Any:
    async with asyncio.timeout(20):
        while True:
            try:
                node = await cluster.client.get(core_pb2.Node, NODE)
                if node.status.daemon_endpoints.kubelet_endpoint.port:
                    return node
            except errors.NotFound:
                pass
            await asyncio.sleep(0.1)


async def test_restart_policies(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(pod("fails-always", ["sh", "-c", "exit 1"], "Always"))
    await c.create(pod("fails-never", ["sh", "-c", "exit 2"], "Never"))
    await c.create(pod("succeeds", ["sh", "-c", "exit 0"], "OnFailure"))
    p = await wait_pod(cluster, "fails-always",
                       lambda p: p.status.container_statuses
                       and p.status.container_statuses[0].restart_count >= 2)
    assert p.status.phase == "Running"
    p = await wait_pod(cluster, "fails-never", lambda p: p.status.phase == "Failed")
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 2 and term.reason == "Error"
    p = await wait_pod(cluster, "succeeds", lambda p: p.status.phase == "Succeeded")
    assert p.status.container_statuses[0].restart_count == 0


async def test_init_container_then_app(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    spec = pod("with-init", ["sh", "-c", "cat /work/greeting; exec sleep 60"])
    init = spec.spec.init_containers.add()
    init.name, init.image = "init", "busybox"
    init.command.extend(["sh", "-c", "echo hi > /work/greeting"])
    init.volume_mounts.add(name="work", mount_path="/work")
    spec.spec.containers[0].volume_mounts.add(name="work", mount_path="/work")
    vol = spec.spec.volumes.add()
    vol.name = "work"
    vol.empty_dir.SetInParent()
    await c.create(spec)
    p = await wait_pod(cluster, "with-init", lambda p: p.status.phase == "Running")
    assert p.status.init_container_statuses[0].state.terminated.exit_code == 0


# -- helpers for the scenarios below ---------------------------------------------------------

PYTHON = "/usr/bin/python3"  # the host's python: visible inside the container's root


def pod_doc(name: str, containers: list[dict[str, Any]], **spec: Any) -> core_pb2.Pod:
    """A pod bound to the test node from Kubernetes-shaped dicts."""
    return convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2, "runtimeClassName": HOST,
                 "containers": containers, **spec},
    }, core_pb2.Pod())


def sh(script: str, name: str = "main", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **fields}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_of(p: Any, name: str = "main") -> Any:
    for cs in (*p.status.container_statuses, *p.status.init_container_statuses):
        if cs.name == name:
            return cs
    return None


def restarts(p: Any, name: str = "main") -> int:
    cs = status_of(p, name)
    return cs.restart_count if cs is not None else 0


def condition(p: Any, type_: str) -> str:
    return next((c.status for c in p.status.conditions if c.type == type_), "")


async def read_logs(cluster: Cluster, name: str, **options: Any) -> str:
    chunks = [chunk async for chunk in cluster.client.logs("default", name, **options)]
    return b"".join(chunks).decode()


async def exec_out(cluster: Cluster, name: str, argv: list[str]) -> tuple[int, str]:
    code, out, _ = await cluster.client.exec("default", name, argv).wait()
    return code, out.decode()


# -- probes ----------------------------------------------------------------------------------


async def test_liveness_and_readiness_probes(cluster: Cluster, agent: Agent) -> None:
    """An HTTP liveness probe that starts failing (its file disappears: 404), an exec
    liveness probe on a deleted file, and a readiness probe gating Ready — side by side."""
    c = cluster.client
    port = free_port()
    await c.create(pod_doc("http-live", [sh(
        # the file served at /healthz goes away after a second: 404 -> restart
        f"cd /www && echo ok > healthz && (sleep 1; rm healthz) & "
        f"cd /www && exec {PYTHON} -m http.server {port} --bind 127.0.0.1",
        livenessProbe={"httpGet": {"path": "/healthz", "port": port, "host": "127.0.0.1"},
                       "periodSeconds": 1, "failureThreshold": 1},
        volumeMounts=[{"name": "www", "mountPath": "/www"}])],
        volumes=[{"name": "www", "emptyDir": {}}]))
    await c.create(pod_doc("exec-live", [sh(
        "touch /tmp/healthy; sleep 1; rm -f /tmp/healthy; exec sleep 600",
        livenessProbe={"exec": {"command": ["cat", "/tmp/healthy"]},
                       "periodSeconds": 1, "failureThreshold": 1})]))
    await c.create(pod_doc("ready-later", [sh(
        "sleep 3; touch /tmp/ready; exec sleep 600",
        readinessProbe={"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1})]))

    p = await wait_pod(cluster, "ready-later", lambda p: p.status.phase == "Running")
    assert condition(p, "Ready") == "False" and not status_of(p).ready
    p = await wait_pod(cluster, "ready-later", lambda p: condition(p, "Ready") == "True")
    assert status_of(p).ready and condition(p, "ContainersReady") == "True"
    assert restarts(p) == 0

    p = await wait_pod(cluster, "http-live", lambda p: restarts(p) >= 1)
    last = status_of(p).last_state.terminated
    assert last.finished_at.seconds > 0 and p.status.phase == "Running"
    p = await wait_pod(cluster, "exec-live", lambda p: restarts(p) >= 1)
    assert status_of(p).last_state.terminated.finished_at.seconds > 0


# -- init containers -------------------------------------------------------------------------


async def test_init_container_failure_blocks_the_app(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    for name, policy in (("init-never", "Never"), ("init-always", "Always")):
        await c.create(pod_doc(name, [sh("echo app ran; exec sleep 600", name="app")],
                               restartPolicy=policy,
                               initContainers=[sh("exit 7", name="init")]))
    p = await wait_pod(cluster, "init-never", lambda p: p.status.phase == "Failed")
    init = status_of(p, "init")
    assert init.state.terminated.exit_code == 7 and init.restart_count == 0
    app = status_of(p, "app")
    assert app is not None and not app.state.HasField("running") and app.restart_count == 0
    assert condition(p, "Initialized") == "False"

    seen_backoff = False

    def crash_looping(p: Any) -> bool:
        nonlocal seen_backoff
        init = status_of(p, "init")
        if init is not None and init.state.waiting.reason == "CrashLoopBackOff":
            seen_backoff = True
        return seen_backoff and restarts(p, "init") >= 2

    p = await wait_pod(cluster, "init-always", crash_looping, limit=20)
    assert p.status.phase == "Pending"  # kubectl shows Init:CrashLoopBackOff
    assert status_of(p, "init").last_state.terminated.exit_code == 7
    app = status_of(p, "app")
    assert app.state.waiting.reason == "PodInitializing" and app.restart_count == 0


# -- resource limits -------------------------------------------------------------------------


@pytest.mark.root(reason="memory limits need root (cgroups)")
async def test_oom_killed(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(pod_doc("oom", [{
        "name": "main", "image": "busybox", "command": [
            PYTHON, "-c", "import time; b = b'x' * (200 * 1024 * 1024); time.sleep(30)"],
        "resources": {"limits": {"memory": "50Mi"}}}], restartPolicy="Never"))
    p = await wait_pod(cluster, "oom", lambda p: p.status.phase in ("Failed", "Succeeded"))
    term = status_of(p).state.terminated
    assert (term.reason, term.exit_code) == ("OOMKilled", 137), term


# -- volumes ---------------------------------------------------------------------------------


async def test_configmap_update_reaches_the_mounted_file(cluster: Cluster,
                                                         agent: Agent) -> None:
    c = cluster.client
    cm = convert.from_dict({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "cfg", "namespace": "default"},
                            "data": {"greeting": "v1"}}, core_pb2.ConfigMap())
    cm = await c.create(cm)
    await c.create(pod_doc("cm-reader", [sh(
        "exec sleep 600", volumeMounts=[{"name": "cfg", "mountPath": "/etc/cfg"}])],
        volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}]))
    await wait_pod(cluster, "cm-reader", lambda p: p.status.phase == "Running")
    assert await exec_out(cluster, "cm-reader", ["cat", "/etc/cfg/greeting"]) == (0, "v1")
    cm.data["greeting"] = "v2"
    await c.update(cm)
    async with asyncio.timeout(10):  # refresh period 0.5 s in the fixture
        while (await exec_out(cluster, "cm-reader", ["cat", "/etc/cfg/greeting"]))[1] != "v2":
            await asyncio.sleep(0.2)


# -- logs ------------------------------------------------------------------------------------


async def test_logs_follow_a_running_container(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(pod_doc("ticker", [sh(
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")]))
    await wait_pod(cluster, "ticker", lambda p: p.status.phase == "Running")
    seen: list[int] = []
    buf = b""
    stream = c.logs("default", "ticker", follow=True)
    try:
        async with asyncio.timeout(15):
            async for chunk in stream:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                seen.extend(int(line.split()[1]) for line in lines if line.startswith(b"tick"))
                if len(seen) >= 2 and seen[-1] - seen[0] >= 8:
                    break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert seen == list(range(seen[0], seen[-1] + 1))  # in order, nothing lost


# -- environment -----------------------------------------------------------------------------


async def test_env_value_from_and_var_expansion(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(convert.from_dict({"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "env-src", "namespace": "default"},
                                      "data": {"color": "blue"}}, core_pb2.ConfigMap()))
    await c.create(pod_doc("env", [{
        "name": "main", "image": "busybox", "command": ["sh", "-c"],
        "args": ["echo name=$(MY_NAME) ip=$(MY_IP) color=$(COLOR) "
                 "both=$(BOTH) 'kept=$$(MY_NAME) missing=$(NOPE)'"],
        "env": [
            {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "env-src",
                                                                "key": "color"}}},
            {"name": "BOTH", "value": "$(MY_NAME)-$(COLOR)"},
        ]}], restartPolicy="Never"))
    p = await wait_pod(cluster, "env", lambda p: p.status.phase == "Succeeded")
    text = await read_logs(cluster, "env")
    assert text.strip() == (f"name=env ip={p.status.pod_ip} color=blue both=env-blue "
                            "kept=$(MY_NAME) missing=$(NOPE)")


# -- lifecycle -------------------------------------------------------------------------------


async def test_post_start_and_pre_stop_hooks(cluster: Cluster, agent: Agent,
                                             tmp_path: Path) -> None:
    c = cluster.client
    hooks_dir = tmp_path / "hooks"
    hooks_dir.mkdir()
    await c.create(pod_doc("hooks", [sh(
        "trap 'echo TERM > /hooks/term; exit 0' TERM; while true; do sleep 0.1; done",
        lifecycle={
            "postStart": {"exec": {"command": ["sh", "-c", "echo started > /hooks/post"]}},
            "preStop": {"exec": {"command": ["sh", "-c",
                                             "test ! -e /hooks/term && echo before > /hooks/pre"]}},
        },
        volumeMounts=[{"name": "hooks", "mountPath": "/hooks"}])],
        volumes=[{"name": "hooks", "hostPath": {"path": str(hooks_dir), "type": "Directory"}}]))
    await wait_pod(cluster, "hooks", lambda p: p.status.phase == "Running")
    assert (hooks_dir / "post").read_text() == "started\n"
    await c.delete(core_pb2.Pod, "hooks", "default")
    async with asyncio.timeout(20):
        while True:
            try:
                await c.get(core_pb2.Pod, "hooks", "default")
            except errors.NotFound:
                break
            await asyncio.sleep(0.1)
    # preStop ran while the container was still running, before its SIGTERM
    assert (hooks_dir / "pre").read_text() == "before\n"
    assert (hooks_dir / "term").read_text() == "TERM\n"


async def test_termination_messages(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(pod_doc("msg-file", [sh("printf bye > /dev/termination-log; exit 3")],
                           restartPolicy="Never"))
    await c.create(pod_doc("msg-custom", [sh(
        "printf custom > /tmp/why; exit 0", terminationMessagePath="/tmp/why")],
        restartPolicy="Never"))
    await c.create(pod_doc("msg-logs", [sh(
        "echo last words; exit 4", terminationMessagePolicy="FallbackToLogsOnError")],
        restartPolicy="Never"))
    p = await wait_pod(cluster, "msg-file", lambda p: p.status.phase == "Failed")
    term = status_of(p).state.terminated
    assert (term.exit_code, term.message) == (3, "bye")
    p = await wait_pod(cluster, "msg-custom", lambda p: p.status.phase == "Succeeded")
    assert status_of(p).state.terminated.message == "custom"
    p = await wait_pod(cluster, "msg-logs", lambda p: p.status.phase == "Failed")
    assert status_of(p).state.terminated.message.strip() == "last words"


async def test_active_deadline_seconds(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(pod_doc("deadline", [sh("exec sleep 600")], activeDeadlineSeconds=2))
    await wait_pod(cluster, "deadline", lambda p: p.status.phase == "Running")
    p = await wait_pod(cluster, "deadline", lambda p: p.status.phase == "Failed", limit=15)
    assert p.status.reason == "DeadlineExceeded"
    assert not status_of(p).state.HasField("running")
