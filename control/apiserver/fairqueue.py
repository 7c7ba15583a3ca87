"""Fair queuing for one priority level: a fixed number of seats, bounded queues, shuffle
sharding of flows onto queues, and a bounded wait (Kubernetes' queueset, simplified).

A request asks :meth:`QueueSet.acquire` for ``seats`` seats on behalf of its ``flow``:

- Shuffle sharding: the flow's hash deals it a hand of ``hand_size`` of the ``queues``
  queues (always the same hand for the same flow), and the request joins the hand's queue
  holding the fewest seats (waiting and executing). An elephant flow fills its own few
  queues; a mouse flow almost always has a queue in its hand that the elephant does not.
- A queue already holding ``queue_length_limit`` requests refuses with ``queue-full``.
- Dispatch is start-time fair queuing: a request's start tag is the later of the level's
  virtual clock and the finish tag of the request before it in its queue (finish = start +
  seats), and free seats go to the queue whose head has the smallest start tag. Queues
  that stayed idle bank no credit, and a flow sending many requests waits behind one that
  sends few, whatever the order they came in. A head wider than the free seats waits
  (never overtaken), so wide requests are not starved.
- A request that waited ``wait`` seconds without a seat leaves its queue with
  ``time-out``; a cancelled waiter leaves without a trace.
- A level with ``queue_length_limit`` 0 does not queue: no free seat is ``concurrency-limit``.

A request wider than the level's seats takes all of them (it could never run otherwise).
The caller gets a release function; calling it more than once releases once.

Concurrency: event-loop only, no locks; every state change is synchronous, so the only
interleavings are at the awaits in ``acquire``, which handle a seat granted at the same
moment as a timeout or cancellation (the seat is given back).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from control.runtime.clock import Clock, RealClock


class Rejected(Exception):
    """The request was not given a seat; ``reason`` is Kubernetes' label for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class _Waiter:
    seats: int
    start: float
    future: asyncio.Future[None]


@dataclass(eq=False)
class _Queue:
    waiting: deque[_Waiter] = field(default_factory=deque)
    waiting_seats: int = 0
    executing_seats: int = 0
    last_finish: float = 0.0


def deal(value: int, deck: int, hand: int) -> list[int]:
    """``hand`` distinct cards of ``range(deck)`` chosen by ``value`` (shuffle sharding's
    dealer: the digits of ``value`` in the mixed radix deck, deck-1, ...)."""
    picked: list[int] = []
    for i in range(min(hand, deck)):
        n = deck - i
        card, value = value % n, value // n
        for p in sorted(picked):  # the card-th one among those not dealt yet
            if p <= card:
                card += 1
        picked.append(card)
    return picked


def flow_hash(flow: str) -> int:
    return int.from_bytes(hashlib.blake2b(flow.encode(), digest_size=8).digest(), "big")


class QueueSet:
    def __init__(self, limit: int, queues: int, hand_size: int, queue_length_limit: int,
                 clock: Clock | None = None) -> None:
        if limit < 1:
            raise ValueError(f"a priority level needs at least one seat, got {limit}")
        self.limit = limit
        self.queue_length_limit = queue_length_limit if queues > 0 else 0
        self.queues = [_Queue() for _ in range(queues if self.queue_length_limit else 0)]
        self.hand_size = max(1, min(hand_size, len(self.queues))) if self.queues else 0
        self.clock = clock or RealClock()
        self.seats_in_use = 0
        self.executing = 0
        self.waiting = 0
        self._virtual = 0.0

    async def acquire(self, flow: str, seats: int, wait: float) -> Callable[[], None]:
        """A seat (or ``seats`` of them) for ``flow``, waiting at most ``wait`` seconds;
        :class:`Rejected` when there is none. Returns the release function."""
        seats = max(1, min(seats, self.limit))
        if not self.queues:
            if self.seats_in_use + seats > self.limit:
                raise Rejected("concurrency-limit")
            return self._start(None, seats)
        queue = self._choose(flow)
        if len(queue.waiting) >= self.queue_length_limit:
            raise Rejected("queue-full")
        immediate = self.waiting == 0 and self.seats_in_use + seats <= self.limit
        if not immediate and wait <= 0:
            raise Rejected("time-out")
        start = max(self._virtual, queue.last_finish)
        queue.last_finish = start + seats
        if immediate:
            self._virtual = start
            return self._start(queue, seats)
        waiter = _Waiter(seats, start, asyncio.get_running_loop().create_future())
        queue.waiting.append(waiter)
        queue.waiting_seats += seats
        self.waiting += 1
        timer = asyncio.ensure_future(self.clock.sleep(wait))
        try:
            await asyncio.wait((waiter.future, timer), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if waiter.future.done():
                self._release(queue, seats)
            else:
                self._forget(queue, waiter)
            raise
        finally:
            timer.cancel()
        if waiter.future.done():
            return self._releaser(queue, seats)
        self._forget(queue, waiter)
        raise Rejected("time-out")

    def _choose(self, flow: str) -> _Queue:
        hand = deal(flow_hash(flow), len(self.queues), self.hand_size)
        return min((self.queues[i] for i in hand),
                   key=lambda q: q.waiting_seats + q.executing_seats)

    def _start(self, queue: _Queue | None, seats: int) -> Callable[[], None]:
        self.seats_in_use += seats
        self.executing += 1
        if queue is not None:
            queue.executing_seats += seats
        return self._releaser(queue, seats)

    def _releaser(self, queue: _Queue | None, seats: int) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release(queue, seats)

        return release

    def _release(self, queue: _Queue | None, seats: int) -> None:
        self.seats_in_use -= seats
        self.executing -= 1
        if queue is not None:
            queue.executing_seats -= seats
        self._dispatch()

    def _forget(self, queue: _Queue, waiter: _Waiter) -> None:
        queue.waiting.remove(waiter)
        queue.waiting_seats -= waiter.seats
        self.waiting -= 1
        if not waiter.future.done():
            waiter.future.cancel()
        # a wide head that gave up may have been holding narrower requests back
        self._dispatch()

    def _dispatch(self) -> None:
        while self.waiting:
            queue = min((q for q in self.queues if q.waiting), key=lambda q: q.waiting[0].start)
            head = queue.waiting[0]
            if self.seats_in_use + head.seats > self.limit:
                return
            queue.waiting.popleft()
            queue.waiting_seats -= head.seats
            self.waiting -= 1
            self._virtual = max(self._virtual, head.start)
            self.seats_in_use += head.seats
            self.executing += 1
            queue.executing_seats += head.seats
            head.future.set_result(None)


__all__ = ["QueueSet", "Rejected", "deal", "flow_hash"]
