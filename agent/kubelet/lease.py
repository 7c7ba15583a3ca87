"""The node's heartbeat: a Lease in ``kube-node-lease`` named after the node, renewed often.

Owns the Lease as kubelet's ``nodelease`` controller does: ``holderIdentity`` = node name,
``leaseDurationSeconds`` (40), ``renewTime`` set to now every renew interval (a quarter of
the duration, 10 s), created when missing, and owned by the Node (an ownerReference added
as soon as the Node's uid is known, so deleting the Node lets the garbage collector remove
its Lease). A renewal that fails is retried with a capped exponential backoff (kubelet's
200 ms .. 7 s) and never ends the task; a conflict re-reads the Lease and tries again.

Concurrency contract: one :class:`LeaseController` per agent, :meth:`run` is one supervised
task; it writes only the Lease. ``renewTime`` carries microseconds (it is a MicroTime in
Kubernetes) so every renewal is visible even with sub-second test intervals.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from agent.config import NODE_LEASE_NAMESPACE, AgentOptions
from agent.kubelet.node_status import Reachability
from control.api import errors
from control.api.pb import coordination_pb2
from control.api.timeutil import micro_time_at
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime import Backoff, BackoffState, Clock, RealClock

log = structlog.get_logger(__name__)




def new_lease(node_name: str, duration: int, now: Timestamp,
              node_uid: str | None) -> coordination_pb2.Lease:
    lease = coordination_pb2.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
    lease.metadata.name = node_name
    lease.metadata.namespace = NODE_LEASE_NAMESPACE
    lease.spec.holder_identity = node_name
    lease.spec.lease_duration_seconds = duration
    lease.spec.acquire_time.CopyFrom(now)
    lease.spec.renew_time.CopyFrom(now)
    if node_uid:
        set_owner(lease, node_name, node_uid)
    return lease


def set_owner(lease: coordination_pb2.Lease, node_name: str, node_uid: str) -> bool:
    """Make the Node the Lease's owner; False if it already was."""
    if any(r.uid == node_uid for r in lease.metadata.owner_references):
        return False
    del lease.metadata.owner_references[:]
    lease.metadata.owner_references.add(api_version="v1", kind="Node", name=node_name,
                                        uid=node_uid)
    return True


def renew(lease: coordination_pb2.Lease, node_name: str, duration: int, now: Timestamp,
          node_uid: str | None) -> None:
    """The renewal, in place: we hold it, for ``duration``, as of ``now``."""
    if lease.spec.holder_identity != node_name:
        # Someone else's name on our node's lease (a previous agent under another
        # identity): take it over, as a new acquisition.
        lease.spec.holder_identity = node_name
        lease.spec.acquire_time.CopyFrom(now)
        lease.spec.lease_transitions = lease.spec.lease_transitions + 1
    lease.spec.lease_duration_seconds = duration
    lease.spec.renew_time.CopyFrom(now)
    if node_uid:
        set_owner(lease, node_name, node_uid)


class LeaseController:
    """Keeps the node's Lease renewed; see the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        options: AgentOptions,
        *,
        node_uid: Callable[[], str | None] = lambda: None,
        clock: Clock | None = None,
        on_renewal: Callable[[bool], None] = lambda _ok: None,
    ) -> None:
        self.client = client
        self.options = options
        self.clock = clock or RealClock()
        self._node_uid = node_uid
        # told of every renewal's outcome (True: renewed): the kubelet's fence listens
        self._on_renewal = on_renewal
        self._log = log.bind(component="node-lease", node=options.node_name)
        self._reach = Reachability(self._log, "lease renewal")
        self._backoff = BackoffState(
            Backoff(initial=options.retry_initial, max_delay=options.retry_max, jitter=0.2),
            self.clock,
        )
        self.renewals = 0

    async def run(self) -> None:
        while True:
            try:
                await self.renew_once()
            except errors.ApiError as e:
                self._reach.failed(e)
                self._on_renewal(False)
                delay = self._backoff.next_delay()
                if isinstance(e, errors.TooManyRequests) and e.retry_after is not None:
                    delay = max(delay, float(e.retry_after))  # the server sheds load
                # Capped below the renew interval's scale: a lease must not lapse because
                # we waited out a long backoff after the server came back.
                await self.clock.sleep(min(delay, self.options.renew_interval))
                continue
            self._reach.succeeded()
            self._on_renewal(True)
            self._backoff.reset()
            await self.clock.sleep(self.options.renew_interval)

    async def renew_once(self) -> coordination_pb2.Lease:
        """Create or renew the Lease once (a conflict re-reads and retries once more)."""
        name = self.options.node_name
        duration = self.options.node_lease_duration_seconds

        def take(lease: coordination_pb2.Lease) -> bool:
            renew(lease, name, duration, micro_time_at(self.clock.now()), self._node_uid())
            return True

        for _ in range(2):
            try:
                updated = await guaranteed_update(self.client, coordination_pb2.Lease,
                                                  NODE_LEASE_NAMESPACE, name, take, attempts=2)
            except errors.NotFound:
                try:
                    created: coordination_pb2.Lease = await self.client.create(new_lease(
                        name, duration, micro_time_at(self.clock.now()), self._node_uid()))
                except errors.AlreadyExists:
                    continue  # made meanwhile (an agent restarting fast): renew it instead
                self._log.info("node lease created")
                self.renewals += 1
                return created
            self.renewals += 1
            return updated
        raise errors.Conflict(f"lease {NODE_LEASE_NAMESPACE}/{name} kept changing")
