"""The API's object semantics against a real apiserver on a temporary SQLite file."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import apps_pb2, core_pb2, policy_pb2
from tests.conftest import Cluster
from tests.support.objects import cm, deployment, pod


@pytest.fixture
def cluster(api_cluster: Cluster) -> Cluster:
    """These tests check the API's own semantics: no controller may race them."""
    return api_cluster


async def test_create_sets_server_metadata_and_defaults(cluster: Cluster) -> None:
    c = cluster.client
    created = await c.create(deployment("web"))
    m = created.metadata
    assert m.uid and m.resource_version and m.generation == 1
    assert m.creation_timestamp.seconds > 0
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.revision_history_limit == 10
    got = await c.get(apps_pb2.Deployment, "web", "default")
    assert got == created


async def test_generate_name_and_already_exists(cluster: Cluster) -> None:
    c = cluster.client
    obj = cm("")
    obj.metadata.generate_name = "gen-"
    made = await c.create(obj)
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9
    await c.create(cm("fixed"))
    with pytest.raises(errors.AlreadyExists):
        await c.create(cm("fixed"))


async def test_missing_namespace_refused(cluster: Cluster) -> None:
    with pytest.raises(errors.NotFound, match="namespaces \"nope\" not found"):
        await cluster.client.create(cm("x", ns="nope"))


async def test_invalid_reports_every_field(cluster: Cluster) -> None:
    bad = pod("Bad_Name")
    bad.spec.containers[0].name = "Also_Bad"
    bad.spec.restart_policy = "Sometimes"
    with pytest.raises(errors.Invalid) as ei:
        await cluster.client.create(bad)
    text = str(ei.value)
    assert "metadata.name" in text and "spec.containers[0].name" in text
    assert "spec.restartPolicy" in text


async def test_update_is_compare_and_swap(cluster: Cluster) -> None:
    c = cluster.client
    first = await c.create(cm("cas", a="1"))
    first.data["a"] = "2"
    second = await c.update(first)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    first.data["a"] = "3"  # still carries the old resourceVersion
    with pytest.raises(errors.Conflict):
        await c.update(first)


async def test_concurrent_updates_lose_nothing(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(cm("counter", n="0"))

    async def bump() -> None:
        while True:
            cur = await c.get(core_pb2.ConfigMap, "counter", "default")
            cur.data["n"] = str(int(cur.data["n"]) + 1)
            try:
                await c.update(cur)
                return
            except errors.Conflict:
                continue

    await asyncio.wait_for(asyncio.gather(*(bump() for _ in range(30))), 60)
    final = await c.get(core_pb2.ConfigMap, "counter", "default")
    assert final.data["n"] == "30"


async def test_generation_bumps_on_spec_change_only(cluster: Cluster) -> None:
    c = cluster.client
    d = await c.create(deployment("gen"))
    d.metadata.labels["x"] = "y"
    d = await c.update(d)
    assert d.metadata.generation == 1
    d.spec.replicas = 5
    d = await c.update(d)
    assert d.metadata.generation == 2


async def test_update_never_changes_status_and_status_never_spec(cluster: Cluster) -> None:
    c = cluster.client
    d = await c.create(deployment("st"))
    d.status.replicas = 7
    d.spec.replicas = 3
    d = await c.update(d)
    assert d.status.replicas == 0 and d.spec.replicas == 3
    d.status.replicas = 7
    d.spec.replicas = 9
    d = await c.update_status(d)
    assert d.status.replicas == 7 and d.spec.replicas == 3


async def test_noop_update_keeps_resource_version(cluster: Cluster) -> None:
    c = cluster.client
    a = await c.create(cm("noop", k="v"))
    b = await c.update(a)
    assert b.metadata.resource_version == a.metadata.resource_version


async def test_merge_patch(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(cm("p", a="1", b="2"))
    out = await c.patch(core_pb2.ConfigMap, "p", {"data": {"a": None, "c": "3"}}, "default")
    assert dict(out.data) == {"b": "2", "c": "3"}


async def test_list_label_and_field_selectors_and_paging(cluster: Cluster) -> None:
    c = cluster.client
    for i in range(7):
        await c.create(cm(f"item-{i}", labels={"tier": "a" if i % 2 else "b", "i": str(i)}))
    res = await c.list(core_pb2.ConfigMap, "default", label_selector="tier=a")
    assert sorted(o.metadata.name for o in res.items) == ["item-1", "item-3", "item-5"]
    res = await c.list(core_pb2.ConfigMap, "default", label_selector="tier!=a,i in (0,2,9)")
    assert sorted(o.metadata.name for o in res.items) == ["item-0", "item-2"]
    res = await c.list(core_pb2.ConfigMap, "default", field_selector="metadata.name=item-4")
    assert [o.metadata.name for o in res.items] == ["item-4"]
    with pytest.raises(errors.BadRequest):
        await c.list(core_pb2.ConfigMap, "default", field_selector="spec.bogus=1")
    # paging: pages are consistent even when objects change between pages
    page1 = await c.list(core_pb2.ConfigMap, "default", limit=3, label_selector="i")
    assert len(page1.items) == 3 and page1.continue_
    assert page1.remaining_item_count == 4
    await c.delete(core_pb2.ConfigMap, "item-5", "default")
    await c.create(cm("item-9", labels={"i": "9"}))
    names = [o.metadata.name for o in page1.items]
    token = page1.continue_
    while token:
        page = await c.list(core_pb2.ConfigMap, "default", limit=3, continue_=token,
                            label_selector="i")
        names += [o.metadata.name for o in page.items]
        token = page.continue_
    assert names == [f"item-{i}" for i in range(7)]


async def test_continue_token_expires_after_compaction(cluster: Cluster) -> None:
    c = cluster.client
    for i in range(4):
        await c.create(cm(f"e-{i}"))
    page1 = await c.list(core_pb2.ConfigMap, "default", limit=2)
    await c.create(cm("later"))
    await c.delete(core_pb2.ConfigMap, "e-3", "default")
    store = cluster.plane.store
    assert store is not None
    await store.compact(store.revision)
    with pytest.raises(errors.Gone):
        await c.list(core_pb2.ConfigMap, "default", limit=2, continue_=page1.continue_)


async def collect(agen: Any, n: int, limit: float = 10.0) -> list[Any]:
    out: list[Any] = []

    async def run() -> None:
        async for ev in agen:
            if ev.type == "BOOKMARK":
                continue
            out.append(ev)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), limit)
    return out


