"""The local-path provisioner (k3s' local-path-provisioner, as a controller): a claim of a
StorageClass whose provisioner is ``rancher.io/local-path`` gets a PersistentVolume that is
a directory on the node the scheduler chose for its first pod.

A claim is provisioned once it is unbound, not being deleted, its class is ours and the
scheduler has written ``volume.kubernetes.io/selected-node`` on it (WaitForFirstConsumer:
the scheduler's VolumeBinding plugin does that at PreBind). The volume
(``local_path_util.build_volume``) lives under the directory that node's agent advertises
in its Node annotation ``local-path.flotilla.io/volume-dir``; it is pre-bound to the claim,
so the binder completes the binding, and the kubelet creates the directory at first use.
Events on the claim, as the external provisioners write them: ``Provisioning``,
``ProvisioningSucceeded``, ``ProvisioningFailed`` (an unsupported access mode or volume
mode, an unknown node or one whose agent advertises no volume directory, an Immediate class
with no selected node). Failures that time can fix are retried; refusals wait for the claim
to change.

Deleting is not done here: the binder deletes a Released volume whose policy is Delete,
and the cleanup finalizer keeps it until the node's agent has removed its directory
(agent/kubelet/local_volumes.py).

Keys are ``<namespace>/<name>`` of claims. Concurrency contract: runs under
``control.runtime.Controller`` (one key never reconciled by two workers at once). The
volume's name is derived from the claim's uid, so a retry after a lost answer or a stale
cache finds AlreadyExists instead of creating a second volume. Event handlers are
synchronous and only enqueue keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from control.api import errors
from control.api import storageutil as su
from control.api.pb import core_pb2, storage_pb2
from control.client.client import ApiClient
from control.controllers import local_path_util as lpu
from control.runtime.controller import Controller, Result
from control.runtime.events import NORMAL, WARNING

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller")

NAME = "local-path-provisioner"
PVC = core_pb2.PersistentVolumeClaim
# how soon a failure that time may fix (a node not registered yet) is tried again
RETRY_AFTER = 5.0


class LocalPathProvisioner:
    """Creates a node-local volume for each claim of a local-path class; see the module."""

    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self.recorder = ctx.events.new_recorder(su.PROVISIONER)
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._claims = ctx.informers.informer(core_pb2.PersistentVolumeClaim)
        self._volumes = ctx.informers.informer(core_pb2.PersistentVolume)
        self._classes = ctx.informers.informer(storage_pb2.StorageClass)
        self._nodes = ctx.informers.informer(core_pb2.Node)
        self._claims.add_event_handler(on_add=self._claim, on_update=lambda _o, n: self._claim(n))
        self._nodes.add_event_handler(on_add=self._node, on_update=lambda _o, n: self._node(n))

    def _claim(self, claim: PVC) -> None:
        self.controller.enqueue(f"{claim.metadata.namespace}/{claim.metadata.name}")

    def _node(self, node: core_pb2.Node) -> None:
        # a claim waiting for this node's agent to advertise its volume directory
        for claim in self._claims.indexer.list():
            if claim.metadata.annotations.get(su.SELECTED_NODE) == node.metadata.name \
                    and not claim.spec.volume_name:
                self._claim(claim)

    async def reconcile(self, key: str) -> Result | None:
        claim = self._claims.indexer.get(key)
        if (claim is None or claim.metadata.HasField("deletion_timestamp")
                or claim.spec.volume_name or claim.status.phase == "Bound"):
            return None
        cls = self._classes.indexer.get(claim.spec.storage_class_name) \
            if claim.spec.storage_class_name else None
        if cls is None or cls.provisioner != su.PROVISIONER:
            return None
        if self._volumes.indexer.get(lpu.volume_name(claim)) is not None:
            return None  # provisioned; the binder binds it
        node_name = claim.metadata.annotations.get(su.SELECTED_NODE, "")
        if not node_name:
            if cls.volume_binding_mode != "WaitForFirstConsumer":
                self._failed(claim, cls, "configuration error, no node was specified: "
                             "local-path volumes need volumeBindingMode WaitForFirstConsumer")
            return None  # the scheduler selects a node with the first pod
        if problem := lpu.refusal(claim, cls):
            self._failed(claim, cls, problem)
            return None
        node = self._nodes.indexer.get(node_name)
        if node is None:
            self._failed(claim, cls, f'node "{node_name}" not found')
            return Result(requeue_after=RETRY_AFTER)
        volume_dir = node.metadata.annotations.get(su.VOLUME_DIR_ANNOTATION, "")
        if not volume_dir:
            self._failed(claim, cls, f'node "{node_name}" advertises no volume directory '
                         f"(annotation {su.VOLUME_DIR_ANNOTATION}): is its agent running?")
            return Result(requeue_after=RETRY_AFTER)
        hostname = node.metadata.labels.get(su.HOSTNAME_LABEL, node_name)
        pv = lpu.build_volume(claim, cls, hostname, volume_dir)
        self.recorder.event(claim, NORMAL, "Provisioning",
                            f'External provisioner is provisioning volume for claim '
                            f'"{claim.metadata.namespace}/{claim.metadata.name}"')
        try:
            await self._client.create(pv)
        except errors.AlreadyExists:
            return None
        except errors.Invalid as e:
            self._failed(claim, cls, str(e))
            return None
        log.info("volume provisioned", claim=key, volume=pv.metadata.name, node=node_name,
                 path=su.volume_path(pv))
        self.recorder.event(claim, NORMAL, "ProvisioningSucceeded",
                            f"Successfully provisioned volume {pv.metadata.name}")
        return None

    def _failed(self, claim: PVC, cls: storage_pb2.StorageClass, why: str) -> None:
        self.recorder.event(claim, WARNING, "ProvisioningFailed",
                            f'failed to provision volume with StorageClass '
                            f'"{cls.metadata.name}": {why}')
