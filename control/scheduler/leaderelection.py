"""Leader election through a coordination.k8s.io Lease (client-go's leaderelection).

Several ``flotilla scheduler --leader-elect`` processes share one Lease
(kube-system/flotilla-scheduler by default); only its holder schedules:

- **acquire**: the Lease is created if absent, or taken over (``holderIdentity`` = us,
  ``acquireTime``, ``leaseTransitions + 1``) once its holder has not renewed for
  ``leaseDurationSeconds``; every write is a compare-and-swap on resourceVersion, so two
  candidates cannot both win;
- **renew**: the holder rewrites ``renewTime`` every ``retry_period``;
- **step down**: a holder that cannot renew for ``renew_deadline`` (< lease duration, so it
  stops before anyone else may start) cancels its work and returns; on a clean exit it
  releases the Lease (empty holder) so a standby takes over at once.

Expiry is judged from the Lease's ``renewTime`` against our wall clock, so candidates'
clocks must roughly agree (client-go instead times the observed record locally; with the
default 15 s lease a skew of a few seconds is harmless).

Concurrency contract: ``run`` is one task; the work it leads runs as a child task that is
cancelled and awaited before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from control.api import errors, timeutil
from control.api.pb import coordination_pb2
from control.runtime.clock import Clock, RealClock, wait_for

log = structlog.get_logger(__name__).bind(component="leader-election")

DEFAULT_NAMESPACE = "kube-system"
DEFAULT_NAME = "flotilla-scheduler"


class LeaseLost(Exception):
    """Renewal failed for longer than the renew deadline: we are no longer the leader."""


class LeaderElector:
    def __init__(self, client: Any, identity: str, *, namespace: str = DEFAULT_NAMESPACE,
                 name: str = DEFAULT_NAME, lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: Clock | None = None) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.client = client
        self.identity = identity
        self.namespace = namespace
        self.name = name
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock or RealClock()
        self.is_leader = False

    async def try_acquire_or_renew(self) -> bool:
        now = self._clock.now()
        try:
            lease = await self.client.get("leases", self.name, self.namespace)
        except errors.NotFound:
            lease = coordination_pb2.Lease()
            lease.metadata.name = self.name
            lease.metadata.namespace = self.namespace
            self._stamp(lease, now, new_holder=True)
            try:
                await self.client.create(lease)
            except errors.AlreadyExists:
                return False
            return True
        spec = lease.spec
        holder = spec.holder_identity if spec.HasField("holder_identity") else ""
        if holder and holder != self.identity and not self.expired(lease, now):
            return False
        new = coordination_pb2.Lease()
        new.CopyFrom(lease)
        self._stamp(new, now, new_holder=holder != self.identity)
        try:
            await self.client.update(new)
        except (errors.Conflict, errors.NotFound):
            return False
        return True

    def expired(self, lease: coordination_pb2.Lease, now: float) -> bool:
        spec = lease.spec
        if not spec.HasField("renew_time"):
            return True
        duration = spec.lease_duration_seconds if spec.HasField("lease_duration_seconds") \
            else self.lease_duration
        return timeutil.timestamp_seconds(spec.renew_time) + duration < now

    def _stamp(self, lease: coordination_pb2.Lease, now: float, new_holder: bool) -> None:
        spec = lease.spec
        ns = int(now * 1e9)
        if new_holder:
            spec.acquire_time.FromNanoseconds(ns)
            spec.lease_transitions = (spec.lease_transitions + 1
                                      if spec.HasField("lease_transitions") else 0)
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = int(self.lease_duration)
        spec.renew_time.FromNanoseconds(ns)

    async def release(self) -> None:
        with contextlib.suppress(errors.ApiError):
            lease = await self.client.get("leases", self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            await self.client.update(lease)

    async def _attempt(self) -> bool:
        try:
            return await wait_for(self._clock, self.try_acquire_or_renew(), self.retry_period)
        except (TimeoutError, errors.ApiError) as e:
            log.info("lease attempt failed", error=str(e) or type(e).__name__)
            return False

    async def run(self, lead: Callable[[], Awaitable[Any]]) -> None:
        """Wait to become leader, run ``lead()`` while renewing; raises ``LeaseLost`` when
        renewal fails past the deadline (the work is cancelled first)."""
        while not await self._attempt():
            await self._clock.sleep(self.retry_period)
        self.is_leader = True
        log.info("became leader", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        work = asyncio.ensure_future(lead())
        last_renew = self._clock.monotonic()
        lost = False
        try:
            while not work.done():
                sleeper = asyncio.ensure_future(self._clock.sleep(self.retry_period))
                await asyncio.wait({work, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
                if work.done():
                    break
                if await self._attempt():
                    last_renew = self._clock.monotonic()
                elif self._clock.monotonic() - last_renew >= self.renew_deadline:
                    lost = True
                    log.error("leader lease lost; stepping down",
                              lease=f"{self.namespace}/{self.name}")
                    break
        finally:
            self.is_leader = False
            if not work.done():
                work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            if not lost:
                await self.release()
        if lost:
            raise LeaseLost(f"lost the lease {self.namespace}/{self.name}")
