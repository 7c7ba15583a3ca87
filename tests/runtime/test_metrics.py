"""Metrics: the registry's exposition, the work queue's and the controller's series on a
fake clock, the apiserver's, scheduler's and controllers' through `flotilla server
--metrics-listen`, and the kubelet's through `flotilla agent --metrics-listen`."""

from __future__ import annotations

import contextlib
from pathlib import Path

from control.api import convert, errors
from control.api.pb import core_pb2
from control.runtime.clock import FakeClock
from control.runtime.controller import ControllerMetrics, Result
from control.runtime.metrics import Registry
from control.runtime.workqueue import WorkQueue, WorkQueueMetrics
from tests.conftest import running_cluster
from tests.runtime.fakes import settle
from tests.support import eventually
from tests.support.controller_harness import Harness, fail, recording
from tests.support.http import http_get
from tests.support.objects import cm


def test_families_cache_children_and_render_kubernetes_names() -> None:
    r = Registry()
    c = r.counters("things_total", "Things.", ("kind",))
    assert c.labels("a") is c.labels("a")
    c.labels("a").inc()
    c.labels("a").inc(2)
    h = r.histograms("wait_seconds", "Waits.", ("kind",), buckets=(0.1, 1.0))
    h.labels("a").observe(0.5)
    r.gauge_callback("depth", "Depth.", ("queue",), lambda: {("q1",): 3.0})
    text = r.render()
    assert "# TYPE things_total counter" in text
    assert 'things_total{kind="a"} 3.0' in text
    assert 'wait_seconds_bucket{kind="a",le="1.0"} 1.0' in text
    assert 'depth{queue="q1"} 3.0' in text
    assert "_created" not in text
    assert r.value("things_total", {"kind": "a"}) == 3.0
    assert r.value("things_total", {"kind": "nope"}) == 0.0


async def test_work_queue_series() -> None:
    clock = FakeClock()
    r = Registry()
    q = WorkQueue[str]("pods", clock=clock)
    q.instrument(WorkQueueMetrics(r))
    q.add("a")
    q.add("a")  # deduplicated: not an add
    q.add("b")
    assert r.value("workqueue_adds_total", {"name": "pods"}) == 2
    assert r.value("workqueue_depth", {"name": "pods"}) == 2
    clock.advance(2)
    key = await q.get()
    assert r.value("workqueue_queue_duration_seconds_sum", {"name": "pods"}) == 2
    clock.advance(3)
    assert r.value("workqueue_unfinished_work_seconds", {"name": "pods"}) == 3
    assert r.value("workqueue_longest_running_processor_seconds", {"name": "pods"}) == 3
    q.done(key)
    assert r.value("workqueue_work_duration_seconds_sum", {"name": "pods"}) == 3
    assert r.value("workqueue_work_duration_seconds_count", {"name": "pods"}) == 1
    assert r.value("workqueue_unfinished_work_seconds", {"name": "pods"}) == 0
    q.add_rate_limited("c")
    assert r.value("workqueue_retries_total", {"name": "pods"}) == 1
    q.shutdown()


async def test_reconcile_outcomes_are_counted() -> None:
    reconcile, calls = recording([fail, lambda: Result(requeue_after=5.0), lambda: None])
    r = Registry()
    async with Harness(reconcile) as h:
        h.controller.instrument(ControllerMetrics(r))
        h.controller.enqueue("ns/a")
        await eventually(lambda: len(calls) == 1)
        await h.clock.wait_for_sleepers(1)
        h.clock.advance(1)
        await eventually(lambda: len(calls) == 2)
        await h.clock.wait_for_sleepers(1)
        h.clock.advance(5)
        await eventually(lambda: len(calls) == 3)
        await settle()
    total = {res: r.value("controller_runtime_reconcile_total",
                          {"controller": "test", "result": res})
             for res in ("success", "error", "requeue_after", "requeue")}
    assert total == {"success": 1, "error": 1, "requeue_after": 1, "requeue": 0}
    assert r.value("controller_runtime_reconcile_errors_total", {"controller": "test"}) == 1
    assert r.value("controller_runtime_reconcile_time_seconds_count",
                   {"controller": "test"}) == 3
    assert r.value("workqueue_adds_total", {"name": "test"}) == 3


async def test_server_exports_apiserver_controller_and_scheduler_metrics(
        tmp_path: Path) -> None:
    # PodTemplates: a kind no in-process component writes, so the counts are the test's own
    template = convert.from_dict({"metadata": {"name": "m1", "namespace": "default"},
                                  "template": {"spec": {"containers": [
                                      {"name": "c", "image": "busybox"}]}}},
                                 core_pb2.PodTemplate())
    async with running_cluster(tmp_path / "data", metrics_listen="127.0.0.1:0") as c:
        await c.client.create(template)
        with contextlib.suppress(errors.AlreadyExists):
            await c.client.create(template)
        await c.client.create(cm("m1"))
        watch = c.client.watch(core_pb2.ConfigMap, "default")
        try:
            await watch.__anext__()  # registered: its first event arrived
            status, body = await http_get(c.plane.metrics_port, "/metrics")
        finally:
            await watch.aclose()  # type: ignore[attr-defined]
    assert status == "HTTP/1.1 200 OK"
    assert ('apiserver_request_total{code="201",resource="podtemplates",subresource="",'
            'verb="POST"} 1.0') in body
    assert ('apiserver_request_total{code="409",resource="podtemplates",subresource="",'
            'verb="POST"} 1.0') in body
    assert 'apiserver_request_duration_seconds_count{resource="configmaps"' in body
    watchers = [line for line in body.splitlines()
                if line.startswith('apiserver_registered_watchers{group="",kind="ConfigMap"')]
    assert watchers and float(watchers[0].split()[-1]) >= 1, watchers
    assert 'workqueue_depth{name="' in body
    assert "controller_runtime_reconcile_total" in body
    assert "# TYPE scheduler_schedule_attempts_total counter" in body
    assert "scheduler_pending_pods" in body
