"""sync_pod against the fake runtime with a FakeClock: restarts, init order, sidecars,
config errors, hooks, deadlines, adoption and termination, and the Events each records."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from agent.config import HOST_HANDLER
from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.sync import PodState, PodSyncer, SyncConfig, SyncResult
from agent.runtime.fake import Behaviour, FakeRuntime, exits, forever
from agent.runtime.interface import CreateContainerError, ExecResult, RuntimeError_
from control.api import convert
from control.api.pb import core_pb2
from control.runtime.clock import FakeClock
from control.runtime.events import FakeRecorder


def make_pod(policy: str = "Always", containers: list[dict[str, Any]] | None = None,
             init: list[dict[str, Any]] | None = None, **spec: Any) -> core_pb2.Pod:
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "uid": "uid-1"},
           "spec": {"restartPolicy": policy, "nodeName": "n1",
                    "terminationGracePeriodSeconds": 5,
                    "initContainers": init or [],
                    "containers": containers or [{"name": "app", "command": ["serve"]}],
                    **spec}}
    return convert.from_dict(doc, core_pb2.Pod())


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock()
        self.rt = FakeRuntime(self.clock)
        self.tmp = tmp
        self.recorder = FakeRecorder()
        self.syncer = self.new_syncer()
        self.state = PodState("uid-1")

    def new_syncer(self) -> PodSyncer:
        return PodSyncer(self.rt, self.clock,
                         # the fake runtime has no image service: its pods take the host
                         # handler, named here since the default is the image one
                         SyncConfig(node_name="n1", data_dir=self.tmp, host_ip="10.0.0.1",
                                    default_handler=HOST_HANDLER),
                         CrashLoopBackoff(self.clock), recorder=self.recorder)

    async def sync(self, pod: core_pb2.Pod) -> SyncResult:
        res = await self.syncer.sync_pod(pod, self.state)
        pod.status.CopyFrom(res.status)  # as if posted and read back
        return res


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def is_dir(path: str | Path) -> bool:
    return os.path.isdir(path)


def exists(path: str | Path) -> bool:
    return os.path.exists(path)


def events(h: Harness) -> list[tuple[str, str, str, str]]:
    """(type, reason, message, fieldPath) of every Event recorded so far."""
    return [(e.type, e.reason, e.message, e.field_path) for e in h.recorder.events]


def cstatus(pod: core_pb2.Pod, name: str) -> core_pb2.ContainerStatus:
    return next(s for s in (*pod.status.init_container_statuses, *pod.status.container_statuses)
                if s.name == name)


async def test_always_restarts_with_crash_loop_backoff(h: Harness) -> None:
    h.rt.script("app", exits(1, after=1))
    pod = make_pod("Always")
    await h.sync(pod)
    assert pod.status.phase == "Running"
    assert cstatus(pod, "app").state.HasField("running")
    assert is_dir(h.tmp / "pods" / "uid-1" / "logs" / "app")
    h.clock.advance(1)
    await h.sync(pod)  # first crash: restarted at once
    assert cstatus(pod, "app").restart_count == 1
    assert cstatus(pod, "app").last_state.terminated.exit_code == 1
    h.clock.advance(1)
    res = await h.sync(pod)  # second crash: back-off 10s
    st = cstatus(pod, "app")
    assert st.state.waiting.reason == "CrashLoopBackOff"
    assert st.state.waiting.message.startswith("back-off 10s restarting failed container=app")
    assert res.requeue_after == pytest.approx(10)
    assert pod.status.phase == "Running"
    h.clock.advance(10)
    await h.sync(pod)
    assert cstatus(pod, "app").restart_count == 2
    assert h.rt.starts("p", "app") == 3
    app = "spec.containers{app}"
    assert events(h) == [
        ("Normal", "Created", "Created container: app", app),
        ("Normal", "Started", "Started container app", app),
        ("Normal", "Created", "Created container: app", app),
        ("Normal", "Started", "Started container app", app),
        ("Warning", "BackOff",
         "Back-off restarting failed container app in pod p_default(uid-1)", app),
        ("Normal", "Created", "Created container: app", app),
        ("Normal", "Started", "Started container app", app)]
    # only the current and previous attempts are kept
    assert len([c for c in h.rt.containers.values() if c.config.name == "app"]) == 2


@pytest.mark.parametrize(("policy", "code", "phase", "starts"), [
    ("Never", 1, "Failed", 1), ("Never", 0, "Succeeded", 1),
    ("OnFailure", 0, "Succeeded", 1), ("OnFailure", 3, "Running", 2),
])
async def test_restart_policies(h: Harness, policy: str, code: int, phase: str,
                                starts: int) -> None:
    h.rt.script("app", exits(code, after=1), forever())
    pod = make_pod(policy)
    await h.sync(pod)
    h.clock.advance(1)
    await h.sync(pod)
    assert pod.status.phase == phase
    assert h.rt.starts("p", "app") == starts
    if phase in ("Failed", "Succeeded"):
        t = cstatus(pod, "app").state.terminated
        assert t.exit_code == code and t.reason == ("Completed" if code == 0 else "Error")
        await h.sync(pod)
        assert h.rt.starts("p", "app") == starts  # terminal: nothing restarts


async def test_init_containers_in_order_and_failure_blocks_app(h: Harness) -> None:
    h.rt.script("i1", exits(0, after=1))
    h.rt.script("i2", exits(1, after=1), exits(0, after=1))
    pod = make_pod("Always", init=[{"name": "i1", "command": ["a"]},
                                   {"name": "i2", "command": ["b"]}])
    await h.sync(pod)
    assert [c[2] for c in h.rt.calls if c[0] == "start"] == ["i1"]
    assert pod.status.phase == "Pending"
    assert cstatus(pod, "app").state.waiting.reason == "PodInitializing"
    h.clock.advance(1)
    await h.sync(pod)
    assert [c[2] for c in h.rt.calls if c[0] == "start"] == ["i1", "i2"]
    h.clock.advance(1)
    await h.sync(pod)  # i2 failed: retried (restartPolicy Always), app still blocked
    assert [c[2] for c in h.rt.calls if c[0] == "start"] == ["i1", "i2", "i2"]
    assert h.rt.starts("p", "app") == 0
    h.clock.advance(1)
    await h.sync(pod)
    assert [c[2] for c in h.rt.calls if c[0] == "start"] == ["i1", "i2", "i2", "app"]
    assert pod.status.phase == "Running"
    assert cstatus(pod, "i2").state.terminated.reason == "Completed"
    assert all(c.status == "True" for c in pod.status.conditions)


async def test_failed_init_under_never_fails_pod(h: Harness) -> None:
    h.rt.script("i1", exits(2))
    pod = make_pod("Never", init=[{"name": "i1", "command": ["a"]}])
    await h.sync(pod)
    await h.sync(pod)
    assert pod.status.phase == "Failed"
    assert h.rt.starts("p", "app") == 0


async def test_sidecars_start_in_order_run_beside_app_and_stop_after(h: Harness) -> None:
    h.rt.script("app", exits(0, after=5))
    pod = make_pod("Never", init=[
        {"name": "s1", "command": ["x"], "restartPolicy": "Always"},
        {"name": "s2", "command": ["x"], "restartPolicy": "Always"},
        {"name": "i3", "command": ["true"]}])
    for _ in range(4):
        await h.sync(pod)
    assert [c[2] for c in h.rt.calls if c[0] == "start"] == ["s1", "s2", "i3", "app"]
    assert pod.status.phase == "Running"
    assert {c.name for c in h.rt.running()} == {"s1", "s2", "app"}
    h.clock.advance(5)
    await h.sync(pod)
    stops = [c[2] for c in h.rt.calls if c[0] == "stop"]
    assert stops == ["s2", "s1"]
    assert not h.rt.running()
    await h.sync(pod)
    assert pod.status.phase == "Succeeded"


async def test_no_command_is_a_waiting_reason(h: Harness) -> None:
    pod = make_pod(containers=[{"name": "app", "image": "busybox"}])
    res = await h.sync(pod)
    w = cstatus(pod, "app").state.waiting
    assert w.reason == "CreateContainerConfigError"
    assert "no command specified" in w.message
    assert pod.status.phase == "Pending"
    assert res.requeue_after == 10
    assert events(h) == [("Warning", "Failed", f"Error: {w.message}", "spec.containers{app}")]


async def test_args_only_and_env_expansion(h: Harness) -> None:
    pod = make_pod(containers=[{"name": "app", "args": ["echo", "$(WHO)"],
                                "env": [{"name": "WHO", "value": "me"},
                                        {"name": "POD", "valueFrom": {
                                            "fieldRef": {"fieldPath": "metadata.name"}}}],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                   volumes=[{"name": "data", "emptyDir": {}}])
    await h.sync(pod)
    c = h.rt.find("p", "app")
    assert c is not None
    assert list(c.config.argv) == ["echo", "me"]
    assert dict(c.config.env)["POD"] == "p"
    assert is_dir(c.config.mounts[0].host_path)
    assert c.config.log_path.endswith("pods/uid-1/logs/app/0.log")


async def test_post_start_failure_kills_container(h: Harness) -> None:
    h.rt.on_exec("app", ExecResult(exit_code=1, stdout=b"", stderr=b"boom"))
    pod = make_pod(containers=[{"name": "app", "command": ["serve"], "lifecycle": {
        "postStart": {"exec": {"command": ["hook"]}}}}])
    await h.sync(pod)
    w = cstatus(pod, "app").state.waiting
    assert w.reason == "PostStartHookError" and "boom" in w.message
    assert not h.rt.running()
    assert [(t, r) for t, r, _, _ in events(h)] == [
        ("Normal", "Created"), ("Normal", "Started"), ("Warning", "FailedPostStartHook"),
        ("Normal", "Killing")]
    assert "boom" in events(h)[2][2]


async def test_active_deadline(h: Harness) -> None:
    pod = make_pod(activeDeadlineSeconds=30)
    res = await h.sync(pod)
    assert res.requeue_after == pytest.approx(30)
    h.clock.advance(30)
    await h.sync(pod)
    assert (pod.status.phase, pod.status.reason) == ("Failed", "DeadlineExceeded")
    assert not h.rt.running()


async def test_adoption_does_not_duplicate(h: Harness) -> None:
    pod = make_pod(containers=[{"name": "a", "command": ["x"]}, {"name": "b", "command": ["y"]}])
    await h.sync(pod)
    before = dict(h.rt.containers)
    h.syncer = h.new_syncer()  # a restarted kubelet: fresh memory, same runtime
    h.state = PodState("uid-1")
    await h.sync(pod)
    assert dict(h.rt.containers) == before
    assert len(h.rt.sandboxes) == 1
    assert pod.status.phase == "Running"


async def test_terminate_runs_pre_stop_and_cleans_up(h: Harness) -> None:
    h.rt.script("app", Behaviour(ignore_sigterm=True))
    pod = make_pod(containers=[{"name": "app", "command": ["serve"], "lifecycle": {
        "preStop": {"exec": {"command": ["drain"]}}}}])
    await h.sync(pod)
    task_result = h.syncer.terminate(pod, "uid-1", h.state, grace=5)
    task = asyncio.ensure_future(task_result)
    await h.clock.wait_for_sleepers(1)
    h.clock.advance(5)
    final = await task
    assert ("app", ("drain",)) in h.rt.exec_calls
    assert [(r, m) for _, r, m, _ in events(h)][2:] == [
        ("Killing", "Stopping container app")]
    assert final is not None and final.phase == "Failed"
    assert cstatus(pod, "app") is not None
    assert final.container_statuses[0].state.terminated.exit_code == 137
    assert not h.rt.sandboxes and not h.rt.containers
    assert not exists(h.tmp / "pods" / "uid-1")


async def test_one_runtime_snapshot_per_sync(h: Harness, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """A sync lists the pod's containers once and reuses the listing until it changes
    something; a steady sync lists sandboxes once and containers once."""
    counts = {"sandboxes": 0, "containers": 0}
    real_sandboxes, real_containers = h.rt.list_pod_sandboxes, h.rt.list_containers

    async def list_sandboxes() -> Any:
        counts["sandboxes"] += 1
        return await real_sandboxes()

    async def list_containers(sandbox_id: str | None = None) -> Any:
        counts["containers"] += 1
        return await real_containers(sandbox_id)

    monkeypatch.setattr(h.rt, "list_pod_sandboxes", list_sandboxes)
    monkeypatch.setattr(h.rt, "list_containers", list_containers)
    h.rt.script("app", exits(1, after=1))
    pod = make_pod("Always", containers=[{"name": "app", "command": ["serve"]},
                                         {"name": "side", "command": ["serve"]}])
    await h.sync(pod)  # creates the sandbox, starts both containers
    assert cstatus(pod, "app").state.HasField("running")
    assert cstatus(pod, "side").state.HasField("running")
    assert counts["containers"] <= 2, counts  # _act, then _views after the starts
    for _ in range(3):
        counts.update(sandboxes=0, containers=0)
        await h.sync(pod)  # steady: nothing to do
        assert counts == {"sandboxes": 1, "containers": 1}
        assert cstatus(pod, "side").state.HasField("running")
    h.clock.advance(1)  # app crashed: restarted; the status shows the new attempt
    counts.update(sandboxes=0, containers=0)
    await h.sync(pod)
    assert cstatus(pod, "app").restart_count == 1
    assert cstatus(pod, "app").state.HasField("running")
    assert counts["containers"] == 2, counts


async def test_attempts_are_collected_without_listing_again(h: Harness) -> None:
    h.rt.script("app", exits(1, after=1))
    pod = make_pod("Always", containers=[{"name": "app", "command": ["serve"]}])
    await h.sync(pod)
    for _ in range(5):
        h.clock.advance(400)  # past any backoff
        await h.sync(pod)
    assert cstatus(pod, "app").restart_count == 5
    assert cstatus(pod, "app").last_state.terminated.exit_code == 1
    kept = sorted(c.attempt for c in h.rt.containers.values() if c.config.name == "app")
    assert kept == [4, 5]


async def test_create_and_start_failures_are_failed_events(h: Harness) -> None:
    h.rt.fail_next("create_container", CreateContainerError("no space left"))
    pod = make_pod(containers=[{"name": "app", "command": ["serve"]}])
    await h.sync(pod)
    assert events(h) == [("Warning", "Failed", "Error: no space left", "spec.containers{app}")]
    h.rt.fail_next("start_container", RuntimeError_('exec: "/nope": no such file'))
    h.clock.advance(10)
    await h.sync(pod)
    assert [(r, m) for _, r, m, _ in events(h)][1:] == [
        ("Created", "Created container: app"), ("Failed", 'Error: exec: "/nope": no such file')]


async def test_pre_stop_failure_and_a_hook_past_the_grace(h: Harness) -> None:
    h.rt.on_exec("app", ExecResult(exit_code=2, stdout=b"", stderr=b"nope"))
    pod = make_pod(containers=[{"name": "app", "command": ["serve"], "lifecycle": {
        "preStop": {"exec": {"command": ["drain"]}}}}])
    await h.sync(pod)
    await h.syncer.terminate(pod, "uid-1", h.state, grace=5)
    assert [r for _, r, _, _ in events(h)][2:] == ["Killing", "FailedPreStopHook"]

    # a preStop that outlives the grace period
    h2 = Harness(h.tmp / "second")
    sleepy = make_pod(containers=[{"name": "app", "command": ["serve"], "lifecycle": {
        "preStop": {"sleep": {"seconds": 60}}}}])
    await h2.sync(sleepy)
    task = asyncio.ensure_future(h2.syncer.terminate(sleepy, "uid-1", h2.state, grace=5))
    for _ in range(2):
        await h2.clock.wait_for_sleepers(1)
        h2.clock.advance(5)
    await task
    assert [r for _, r, _, _ in events(h2)][2:] == [
        "Killing", "FailedPreStopHook", "ExceededGracePeriod"]
    assert "timed out" in events(h2)[3][2]


async def test_volume_setup_failure_is_a_failed_mount_event(h: Harness) -> None:
    class Broken:
        async def setup(self, pod: core_pb2.Pod) -> dict[str, str]:
            raise RuntimeError('volume "data": cinder volumes are not supported by this node')

        async def teardown(self, pod_uid: str) -> None:
            return None

    h.syncer.volumes = Broken()
    pod = make_pod()
    await h.sync(pod)
    assert cstatus(pod, "app").state.waiting.reason == "ContainerCreating"
    assert events(h) == [("Warning", "FailedMount",
                          'volume "data": cinder volumes are not supported by this node', "")]


@pytest.mark.parametrize("host_ipc", [False, True])
async def test_sandbox_follows_host_ipc(h: Harness, host_ipc: bool) -> None:
    await h.sync(make_pod(hostIPC=host_ipc))
    (sb,) = h.rt.sandboxes.values()
    assert sb.config.host_ipc is host_ipc