async def test_watch_initial_state_then_changes(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(cm("w1"))
    stream = c.watch(core_pb2.ConfigMap, "default")
    task = asyncio.ensure_future(collect(stream, 3))
    await asyncio.sleep(0.2)
    o = await c.create(cm("w2"))
    o.data["k"] = "v"
    await c.update(o)
    evs = await task
    assert [(e.type, e.object.metadata.name) for e in evs] == [
        ("ADDED", "w1"), ("ADDED", "w2"), ("MODIFIED", "w2")]


async def test_watch_resume_without_gap_and_same_order(cluster: Cluster) -> None:
    c = cluster.client
    start = await c.create(cm("r0"))
    rv = start.metadata.resource_version
    for i in range(1, 6):
        await c.create(cm(f"r{i}"))
    # two watchers from the same revision see the same events in the same order
    a, b = await asyncio.gather(
        collect(c.watch(core_pb2.ConfigMap, "default", resource_version=rv), 5),
        collect(c.watch(core_pb2.ConfigMap, "default", resource_version=rv), 5))
    names = [e.object.metadata.name for e in a]
    assert names == [f"r{i}" for i in range(1, 6)]
    assert [e.resource_version for e in a] == [e.resource_version for e in b]


async def test_watch_selector_transitions(cluster: Cluster) -> None:
    c = cluster.client
    o = await c.create(cm("t", labels={"app": "no"}))
    stream = c.watch(core_pb2.ConfigMap, "default", label_selector="app=yes",
                     resource_version=o.metadata.resource_version)
    task = asyncio.ensure_future(collect(stream, 3))
    await asyncio.sleep(0.2)
    o.metadata.labels["app"] = "yes"
    o = await c.update(o)
    o.data["x"] = "1"
    o = await c.update(o)
    o.metadata.labels["app"] = "no"
    await c.update(o)
    assert [e.type for e in await task] == ["ADDED", "MODIFIED", "DELETED"]


async def test_watch_too_old_is_gone(cluster: Cluster) -> None:
    c = cluster.client
    plane = cluster.plane
    assert plane.cache is not None
    plane.cache.resources["configmaps"].window_start = 10**9  # as if history fell out
    with pytest.raises(errors.Gone):
        await collect(c.watch(core_pb2.ConfigMap, "default", resource_version="1"), 1)


async def test_watch_by_node_name(cluster: Cluster) -> None:
    c = cluster.client
    stream = c.watch(core_pb2.Pod, "", field_selector="spec.nodeName=n1")
    task = asyncio.ensure_future(collect(stream, 1))
    await asyncio.sleep(0.2)
    await c.create(pod("elsewhere", node="n2"))
    await c.create(pod("here", node="n1"))
    evs = await task
    assert [e.object.metadata.name for e in evs] == ["here"]


async def test_bookmarks_advance(cluster: Cluster) -> None:
    c = cluster.client
    o = await c.create(cm("bm"))
    got: list[str] = []

    async def run() -> None:
        async for ev in c.watch(core_pb2.Pod, "default",
                                resource_version=o.metadata.resource_version):
            if ev.type == "BOOKMARK":
                got.append(ev.resource_version)
                return

    await c.create(cm("bm2"))
    await asyncio.wait_for(run(), 5)
    assert int(got[0]) > int(o.metadata.resource_version)


async def test_finalizers_hold_deletion(cluster: Cluster) -> None:
    c = cluster.client
    o = cm("fin")
    o.metadata.finalizers.append("example.com/hold")
    await c.create(o)
    obj, pending = await c.delete(core_pb2.ConfigMap, "fin", "default")
    assert pending and obj.metadata.HasField("deletion_timestamp")
    cur = await c.get(core_pb2.ConfigMap, "fin", "default")
    cur.metadata.finalizers.append("example.com/new")
    with pytest.raises(errors.Invalid):
        await c.update(cur)
    cur = await c.get(core_pb2.ConfigMap, "fin", "default")
    del cur.metadata.finalizers[:]
    await c.update(cur)
    with pytest.raises(errors.NotFound):
        await c.get(core_pb2.ConfigMap, "fin", "default")


async def test_propagation_policy_finalizers(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(deployment("fg"))
    obj, pending = await c.delete(apps_pb2.Deployment, "fg", "default",
                                  propagation_policy="Foreground")
    assert pending and list(obj.metadata.finalizers) == ["foregroundDeletion"]
    await c.create(deployment("orph"))
    obj, pending = await c.delete(apps_pb2.Deployment, "orph", "default",
                                  propagation_policy="Orphan")
    assert pending and list(obj.metadata.finalizers) == ["orphan"]
    await c.create(deployment("bg"))
    _, pending = await c.delete(apps_pb2.Deployment, "bg", "default")
    assert not pending


async def test_delete_preconditions(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(cm("pre"))
    with pytest.raises(errors.Conflict):
        await c.delete(core_pb2.ConfigMap, "pre", "default", uid="not-the-uid")
    with pytest.raises(errors.NotFound):
        await c.delete(core_pb2.ConfigMap, "absent", "default")


async def test_pod_graceful_deletion(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(pod("unbound"))
    _, pending = await c.delete(core_pb2.Pod, "unbound", "default")
    assert not pending  # an unbound pod goes at once
    await c.create(pod("bound", node="n1"))
    obj, pending = await c.delete(core_pb2.Pod, "bound", "default")
    assert pending and obj.metadata.deletion_grace_period_seconds == 30
    still = await c.get(core_pb2.Pod, "bound", "default")
    assert still.metadata.HasField("deletion_timestamp")
    # the agent confirms with grace 0
    _, pending = await c.delete(core_pb2.Pod, "bound", "default", grace_period_seconds=0)
    assert not pending
    with pytest.raises(errors.NotFound):
        await c.get(core_pb2.Pod, "bound", "default")


async def test_binding_subresource(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(pod("tobind"))
    bound = await c.bind("default", "tobind", "node-a")
    assert bound.spec.node_name == "node-a"
    assert any(x.type == "PodScheduled" and x.status == "True" for x in bound.status.conditions)
    with pytest.raises(errors.Conflict):
        await c.bind("default", "tobind", "node-b")


async def test_scale_subresource(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(deployment("sc", replicas=2))
    s = await c.get_scale(apps_pb2.Deployment, "sc", "default")
    assert s.spec_replicas == 2 and s.selector == "app=sc"
    s = await c.update_scale(apps_pb2.Deployment, "sc", 5, "default")
    assert s.spec_replicas == 5


async def test_eviction_respects_disruption_budget(cluster: Cluster) -> None:
    c = cluster.client
    p = await c.create(pod("guarded", node="n1", app="db"))
    p.status.phase = "Running"
    await c.update_status(p)
    pdb = convert.from_dict({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                             "metadata": {"name": "db"},
                             "spec": {"minAvailable": 1,
                                      "selector": {"matchLabels": {"app": "db"}}}},
                            policy_pb2.PodDisruptionBudget())
    pdb = await c.create(pdb)
    pdb.status.observed_generation = pdb.metadata.generation
    pdb.status.disruptions_allowed = 0
    pdb = await c.update_status(pdb)
    with pytest.raises(errors.TooManyRequests):
        await c.evict("default", "guarded")
    pdb.status.disruptions_allowed = 1
    await c.update_status(pdb)
    await c.evict("default", "guarded")
    gone = await c.get(core_pb2.Pod, "guarded", "default")
    assert gone.metadata.HasField("deletion_timestamp")
    after = await c.get(policy_pb2.PodDisruptionBudget, "db", "default")
    assert after.status.disruptions_allowed == 0 and "guarded" in after.status.disrupted_pods


async def test_history_lists_every_revision(cluster: Cluster) -> None:
    c = cluster.client
    o = await c.create(cm("h", v="1"))
    o.data["v"] = "2"
    await c.update(o)
    await c.delete(core_pb2.ConfigMap, "h", "default")
    hist = await c.history(core_pb2.ConfigMap, "h", "default")
    assert [t for t, _, _ in hist] == ["ADDED", "MODIFIED", "DELETED"]
    assert [obj.data["v"] for _, _, obj in hist] == ["1", "2", "2"]


async def test_default_namespaces_and_discovery(cluster: Cluster) -> None:
    c = cluster.client
    names = {n.metadata.name for n in (await c.list(core_pb2.Namespace)).items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    d = await c.discovery()
    pods = next(r for r in d.resources if r.name == "pods")
    assert pods.namespaced and "po" in pods.short_names


async def test_terminating_namespace_refuses_content(cluster: Cluster) -> None:
    c = cluster.client
    ns = convert.from_dict({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": "doomed"}}, core_pb2.Namespace())
    await c.create(ns)
    # content the namespace controller cannot remove at once (a bound pod waits for its
    # agent), so the namespace is certainly still Terminating below
    await c.create(pod("held", node="n1", ns="doomed"))
    _, pending = await c.delete(core_pb2.Namespace, "doomed")
    assert pending
    got = await c.get(core_pb2.Namespace, "doomed")
    assert got.status.phase == "Terminating"
    with pytest.raises(errors.Forbidden):
        await c.create(cm("x", ns="doomed"))


async def test_dry_run_writes_nothing(cluster: Cluster) -> None:
    c = cluster.client
    out = await c.create(cm("dry"), dry_run=True)
    assert out.metadata.uid
    with pytest.raises(errors.NotFound):
        await c.get(core_pb2.ConfigMap, "dry", "default")


async def test_health_and_reflection(cluster: Cluster) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = cluster.client.channel
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="flotilla.v1.Api"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))
    async for resp in call:
        names = {s.name for s in resp.list_services_response.service}
        assert "flotilla.v1.Api" in names
        break
    call.cancel()


async def test_large_list_beyond_grpc_default_message_size(cluster: Cluster) -> None:
    c = cluster.client
    big = "x" * 600_000
    await asyncio.gather(*(c.create(cm(f"big-{i}", blob=big)) for i in range(8)))
    res = await c.list(core_pb2.ConfigMap, "default")
    assert len(res.items) == 8  # ~4.8 MB in one reply


async def test_create_many_answers_per_object_in_order(cluster: Cluster) -> None:
    """One CreateMany call: each object created or refused as its own Create would be,
    the results in order; objects of several kinds or namespaces are refused by the
    client, and too many by the server."""
    c = cluster.client
    await c.create(cm("taken"))
    out = await c.create_many([cm("m1"), cm("taken"), cm("Bad_Name"), cm("m2")])
    assert [type(r) for r in out] == [core_pb2.ConfigMap, errors.AlreadyExists,
                                      errors.Invalid, core_pb2.ConfigMap]
    assert "metadata.name" in str(out[2])
    for made in (out[0], out[3]):
        assert isinstance(made, core_pb2.ConfigMap) and made.metadata.uid
        assert await c.get(core_pb2.ConfigMap, made.metadata.name, "default") == made
    with pytest.raises(errors.NotFound):
        await c.get(core_pb2.ConfigMap, "Bad_Name", "default")
    missing = await c.create_many([cm("x", ns="nope")])
    assert isinstance(missing[0], errors.NotFound)
    with pytest.raises(ValueError):
        await c.create_many([cm("a"), cm("b", ns="kube-system")])
    with pytest.raises(errors.BadRequest, match="at most 500"):
        await c.create_many([cm(f"n{i}") for i in range(501)])


async def test_metadata_only_list_and_watch(cluster: Cluster) -> None:
    """Lists and watches asked for metadata only carry every object's metadata (owners,
    finalizers, resourceVersion) and nothing of its spec or status."""
    c = cluster.client
    owned = deployment("meta")
    owned.metadata.finalizers.append("example.com/hold")
    made = await c.create(owned)
    full = (await c.list(apps_pb2.Deployment, "default")).items
    listed = await c.list(apps_pb2.Deployment, "default", metadata_only=True)
    assert [d.metadata for d in listed.items] == [d.metadata for d in full]
    assert all(not d.HasField("spec") and not d.HasField("status") for d in listed.items)
    stream = c.watch(apps_pb2.Deployment, "default", resource_version=listed.resource_version,
                     metadata_only=True)
    try:
        made.spec.replicas = 5
        updated = await c.update(made)
        ev = await asyncio.wait_for(anext(stream), 10)
        assert ev.type == "MODIFIED" and ev.object is not None
        assert ev.object.metadata == updated.metadata
        assert not ev.object.HasField("spec")
    finally:
        await stream.aclose()
