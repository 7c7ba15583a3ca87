"""`--encryption-provider-config-automatic-reload`: follow the encryption config file.

As kube-apiserver with that flag, the server checks the file (every ``interval`` seconds,
by content hash) and, when it changed, loads it and swaps the store's transformers without
a restart: a new first key writes from then on, and ``flotilla secrets reencrypt`` moves
the rest. A file that does not parse, or whose keys cannot read every live value (a key
removed too early), changes nothing: the error is logged (field and why, or the key that
does not decrypt, never a secret) and counted, and that content is not tried again until
the file changes. ``apiserver_encryption_config_controller_automatic_reloads_total{status}``
counts successes and failures, as Kubernetes'.

Concurrency: one supervised task on the event loop (``run``); the file is read in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import structlog

from control.apiserver import encryption, encryption_config
from control.runtime.clock import Clock, RealClock
from control.runtime.metrics import Registry
from control.store.interface import StoreError
from control.store.transformed import TransformedStore, TransformError

log = structlog.get_logger(component="encryption-config")

DEFAULT_INTERVAL = 60.0


def file_digest(path: Path) -> str | None:
    """The content hash of ``path`` (None if unreadable). Taken before the server loads the
    file, so that a change made meanwhile is reloaded, not missed."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class EncryptionConfigReloader:
    """``digest``: the content the running configuration was loaded from."""

    def __init__(self, path: Path, store: TransformedStore, registry: Registry,
                 digest: str | None, *, metrics: encryption.TransformMetrics | None = None,
                 interval: float = DEFAULT_INTERVAL, clock: Clock | None = None) -> None:
        self.path = path
        self.store = store
        self.interval = interval
        self.clock = clock or RealClock()
        self._metrics = metrics
        self._reloads = registry.counters(
            "apiserver_encryption_config_controller_automatic_reloads_total",
            "Total number of reloads of the encryption configuration file, by status.",
            ["status"])
        self._digest = digest

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.interval)
            await self.check()

    async def check(self) -> bool:
        """Reload if the file changed; whether the transformers were swapped."""
        digest = await asyncio.to_thread(file_digest, self.path)
        if digest is None or digest == self._digest:
            return False  # unchanged, or unreadable for a moment (being replaced)
        try:
            config = encryption_config.load(self.path)
            stale = await self.store.reconfigure(
                encryption.transformer_resolver(config, metrics=self._metrics))
        except (encryption_config.ConfigError, TransformError) as e:
            self._digest = digest  # this content will not work: wait for the next one
            self._reloads.labels("failure").inc()
            log.error("encryption configuration not reloaded; the previous one stays",
                      error=str(e))
            return False
        except StoreError as e:  # e.g. compacted under the check: try again next time
            self._reloads.labels("failure").inc()
            log.warning("encryption configuration not reloaded yet", error=str(e))
            return False
        self._digest = digest
        self._reloads.labels("success").inc()
        log.info("encryption configuration reloaded", config=str(self.path),
                 encrypted=encryption.encrypted_resources(config), stale_objects=stale)
        return True


__all__ = ["DEFAULT_INTERVAL", "EncryptionConfigReloader", "file_digest"]
