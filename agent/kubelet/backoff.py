"""Crash-loop backoff per container: Kubernetes' ``flowcontrol.Backoff`` as the kubelet uses it.

A container that exited may restart at once the first time; each later restart waits
``initial`` (10 s), then twice as long, up to ``max_delay`` (300 s), counted from when the
container *finished*. An entry that has not been touched for ``reset_after`` (10 minutes =
2 x max, kubelet's ``hasExpired``) is forgotten, so a container that ran happily for ten
minutes starts over at 10 s. While a container waits, the pod shows it as waiting
``CrashLoopBackOff`` with kubelet's message ``back-off 20s restarting failed container=...``.

Usage, in kubelet's ``doBackOff`` order::

    remaining = backoff.remaining(key, finished_at)
    if remaining > 0: show CrashLoopBackOff, requeue after ``remaining``
    else: backoff.next(key, finished_at); restart the container

Keys are ``(pod uid, container name)``. Times are wall-clock seconds (``Clock.now()``),
because ``finished_at`` comes from the runtime as wall time.

Concurrency contract: synchronous, one event loop; each key is only touched by its pod's
serial worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from control.runtime.clock import Clock

DEFAULT_INITIAL = 10.0
DEFAULT_MAX = 300.0
DEFAULT_RESET_AFTER = 600.0

Key = tuple[str, str]


@dataclass
class _Entry:
    delay: float
    last_update: float


class CrashLoopBackoff:
    """Per-container restart delays; see the module docstring."""

    def __init__(self, clock: Clock, *, initial: float = DEFAULT_INITIAL,
                 max_delay: float = DEFAULT_MAX,
                 reset_after: float | None = None) -> None:
        if initial <= 0 or max_delay < initial:
            raise ValueError("backoff needs 0 < initial <= max_delay")
        self.clock = clock
        self.initial = initial
        self.max_delay = max_delay
        self.reset_after = 2 * max_delay if reset_after is None else reset_after
        self._entries: dict[Key, _Entry] = {}

    def _expired(self, event_time: float, entry: _Entry) -> bool:
        return event_time - entry.last_update > self.reset_after

    def remaining(self, key: Key, finished_at: float) -> float:
        """Seconds until the container that finished at ``finished_at`` may restart (0: now)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(finished_at, entry):
            return 0.0
        return max(0.0, entry.delay - (self.clock.now() - finished_at))

    def delay(self, key: Key) -> float:
        """The current delay of ``key`` (0 when it has none), for the waiting message."""
        entry = self._entries.get(key)
        return entry.delay if entry is not None else 0.0

    def next(self, key: Key, finished_at: float) -> None:
        """Record a restart: the next one waits twice as long (capped)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(finished_at, entry):
            entry = _Entry(self.initial, 0.0)
            self._entries[key] = entry
        else:
            entry.delay = min(entry.delay * 2, self.max_delay)
        entry.last_update = self.clock.now()

    def forget_pod(self, pod_uid: str) -> None:
        for key in [k for k in self._entries if k[0] == pod_uid]:
            del self._entries[key]

    def gc(self) -> None:
        """Drop entries nobody touched for ``reset_after`` (they would reset anyway)."""
        now = self.clock.now()
        for key in [k for k, e in self._entries.items() if self._expired(now, e)]:
            del self._entries[key]


def crash_loop_message(delay: float, container: str, pod_name: str, namespace: str,
                       uid: str) -> str:
    """kubelet's wording: ``back-off 40s restarting failed container=app pod=web_default(uid)``."""
    return (f"back-off {format_delay(delay)} restarting failed container={container} "
            f"pod={pod_name}_{namespace}({uid})")


def format_delay(seconds: float) -> str:
    """Go's Duration.String for whole seconds and minutes: 10s, 2m40s, 5m0s."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60}s"
