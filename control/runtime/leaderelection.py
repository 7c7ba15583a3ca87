"""Leader election through a coordination.k8s.io Lease (client-go's tools/leaderelection with
a LeaseLock), so that of several candidates only one runs the work at a time.

The Lease record: ``holderIdentity`` (empty = free), ``leaseDurationSeconds``,
``acquireTime``, ``renewTime``, ``leaseTransitions`` (changes of holder).

One attempt (``try_acquire_or_renew``):

- the Lease does not exist -> create it naming us (``AlreadyExists``: someone else won);
- it names another holder and has not expired -> no;
- otherwise (free, expired, or ours) -> write it naming us with ``renewTime`` = now, as a
  compare-and-swap on its resourceVersion (``Conflict``: someone else wrote first, so we did
  not win). A change of holder sets ``acquireTime`` and increments ``leaseTransitions``.

Expiry is judged as client-go does, on *our* clock: a record is expired once it has not
changed, as observed by us, for its ``leaseDurationSeconds``. ``renewTime`` is written for
humans and never compared with our clock, so the candidates' wall clocks may disagree;
only their rates must roughly agree (see client-go's doc.go).

``run(on_started_leading, on_stopped_leading)``:

1. acquire: one attempt every ``retry_period`` (stretched by up to ``jitter`` x, so that
   candidates started together do not poll in lock-step) until one succeeds;
2. lead: ``on_started_leading()`` runs as a child task while we renew every
   ``retry_period``. Leadership ends when (a) no renewal succeeded for ``renew_deadline``
   (which is shorter than the lease, so we stop before anyone may take over), (b) a renewal
   finds the Lease written by another holder (client-go keeps retrying until the deadline
   here; stepping down at once is never less safe), (c) the work coroutine ends by itself,
   or (d) ``run`` is cancelled;
3. step down, in this order: cancel the work and wait until it has ended (it must honour
   cancellation: nothing it does may overlap the next leader); release the Lease if
   ``release_on_cancel`` (holder "", ``leaseDurationSeconds`` 1, as a compare-and-swap on
   our last write so that it never clobbers a newer holder), so a standby takes over at
   its next attempt instead of after expiry; then call ``on_stopped_leading()``.

``run`` returns after a loss of leadership (a caller that wants to stand again calls it
again), re-raises the work's exception if the work failed, and re-raises ``CancelledError``
when cancelled. Unlike client-go, ``on_stopped_leading`` is called only if we did lead.

Concurrency contract: one event loop. ``run`` is called from one task at a time; the work
is its child task, cancelled and awaited before ``run`` returns. ``is_leader()`` and
``leader()`` are synchronous reads, safe from any task. Every wait is on the injected
``Clock`` and every API call is bounded by the renew deadline.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from control.api import errors
from control.api.pb import coordination_pb2
from control.api.timeutil import micro_time_at
from control.runtime.clock import Clock, RealClock, wait_for

if TYPE_CHECKING:
    from control.client.client import ApiClient

log = structlog.get_logger(__name__, component="leader-election")

LEASES = "leases"
# client-go's JitterFactor: an acquire attempt waits retry_period * [1, 1 + 1.2).
DEFAULT_JITTER = 1.2


class LeaderElector:
    """Campaigns for, holds and releases one Lease; see the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock | None = None,
        *,
        release_on_cancel: bool = True,
        jitter: float = DEFAULT_JITTER,
        rng: random.Random | None = None,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        if retry_period <= 0 or jitter < 0:
            raise ValueError("retry_period must be > 0 and jitter >= 0")
        if not lease_duration > renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if not renew_deadline > retry_period * max(1.0, jitter):
            raise ValueError(
                f"renew_deadline must be greater than retry_period x {max(1.0, jitter):g}")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._clock = clock or RealClock()
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._log = log.bind(lease=f"{namespace}/{name}", identity=identity)
        # The last record seen and when (monotonic) it was first seen in that state.
        self._observed: coordination_pb2.LeaseSpec | None = None
        self._observed_at = 0.0
        # Our last successful write: what release() compares-and-swaps against.
        self._written: coordination_pb2.Lease | None = None
        self._leading = False

    # -- queries ----------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True between acquiring the Lease and stepping down (work running)."""
        return self._leading

    def leader(self) -> str:
        """The holder in the last record we observed ("" if none or unknown)."""
        return self._observed.holder_identity if self._observed is not None else ""

    # -- the loop ---------------------------------------------------------------------------

    async def run(
        self,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], None],
    ) -> None:
        """Acquire, lead until leadership ends, step down (see the module docstring)."""
        await self._acquire()
        self._leading = True
        self._log.info("became leader")
        work = asyncio.create_task(_call(on_started_leading),
                                   name=f"leader/{self.namespace}/{self.name}")
        failure: BaseException | None = None
        try:
            await self._renew_until_lost(work)
        finally:
            self._leading = False
            try:
                work.cancel()
                # Nothing the work does may overlap the next leader: wait for its end
                # before the release lets anyone else in.
                await asyncio.wait({work})
                if not work.cancelled():
                    failure = work.exception()
                if self.release_on_cancel:
                    await self.release()
            finally:
                self._log.info("stopped leading")
                try:
                    on_stopped_leading()
                except Exception:
                    self._log.exception("on_stopped_leading failed")
        if failure is not None:
            raise failure

    async def _acquire(self) -> None:
        self._log.info("attempting to acquire the leader lease")
        while not await self._attempt(self.renew_deadline):
            delay = self.retry_period * (1.0 + self._jitter * self._rng.random())
            await self._clock.sleep(delay)

    async def _renew_until_lost(self, work: asyncio.Task[None]) -> None:
        """Renew every retry_period; return when leadership ends (other than cancel)."""
        last_renew = self._clock.monotonic()
        while True:
            sleeper = asyncio.ensure_future(self._clock.sleep(self.retry_period))
            try:
                await asyncio.wait({work, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
            if work.done():
                self._log.info("the leader's work ended; giving up the lease")
                return
            remaining = last_renew + self.renew_deadline - self._clock.monotonic()
            if remaining > 0 and await self._attempt(remaining):
                last_renew = self._clock.monotonic()
                continue
            holder = self.leader()
            if holder and holder != self.identity:
                self._log.warning("the lease was taken by another holder; stepping down",
                                  holder=holder)
                return
            if self._clock.monotonic() - last_renew >= self.renew_deadline:
                self._log.error("could not renew the lease within the renew deadline; "
                                "stepping down", renew_deadline=self.renew_deadline)
                return

    async def _attempt(self, timeout: float) -> bool:  # noqa: ASYNC109 - on the Clock
        try:
            return await wait_for(self._clock, self.try_acquire_or_renew(), timeout)
        except TimeoutError:
            self._log.warning("lease request timed out", timeout=round(timeout, 3))
        except errors.ApiError as e:
            self._log.warning("lease request failed", error=str(e) or type(e).__name__)
        return False

    # -- one attempt ------------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; True if we hold it now.

        Raises ``ApiError`` for failures other than losing the race (those are False).
        """
        now = self._clock.now()
        try:
            current: coordination_pb2.Lease = await self.client.get(
                LEASES, self.name, self.namespace)
        except errors.NotFound:
            lease = coordination_pb2.Lease()
            lease.metadata.name = self.name
            lease.metadata.namespace = self.namespace
            self._stamp(lease.spec, now, new_holder=True, transitions=0)
            try:
                created = await self.client.create(lease)
            except errors.AlreadyExists:
                return False  # another candidate created it first
            self._record_write(created)
            return True
        spec = current.spec
        self._observe(spec)
        holder = spec.holder_identity
        if holder and holder != self.identity and not self._expired(spec):
            return False
        new = coordination_pb2.Lease()
        new.CopyFrom(current)  # keeps metadata.resourceVersion: the update is a CAS
        if holder == self.identity:
            self._stamp(new.spec, now, new_holder=False)
        else:
            self._stamp(new.spec, now, new_holder=True,
                        transitions=spec.lease_transitions + 1)
        try:
            written = await self.client.update(new)
        except (errors.Conflict, errors.NotFound):
            return False  # written or deleted by someone else since our read
        self._record_write(written)
        return True

    async def release(self) -> bool:
        """Give the Lease up (holder "") if our last write is still the current record.

        True if released or not ours to release; False if the write failed.
        """
        mine = self._written
        if mine is None or mine.spec.holder_identity != self.identity or (
                self.leader() != self.identity):
            return True
        now = self._clock.now()
        lease = coordination_pb2.Lease()
        lease.CopyFrom(mine)
        spec = lease.spec
        spec.holder_identity = ""
        spec.lease_duration_seconds = 1
        spec.renew_time.CopyFrom(micro_time_at(now))
        spec.acquire_time.CopyFrom(micro_time_at(now))
        try:
            written = await wait_for(self._clock, self.client.update(lease), self.renew_deadline)
        except (TimeoutError, errors.ApiError) as e:
            # Conflict included: someone else has written since, so it is not ours anymore.
            self._log.warning("could not release the lease", error=str(e) or type(e).__name__)
            return False
        self._record_write(written)
        self._log.info("released the lease")
        return True

    # -- record keeping ---------------------------------------------------------------------

    def _stamp(self, spec: coordination_pb2.LeaseSpec, now: float, *, new_holder: bool,
               transitions: int = 0) -> None:
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = max(1, math.ceil(self.lease_duration))
        spec.renew_time.CopyFrom(micro_time_at(now))
        if new_holder or not spec.HasField("acquire_time"):
            spec.acquire_time.CopyFrom(micro_time_at(now))
        if new_holder:
            spec.lease_transitions = transitions
        elif not spec.HasField("lease_transitions"):
            spec.lease_transitions = 0

    def _observe(self, spec: coordination_pb2.LeaseSpec) -> None:
        if self._observed is not None and self._observed == spec:
            return
        if self._observed is None or self._observed.holder_identity != spec.holder_identity:
            if spec.holder_identity and spec.holder_identity != self.identity:
                self._log.info("observed a leader", holder=spec.holder_identity)
        observed = coordination_pb2.LeaseSpec()
        observed.CopyFrom(spec)
        self._observed = observed
        self._observed_at = self._clock.monotonic()

    def _record_write(self, lease: coordination_pb2.Lease) -> None:
        self._written = lease
        self._observe(lease.spec)

    def _expired(self, spec: coordination_pb2.LeaseSpec) -> bool:
        """Unchanged (as observed by us) for the record's own lease duration."""
        duration: float = self.lease_duration
        if spec.HasField("lease_duration_seconds") and spec.lease_duration_seconds > 0:
            duration = spec.lease_duration_seconds
        return self._observed_at + duration <= self._clock.monotonic()


async def _call(fn: Callable[[], Awaitable[None]]) -> None:
    # create_task needs a coroutine; the callback may return any awaitable.
    await fn()




__all__ = ["DEFAULT_JITTER", "LeaderElector"]
