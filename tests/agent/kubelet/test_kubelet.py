"""The Kubelet against a real in-process API server with the fake runtime: pods bound by
spec.nodeName run and report true status, restart per policy, init containers and sidecars,
graceful deletion confirmed with grace 0, activeDeadlineSeconds, and restart/adoption."""

from __future__ import annotations

import asyncio

import pytest

from agent.runtime.fake import exits
from control.api import convert
from control.api.pb import core_pb2
from tests.agent.kubelet.conftest import Env


def app_status(pod: core_pb2.Pod, name: str = "app") -> core_pb2.ContainerStatus:
    return next(s for s in (*pod.status.init_container_statuses, *pod.status.container_statuses)
                if s.name == name)


def cond(pod: core_pb2.Pod, type_: str) -> str:
    return next((c.status for c in pod.status.conditions if c.type == type_), "")


async def test_pod_runs_and_reports_true_status(env: Env) -> None:
    await env.start()
    await env.create("web", containers=[{"name": "app", "args": ["serve"]}])
    other = await env.create("elsewhere")
    del other
    pod = await env.wait("web", lambda p: p.status.phase == "Running"
                         and cond(p, "Ready") == "True")
    st = app_status(pod)
    assert st.state.HasField("running") and st.ready and st.started
    assert st.container_id.startswith("flotilla://")
    assert pod.status.host_ip == "10.9.9.9" and pod.status.pod_ip == "10.9.9.9"
    assert pod.status.qos_class == "BestEffort"
    assert pod.status.HasField("start_time")
    assert env.rt.starts("web", "app") == 1


async def test_pod_on_other_node_is_ignored(env: Env) -> None:
    await env.start()
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "default"},
           "spec": {"nodeName": "other", "containers": [{"name": "app", "image": "busybox",
                                                           "command": ["s"]}]}}
    await env.client.create(convert.from_dict(doc, core_pb2.Pod()))
    await env.create("mine")
    await env.wait("mine", lambda p: p.status.phase == "Running")
    assert env.rt.starts("x", "app") == 0


async def test_always_restarts_into_crash_loop(env: Env) -> None:
    env.rt.script("crash", exits(1, after=0.05))
    await env.start()
    await env.create("crashy", containers=[{"name": "crash", "command": ["c"]}])
    pod = await env.wait("crashy", lambda p: app_status(p, "crash").state.waiting.reason
                         == "CrashLoopBackOff" if p.status.container_statuses else False)
    assert app_status(pod, "crash").last_state.terminated.exit_code == 1
    assert pod.status.phase == "Running"
    pod = await env.wait("crashy", lambda p: app_status(p, "crash").restart_count >= 3)


@pytest.mark.parametrize(("policy", "code", "phase"), [
    ("Never", 1, "Failed"), ("OnFailure", 0, "Succeeded"), ("Never", 0, "Succeeded")])
async def test_terminal_phases(env: Env, policy: str, code: int, phase: str) -> None:
    env.rt.script("job", exits(code, after=0.05))
    await env.start()
    await env.create("job", policy, containers=[{"name": "job", "command": ["j"]}])
    pod = await env.wait("job", lambda p: p.status.phase == phase)
    t = app_status(pod, "job").state.terminated
    assert t.exit_code == code and app_status(pod, "job").restart_count == 0
    assert cond(pod, "Ready") == "False"
    await asyncio.sleep(0.3)
    assert env.rt.starts("job", "job") == 1


async def test_on_failure_restarts_until_success(env: Env) -> None:
    env.rt.script("work", exits(1, after=0.05), exits(0, after=0.05))
    await env.start()
    await env.create("retry", "OnFailure", containers=[{"name": "work", "command": ["w"]}])
    pod = await env.wait("retry", lambda p: p.status.phase == "Succeeded")
    assert app_status(pod, "work").restart_count == 1


