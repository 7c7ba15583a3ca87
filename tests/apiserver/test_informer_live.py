"""Shared informers against a real apiserver: sync, follow, resume, relist."""

from __future__ import annotations

import asyncio

from control.api.pb import core_pb2
from control.client.listwatch import ApiListWatcher
from control.runtime.informer import InformerSet
from control.runtime.supervisor import Supervisor
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.objects import cm


async def test_informer_syncs_follows_and_pages(cluster: Cluster) -> None:
    c = cluster.client
    for i in range(12):
        await c.create(cm(f"pre-{i}"))
    informers = InformerSet(lambda r: ApiListWatcher(c, r, "default"))
    inf = informers.informer("configmaps")
    adds: list[str] = []
    deletes: list[str] = []
    inf.add_event_handler(on_add=lambda o: adds.append(o.metadata.name),
                          on_delete=lambda o: deletes.append(o.metadata.name))
    async with Supervisor("test") as sup:
        informers.start(sup)
        assert await informers.wait_for_sync(10)
        # the root CA publisher adds kube-root-ca.crt to every namespace, as Kubernetes does
        assert len([o for o in inf.indexer.list() if o.metadata.name.startswith("pre-")]) == 12
        await c.create(cm("live"))
        await c.delete(core_pb2.ConfigMap, "pre-0", "default")
        await eventually(lambda: "live" in adds and "pre-0" in deletes)
        assert inf.indexer.get("default/live") is not None
        assert inf.indexer.get("default/pre-0") is None


async def test_informer_relists_when_history_is_gone(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(cm("a"))
    lw = ApiListWatcher(c, "configmaps", "default", watch_timeout_seconds=1)
    informers = InformerSet(lambda r: lw)
    inf = informers.informer("configmaps")
    async with Supervisor("test") as sup:
        informers.start(sup)
        assert await informers.wait_for_sync(10)
        cache = cluster.plane.cache
        assert cache is not None
        # the stream ends every second; make the next resume "too old" so it must relist
        cache.resources["configmaps"].window_start = cache.revision + 1000
        await c.create(cm("b"))
        await asyncio.sleep(1.5)
        cache.resources["configmaps"].window_start = 0
        await c.create(cm("c"))
        await eventually(lambda: {o.metadata.name for o in inf.indexer.list()} >= {"a", "b", "c"})
