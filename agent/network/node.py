"""The node side of the pod network: waits for this node's pod range, configures the
bridge network for it, keeps the host-gw routes equal to the other Nodes' ranges, and tells
the cluster through the Node's ``NetworkUnavailable`` condition (as flannel and Calico do)
plus the annotation ``flotilla.io/pod-network``.

One informer over every Node (routes need them all); its handlers only wake the loop; the
loop recomputes everything from the cache (level-triggered, so a missed event or a restart
changes nothing): configure when our range appears, then ``desired_routes`` -> the network.

In host mode (no root, or ``--pod-network host``) there is nothing to configure: the loop
only records, once, that pods share the machine's network and why.

Concurrency contract: ``run`` is one supervised task; the informer is a child task it owns;
the handlers run on the loop and only set an event.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from agent.network.bridge import BridgeNetwork
from agent.network.interface import NetworkError
from agent.network.routes import desired_routes, node_pod_cidr
from control.api import errors
from control.api.pb import core_pb2
from control.api.timeutil import now_timestamp
from control.client.client import ApiClient
from control.client.listwatch import ApiListWatcher
from control.runtime import Clock, RealClock
from control.runtime.informer import SharedInformer

log = structlog.get_logger(__name__, component="network")

CONDITION = "NetworkUnavailable"
ANNOTATION = "flotilla.io/pod-network"
RETRY = 2.0


class NodeNetwork:
    def __init__(self, client: ApiClient, node_name: str, network: BridgeNetwork | None, *,
                 host_reason: str = "", clock: Clock | None = None) -> None:
        """``network`` None: host mode, ``host_reason`` says why."""
        self._client = client
        self.node_name = node_name
        self.network = network
        self.host_reason = host_reason
        self._clock = clock or RealClock()
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()  # set once the node's network is configured
        self._reported: tuple[str, str] | None = None
        self.informer: SharedInformer[Any] = SharedInformer(
            "nodes@network", ApiListWatcher(client, "nodes"),  # type: ignore[arg-type]
            clock=self._clock)
        self.informer.add_event_handler(
            on_add=lambda _n: self._wake.set(),
            on_update=lambda _o, _n: self._wake.set(),
            on_delete=lambda _n: self._wake.set())

    async def run(self) -> None:
        informer = asyncio.create_task(self.informer.run(), name="network/node-informer")
        try:
            await self.informer.wait_for_sync()
            while True:
                self._wake.clear()
                try:
                    await self._pass()
                except (errors.ApiError, OSError, NetworkError) as e:
                    log.warning("pod network pass failed; retrying", error=str(e))
                    await self._sleep_or_wake(RETRY)
                    continue
                await self._wake.wait()
        finally:
            informer.cancel()
            await asyncio.gather(informer, return_exceptions=True)

    async def _sleep_or_wake(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass

    async def _pass(self) -> None:
        me = self.informer.indexer.get(self.node_name)
        if me is None:
            return  # not registered yet: the Node's creation wakes us
        if self.network is None:
            await self._report(me, "HostNetworkOnly",
                               f"pods share the machine's network: {self.host_reason}",
                               "host")
            self.ready.set()
            return
        cidr = node_pod_cidr(me)
        if not cidr:
            await self._report(me, "NoPodCIDR", "waiting for the control plane to assign "
                               "spec.podCIDR", "pending", unavailable=True)
            return
        if self.network.pod_cidr is None or str(self.network.pod_cidr) != cidr:
            await self.network.configure(cidr)
        await self.network.set_routes(desired_routes(self.informer.indexer.list(),
                                                     self.node_name))
        await self._report(me, "FlotillaBridgeReady",
                           f"bridge {self.network.bridge} with pod range {cidr}; routes to "
                           "the other nodes' pods", "bridge")
        self.ready.set()

    async def _report(self, node: Any, reason: str, message: str, mode: str,
                      unavailable: bool = False) -> None:
        """The condition and the annotation, written only when they change."""
        status = "True" if unavailable else "False"
        current = next((c for c in node.status.conditions if c.type == CONDITION), None)
        if (current is not None and current.reason == reason and current.status == status
                and node.metadata.annotations.get(ANNOTATION) == mode):
            return
        if self._reported != (reason, mode):
            log.info("pod network", mode=mode, reason=reason, detail=message)
        self._reported = (reason, mode)
        fresh: core_pb2.Node = await self._client.get(core_pb2.Node, self.node_name)
        if fresh.metadata.annotations.get(ANNOTATION) != mode:
            fresh.metadata.annotations[ANNOTATION] = mode
            fresh = await self._client.update(fresh)
        cond = next((c for c in fresh.status.conditions if c.type == CONDITION), None)
        if cond is None:
            cond = fresh.status.conditions.add(type=CONDITION)
        now = now_timestamp()
        if cond.status != status:
            cond.last_transition_time.CopyFrom(now)
        cond.status, cond.reason, cond.message = status, reason, message
        cond.last_heartbeat_time.CopyFrom(now)
        await self._client.update_status(fresh)
