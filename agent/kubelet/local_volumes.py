"""The agent's half of the local-path provisioner: the reclaim of this node's volumes.

The provisioner (control/controllers/local_path.py) creates each volume with the finalizer
``flotilla.io/local-path-cleanup`` and node affinity to one node. This module watches the
PersistentVolumes, keeps those pinned to this node that carry the finalizer, and once such
a volume is being deleted and no longer Bound (the binder deletes a Released volume whose
reclaim policy is Delete; a user may delete any volume):

- reclaim policy Delete: removes the volume's directory, then the finalizer;
- any other policy (Retain): removes only the finalizer; the data stays on the node.

A directory is removed only when it is a real directory (not a symlink) directly inside
``--volume-dir`` (both resolved); anything else is refused with a ``VolumeFailedDelete``
Event on the volume, and the finalizer stays so that nothing is lost silently (an operator
removes it by hand once they have looked). A directory already gone is fine.

Concurrency contract: one supervised task (:meth:`LocalVolumeCleaner.run`) owns an
informer and a ``control.runtime.Controller`` keyed by volume name (one volume never
handled twice at once); the removal runs in a worker thread; the finalizer goes with a
compare-and-swap update, retried on conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import structlog

from control.api import errors
from control.api import storageutil as su
from control.api.pb import core_pb2
from control.client.client import ApiClient
from control.client.listwatch import ApiListWatcher
from control.client.retry import guaranteed_update
from control.runtime.clock import Clock, RealClock
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, WARNING, Recorder
from control.runtime.informer import SharedInformer

log = structlog.get_logger(__name__, component="local-volumes")

PV = core_pb2.PersistentVolume


class CleanupRefused(Exception):
    """The path of a volume is not one this agent may delete; the message says why."""


def checked_directory(path: str, volume_dir: Path) -> Path | None:
    """The directory to delete for a volume at ``path`` (None: already gone), after the
    checks of the module docstring; CleanupRefused otherwise."""
    root = Path(os.path.realpath(volume_dir))
    p = Path(os.path.normpath(path)) if path else Path()
    if not path or not p.is_absolute():
        raise CleanupRefused(f"volume path {path!r} is not an absolute path")
    if p.parent != root and Path(os.path.realpath(p.parent)) != root:
        raise CleanupRefused(f"volume path {path} is not directly inside the volume "
                             f"directory {root}")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise CleanupRefused(f"volume path {path} is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise CleanupRefused(f"volume path {path} is not a directory")
    return root / p.name


def remove_directory(path: Path) -> None:
    """``shutil.rmtree`` (symlinks inside are removed, never followed)."""
    shutil.rmtree(path)


def wants_cleanup(pv: PV, node: str) -> bool:
    """A volume of this node, carrying the finalizer, being deleted and not Bound."""
    return (su.CLEANUP_FINALIZER in pv.metadata.finalizers
            and su.pinned_node(pv) == node
            and pv.metadata.HasField("deletion_timestamp")
            and pv.status.phase != "Bound")


class LocalVolumeCleaner:
    """Reclaims this node's local-path volumes; see the module docstring."""

    def __init__(self, client: ApiClient, node_name: str, volume_dir: Path, *,
                 clock: Clock | None = None, recorder: Recorder | None = None) -> None:
        self._client = client
        self.node_name = node_name
        self.volume_dir = volume_dir
        self._clock = clock or RealClock()
        self._recorder = recorder
        self.informer: SharedInformer[Any] = SharedInformer(
            "persistentvolumes@local-volumes",
            ApiListWatcher(client, "persistentvolumes"),  # type: ignore[arg-type]
            clock=self._clock)
        self.controller = Controller("local-volume-cleanup", self.reconcile, clock=self._clock)
        self.informer.add_event_handler(on_add=self._changed,
                                        on_update=lambda _o, n: self._changed(n))

    def _changed(self, pv: PV) -> None:
        if wants_cleanup(pv, self.node_name):
            self.controller.enqueue(pv.metadata.name)

    async def run(self) -> None:
        informer = asyncio.create_task(self.informer.run(), name="local-volumes/informer")
        try:
            await self.informer.wait_for_sync()
            await self.controller.run()
        finally:
            informer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await informer

    async def reconcile(self, name: str) -> Result | None:
        pv = self.informer.indexer.get(name)
        if pv is None or not wants_cleanup(pv, self.node_name):
            return None
        policy = pv.spec.persistent_volume_reclaim_policy or "Retain"
        path = su.volume_path(pv)
        if policy == "Delete":
            try:
                target = await asyncio.to_thread(checked_directory, path, self.volume_dir)
            except CleanupRefused as e:
                log.warning("volume cleanup refused", volume=name, error=str(e))
                self._event(pv, WARNING, "VolumeFailedDelete",
                            f"the directory is not deleted and the finalizer "
                            f"{su.CLEANUP_FINALIZER} stays: {e}")
                return None
            if target is not None:
                await asyncio.to_thread(remove_directory, target)
                log.info("volume directory deleted", volume=name, path=str(target))
                self._event(pv, NORMAL, "VolumeDeleted", f"deleted {target} on node "
                            f"{self.node_name}")
        else:
            log.info("volume released; its directory is kept", volume=name, path=path,
                     policy=policy)
        await self._drop_finalizer(pv)
        return None

    def _event(self, pv: PV, kind: str, reason: str, message: str) -> None:
        if self._recorder is not None:
            self._recorder.event(pv, kind, reason, message)

    async def _drop_finalizer(self, pv: PV) -> None:
        def mutate(o: PV) -> bool:
            if su.CLEANUP_FINALIZER not in o.metadata.finalizers:
                return False
            o.metadata.finalizers.remove(su.CLEANUP_FINALIZER)
            return True

        with contextlib.suppress(errors.NotFound):
            await guaranteed_update(self._client, PV, "", pv.metadata.name, mutate, current=pv)
