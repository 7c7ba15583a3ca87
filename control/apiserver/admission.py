"""Admission: what the apiserver does to an object between decoding and storing it.

The chain (Kubernetes' order, simplified): namespace lifecycle (the namespace must exist and
not be terminating) -> per-kind preparation (reset status on create, keep status on update,
keep spec on status update) -> defaulting (with DefaultTolerationSeconds: new pods tolerate
the not-ready/unreachable NoExecute taints for 300 s unless they say otherwise) ->
validation; writes by a node first pass NodeRestriction
(:mod:`control.apiserver.noderestriction`: its own Node, labels and taints, mirror pods,
pods bound to it); a new pod naming a RuntimeClass must find it, and gets its overhead and
scheduling constraints (RuntimeClass admission), and its ServiceAccount's imagePullSecrets
when it names none and the token volume (:mod:`control.apiserver.serviceaccount_admission`);
new claims and volumes get their protection finalizers, a new claim naming
no StorageClass gets the default one (DefaultStorageClass), and a claim may
grow only when its StorageClass allows volume expansion; Roles and bindings pass RBAC's
escalation guard. Also the per-kind deletion rules (pods bound to a node terminate gracefully)
and the TTL of Events (a store lease shared by every Event created in the same ten
minutes, so that events expire without a lease each).

Concurrency: called from the registry on the event loop; holds only the event-lease cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from control.api import errors, kinds, storageutil
from control.api.quantity import QuantityError, parse_quantity
from control.apiserver import (
    authn,
    defaults,
    networkpolicy,
    noderestriction,
    serviceaccount_admission,
)
from control.apiserver import validation as validation
from control.apiserver.service_update import prepare_service_update

if TYPE_CHECKING:
    from control.apiserver.registry import Registry

EVENT_LEASE_BUCKET_SECONDS = 600
DEFAULT_POD_GRACE_SECONDS = 30
# DefaultTolerationSeconds: how long pods stay on a not-ready / unreachable node.
DEFAULT_NOT_READY_TOLERATION_SECONDS = 300
DEFAULT_UNREACHABLE_TOLERATION_SECONDS = 300
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
# StorageObjectInUseProtection: a claim in use by a pod, or a volume bound to a claim, is
# only removed once the protection controller takes the finalizer off
PROTECTION_FINALIZERS = {"persistentvolumeclaims": "kubernetes.io/pvc-protection",
                         "persistentvolumes": "kubernetes.io/pv-protection"}


class Admission:
    def __init__(self, registry: Registry, event_ttl_seconds: int = 3600,
                 default_not_ready_toleration_seconds: int =
                 DEFAULT_NOT_READY_TOLERATION_SECONDS,
                 default_unreachable_toleration_seconds: int =
                 DEFAULT_UNREACHABLE_TOLERATION_SECONDS) -> None:
        self.registry = registry
        self.event_ttl_seconds = event_ttl_seconds
        self.default_not_ready_toleration_seconds = default_not_ready_toleration_seconds
        self.default_unreachable_toleration_seconds = default_unreachable_toleration_seconds
        self._event_leases: dict[int, int] = {}
        # RBAC escalation prevention (resource, object, user, old), set by the service's wiring
        # once it has an authorizer; None: no check (the registry alone, in tests)
        self.rbac_guard: Callable[[str, Any, authn.UserInfo | None, Any], None] | None = None

    def check_namespace(self, info: kinds.KindInfo, namespace: str) -> None:
        if not info.namespaced:
            return
        ns = self.registry.cache.get("namespaces", f"/registry/namespaces/{namespace}")
        if ns is None:
            raise errors.NotFound(f'namespaces "{namespace}" not found')
        if ns.obj.metadata.HasField("deletion_timestamp") or ns.obj.status.phase == "Terminating":
            raise errors.Forbidden(
                f'{info.plural} is forbidden: unable to create new content in namespace '
                f'{namespace} because it is being terminated')

    def prepare_for_create(self, info: kinds.KindInfo, obj: Any) -> None:
        if info.plural == "namespaces":
            if not obj.spec.finalizers:
                obj.spec.finalizers.append("kubernetes")
            obj.status.Clear()
            obj.status.phase = "Active"
        elif info.plural == "pods":
            obj.status.Clear()
            obj.status.phase = "Pending"
        elif info.plural == "certificatesigningrequests":
            obj.ClearField("status")
            stamp_requester(obj)
        elif info.has_status and info.plural not in ("nodes", "persistentvolumes",
                                                     "persistentvolumeclaims", "events"):
            obj.ClearField("status")

    def prepare(self, info: kinds.KindInfo, new: Any, current: Any, *, status: bool) -> None:
        """Update (spec and metadata) or UpdateStatus (status): the other part is kept."""
        if status:
            self.prepare_for_status_update(info, new, current)
        else:
            self.prepare_for_update(info, new, current)

    def prepare_for_update(self, info: kinds.KindInfo, new: Any, current: Any) -> None:
        """Update never changes status."""
        if info.has_status:
            if current.HasField("status"):
                new.status.CopyFrom(current.status)
            else:
                new.ClearField("status")  # an empty status is not written as "status: {}"
        if info.plural in ("namespaces", "certificatesigningrequests"):
            new.spec.CopyFrom(current.spec)
        elif info.plural == "services":
            prepare_service_update(new, current)

    def prepare_for_status_update(self, info: kinds.KindInfo, new: Any, current: Any) -> None:
        """UpdateStatus changes status (and labels, annotations, finalizers) only."""
        if not info.has_status:
            raise errors.MethodNotAllowed(f"{info.plural} have no status subresource")
        status = type(new.status)()
        status.CopyFrom(new.status)
        spec_finalizers = list(new.spec.finalizers) if info.plural == "namespaces" else None
        meta = type(new.metadata)()
        meta.CopyFrom(new.metadata)
        new.CopyFrom(current)
        new.status.CopyFrom(status)
        new.metadata.labels.clear()
        new.metadata.labels.update(meta.labels)
        new.metadata.annotations.clear()
        new.metadata.annotations.update(meta.annotations)
        del new.metadata.finalizers[:]
        new.metadata.finalizers.extend(meta.finalizers)
        new.metadata.resource_version = meta.resource_version
        if spec_finalizers is not None:
            # the namespace controller finalizes a namespace through its status
            del new.spec.finalizers[:]
            new.spec.finalizers.extend(spec_finalizers)

    def admit_delete(self, info: kinds.KindInfo, current: Any) -> None:
        """A delete of the stored ``current``: a node deletes only its own pods."""
        user = authn.current_user.get()
        node = user.node_name() if user is not None else None
        if node is not None and info.plural == "pods":
            noderestriction.admit_pod_delete(node, current)

    def prepare_for_delete(self, info: kinds.KindInfo, obj: Any) -> None:
        if info.plural == "namespaces":
            obj.status.phase = "Terminating"

    def _lookup(self, resource: str, namespace: str, name: str) -> Any:
        key = f"/registry/{resource}/{namespace}/{name}" if namespace else (
            f"/registry/{resource}/{name}")
        found = self.registry.cache.get(resource, key)
        return found.obj if found is not None else None

    def admit(self, info: kinds.KindInfo, obj: Any, old: Any) -> None:
        user = authn.current_user.get()
        node = user.node_name() if user is not None else None
        if node is not None:
            # before defaulting: what the node itself wrote is judged
            noderestriction.admit(node, info.plural, obj, old, self._lookup)
        defaults.apply_defaults(obj)
        if old is None and info.plural in PROTECTION_FINALIZERS:
            add_finalizer(obj, PROTECTION_FINALIZERS[info.plural])
        if old is None and info.plural == "persistentvolumeclaims":
            self._default_storage_class(obj)
        if old is not None and info.plural == "persistentvolumeclaims":
            self._check_resize(obj, old)
        if info.plural == "networkpolicies":
            networkpolicy.default(obj)
            networkpolicy.mark_not_enforced(obj, self.registry.now())
        if self.rbac_guard is not None and info.group == "rbac.authorization.k8s.io":
            self.rbac_guard(info.plural, obj, user, old)
        if info.plural == "pods" and old is None:
            add_default_tolerations(obj, self.default_not_ready_toleration_seconds,
                                    self.default_unreachable_toleration_seconds)
            if obj.spec.HasField("runtime_class_name"):
                name = obj.spec.runtime_class_name
                found = self.registry.cache.get("runtimeclasses",
                                                f"/registry/runtimeclasses/{name}")
                if found is None:
                    raise errors.Forbidden(f'pod rejected: RuntimeClass "{name}" not found')
                apply_runtime_class(obj, found.obj)
            account = self._service_account_of(obj)
            if account is not None and not obj.spec.image_pull_secrets:
                obj.spec.image_pull_secrets.extend(account.image_pull_secrets)
            serviceaccount_admission.admit_pod(obj, account)

    def _default_storage_class(self, claim: Any) -> None:
        """DefaultStorageClass admission: a claim that names no class (the field absent, not
        "") gets the default one, the newest when several are marked default."""
        if claim.spec.HasField("storage_class_name"):
            return
        found = storageutil.default_class(c.obj for c in self.registry.cache.scan("storageclasses"))
        if found is not None:
            claim.spec.storage_class_name = found.metadata.name

    def _check_resize(self, new: Any, old: Any) -> None:
        """A claim may grow only when its StorageClass allows volume expansion (Kubernetes'
        PersistentVolumeClaimResize admission); shrinking is validation's refusal."""
        want = new.spec.resources.requests.get("storage")
        had = old.spec.resources.requests.get("storage")
        if want is None or had is None or want.string == had.string:
            return
        try:
            grows = parse_quantity(want.string) > parse_quantity(had.string)
        except QuantityError:
            return  # validation names the malformed quantity
        if not grows:
            return
        name = new.spec.storage_class_name
        found = self.registry.cache.get("storageclasses", f"/registry/storageclasses/{name}"
                                        ) if name else None
        if found is None or not found.obj.allow_volume_expansion:
            raise errors.Forbidden(
                f'persistentvolumeclaims "{new.metadata.name}" is forbidden: only dynamically '
                "provisioned pvc can be resized and the storageclass that provisions the pvc "
                "must support resize")

    def _service_account_of(self, pod: Any) -> Any | None:
        """The pod's ServiceAccount, or None while it does not exist (not refused here:
        the default account is made by a controller just after its namespace)."""
        name = pod.spec.service_account_name or serviceaccount_admission.DEFAULT_SERVICE_ACCOUNT
        found = self.registry.cache.get(
            "serviceaccounts", f"/registry/serviceaccounts/{pod.metadata.namespace}/{name}")
        return found.obj if found is not None else None

    def validate(self, info: kinds.KindInfo, obj: Any, old: Any) -> list[errors.FieldError]:
        return validation.validate(obj, old)

    def grace_period(self, info: kinds.KindInfo, current: Any, requested: int | None) -> int:
        """Seconds a delete waits: pods bound to a node and still running terminate
        gracefully; everything else goes at once."""
        if info.plural != "pods":
            return 0
        if not current.spec.node_name or current.status.phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return requested
        if current.spec.HasField("termination_grace_period_seconds"):
            return int(current.spec.termination_grace_period_seconds)
        return DEFAULT_POD_GRACE_SECONDS

    async def lease_for(self, info: kinds.KindInfo) -> int:
        if info.plural != "events":
            return 0
        bucket = int(time.time()) // EVENT_LEASE_BUCKET_SECONDS
        lease = self._event_leases.get(bucket)
        if lease is None:
            lease = await self.registry.store.grant_lease(
                self.event_ttl_seconds + EVENT_LEASE_BUCKET_SECONDS)
            self._event_leases = {bucket: lease}
        return lease


