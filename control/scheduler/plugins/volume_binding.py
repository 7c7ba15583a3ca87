"""VolumeBinding: place a pod where its PersistentVolumeClaims can be used, and bind the
claims that wait for their first consumer (Kubernetes' VolumeBinding plugin).

A pod's claims are its ``persistentVolumeClaim`` volumes and its generic ephemeral
volumes (claim ``<pod>-<volume>``, which must be owned by the pod). For each:

- PreFilter: the claim must exist and not be being deleted (else unschedulable and
  unresolvable: ``persistentvolumeclaim "data" not found``). A claim is *bound* when it
  names its volume and carries ``pv.kubernetes.io/bind-completed``; an unbound claim whose
  StorageClass binds ``WaitForFirstConsumer`` is *to bind* by the scheduler; any other
  unbound claim waits for the PV binder ("pod has unbound immediate
  PersistentVolumeClaims"). A pod without claims skips the plugin.
- Filter (per node, unschedulable and unresolvable): a bound claim's volume must exist
  ("node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)") and its
  ``nodeAffinity`` must match the node ("node(s) had volume node affinity conflict"). A
  claim to bind that already names a node in ``volume.kubernetes.io/selected-node`` fits
  only that node; otherwise the smallest Available volume that fits the claim
  (``control.api.volumes.volume_fits``) and whose node affinity matches the node is
  chosen (each volume at most once per pod), else the claim is provisioned dynamically
  if its class has a provisioner other than ``kubernetes.io/no-provisioner`` and its
  ``allowedTopologies`` admit the node; else "node(s) didn't find available persistent
  volumes to bind".
- Reserve: the node's choices are assumed in the ``VolumeStore`` (the volume with its
  claimRef, the claim with its selected node) so the next pods' cycles see them taken;
  Unreserve drops the assumptions.
- PreBind: the choices are written through the API - a static volume gets the claimRef
  (the PV binder then completes the binding), a claim to provision gets the selected-node
  annotation (the provisioner then creates its volume) - and the binding cycle waits
  (``bindTimeoutSeconds``, default 600) until the API shows every claim bound to a
  volume bound to it. A provisioner that gives up removes the annotation: the wait fails
  and the pod is scheduled again.

Args: ``bindTimeoutSeconds``.

Concurrency contract: the filter-side methods are synchronous (the scheduling cycle);
``pre_bind`` awaits API writes and the store's changes in the pod's own binding task.
Per-pod data lives in the CycleState.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from control.api import errors
from control.api import volumes as volumesmod
from control.api.nodeaffinity import compile_node_selector
from control.api.pb import core_pb2, meta_pb2, storage_pb2
from control.runtime.clock import wait_for
from control.scheduler.framework import (
    SKIP,
    CycleState,
    FilterPlugin,
    Handle,
    PreBindPlugin,
    PreFilterPlugin,
    PreFilterResult,
    ReservePlugin,
    Status,
)
from control.scheduler.types import NodeInfo, PodInfo
from control.scheduler.volumes import VolumeStore, resource_version

log = structlog.get_logger(__name__, component="scheduler")

R_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
R_NODE_CONFLICT = "node(s) had volume node affinity conflict"
R_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
R_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"

SELECTED_NODE = "volume.kubernetes.io/selected-node"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
DEFAULT_BIND_TIMEOUT = 600.0

_STATE = "VolumeBinding"

PVC = core_pb2.PersistentVolumeClaim
PV = core_pb2.PersistentVolume


# -- pure decisions ------------------------------------------------------------------------


def pod_claims(pod: core_pb2.Pod) -> list[tuple[str, bool]]:
    """(claim name, ephemeral) for every volume of the pod that uses a claim."""
    out = []
    for v in pod.spec.volumes:
        if v.HasField("persistent_volume_claim"):
            out.append((v.persistent_volume_claim.claim_name, False))
        elif v.HasField("ephemeral"):
            out.append((f"{pod.metadata.name}-{v.name}", True))
    return out


def claim_problem(pod: core_pb2.Pod, name: str, ephemeral: bool, pvc: PVC | None) -> str:
    """Why a claim makes the pod unschedulable whatever the node, or ""."""
    if pvc is None:
        return f'persistentvolumeclaim "{name}" not found'
    if pvc.metadata.HasField("deletion_timestamp"):
        return f'persistentvolumeclaim "{name}" is being deleted'
    if ephemeral and not any(r.controller and r.uid == pod.metadata.uid
                             for r in pvc.metadata.owner_references):
        return f'persistentvolumeclaim "{name}" was not created for the pod'
    return ""


def fully_bound(pvc: PVC) -> bool:
    return bool(pvc.spec.volume_name) and BIND_COMPLETED in pvc.metadata.annotations


def waits_for_consumer(pvc: PVC, store: VolumeStore) -> bool:
    """The claim's StorageClass binds WaitForFirstConsumer (no class: Immediate)."""
    name = pvc.spec.storage_class_name
    sc = store.storage_class(name) if name else None
    return sc is not None and sc.volume_binding_mode == WAIT_FOR_FIRST_CONSUMER


