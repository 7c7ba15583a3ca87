"""Client certificates that a server issues to its own in-process components, renewed
before they expire.

The controller manager, the scheduler and the cluster DNS that ``flotilla server`` runs
in its process are API clients like any other, with client certificates from the cluster
CA; so is the identity the apiserver presents to agents (logs, exec). Leaf certificates
live a year, and a server runs longer: :class:`CertificateRotation` renews each at a
jittered 70-90% of its life, as an agent renews its own, without a restart. It asks
``issue`` for a new certificate of the same identity and installs it: an
:class:`~control.client.client.ApiClient` gets a new channel (later calls use it; the
replaced channel is closed one renewal later or at ``close``, so its streams end and the
informers resume on the new one), anything else gets its callback.

Concurrency contract: ``run`` is one supervised task; ``hold_client``/``hold`` may be
called before or while it runs; ``close`` after it stopped. One event loop.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import structlog

from control.client import pki
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.tls import Credentials
from control.runtime.clock import Clock, RealClock

log = structlog.get_logger(__name__)

Issue = Callable[[str, list[str]], Credentials]
Install = Callable[[Credentials], Awaitable[None]]


@dataclass
class _Held:
    name: str
    user: str
    groups: list[str]
    install: Install
    due: float  # clock time of the next renewal
    replaced: list[grpc.aio.Channel] = field(default_factory=list)


class CertificateRotation:
    """Renews the certificates of in-process components; see the module docstring."""

    def __init__(self, issue: Issue, *, clock: Clock | None = None) -> None:
        self._issue = issue
        self._clock = clock or RealClock()
        self._held: list[_Held] = []
        self._changed = asyncio.Event()
        self.renewals = 0

    def _due(self, creds: Credentials) -> float:
        if not creds.cert_pem:
            raise ValueError("no client certificate to renew")
        now = datetime.datetime.fromtimestamp(self._clock.now(), datetime.UTC)
        return self._clock.now() + pki.renewal_delay(creds.cert_pem, now)

    def hold(self, name: str, user: str, groups: list[str], credentials: Credentials,
             install: Install) -> None:
        """Renew ``credentials`` (issued for ``user``/``groups``) and hand each new one to
        ``install``."""
        self._add(_Held(name, user, list(groups), install, self._due(credentials)))

    def _add(self, held: _Held) -> None:
        self._held.append(held)
        self._changed.set()

    def hold_client(self, name: str, user: str, groups: list[str], credentials: Credentials,
                    client: ApiClient, address: str) -> None:
        """Renew the certificate ``client`` connects with: each renewal moves the client
        to a new channel to ``address``."""
        replaced: list[grpc.aio.Channel] = []

        async def install(creds: Credentials) -> None:
            stale, replaced[:] = list(replaced), [client.use_channel(open_channel(address,
                                                                                creds))]
            for channel in stale:
                await channel.close(None)

        self._add(_Held(name, user, list(groups), install, self._due(credentials),
                        replaced))

    async def run(self) -> None:
        while True:
            self._changed.clear()
            now = self._clock.now()
            for held in self._held:
                if held.due <= now:
                    await self._renew(held)
            if not self._held:
                await self._changed.wait()
                continue
            delay = min(h.due for h in self._held) - self._clock.now()
            sleeper = asyncio.ensure_future(self._clock.sleep(max(0.0, delay)))
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (sleeper, changed):
                    t.cancel()
                await asyncio.gather(sleeper, changed, return_exceptions=True)

    async def _renew(self, held: _Held) -> None:
        creds = self._issue(held.user, held.groups)
        await held.install(creds)
        held.due = self._due(creds)
        self.renewals += 1
        log.info("component certificate renewed", component=held.name, user=held.user,
                 expires=pki.load_cert(creds.cert_pem or b"").not_valid_after_utc.isoformat())

    async def close(self) -> None:
        """Close the channels that renewals replaced (the components close their own)."""
        for held in self._held:
            for channel in held.replaced:
                await channel.close(None)
            held.replaced.clear()