async def test_init_containers_order_and_failure(env: Env) -> None:
    env.rt.script("bad", exits(1, after=0.05))
    await env.start()
    await env.create("ordered", initContainers=[{"name": "one", "command": ["true"]},
                                                {"name": "two", "command": ["true"]}])
    await env.wait("ordered", lambda p: p.status.phase == "Running")
    starts = [c[2] for c in env.rt.calls if c[0] == "start" and c[1] == "ordered"]
    assert starts == ["one", "two", "app"]
    await env.create("blocked", initContainers=[{"name": "bad", "command": ["b"]}])
    pod = await env.wait("blocked", lambda p: bool(p.status.init_container_statuses)
                         and app_status(p, "bad").restart_count >= 2)
    assert pod.status.phase == "Pending"
    assert app_status(pod).state.waiting.reason == "PodInitializing"
    assert env.rt.starts("blocked", "app") == 0
    await env.create("never", "Never", initContainers=[{"name": "bad", "command": ["b"]}])
    await env.wait("never", lambda p: p.status.phase == "Failed")
    assert env.rt.starts("never", "bad") == 1


async def test_sidecar_runs_beside_app_and_stops_after(env: Env) -> None:
    env.rt.script("main", exits(0, after=0.3))
    await env.start()
    await env.create("side", "Never", containers=[{"name": "main", "command": ["m"]}],
                     initContainers=[{"name": "proxy", "command": ["p"],
                                      "restartPolicy": "Always"}])
    pod = await env.wait("side", lambda p: p.status.phase == "Running"
                         and cond(p, "Ready") == "True")
    assert app_status(pod, "proxy").state.HasField("running")
    pod = await env.wait("side", lambda p: p.status.phase == "Succeeded")
    events = [(c[0], c[2]) for c in env.rt.calls if c[1] == "side" and c[0] in ("start", "stop")]
    assert events[:2] == [("start", "proxy"), ("start", "main")]
    assert ("stop", "proxy") in events
    assert not env.rt.running("side")


async def test_graceful_deletion_is_confirmed(env: Env) -> None:
    await env.start()
    await env.create("doomed", containers=[{"name": "app", "command": ["serve"], "lifecycle": {
        "preStop": {"exec": {"command": ["drain"]}}}}])
    await env.wait("doomed", lambda p: p.status.phase == "Running")
    _, pending = await env.client.delete("pods", "doomed", "default")
    assert pending  # graceful: the kubelet must confirm
    await env.wait_gone("doomed")
    assert ("app", ("drain",)) in env.rt.exec_calls
    assert not env.rt.sandboxes and not env.rt.containers


async def test_active_deadline(env: Env) -> None:
    await env.start()
    await env.create("deadline", activeDeadlineSeconds=1)
    pod = await env.wait("deadline", lambda p: p.status.phase == "Failed", timeout=15)
    assert pod.status.reason == "DeadlineExceeded"
    assert not env.rt.running("deadline")


async def test_restart_readopts_without_duplicates_and_cleans_orphans(env: Env) -> None:
    await env.start()
    await env.create("keep", containers=[{"name": "a", "command": ["x"]},
                                         {"name": "b", "command": ["y"]}])
    await env.create("gone")
    await env.wait("keep", lambda p: p.status.phase == "Running")
    await env.wait("gone", lambda p: p.status.phase == "Running")
    await env.stop()
    assert len(env.rt.running()) == 3  # stopping the kubelet leaves containers running
    await env.client.delete("pods", "gone", "default", grace_period_seconds=0)
    await env.start()
    async with asyncio.timeout(10):
        while True:  # the orphan's containers are stopped by the restarted kubelet
            if not env.rt.running("gone"):
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert env.rt.starts("keep", "a") == 1 and env.rt.starts("keep", "b") == 1
    pod = await env.client.get("pods", "keep", "default")
    assert pod.status.phase == "Running"
    assert len(env.rt.sandboxes) == 1


async def test_config_error_then_fixed_by_configmap(env: Env) -> None:
    await env.start()
    await env.create("needs-cm", containers=[{"name": "app", "command": ["s"], "env": [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "x"}}}]}])
    pod = await env.wait("needs-cm", lambda p: bool(p.status.container_statuses)
                         and app_status(p).state.waiting.reason == "CreateContainerConfigError")
    assert 'configmap "cfg" not found' in app_status(pod).state.waiting.message
    cm = core_pb2.ConfigMap(data={"x": "1"})
    cm.metadata.name, cm.metadata.namespace = "cfg", "default"
    await env.client.create(cm)
    await env.wait("needs-cm", lambda p: p.status.phase == "Running")
    c = env.rt.find("needs-cm", "app")
    assert c is not None and dict(c.config.env)["X"] == "1"