def volume_fits_node(pv: PV, node_name: str, labels: Mapping[str, str]) -> bool:
    """The volume's required node affinity admits the node (no affinity: every node)."""
    if not pv.spec.HasField("node_affinity") or not pv.spec.node_affinity.HasField("required"):
        return True
    return compile_node_selector(pv.spec.node_affinity.required)(node_name, labels)


def class_admits_node(sc: storage_pb2.StorageClass, labels: Mapping[str, str]) -> bool:
    """``allowedTopologies``: terms ORed, expressions ANDed, the node's value in the list."""
    if not sc.allowed_topologies:
        return True
    return any(all(labels.get(e.key) in e.values for e in term.match_label_expressions)
               for term in sc.allowed_topologies)


def can_provision(sc: storage_pb2.StorageClass | None) -> bool:
    return sc is not None and bool(sc.provisioner) and sc.provisioner != NO_PROVISIONER


@dataclass
class PodVolumes:
    """What a node needs done for the pod: volumes to bind to claims, claims to provision."""

    static: list[tuple[PVC, PV]] = field(default_factory=list)
    dynamic: list[PVC] = field(default_factory=list)


def find_pod_volumes(store: VolumeStore, bound: Sequence[PVC], to_bind: Sequence[PVC],
                     node_name: str, labels: Mapping[str, str]
                     ) -> tuple[PodVolumes, list[str]]:
    """Kubernetes' FindPodVolumes for one node: (the node's choices, rejection reasons)."""
    reasons: list[str] = []
    for pvc in bound:
        pv = store.volume(pvc.spec.volume_name)
        if pv is None:
            reasons.append(R_PV_NOT_EXIST)
            break
        if not volume_fits_node(pv, node_name, labels):
            reasons.append(R_NODE_CONFLICT)
            break
    found = PodVolumes()
    if not to_bind:
        return found, reasons
    to_match: list[PVC] = []
    to_provision: list[PVC] = []
    for pvc in to_bind:
        selected = pvc.metadata.annotations.get(SELECTED_NODE)
        if selected is None:
            to_match.append(pvc)
        elif selected != node_name:
            reasons.append(R_BIND_CONFLICT)  # being provisioned for another node
            return found, reasons
        else:
            to_provision.append(pvc)
    chosen: set[str] = set()
    # Smallest claims first, so a large volume is not taken by a small claim that another
    # volume would also fit.
    for pvc in sorted(to_match, key=volumesmod.requested):
        cands = [pv for pv in store.volumes_of_class(pvc.spec.storage_class_name)
                 if pv.metadata.name not in chosen and volumesmod.volume_fits(pv, pvc)
                 and volume_fits_node(pv, node_name, labels)]
        pv = volumesmod.best_volume(pvc, cands)
        if pv is None:
            to_provision.append(pvc)
            continue
        chosen.add(pv.metadata.name)
        found.static.append((pvc, pv))
    for pvc in to_provision:
        sc = store.storage_class(pvc.spec.storage_class_name)
        if sc is None or not can_provision(sc) or not class_admits_node(sc, labels):
            reasons.append(R_BIND_CONFLICT)
            break
        found.dynamic.append(pvc)
    return found, reasons


