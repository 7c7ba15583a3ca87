"""Pure pod status: container states, phase per restartPolicy, conditions, QoS."""

from __future__ import annotations

from typing import Any

import pytest

from agent.kubelet.status import (
    ContainerView,
    PodFacts,
    compute_status,
    qos_class,
)
from agent.runtime.interface import ContainerState, ContainerStatus
from control.api import convert
from control.api.pb import core_pb2

NOW = 1_700_000_100.0


def pod(policy: str = "Always", init: list[dict[str, Any]] | None = None,
        containers: list[str] | None = None, **spec: Any) -> core_pb2.Pod:
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "uid": "u"},
           "spec": {"restartPolicy": policy, "nodeName": "n1",
                    "initContainers": init or [],
                    "containers": [{"name": n, "command": ["x"]}
                                   for n in (containers or ["app"])], **spec}}
    return convert.from_dict(doc, core_pb2.Pod())


def running(name: str, attempt: int = 0) -> ContainerStatus:
    return ContainerStatus(id=f"{name}-{attempt}", sandbox_id="s", name=name,
                           state=ContainerState.RUNNING, created_at=NOW - 10,
                           started_at=NOW - 10, attempt=attempt)


def exited(name: str, code: int, attempt: int = 0) -> ContainerStatus:
    return ContainerStatus(id=f"{name}-{attempt}", sandbox_id="s", name=name,
                           state=ContainerState.EXITED, created_at=NOW - 10,
                           started_at=NOW - 10, finished_at=NOW - 5, exit_code=code,
                           reason="Completed" if code == 0 else "Error", attempt=attempt)


def v(name: str, cur: ContainerStatus | None = None, prev: ContainerStatus | None = None,
      **kw: Any) -> ContainerView:
    ready = cur is not None and cur.state is ContainerState.RUNNING
    kw.setdefault("ready", ready)
    kw.setdefault("started", ready)
    return ContainerView(name, cur, prev, **kw)


def status(p: core_pb2.Pod, *views: ContainerView) -> core_pb2.PodStatus:
    return compute_status(p, {x.name: x for x in views}, PodFacts(now=NOW, host_ip="10.1.1.1"))


@pytest.mark.parametrize(("policy", "code", "phase"), [
    ("Always", 0, "Running"), ("Always", 1, "Running"),
    ("OnFailure", 0, "Succeeded"), ("OnFailure", 1, "Running"),
    ("Never", 0, "Succeeded"), ("Never", 1, "Failed"),
])
def test_phase_after_exit(policy: str, code: int, phase: str) -> None:
    will_restart = policy == "Always" or (policy == "OnFailure" and code != 0)
    st = status(pod(policy), v("app", exited("app", code), will_restart=will_restart))
    assert st.phase == phase


def test_running_pod() -> None:
    st = status(pod(), v("app", running("app", 2), exited("app", 1, 1)))
    assert st.phase == "Running"
    cs = st.container_statuses[0]
    assert cs.state.HasField("running") and cs.ready and cs.started
    assert cs.restart_count == 2
    assert cs.last_state.terminated.exit_code == 1
    assert cs.container_id == "flotilla://app-2"
    conds = {c.type: c.status for c in st.conditions}
    assert conds == {"PodScheduled": "True", "Initialized": "True",
                     "ContainersReady": "True", "Ready": "True"}
    assert st.host_ip == "10.1.1.1" and [i.ip for i in st.host_ips] == ["10.1.1.1"]
    assert st.start_time.seconds == int(NOW)
    assert st.qos_class == "BestEffort"


def test_crash_loop_waiting() -> None:
    st = status(pod(), v("app", exited("app", 1, 3), waiting_reason="CrashLoopBackOff",
                         waiting_message="back-off 40s"))
    cs = st.container_statuses[0]
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert cs.last_state.terminated.exit_code == 1
    assert cs.restart_count == 3
    assert st.phase == "Running"
    assert {c.type: c.reason for c in st.conditions}["Ready"] == "ContainersNotReady"