def add_finalizer(obj: Any, name: str) -> None:
    if name not in obj.metadata.finalizers:
        obj.metadata.finalizers.append(name)


def apply_runtime_class(pod: Any, rc: Any) -> None:
    """RuntimeClass admission on a new pod: spec.overhead from the class's podFixed (a pod
    that sets a different overhead is refused), the class's scheduling nodeSelector merged
    into the pod's (a conflicting value is refused) and its tolerations added."""
    fixed = dict(rc.overhead.pod_fixed) if rc.HasField("overhead") else {}
    if pod.spec.overhead:
        if {k: v.string for k, v in pod.spec.overhead.items()} != {
                k: v.string for k, v in fixed.items()}:
            raise errors.Forbidden("pod rejected: Pod's Overhead doesn't match RuntimeClass's "
                                   "defined Overhead")
    else:
        for k, v in fixed.items():
            pod.spec.overhead[k].CopyFrom(v)
    if not rc.HasField("scheduling"):
        return
    for k, v in rc.scheduling.node_selector.items():
        have = pod.spec.node_selector.get(k)
        if have is not None and have != v:
            raise errors.Forbidden(
                f"pod rejected: conflict: runtimeClass.scheduling.nodeSelector[{k}] = {v}; "
                f"pod.spec.nodeSelector[{k}] = {have}")
        pod.spec.node_selector[k] = v
    for t in rc.scheduling.tolerations:
        if t not in pod.spec.tolerations:
            pod.spec.tolerations.append(t)


def stamp_requester(csr: Any) -> None:
    """A CSR records who asked for it, from the request's identity, never from the
    client (the approver trusts these fields)."""
    user = authn.current_user.get()
    spec = csr.spec
    spec.username = user.name if user else ""
    spec.uid = user.uid if user else ""
    del spec.groups[:]
    spec.groups.extend(user.groups if user else [])
    spec.extra.clear()


def add_default_tolerations(pod: Any, not_ready_seconds: int, unreachable_seconds: int) -> None:
    """DefaultTolerationSeconds: a new pod tolerates the not-ready and unreachable
    NoExecute taints for a while (so a short blip does not evict it), unless it already
    says how long it tolerates them."""
    for key, seconds in ((TAINT_NOT_READY, not_ready_seconds),
                         (TAINT_UNREACHABLE, unreachable_seconds)):
        if any(t.key in (key, "") and t.effect in ("NoExecute", "")
               for t in pod.spec.tolerations):
            continue
        pod.spec.tolerations.add(key=key, operator="Exists", effect="NoExecute",
                                 toleration_seconds=seconds)