def bound_volume(pv: PV, pvc: PVC) -> PV:
    """A copy of ``pv`` whose claimRef names ``pvc`` (Kubernetes' GetBindVolumeToClaim)."""
    new = PV()
    new.CopyFrom(pv)
    m = pvc.metadata
    new.spec.claim_ref.CopyFrom(meta_pb2.ObjectReference(
        kind="PersistentVolumeClaim", api_version="v1", namespace=m.namespace, name=m.name,
        uid=m.uid, resource_version=m.resource_version))
    new.metadata.annotations[BOUND_BY_CONTROLLER] = "yes"
    return new


def selected_claim(pvc: PVC, node_name: str) -> PVC:
    new = PVC()
    new.CopyFrom(pvc)
    new.metadata.annotations[SELECTED_NODE] = node_name
    return new


class BindingFailed(Exception):
    """The claims can no longer be bound as chosen: the pod must be scheduled again."""


def bindings_done(store: VolumeStore, pv_claims: Sequence[tuple[PVC, PV]],
                  provisions: Sequence[PVC], node_name: str,
                  written: Mapping[str, int] | None = None) -> bool:
    """Whether the API shows every chosen claim bound (Kubernetes' checkBindings);
    ``BindingFailed`` when a choice was undone. ``written`` holds the resourceVersions
    our own writes produced (``pv/<name>``, ``pvc/<ns>/<name>``): an informer object older
    than that has not seen our write yet, so it is waited for, not judged."""
    written = written or {}
    for pvc, pv in pv_claims:
        cur = store.informer_volume(pv.metadata.name)
        if cur is None:
            raise BindingFailed(f"persistentvolume {pv.metadata.name!r} was deleted")
        if resource_version(cur) < written.get(f"pv/{pv.metadata.name}", 0):
            return False
        ref = cur.spec.claim_ref
        if ref.name != pvc.metadata.name or ref.namespace != pvc.metadata.namespace:
            raise BindingFailed(f"persistentvolume {pv.metadata.name!r} was bound to "
                                f"another claim ({ref.namespace}/{ref.name})"
                                if ref.name else
                                f"persistentvolume {pv.metadata.name!r} was unbound")
        if not _claim_bound(store, pvc):
            return False
    for pvc in provisions:
        m = pvc.metadata
        claim = store.informer_claim(m.namespace, m.name)
        if claim is None:
            raise BindingFailed(f"persistentvolumeclaim {m.name!r} was deleted")
        if resource_version(claim) < written.get(f"pvc/{m.namespace}/{m.name}", 0):
            return False
        if not fully_bound(claim) and \
                claim.metadata.annotations.get(SELECTED_NODE) != node_name:
            # the provisioner gives a claim back by removing the annotation
            raise BindingFailed(f"selectedNode annotation reset for PVC {m.name!r}")
        if not _claim_bound(store, pvc):
            return False
    return True


def _claim_bound(store: VolumeStore, pvc: PVC) -> bool:
    cur = store.informer_claim(pvc.metadata.namespace, pvc.metadata.name)
    if cur is None:
        raise BindingFailed(f"persistentvolumeclaim {pvc.metadata.name!r} was deleted")
    if not fully_bound(cur):
        return False
    pv = store.informer_volume(cur.spec.volume_name)
    return pv is not None and pv.spec.claim_ref.uid == cur.metadata.uid


# -- the plugin ----------------------------------------------------------------------------


@dataclass
class VolumeState:
    bound: list[PVC]
    to_bind: list[PVC]
    by_node: dict[str, PodVolumes] = field(default_factory=dict)
    # what Reserve assumed, for Unreserve: volume names, (namespace, name) of claims
    assumed_volumes: list[str] = field(default_factory=list)
    assumed_claims: list[tuple[str, str]] = field(default_factory=list)
    # the chosen node's PodVolumes as Reserve assumed them (what PreBind writes)
    chosen: PodVolumes | None = None

    def clone(self) -> VolumeState:
        return self  # read-only after PreFilter except by_node, which a what-if may share


