import asyncio
from control.api.pb import core_pb2
from tests.controllers.test_replicaset_e2e import *

async def test_dbg(cluster):
    c = cluster.client
    rc = await c.create(replication_controller("legacy", 1))
    await eventually(lambda: count_is(c, "app=legacy", 1))
    await c.create(bare_pod("stray", app="legacy"))
    await asyncio.sleep(3)
    for p in await live_pods(c, "app=legacy"):
        print("POD", p.metadata.name, [(r.kind, r.name) for r in p.metadata.owner_references])
    got = await c.get(core_pb2.ReplicationController, "legacy", "default")
    print("STATUS", got.status)
