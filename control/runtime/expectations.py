"""Controller expectations (client-go's ``ControllerExpectations``).

A controller that creates or deletes children (a ReplicaSet creating Pods) reads them from
its informer cache, which lags behind its own writes. Without bookkeeping, the next reconcile
would see "2 pods, want 3" again and create a duplicate. So before acting, the controller
records how many creations/deletions it expects to *observe* for its key; the informer's
handlers count them down as the events arrive; reconcile only acts on the cache once
``satisfied(key)``.

A record that never reaches zero (a create that failed silently, an event that was missed)
must not wedge the controller forever: a record older than ``ttl`` (5 minutes, as in
client-go) counts as satisfied, so the controller falls back to trusting the cache.

``satisfied(key)`` is also True when there is no record at all (a new owner, or one whose
record was deleted). Counts may go negative (more observed than expected); that is satisfied.

Concurrency contract: synchronous, single event loop, every call atomic. Times come from the
injected ``Clock``'s monotonic time.
"""

from __future__ import annotations

from dataclasses import dataclass

from control.runtime.clock import Clock, RealClock

EXPECTATIONS_TTL = 300.0


@dataclass
class Expectation:
    """Outstanding creations and deletions for one controller key, and when they were set."""

    add: int
    delete: int
    timestamp: float

    def fulfilled(self) -> bool:
        return self.add <= 0 and self.delete <= 0


class ControllerExpectations:
    """Per-key counts of creations/deletions still to be observed; see the module docstring."""

    def __init__(self, clock: Clock | None = None, ttl: float = EXPECTATIONS_TTL) -> None:
        self._clock = clock or RealClock()
        self.ttl = ttl
        self._records: dict[str, Expectation] = {}

    def get(self, key: str) -> Expectation | None:
        return self._records.get(key)

    def satisfied(self, key: str) -> bool:
        """True when the controller may trust its cache for ``key`` and act again."""
        record = self._records.get(key)
        if record is None:
            return True
        if record.fulfilled():
            return True
        return self._clock.monotonic() - record.timestamp > self.ttl

    def is_expired(self, key: str) -> bool:
        record = self._records.get(key)
        return record is not None and self._clock.monotonic() - record.timestamp > self.ttl

    def set_expectations(self, key: str, add: int, delete: int) -> None:
        """Replace the record for ``key`` (and restart its TTL)."""
        self._records[key] = Expectation(add, delete, self._clock.monotonic())

    def expect_creations(self, key: str, n: int) -> None:
        """About to create ``n`` children: replaces the record, as client-go does."""
        self.set_expectations(key, n, 0)

    def expect_deletions(self, key: str, n: int) -> None:
        """About to delete ``n`` children: replaces the record, as client-go does."""
        self.set_expectations(key, 0, n)

    def raise_expectations(self, key: str, add: int, delete: int) -> None:
        """Add to the outstanding counts (without restarting the TTL)."""
        record = self._records.get(key)
        if record is None:
            self.set_expectations(key, add, delete)
            return
        record.add += add
        record.delete += delete

    def lower_expectations(self, key: str, add: int, delete: int) -> None:
        record = self._records.get(key)
        if record is not None:
            record.add -= add
            record.delete -= delete

    def creation_observed(self, key: str) -> None:
        """An informer saw one of the expected creations (or a create call failed)."""
        self.lower_expectations(key, 1, 0)

    def deletion_observed(self, key: str) -> None:
        """An informer saw one of the expected deletions (or a delete call failed)."""
        self.lower_expectations(key, 0, 1)

    def delete(self, key: str) -> None:
        """Forget ``key`` (its owner was deleted)."""
        self._records.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._records