def test_pending_and_init() -> None:
    init = [{"name": "i1", "command": ["x"]}, {"name": "i2", "command": ["x"]}]
    st = status(pod(init=init), v("i1", exited("i1", 0)), v("i2", running("i2")))
    assert st.phase == "Pending"
    assert st.container_statuses[0].state.waiting.reason == "PodInitializing"
    init_cond = next(c for c in st.conditions if c.type == "Initialized")
    assert init_cond.status == "False"
    assert init_cond.message == "containers with incomplete status: [i2]"
    st = status(pod("Never", init=init), v("i1", exited("i1", 1)))
    assert st.phase == "Failed"
    st = status(pod("Always", init=init), v("i1", exited("i1", 1),
                                            waiting_reason="CrashLoopBackOff"))
    assert st.phase == "Pending"


def test_sidecar_counts_for_init_and_readiness() -> None:
    init = [{"name": "side", "command": ["x"], "restartPolicy": "Always"}]
    st = status(pod(init=init), v("side", running("side")), v("app", running("app")))
    assert st.phase == "Running"
    assert all(c.status == "True" for c in st.conditions)
    st = status(pod(init=init), v("side", running("side"), ready=False),
                v("app", running("app")))
    ready = next(c for c in st.conditions if c.type == "ContainersReady")
    assert ready.status == "False" and ready.message == "containers with unready status: [side]"
    # app finished under Never: sidecar stopped afterwards does not fail the pod
    st = status(pod("Never", init=init), v("side", exited("side", 143)),
                v("app", exited("app", 0), will_restart=False))
    assert st.phase == "Succeeded"


def test_transition_times_kept_and_terminal_sticky() -> None:
    p = pod()
    first = status(p, v("app", running("app")))
    p.status.CopyFrom(first)
    p.status.start_time.seconds = 42
    later = compute_status(p, {"app": v("app", running("app"))},
                           PodFacts(now=NOW + 100, host_ip="10.1.1.1"))
    assert [c.last_transition_time.seconds for c in later.conditions] == [int(NOW)] * 4
    assert later.start_time.seconds == 42
    flipped = compute_status(p, {"app": v("app", running("app"), ready=False)},
                             PodFacts(now=NOW + 100))
    times = {c.type: c.last_transition_time.seconds for c in flipped.conditions}
    assert times["Ready"] == int(NOW + 100) and times["PodScheduled"] == int(NOW)
    p.status.phase = "Failed"
    assert compute_status(p, {"app": v("app", running("app"))}, PodFacts(now=NOW)).phase == \
        "Failed"


def test_readiness_gates_and_foreign_conditions() -> None:
    p = pod(readinessGates=[{"conditionType": "example.com/lb"}])
    st = status(p, v("app", running("app")))
    ready = next(c for c in st.conditions if c.type == "Ready")
    assert ready.status == "False" and ready.reason == "ReadinessGatesNotReady"
    p.status.conditions.add(type="example.com/lb", status="True")
    st = status(p, v("app", running("app")))
    assert next(c for c in st.conditions if c.type == "Ready").status == "True"
    assert any(c.type == "example.com/lb" for c in st.conditions)


def test_deadline_override() -> None:
    st = compute_status(pod(), {"app": v("app", exited("app", 137), will_restart=False)},
                        PodFacts(now=NOW, phase_override="Failed", reason="DeadlineExceeded",
                                 message="too long"))
    assert (st.phase, st.reason, st.message) == ("Failed", "DeadlineExceeded", "too long")
    assert st.container_statuses[0].state.terminated.exit_code == 137


@pytest.mark.parametrize(("resources", "qos"), [
    ([{}], "BestEffort"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}],
     "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
])
def test_qos(resources: list[dict[str, Any]], qos: str) -> None:
    p = pod(containers=[f"c{i}" for i in range(len(resources))])
    for c, r in zip(p.spec.containers, resources, strict=True):
        convert.from_dict(r, c.resources)
    assert qos_class(p) == qos