class VolumeBinding(PreFilterPlugin, FilterPlugin, ReservePlugin, PreBindPlugin):
    name = "VolumeBinding"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Handle | None = None) -> None:
        args = args or {}
        self.bind_timeout = float(args.get("bindTimeoutSeconds", DEFAULT_BIND_TIMEOUT))
        if self.bind_timeout <= 0:
            raise ValueError("bindTimeoutSeconds must be positive")
        self.handle = handle or Handle()

    @property
    def store(self) -> VolumeStore:
        return self.handle.volumes

    # -- filter --------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | PreFilterResult | None:
        claims = pod_claims(pod.pod)
        if not claims:
            return SKIP
        store = self.store
        bound: list[PVC] = []
        to_bind: list[PVC] = []
        immediate = False
        for name, ephemeral in claims:
            pvc = store.claim(pod.namespace, name)
            problem = claim_problem(pod.pod, name, ephemeral, pvc)
            if problem:
                return Status.unresolvable(problem)
            assert pvc is not None
            if fully_bound(pvc):
                bound.append(pvc)
            elif waits_for_consumer(pvc, store):
                to_bind.append(pvc)
            else:
                immediate = True
        if immediate:
            return Status.unresolvable(R_UNBOUND_IMMEDIATE)
        state.data[_STATE] = VolumeState(bound, to_bind)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        st: VolumeState = state.data[_STATE]
        found, reasons = find_pod_volumes(self.store, st.bound, st.to_bind, node.name,
                                          node.labels)
        if reasons:
            return Status.unresolvable(*reasons)
        st.by_node[node.name] = found
        return None

    # -- reserve -------------------------------------------------------------------------

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        st: VolumeState | None = state.data.get(_STATE)
        if st is None:
            return None
        chosen = st.by_node.get(node_name)
        if chosen is None:
            # The node was not filtered in this cycle (cannot happen for a chosen node).
            return Status.error(f"no volume decision for node {node_name}")
        store = self.store
        volumes: list[str] = []
        claims: list[tuple[str, str]] = []
        static: list[tuple[PVC, PV]] = []
        for pvc, pv in chosen.static:
            new = bound_volume(pv, pvc)
            store.assume_volume(new)
            volumes.append(pv.metadata.name)
            static.append((pvc, new))
        dynamic: list[PVC] = []
        for pvc in chosen.dynamic:
            new_pvc = selected_claim(pvc, node_name)
            store.assume_claim(new_pvc)
            claims.append((pvc.metadata.namespace, pvc.metadata.name))
            dynamic.append(new_pvc)
        st.assumed_volumes, st.assumed_claims = volumes, claims
        st.chosen = PodVolumes(static, dynamic)
        return None

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        st: VolumeState | None = state.data.get(_STATE)
        if st is None:
            return
        for name in st.assumed_volumes:
            self.store.restore_volume(name)
        for ns, name in st.assumed_claims:
            self.store.restore_claim(ns, name)
        st.assumed_volumes, st.assumed_claims = [], []
        st.chosen = None

    # -- pre-bind ------------------------------------------------------------------------

    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        st: VolumeState | None = state.data.get(_STATE)
        if st is None or st.chosen is None:
            return None
        chosen = st.chosen
        if not chosen.static and not chosen.dynamic:
            return None  # every claim already bound
        client = self.handle.client
        written: dict[str, int] = {}
        try:
            for _pvc, pv in chosen.static:
                out = await client.update(pv)
                written[f"pv/{pv.metadata.name}"] = resource_version(out)
            for pvc in chosen.dynamic:
                m = pvc.metadata
                cur = self.store.informer_claim(m.namespace, m.name)
                if cur is None or cur.metadata.annotations.get(SELECTED_NODE) != node_name:
                    out = await client.update(pvc)
                    written[f"pvc/{m.namespace}/{m.name}"] = resource_version(out)
        except errors.ApiError as e:
            return Status.error(f"binding volumes: {e}")
        store = self.store
        clock = self.handle.clock

        async def until_bound() -> None:
            while not bindings_done(store, chosen.static, chosen.dynamic, node_name, written):
                await store.wait_changed()

        try:
            await wait_for(clock, until_bound(), self.bind_timeout)
        except BindingFailed as e:
            return Status.error(f"binding volumes: {e}")
        except TimeoutError:
            return Status.error("binding volumes: timed out waiting for the claims to be "
                                "bound")
        return None
