"""The disruption controller against the real in-process apiserver: budget status follows
the pods, and the eviction subresource obeys it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from control.api import errors
from control.api.pb import apps_pb2, core_pb2, policy_pb2
from tests.conftest import Cluster
from tests.support import eventually

WAIT = 15.0


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


async def set_ready(client: Any, pod: Any, ready: bool = True) -> Any:
    pod = await client.get(core_pb2.Pod, pod.metadata.name, pod.metadata.namespace)
    pod.status.phase = "Running"
    del pod.status.conditions[:]
    pod.status.conditions.add(type="Ready", status="True" if ready else "False",
                              last_transition_time=now_ts())
    return await client.update_status(pod)


async def bare_pod(client: Any, name: str, labels: dict[str, str], node: str = "n1") -> Any:
    pod = core_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.metadata.labels.update(labels)
    pod.spec.node_name = node
    pod.spec.containers.add(name="c", image="busybox")
    return await client.create(pod)


async def pdb(client: Any, name: str, labels: dict[str, str], *,
              min_available: int | str | None = None,
              max_unavailable: int | str | None = None) -> Any:
    b = policy_pb2.PodDisruptionBudget(api_version="policy/v1", kind="PodDisruptionBudget")
    b.metadata.name, b.metadata.namespace = name, "default"
    b.spec.selector.match_labels.update(labels)
    for field, value in (("min_available", min_available),
                         ("max_unavailable", max_unavailable)):
        if isinstance(value, int):
            getattr(b.spec, field).int_val = value
        elif isinstance(value, str):
            getattr(b.spec, field).str_val = value
    return await client.create(b)


def status_of(client: Any, name: str) -> Callable[[], Awaitable[Any]]:
    async def get() -> Any:
        return (await client.get(policy_pb2.PodDisruptionBudget, name, "default")).status
    return get


async def test_min_available_blocks_eviction_until_another_pod_is_ready(
        cluster: Cluster) -> None:
    c = cluster.client
    web = {"app": "web"}
    pods = [await bare_pod(c, f"web-{i}", web) for i in range(3)]
    for p in pods[:2]:
        await set_ready(c, p)
    await pdb(c, "web", web, min_available=2)
    get = status_of(c, "web")

    async def settled() -> Any:
        st = await get()
        return st if st.observed_generation == 1 and st.current_healthy == 2 else None

    st = await eventually(settled, "budget status")
    assert (st.expected_pods, st.desired_healthy, st.disruptions_allowed) == (3, 2, 0)
    cond = next(x for x in st.conditions if x.type == "DisruptionAllowed")
    assert (cond.status, cond.reason) == ("False", "InsufficientPods")
    with pytest.raises(errors.TooManyRequests):
        await c.evict("default", "web-0", grace_period_seconds=0)

    await set_ready(c, pods[2])

    async def allowed() -> bool:
        return (await get()).disruptions_allowed == 1

    await eventually(allowed, "one disruption allowed")
    await c.evict("default", "web-0", grace_period_seconds=0)
    with pytest.raises(errors.NotFound):
        await c.get(core_pb2.Pod, "web-0", "default")

    async def back_to_zero() -> Any:
        st = await get()
        return st if (st.current_healthy, st.expected_pods) == (2, 2) else None

    st = await eventually(back_to_zero, "the evicted pod accounted for")
    assert st.disruptions_allowed == 0 and not st.disrupted_pods
    with pytest.raises(errors.TooManyRequests):
        await c.evict("default", "web-1", grace_period_seconds=0)


async def test_max_unavailable_uses_the_controllers_scale(cluster: Cluster) -> None:
    c = cluster.client
    labels = {"app": "api"}
    rs = apps_pb2.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name, rs.metadata.namespace = "api", "default"
    rs.spec.replicas = 4
    rs.spec.selector.match_labels.update(labels)
    rs.spec.template.metadata.labels.update(labels)
    rs.spec.template.spec.containers.add(name="c", image="busybox")
    await c.create(rs)

    async def four_pods() -> list[Any]:
        items = (await c.list_all(core_pb2.Pod, "default", label_selector="app=api")).items
        return items if len(items) == 4 else []

    pods = await eventually(four_pods, "the ReplicaSet's pods")
    for p in pods[:3]:
        await set_ready(c, p)
    await pdb(c, "api", labels, max_unavailable="25%")
    get = status_of(c, "api")

    async def settled() -> Any:
        st = await get()
        return st if st.current_healthy == 3 and st.expected_pods == 4 else None

    st = await eventually(settled, "budget status from the scale")
    assert (st.desired_healthy, st.disruptions_allowed) == (3, 0)
    await set_ready(c, pods[3])

    async def one() -> bool:
        return (await get()).disruptions_allowed == 1

    await eventually(one, "a disruption allowed")


async def test_pods_without_controller_fail_safe(cluster: Cluster) -> None:
    c = cluster.client
    p = await bare_pod(c, "lonely", {"app": "lonely"})
    await set_ready(c, p)
    await pdb(c, "lonely", {"app": "lonely"}, max_unavailable=1)
    get = status_of(c, "lonely")

    async def failed() -> Any:
        st = await get()
        cond = next((x for x in st.conditions if x.type == "DisruptionAllowed"), None)
        return cond if cond is not None and cond.reason == "SyncFailed" else None

    cond = await eventually(failed, "SyncFailed")
    assert "found no controller ref" in cond.message
    assert (await get()).disruptions_allowed == 0
