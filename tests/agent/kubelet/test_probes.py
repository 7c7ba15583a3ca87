"""ProbeManager: thresholds, initial delay, startup gating, liveness failures, worker
ownership; the schedule runs on a FakeClock, the probes against a stub exec runtime and a
real HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from agent.kubelet.prober import Result
from agent.kubelet.probes import (
    ProbeManager,
    ThresholdState,
    apply_result,
    probed_containers,
)
from agent.runtime.interface import ExecResult
from control.api.pb import core_pb2, meta_pb2
from control.runtime import FakeClock
from control.runtime.events import FakeRecorder
from tests.support import eventually

UID = "uid-1"

# -- pure helpers ------------------------------------------------------------------------

S, F, U = Result.SUCCESS, Result.FAILURE, Result.UNKNOWN


@pytest.mark.parametrize(("results", "success_th", "failure_th", "published"), [
    ([S], 1, 3, [S]),
    ([S, S, S], 2, 3, [None, S, S]),
    ([F, F, F, F], 1, 3, [None, None, F, F]),
    ([F, F, S, F, F, F], 1, 3, [None, None, S, None, None, F]),
    ([F, U, F, U, F], 1, 3, [None, None, None, None, F]),  # unknown neither counts nor resets
    ([S, F, S, S], 2, 1, [None, F, None, S]),
    ([F], 1, 0, [F]),  # a threshold of 0 behaves as 1
])
def test_apply_result(results: list[Result], success_th: int, failure_th: int,
                      published: list[Result | None]) -> None:
    state = ThresholdState()
    assert [apply_result(state, r, success_th, failure_th) for r in results] == published


def test_probed_containers_include_sidecars_only() -> None:
    pod = core_pb2.Pod(spec=core_pb2.PodSpec(
        init_containers=[core_pb2.Container(name="init"),
                         core_pb2.Container(name="side", restart_policy="Always")],
        containers=[core_pb2.Container(name="app")]))
    assert [c.name for c in probed_containers(pod)] == ["side", "app"]


# -- fixtures ----------------------------------------------------------------------------


@dataclass
class ExecStub:
    """exec_sync: exit code per container id (0 by default), every call recorded."""

    exit_codes: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    async def exec_sync(self, container_id: str, argv: Sequence[str],
                        timeout: float) -> ExecResult:  # noqa: ASYNC109
        self.calls.append((container_id, tuple(argv)))
        code = self.exit_codes.get(container_id, 0)
        return ExecResult(code, b"" if code == 0 else b"unhealthy\n", b"")

    def count(self, argv0: str) -> int:
        return sum(1 for _, argv in self.calls if argv[0] == argv0)


def exec_probe(name: str, *, period_seconds: int = 10, success_threshold: int = 1,
               failure_threshold: int = 3, initial_delay_seconds: int = 0) -> core_pb2.Probe:
    return core_pb2.Probe(exec=core_pb2.ExecAction(command=[name]), timeout_seconds=1,
                          period_seconds=period_seconds, success_threshold=success_threshold,
                          failure_threshold=failure_threshold,
                          initial_delay_seconds=initial_delay_seconds)


def pod_with(*containers: core_pb2.Container, uid: str = UID) -> core_pb2.Pod:
    return core_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", namespace="default", uid=uid),
                        spec=core_pb2.PodSpec(containers=list(containers)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def manager_and_stub(clock: FakeClock) -> AsyncIterator[tuple[ProbeManager, ExecStub]]:
    stub = ExecStub()
    mgr = ProbeManager(stub, clock, recorder=FakeRecorder())
    try:
        yield mgr, stub
    finally:
        await mgr.close()


async def tick(clock: FakeClock, sleepers: int, seconds: float) -> None:
    """Wait until ``sleepers`` workers are parked on the clock, then move it."""
    await clock.wait_for_sleepers(sleepers)
    clock.advance(seconds)


# -- readiness ---------------------------------------------------------------------------


async def test_no_probes_ready_once_running(
        manager_and_stub: tuple[ProbeManager, ExecStub]) -> None:
    mgr, _ = manager_and_stub
    pod = pod_with(core_pb2.Container(name="app"), core_pb2.Container(name="later"))
    assert not mgr.is_ready(UID, "app")
    mgr.add_pod(pod, {"app": "c1"})
    assert mgr.is_ready(UID, "app") and mgr.is_started(UID, "app")
    assert not mgr.is_ready(UID, "later") and not mgr.is_started(UID, "later")
    assert mgr.liveness_failed(UID, "app") is None


async def test_readiness_thresholds(clock: FakeClock,
                                    manager_and_stub: tuple[ProbeManager, ExecStub]) -> None:
    mgr, stub = manager_and_stub
    changes: list[str] = []
    mgr.on_change = changes.append
    c = core_pb2.Container(name="app", readiness_probe=exec_probe(
        "ready", success_threshold=2, failure_threshold=2, period_seconds=5))
    mgr.add_pod(pod_with(c), {"app": "c1"})
    changes.clear()
    assert not mgr.is_ready(UID, "app")  # false until the first success run
    await clock.wait_for_sleepers(1)
    assert stub.count("ready") == 1 and not mgr.is_ready(UID, "app")  # 1 of 2 successes
    await tick(clock, 1, 5)
    await eventually(lambda: mgr.is_ready(UID, "app"))
    assert changes == [UID]
    stub.exit_codes["c1"] = 1
    await tick(clock, 1, 5)
    await clock.wait_for_sleepers(1)
    assert mgr.is_ready(UID, "app")  # one failure is below the threshold
    await tick(clock, 1, 5)
    await eventually(lambda: not mgr.is_ready(UID, "app"))
    assert changes == [UID, UID]
    assert mgr.liveness_failed(UID, "app") is None  # readiness never restarts


async def test_initial_delay(clock: FakeClock,
                             manager_and_stub: tuple[ProbeManager, ExecStub]) -> None:
    mgr, stub = manager_and_stub
    c = core_pb2.Container(name="app", readiness_probe=exec_probe(
        "ready", initial_delay_seconds=30, period_seconds=10))
    mgr.add_pod(pod_with(c), {"app": "c1"})
    await tick(clock, 1, 29)
    await clock.wait_for_sleepers(1)
    assert stub.calls == [] and not mgr.is_ready(UID, "app")
    clock.advance(1)
    await eventually(lambda: mgr.is_ready(UID, "app"))
    assert stub.count("ready") == 1


# -- startup and liveness ----------------------------------------------------------------


async def test_startup_gates_liveness_and_readiness(
        clock: FakeClock, manager_and_stub: tuple[ProbeManager, ExecStub]) -> None:
    mgr, stub = manager_and_stub
    changes: list[str] = []
    mgr.on_change = changes.append
    stub.exit_codes["c1"] = 1
    c = core_pb2.Container(
        name="app",
        startup_probe=exec_probe("startup", failure_threshold=30, period_seconds=1),
        liveness_probe=exec_probe("live", period_seconds=10),
    )
    mgr.add_pod(pod_with(c), {"app": "c1"})
    changes.clear()
    for _ in range(3):
        await tick(clock, 1, 1)
    await clock.wait_for_sleepers(1)
    assert stub.count("startup") == 4 and stub.count("live") == 0
    assert not mgr.is_started(UID, "app") and not mgr.is_ready(UID, "app")
    stub.exit_codes["c1"] = 0
    await tick(clock, 1, 1)
    await eventually(lambda: mgr.is_started(UID, "app"))
    assert mgr.is_ready(UID, "app")  # no readiness probe: ready once started
    assert changes == [UID]
    # Liveness runs at once when startup succeeds, then every period; startup stops.
    await eventually(lambda: stub.count("live") == 1)
    await tick(clock, 1, 10)
    await eventually(lambda: stub.count("live") == 2)
    assert stub.count("startup") == 5


async def test_startup_failure_reports_restart(
        clock: FakeClock, manager_and_stub: tuple[ProbeManager, ExecStub]) -> None:
    mgr, stub = manager_and_stub
    stub.exit_codes["c1"] = 1
    c = core_pb2.Container(name="app", startup_probe=exec_probe(
        "startup", failure_threshold=2, period_seconds=1))
    mgr.add_pod(pod_with(c), {"app": "c1"})
    await tick(clock, 1, 1)
    await eventually(lambda: stub.count("startup") == 2)
    await eventually(lambda: not any(not t.done() for t in mgr._workers.values()))
    assert mgr.liveness_failed(UID, "app") == "Startup probe failed: unhealthy"
    assert not mgr.is_started(UID, "app")


async def test_exec_liveness_failure_consumed_once_and_restart_resets(
        clock: FakeClock, manager_and_stub: tuple[ProbeManager, ExecStub]) -> None:
    mgr, stub = manager_and_stub
    changes: list[str] = []
    mgr.on_change = changes.append
    c = core_pb2.Container(name="app", liveness_probe=exec_probe(
        "live", failure_threshold=3, period_seconds=2))
    pod = pod_with(c)
    mgr.add_pod(pod, {"app": "c1"})
    changes.clear()
    stub.exit_codes["c1"] = 1
    await tick(clock, 1, 2)
    await tick(clock, 1, 2)
    await eventually(lambda: stub.count("live") == 3)
    await eventually(lambda: changes == [UID])
    assert mgr.liveness_failed(UID, "app") == "Liveness probe failed: unhealthy"
    assert mgr.liveness_failed(UID, "app") is None
    # every failed attempt is an Unhealthy Event with the probe's output
    recorder = mgr._recorder
    assert isinstance(recorder, FakeRecorder)
    assert [(e.type, e.reason, e.message, e.field_path) for e in recorder.events] == [
        ("Warning", "Unhealthy", "Liveness probe failed: unhealthy", "spec.containers{app}")
    ] * 3
    # The worker holds until the kubelet restarts the container under a new id.
    assert clock.sleepers == 0
    assert mgr.is_ready(UID, "app")  # liveness does not touch readiness
    mgr.add_pod(pod, {"app": "c2"})
    await eventually(lambda: stub.calls[-1][0] == "c2")
    assert mgr.liveness_failed(UID, "app") is None


# -- HTTP liveness against a real server -------------------------------------------------


@pytest.fixture
async def toggled_server() -> AsyncIterator[tuple[int, list[int]]]:
    """An HTTP server answering every GET with ``status[0]``."""
    status = [200]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 {status[0]} X\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], status


async def test_http_liveness_that_starts_failing(
        clock: FakeClock, manager_and_stub: tuple[ProbeManager, ExecStub],
        toggled_server: tuple[int, list[int]]) -> None:
    mgr, _ = manager_and_stub
    port, status = toggled_server
    probe = core_pb2.Probe(
        http_get=core_pb2.HTTPGetAction(path="/healthz", scheme="HTTP",
                                        port=meta_pb2.IntOrString(str_val="http")),
        period_seconds=3, timeout_seconds=1, success_threshold=1, failure_threshold=3)
    c = core_pb2.Container(name="app", liveness_probe=probe,
                           ports=[core_pb2.ContainerPort(name="http", container_port=port)])
    mgr.add_pod(pod_with(c), {"app": "c1"}, pod_ip="127.0.0.1")
    for _ in range(3):
        await tick(clock, 1, 3)
    await clock.wait_for_sleepers(1)
    assert mgr.liveness_failed(UID, "app") is None
    status[0] = 500
    await tick(clock, 1, 3)
    await tick(clock, 1, 3)
    await clock.wait_for_sleepers(1)
    assert mgr.liveness_failed(UID, "app") is None  # 2 failures < failureThreshold 3
    clock.advance(3)
    await eventually(lambda: mgr._container(UID, "app") is not None
                     and mgr._container(UID, "app").liveness_failure is not None)  # type: ignore[union-attr]
    assert mgr.liveness_failed(UID, "app") == \
        "Liveness probe failed: HTTP probe failed with statuscode: 500"


# -- ownership ---------------------------------------------------------------------------


async def test_workers_are_named_replaced_and_cancelled(
        clock: FakeClock, manager_and_stub: tuple[ProbeManager, ExecStub]) -> None:
    mgr, _ = manager_and_stub
    c = core_pb2.Container(name="app", liveness_probe=exec_probe("live"),
                           readiness_probe=exec_probe("ready"))
    pod = pod_with(c)
    mgr.add_pod(pod, {"app": "c1"})
    names = sorted(t.get_name() for t in mgr._workers.values())
    assert names == ["probe:liveness:default/web:app", "probe:readiness:default/web:app"]
    await eventually(lambda: mgr.is_ready(UID, "app"))
    first = dict(mgr._workers)
    mgr.add_pod(pod, {"app": "c1"})  # same id: nothing restarts
    assert mgr._workers == first
    mgr.add_pod(pod, {"app": "c2"})  # restarted container: fresh workers and results
    assert not mgr.is_ready(UID, "app")
    assert all(t.cancelling() or t.cancelled() for t in first.values())
    await eventually(lambda: mgr.is_ready(UID, "app"))
    mgr.add_pod(pod, {})  # container stopped
    assert not mgr.is_ready(UID, "app") and mgr._workers == {}
    mgr.add_pod(pod, {"app": "c3"})
    tasks = list(mgr._workers.values())
    mgr.remove_pod(UID)
    assert mgr._workers == {} and not mgr.is_ready(UID, "app")
    await mgr.close()
    assert all(t.done() for t in tasks) and not mgr._stopping


async def test_other_pods_unaffected_and_close(clock: FakeClock) -> None:
    stub = ExecStub()
    mgr = ProbeManager(stub, clock)
    c = core_pb2.Container(name="app", readiness_probe=exec_probe("ready"))
    mgr.add_pod(pod_with(c, uid="a"), {"app": "ca"})
    mgr.add_pod(pod_with(c, uid="b"), {"app": "cb"})
    await eventually(lambda: mgr.is_ready("a", "app") and mgr.is_ready("b", "app"))
    mgr.remove_pod("a")
    assert not mgr.is_ready("a", "app") and mgr.is_ready("b", "app")
    tasks = list(mgr._workers.values())
    await mgr.close()
    assert all(t.done() for t in tasks)
    with pytest.raises(RuntimeError):
        mgr.add_pod(pod_with(c, uid="c"), {"app": "cc"})
