"""API validation: every failing field of an object, with Kubernetes' paths and messages.

Owns :func:`validate`, which the apiserver calls after defaulting on create (``old`` None)
and on update (``old`` the stored object). It checks the object's metadata with the name
rule of its kind (most names are DNS-1123 subdomains; Namespace names are DNS-1123 labels,
Service names DNS-1035 labels, RBAC names URL path segments), then the kind's own rules:

- Pod and every pod template: ``validation_pod``;
- other core/v1 kinds: ``validation_core``;
- apps/v1 and batch/v1 workloads: ``validation_apps``;
- the small kinds of the other groups (RBAC, StorageClass, PriorityClass,
  PodDisruptionBudget, Lease): here.

Errors are collected, never raised, so that a user fixes a manifest in one round. The size
of the stored object and the server-set metadata (uid, resourceVersion...) are the
registry's business, not this module's. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import Message

from control.api import kinds, names
from control.api import labels as label_sel
from control.api.errors import FieldError
from control.api.fencing import STOP_AFTER_DISCONNECT, parse_stop_after
from control.api.pb import (
    apps_pb2,
    batch_pb2,
    certificates_pb2,
    coordination_pb2,
    core_pb2,
    discovery_pb2,
    networking_pb2,
    node_pb2,
    policy_pb2,
    rbac_pb2,
    scheduling_pb2,
    storage_pb2,
)
from control.apiserver import validation_apps as apps
from control.apiserver import validation_core as core
from control.apiserver.networkpolicy import validate as validate_network_policy
from control.apiserver.validation_certificates import validate_csr
from control.apiserver.validation_discovery import validate_endpoint_slice
from control.apiserver.validation_pod import (
    validate_pod_spec,
    validate_pod_update,
    validate_tolerations,
)
from control.apiserver.validation_util import (
    Errors,
    child,
    enum,
    forbidden,
    immutable,
    index,
    int_or_percent,
    invalid,
    messages,
    non_negative,
    positive,
    required,
    resource_list,
)

__all__ = ["validate"]

RBAC_GROUP = "rbac.authorization.k8s.io"
# Highest priority a user's PriorityClass may have; above it are the system classes.
HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_PRIORITY_CLASSES = {
    "system-cluster-critical": 2_000_000_000,
    "system-node-critical": 2_000_001_000,
}

# ---------------------------------------------------------------------------------------
# Per-kind validators for the small groups


def _validate_pod(pod: core_pb2.Pod, old: core_pb2.Pod | None) -> Errors:
    errs = validate_pod_spec(pod.spec, "spec")
    fence = pod.metadata.annotations.get(STOP_AFTER_DISCONNECT)
    if fence is not None:
        try:
            parse_stop_after(fence)
        except ValueError as e:
            errs.append(invalid(f"metadata.annotations[{STOP_AFTER_DISCONNECT}]", fence,
                                f"a duration such as 90s or 2m: {e}"))
    if old is not None:
        errs.extend(validate_pod_update(pod, old))
    return errs


def _validate_namespace(ns: core_pb2.Namespace, old: core_pb2.Namespace | None) -> Errors:
    errs: Errors = []
    for i, f in enumerate(ns.spec.finalizers):
        errs.extend(messages(index("spec.finalizers", i), f, names.is_qualified_name(f)))
    return errs


def _validate_service_account(
    sa: core_pb2.ServiceAccount, old: core_pb2.ServiceAccount | None
) -> Errors:
    errs: Errors = []
    for i, s in enumerate(sa.image_pull_secrets):
        if not s.name:
            errs.append(required(child(index("imagePullSecrets", i), "name"), ""))
    return errs


def _validate_policy_rules(rules: Sequence[rbac_pb2.PolicyRule], *, namespaced: bool) -> Errors:
    errs: Errors = []
    for i, r in enumerate(rules):
        p = index("rules", i)
        if not r.verbs:
            errs.append(required(child(p, "verbs"), "verbs must contain at least one value"))
        if r.non_resource_urls:
            if namespaced:
                errs.append(
                    invalid(
                        child(p, "nonResourceURLs"),
                        list(r.non_resource_urls),
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if r.api_groups or r.resources or r.resource_names:
                errs.append(
                    invalid(
                        child(p, "nonResourceURLs"),
                        list(r.non_resource_urls),
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not r.api_groups:
            errs.append(
                required(child(p, "apiGroups"), "resource rules must supply at least one api group")
            )
        if not r.resources:
            errs.append(
                required(child(p, "resources"), "resource rules must supply at least one resource")
            )
    return errs


def _validate_role(role: rbac_pb2.Role, old: rbac_pb2.Role | None) -> Errors:
    return _validate_policy_rules(role.rules, namespaced=True)


def _validate_cluster_role(role: rbac_pb2.ClusterRole, old: rbac_pb2.ClusterRole | None) -> Errors:
    errs = _validate_policy_rules(role.rules, namespaced=False)
    for i, sel in enumerate(role.aggregation_rule.cluster_role_selectors):
        errs.extend(
            label_sel.validate_label_selector(sel, index("aggregationRule.clusterRoleSelectors", i))
        )
    return errs


def _validate_binding(
    rb: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding,
    old: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding | None,
    *,
    cluster: bool,
) -> Errors:
    errs: Errors = []
    ref = rb.role_ref
    errs.extend(enum("roleRef.apiGroup", ref.api_group, (RBAC_GROUP,)))
    role_kinds = ("ClusterRole",) if cluster else ("Role", "ClusterRole")
    errs.extend(enum("roleRef.kind", ref.kind, role_kinds))
    if not ref.name:
        errs.append(required("roleRef.name", ""))
    else:
        errs.extend(
            messages("roleRef.name", ref.name, names.validate_path_segment_name(ref.name, False))
        )
    for i, s in enumerate(rb.subjects):
        p = index("subjects", i)
        if not s.name:
            errs.append(required(child(p, "name"), ""))
        if s.kind == "ServiceAccount":
            if s.api_group:
                errs.append(
                    invalid(child(p, "apiGroup"), s.api_group, 'must be "" for ServiceAccount')
                )
            if s.name:
                errs.extend(messages(child(p, "name"), s.name, names.is_dns1123_subdomain(s.name)))
            if cluster and not s.namespace:
                errs.append(required(child(p, "namespace"), ""))
        elif s.kind in ("User", "Group"):
            if s.api_group != RBAC_GROUP:
                errs.extend(enum(child(p, "apiGroup"), s.api_group, (RBAC_GROUP,)))
        else:
            errs.extend(enum(child(p, "kind"), s.kind, ("ServiceAccount", "User", "Group")))
    if old is not None and rb.role_ref != old.role_ref:
        errs.append(
            invalid(
                "roleRef",
                {"apiGroup": ref.api_group, "kind": ref.kind, "name": ref.name},
                "cannot change roleRef",
            )
        )
    return errs


def _validate_role_binding(rb: rbac_pb2.RoleBinding, old: rbac_pb2.RoleBinding | None) -> Errors:
    return _validate_binding(rb, old, cluster=False)


def _validate_cluster_role_binding(
    rb: rbac_pb2.ClusterRoleBinding, old: rbac_pb2.ClusterRoleBinding | None
) -> Errors:
    return _validate_binding(rb, old, cluster=True)


def _validate_storage_class(
    sc: storage_pb2.StorageClass, old: storage_pb2.StorageClass | None
) -> Errors:
    errs: Errors = []
    if not sc.provisioner:
        errs.append(required("provisioner", ""))
    else:
        errs.extend(
            messages("provisioner", sc.provisioner, names.is_qualified_name(sc.provisioner.lower()))
        )
    if sc.HasField("reclaim_policy"):
        errs.extend(enum("reclaimPolicy", sc.reclaim_policy, ("Delete", "Retain")))
    if sc.HasField("volume_binding_mode"):
        errs.extend(
            enum("volumeBindingMode", sc.volume_binding_mode, ("Immediate", "WaitForFirstConsumer"))
        )
    if old is not None:
        if dict(sc.parameters) != dict(old.parameters):
            errs.append(forbidden("parameters", "updates to parameters are forbidden."))
        if sc.provisioner != old.provisioner:
            errs.append(forbidden("provisioner", "updates to provisioner are forbidden."))
        if sc.reclaim_policy != old.reclaim_policy:
            errs.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
        if sc.volume_binding_mode != old.volume_binding_mode:
            errs.append(
                forbidden("volumeBindingMode", "updates to volumeBindingMode are forbidden.")
            )
    return errs


def _validate_runtime_class(
    rc: node_pb2.RuntimeClass, old: node_pb2.RuntimeClass | None
) -> Errors:
    errs: Errors = []
    if not rc.handler:
        errs.append(required("handler"))
    else:
        errs.extend(messages("handler", rc.handler, names.is_dns1123_label(rc.handler)))
    if rc.HasField("overhead"):
        _, overhead_errs = resource_list("overhead.podFixed", rc.overhead.pod_fixed)
        errs.extend(overhead_errs)
    if rc.HasField("scheduling"):
        for k, v in rc.scheduling.node_selector.items():
            errs.extend(messages("scheduling.nodeSelector", k, names.is_qualified_name(k)))
            errs.extend(messages("scheduling.nodeSelector", v, names.is_valid_label_value(v)))
        errs.extend(validate_tolerations(rc.scheduling.tolerations, "scheduling.tolerations"))
    if old is not None and rc.handler != old.handler:
        errs.append(immutable("handler", rc.handler))
    return errs


def _validate_priority_class(
    pc: scheduling_pb2.PriorityClass, old: scheduling_pb2.PriorityClass | None
) -> Errors:
    errs: Errors = []
    name = pc.metadata.name
    system_value = SYSTEM_PRIORITY_CLASSES.get(name)
    if system_value is not None:
        if pc.value != system_value:
            errs.append(invalid("value", pc.value, f"value of {name} must be {system_value}"))
    elif name.startswith("system-"):
        errs.append(
            forbidden("metadata.name", "priority class names with 'system-' prefix are reserved")
        )
    elif pc.value > HIGHEST_USER_PRIORITY:
        errs.append(
            forbidden(
                "value",
                f"maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}",
            )
        )
    if pc.HasField("preemption_policy"):
        errs.extend(
            enum("preemptionPolicy", pc.preemption_policy, ("PreemptLowerPriority", "Never"))
        )
    if old is not None:
        if pc.value != old.value:
            errs.append(forbidden("value", "may not be changed in an update."))
        if pc.preemption_policy != old.preemption_policy:
            errs.append(immutable("preemptionPolicy", pc.preemption_policy))
    return errs


def _validate_pdb(
    pdb: policy_pb2.PodDisruptionBudget, old: policy_pb2.PodDisruptionBudget | None
) -> Errors:
    spec = pdb.spec
    errs: Errors = []
    has_min = spec.HasField("min_available")
    has_max = spec.HasField("max_unavailable")
    if has_min and has_max:
        errs.append(invalid("spec", "", "minAvailable and maxUnavailable cannot be both set"))
    if has_min:
        errs.extend(int_or_percent("spec.minAvailable", spec.min_available, max_100=True))
    if has_max:
        errs.extend(int_or_percent("spec.maxUnavailable", spec.max_unavailable, max_100=True))
    if spec.HasField("selector"):
        errs.extend(label_sel.validate_label_selector(spec.selector, "spec.selector"))
    if spec.HasField("unhealthy_pod_eviction_policy"):
        errs.extend(
            enum(
                "spec.unhealthyPodEvictionPolicy",
                spec.unhealthy_pod_eviction_policy,
                ("IfHealthyBudget", "AlwaysAllow"),
            )
        )
    return errs


def _validate_lease(lease: coordination_pb2.Lease, old: coordination_pb2.Lease | None) -> Errors:
    spec = lease.spec
    errs: Errors = []
    if spec.HasField("lease_duration_seconds"):
        errs.extend(positive("spec.leaseDurationSeconds", spec.lease_duration_seconds))
    if spec.HasField("lease_transitions"):
        errs.extend(non_negative("spec.leaseTransitions", spec.lease_transitions))
    if spec.HasField("strategy"):
        errs.extend(enum("spec.strategy", spec.strategy, ("OldestEmulationVersion",)))
    return errs


# ---------------------------------------------------------------------------------------
# Dispatch

_Validator = Callable[[Any, Any], Errors]

def _entry(cls: type[Message], fn: Callable[..., Errors]) -> tuple[str, _Validator]:
    return cls.DESCRIPTOR.full_name, fn


_VALIDATORS: dict[str, _Validator] = dict(
    (
        _entry(core_pb2.Pod, _validate_pod),
        _entry(core_pb2.PodTemplate, core.validate_pod_template_kind),
        _entry(core_pb2.Namespace, _validate_namespace),
        _entry(core_pb2.Service, core.validate_service),
        _entry(core_pb2.Endpoints, core.validate_endpoints),
        _entry(discovery_pb2.EndpointSlice, validate_endpoint_slice),
        _entry(networking_pb2.NetworkPolicy, validate_network_policy),
        _entry(core_pb2.ConfigMap, core.validate_config_map),
        _entry(core_pb2.Secret, core.validate_secret),
        _entry(core_pb2.ServiceAccount, _validate_service_account),
        _entry(core_pb2.Event, core.validate_event),
        _entry(core_pb2.Node, core.validate_node),
        _entry(core_pb2.PersistentVolume, core.validate_persistent_volume),
        _entry(core_pb2.PersistentVolumeClaim, core.validate_pvc),
        _entry(core_pb2.ResourceQuota, core.validate_resource_quota),
        _entry(core_pb2.LimitRange, core.validate_limit_range),
        _entry(core_pb2.ReplicationController, core.validate_replication_controller),
        _entry(apps_pb2.Deployment, apps.validate_deployment),
        _entry(apps_pb2.ReplicaSet, apps.validate_replica_set),
        _entry(apps_pb2.DaemonSet, apps.validate_daemon_set),
        _entry(apps_pb2.StatefulSet, apps.validate_stateful_set),
        _entry(apps_pb2.ControllerRevision, apps.validate_controller_revision),
        _entry(batch_pb2.Job, apps.validate_job),
        _entry(batch_pb2.CronJob, apps.validate_cron_job),
        _entry(rbac_pb2.Role, _validate_role),
        _entry(rbac_pb2.ClusterRole, _validate_cluster_role),
        _entry(rbac_pb2.RoleBinding, _validate_role_binding),
        _entry(rbac_pb2.ClusterRoleBinding, _validate_cluster_role_binding),
        _entry(storage_pb2.StorageClass, _validate_storage_class),
        _entry(scheduling_pb2.PriorityClass, _validate_priority_class),
        _entry(node_pb2.RuntimeClass, _validate_runtime_class),
        _entry(policy_pb2.PodDisruptionBudget, _validate_pdb),
        _entry(coordination_pb2.Lease, _validate_lease),
        _entry(certificates_pb2.CertificateSigningRequest, validate_csr),
    )
)


def validate(obj: Message, old: Message | None = None) -> list[FieldError]:
    """Every failing field of ``obj`` (empty when valid); ``old`` is the stored object on
    update. ``obj`` must be a top-level kind (``KeyError`` otherwise)."""
    info = kinds.by_message(obj)
    o: Any = obj
    errs = names.validate_object_meta(
        o.metadata,
        info.namespaced,
        names.name_validator(info.kind),
        "metadata",
    )
    if old is not None:
        errs.extend(_validate_meta_update(o.metadata, old.metadata))  # type: ignore[attr-defined]
    fn = _VALIDATORS.get(obj.DESCRIPTOR.full_name)
    if fn is not None:
        errs.extend(fn(obj, old))
    return errs


def _validate_meta_update(new: Any, old: Any) -> Errors:
    """Identity fields never change (the registry carries them over; this is the net)."""
    errs: Errors = []
    for attr, json_name in (("name", "name"), ("namespace", "namespace"), ("uid", "uid")):
        if getattr(old, attr) and getattr(new, attr) != getattr(old, attr):
            errs.append(immutable(f"metadata.{json_name}", getattr(new, attr)))
    return errs
