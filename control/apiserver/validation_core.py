"""Validation of the core (v1) kinds other than Pod: Service, Endpoints, ConfigMap, Secret,
Node, PersistentVolume(Claim), Event, ResourceQuota, LimitRange, ReplicationController.

Each ``validate_<kind>(obj, old)`` returns every failing field of the kind's own content
(metadata is checked by the dispatcher in ``validation.py``); ``old`` is the stored object
on update, None on create. Rules and messages follow Kubernetes' core validation.
"""

from __future__ import annotations

from collections.abc import Mapping

from control.api import labels as label_sel
from control.api import names
from control.api.pb import core_pb2, meta_pb2
from control.apiserver.validation_container import PROTOCOLS
from control.apiserver.validation_pod import (
    TAINT_EFFECTS,
    validate_node_selector,
    validate_pod_template,
)
from control.apiserver.validation_util import (
    Errors,
    child,
    cidr_errors,
    config_map_key_errors,
    duplicate,
    enum,
    forbidden,
    immutable,
    index,
    int_or_string_value,
    invalid,
    ip_errors,
    is_config_map_key,
    key,
    messages,
    non_negative,
    not_supported,
    port_name_errors,
    port_num_errors,
    required,
    resource_list,
    selector_matches_template,
    too_long,
)
from control.apiserver.validation_volume import IN_TREE_SOURCES, validate_in_tree_source

# One MiB: the most a ConfigMap or Secret may hold (it must fit in one store value).
MAX_DATA_SIZE = 1024 * 1024
# The service proxy forwards TCP and UDP; SCTP is refused rather than silently dropped.
SERVICE_PROTOCOLS = ("TCP", "UDP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Retain", "Delete", "Recycle")
VOLUME_MODES = ("Block", "Filesystem")

# ---------------------------------------------------------------------------------------
# Service


def _is_headless(spec: core_pb2.ServiceSpec) -> bool:
    return spec.cluster_ip == "None"


def validate_service(svc: core_pb2.Service, old: core_pb2.Service | None) -> Errors:
    spec = svc.spec
    errs: Errors = []
    errs.extend(enum("spec.type", spec.type, SERVICE_TYPES))
    external_name = spec.type == "ExternalName"
    if not spec.ports and not _is_headless(spec) and not external_name:
        errs.append(required("spec.ports", ""))
    errs.extend(_validate_service_ports(spec))
    if external_name:
        if spec.cluster_ip:
            errs.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
        if not spec.external_name:
            errs.append(required("spec.externalName", ""))
        else:
            # A DNS name, possibly fully qualified with a trailing dot.
            host = spec.external_name.removesuffix(".")
            errs.extend(
                messages("spec.externalName", spec.external_name, names.is_dns1123_subdomain(host))
            )
    elif spec.cluster_ip and not _is_headless(spec):
        if ip_errors(spec.cluster_ip):
            errs.append(
                invalid(
                    "spec.clusterIP",
                    spec.cluster_ip,
                    "must be empty, 'None', or a valid IP address",
                )
            )
    if spec.cluster_ips and spec.cluster_ip and spec.cluster_ips[0] != spec.cluster_ip:
        errs.append(
            invalid("spec.clusterIPs", list(spec.cluster_ips), "first value must match `clusterIP`")
        )
    errs.extend(enum("spec.sessionAffinity", spec.session_affinity, ("None", "ClientIP")))
    if spec.session_affinity == "ClientIP" and spec.session_affinity_config.client_ip.HasField(
        "timeout_seconds"
    ):
        t = spec.session_affinity_config.client_ip.timeout_seconds
        if not 0 < t <= 86400:
            errs.append(
                invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    t,
                    "must be greater than 0 and less than 86400",
                )
            )
    errs.extend(names.validate_labels(spec.selector, "spec.selector"))
    if spec.external_traffic_policy:
        if spec.type not in ("NodePort", "LoadBalancer"):
            errs.append(
                invalid(
                    "spec.externalTrafficPolicy",
                    spec.external_traffic_policy,
                    "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
                )
            )
        else:
            errs.extend(
                enum(
                    "spec.externalTrafficPolicy", spec.external_traffic_policy, ("Cluster", "Local")
                )
            )
    if spec.HasField("internal_traffic_policy"):
        errs.extend(
            enum("spec.internalTrafficPolicy", spec.internal_traffic_policy, ("Cluster", "Local"))
        )
    if spec.HasField("ip_family_policy"):
        errs.extend(
            enum(
                "spec.ipFamilyPolicy",
                spec.ip_family_policy,
                ("SingleStack", "PreferDualStack", "RequireDualStack"),
            )
        )
    for i, fam in enumerate(spec.ip_families):
        errs.extend(enum(index("spec.ipFamilies", i), fam, ("IPv4", "IPv6")))
    for i, ip in enumerate(spec.external_ips):
        errs.extend(messages(index("spec.externalIPs", i), ip, ip_errors(ip)))
    for i, cidr in enumerate(spec.load_balancer_source_ranges):
        errs.extend(messages(index("spec.loadBalancerSourceRanges", i), cidr, cidr_errors(cidr)))

    if old is not None:
        # A cluster IP, once allocated, is the service's identity for its clients; it goes
        # away only when the service becomes ExternalName.
        o = old.spec.cluster_ip
        if (
            o
            and spec.type != "ExternalName"
            and old.spec.type != "ExternalName"
            and spec.cluster_ip != o
        ):
            errs.append(immutable("spec.clusterIP", spec.cluster_ip))
    return errs


def _validate_service_ports(spec: core_pb2.ServiceSpec) -> Errors:
    errs: Errors = []
    names_seen: set[str] = set()
    ports_seen: set[tuple[int, str]] = set()
    node_ports_seen: set[tuple[int, str]] = set()
    several = len(spec.ports) > 1
    for i, port in enumerate(spec.ports):
        p = index("spec.ports", i)
        if not port.name:
            if several:
                errs.append(required(child(p, "name"), ""))
        else:
            msgs = names.is_dns1123_label(port.name)
            if msgs:
                errs.extend(messages(child(p, "name"), port.name, msgs))
            elif port.name in names_seen:
                errs.append(duplicate(child(p, "name"), port.name))
            names_seen.add(port.name)
        errs.extend(messages(child(p, "port"), port.port, port_num_errors(port.port)))
        if port.protocol == "SCTP":
            e = not_supported(child(p, "protocol"), port.protocol, SERVICE_PROTOCOLS)
            errs.append(type(e)(e.path, e.message
                                + " (Flotilla's service proxy does not forward SCTP)"))
        else:
            errs.extend(enum(child(p, "protocol"), port.protocol, SERVICE_PROTOCOLS))
        tp = int_or_string_value(port.target_port)
        tp_path = child(p, "targetPort")
        if isinstance(tp, int):
            errs.extend(messages(tp_path, tp, port_num_errors(tp)))
        elif isinstance(tp, str) and tp:
            errs.extend(messages(tp_path, tp, port_name_errors(tp)))
        elif spec.type != "ExternalName":
            errs.append(required(tp_path, ""))
        k = (port.port, port.protocol)
        if k in ports_seen:
            errs.append(duplicate(p, f"{port.port}/{port.protocol}"))
        ports_seen.add(k)
        if port.node_port:
            np_path = child(p, "nodePort")
            if spec.type not in ("NodePort", "LoadBalancer"):
                errs.append(forbidden(np_path, f"may not be used when `type` is '{spec.type}'"))
            else:
                # whether it lies in --service-node-port-range is the allocator's to say
                errs.extend(messages(np_path, port.node_port, port_num_errors(port.node_port)))
            nk = (port.node_port, port.protocol)
            if nk in node_ports_seen:
                errs.append(duplicate(np_path, port.node_port))
            node_ports_seen.add(nk)
    return errs


# ---------------------------------------------------------------------------------------
# Endpoints


def validate_endpoints(ep: core_pb2.Endpoints, old: core_pb2.Endpoints | None) -> Errors:
    errs: Errors = []
    for si, subset in enumerate(ep.subsets):
        sp = index("subsets", si)
        if not subset.addresses and not subset.not_ready_addresses:
            errs.append(required(sp, "must specify `addresses` or `notReadyAddresses`"))
        for group, json_name in (
            (subset.addresses, "addresses"),
            (subset.not_ready_addresses, "notReadyAddresses"),
        ):
            for ai, addr in enumerate(group):
                ap = index(child(sp, json_name), ai)
                if not addr.ip:
                    errs.append(required(child(ap, "ip"), ""))
                else:
                    errs.extend(messages(child(ap, "ip"), addr.ip, ip_errors(addr.ip)))
                if addr.hostname:
                    errs.extend(
                        messages(
                            child(ap, "hostname"),
                            addr.hostname,
                            names.is_dns1123_label(addr.hostname),
                        )
                    )
        several = len(subset.ports) > 1
        seen: set[str] = set()
        for pi, port in enumerate(subset.ports):
            pp = index(child(sp, "ports"), pi)
            if port.name:
                msgs = names.is_dns1123_label(port.name)
                if msgs:
                    errs.extend(messages(child(pp, "name"), port.name, msgs))
                elif port.name in seen:
                    errs.append(duplicate(child(pp, "name"), port.name))
                seen.add(port.name)
            elif several:
                errs.append(required(child(pp, "name"), ""))
            errs.extend(messages(child(pp, "port"), port.port, port_num_errors(port.port)))
            errs.extend(enum(child(pp, "protocol"), port.protocol, PROTOCOLS))
    return errs


# ---------------------------------------------------------------------------------------
# ConfigMap and Secret


def _validate_data_keys(path: str, keys: list[str]) -> Errors:
    errs: Errors = []
    for k in keys:
        if not is_config_map_key(k):
            errs.extend(messages(path, k, config_map_key_errors(k)))
    return errs


def validate_config_map(cm: core_pb2.ConfigMap, old: core_pb2.ConfigMap | None) -> Errors:
    data, binary = cm.data, cm.binary_data
    keys = sorted(data)
    errs = _validate_data_keys("data", keys)
    size = sum(map(len, keys)) + sum(len(v.encode()) for v in data.values())
    if binary:
        errs.extend(_validate_data_keys("binaryData", sorted(binary)))
        for k in sorted(set(data) & set(binary)):
            errs.append(invalid("data", k, "duplicate of key present in binaryData"))
        size += sum(len(k) + len(v) for k, v in binary.items())
    if size > MAX_DATA_SIZE:
        errs.append(too_long("", MAX_DATA_SIZE))
    if old is not None and old.HasField("immutable") and old.immutable:
        errs.extend(_immutable_data(cm.HasField("immutable") and cm.immutable))
        if dict(cm.data) != dict(old.data):
            errs.append(forbidden("data", "field is immutable when `immutable` is set"))
        if dict(cm.binary_data) != dict(old.binary_data):
            errs.append(forbidden("binaryData", "field is immutable when `immutable` is set"))
    return errs


def _immutable_data(still_immutable: bool) -> Errors:
    if still_immutable:
        return []
    return [forbidden("immutable", "field is immutable when `immutable` is set")]


# Secret types and the keys each requires in data.
_SECRET_REQUIRED_KEYS: Mapping[str, tuple[str, ...]] = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(secret: core_pb2.Secret, old: core_pb2.Secret | None) -> Errors:
    errs = _validate_data_keys("data", sorted(secret.data))
    errs.extend(_validate_data_keys("stringData", sorted(secret.string_data)))
    size = sum(len(k) + len(v) for k, v in secret.data.items())
    size += sum(len(k) + len(v.encode()) for k, v in secret.string_data.items())
    if size > MAX_DATA_SIZE:
        errs.append(too_long("data", MAX_DATA_SIZE))
    # stringData is write-only: merged into data before this check in Kubernetes.
    keys = set(secret.data) | set(secret.string_data)
    for k in _SECRET_REQUIRED_KEYS.get(secret.type, ()):
        if k not in keys:
            errs.append(required(key("data", k), ""))
    if secret.type == "kubernetes.io/service-account-token":
        if not secret.metadata.annotations.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]", ""))
    elif secret.type == "kubernetes.io/basic-auth":
        if "username" not in keys and "password" not in keys:
            errs.append(required("data[username]", "either `username` or `password` is required"))
    if old is not None:
        if secret.type != old.type:
            errs.append(immutable("type", secret.type))
        if old.HasField("immutable") and old.immutable:
            errs.extend(_immutable_data(secret.HasField("immutable") and secret.immutable))
            if dict(secret.data) != dict(old.data) or secret.string_data:
                errs.append(forbidden("data", "field is immutable when `immutable` is set"))
    return errs


# ---------------------------------------------------------------------------------------
# Node


def validate_node(node: core_pb2.Node, old: core_pb2.Node | None) -> Errors:
    errs: Errors = []
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(node.spec.taints):
        p = index("spec.taints", i)
        errs.extend(messages(child(p, "key"), t.key, names.is_qualified_name(t.key)))
        if t.value:
            errs.extend(messages(child(p, "value"), t.value, names.is_valid_label_value(t.value)))
        errs.extend(enum(child(p, "effect"), t.effect, TAINT_EFFECTS))
        if (t.key, t.effect) in seen:
            errs.append(duplicate(child(p, "effect"), t.effect))
        seen.add((t.key, t.effect))
    if node.spec.pod_cidr:
        errs.extend(messages("spec.podCIDR", node.spec.pod_cidr, cidr_errors(node.spec.pod_cidr)))
    for i, cidr in enumerate(node.spec.pod_cidrs):
        errs.extend(messages(index("spec.podCIDRs", i), cidr, cidr_errors(cidr)))
    _, cap_errs = resource_list("status.capacity", node.status.capacity)
    errs.extend(cap_errs)
    _, alloc_errs = resource_list("status.allocatable", node.status.allocatable)
    errs.extend(alloc_errs)
    if old is not None:
        # Once allocated, a node's pod range is what routes point at.
        if old.spec.pod_cidr and node.spec.pod_cidr != old.spec.pod_cidr:
            errs.append(
                forbidden(
                    "spec.podCIDR", 'node updates may not change podCIDR except from "" to valid'
                )
            )
    return errs


# ---------------------------------------------------------------------------------------
# PersistentVolume and PersistentVolumeClaim

_PV_SOURCES = (
    "host_path",
    "nfs",
    "local",
    "csi",
    "iscsi",
    "fc",
    "gce_persistent_disk",
    "aws_elastic_block_store",
    "cinder",
    "azure_disk",
    "azure_file",
    "cephfs",
    "rbd",
    "glusterfs",
    "flocker",
    "quobyte",
    "portworx_volume",
    "scale_io",
    "storageos",
    "vsphere_volume",
    "photon_persistent_disk",
    "flex_volume",
)


def _access_modes(path: str, modes: list[str]) -> Errors:
    if not modes:
        return [required(path, "")]
    errs: Errors = []
    for m in modes:
        if m not in ACCESS_MODES:
            errs.append(not_supported(path, m, ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _storage_quantity(path: str, resources: Mapping[str, meta_pb2.Quantity]) -> Errors:
    values, errs = resource_list(path, resources)
    storage = values.get("storage")
    if "storage" in resources and storage is not None and storage <= 0:
        errs.append(
            invalid(key(path, "storage"), resources["storage"].string, "must be greater than zero")
        )
    return errs


def validate_persistent_volume(
    pv: core_pb2.PersistentVolume, old: core_pb2.PersistentVolume | None
) -> Errors:
    spec = pv.spec
    errs = _access_modes("spec.accessModes", list(spec.access_modes))
    if not spec.capacity:
        errs.append(required("spec.capacity", ""))
    elif "storage" not in spec.capacity or len(spec.capacity) > 1:
        errs.append(not_supported("spec.capacity", sorted(spec.capacity), ("storage",)))
    errs.extend(_storage_quantity("spec.capacity", spec.capacity))
    present = [s for s in _PV_SOURCES if spec.HasField(s)]
    if not present:
        errs.append(required("spec", "must specify a volume type"))
    elif len(present) > 1:
        errs.append(forbidden("spec", "may not specify more than 1 volume type"))
    if spec.HasField("host_path") and not spec.host_path.path:
        errs.append(required("spec.hostPath.path", ""))
    for source in present[:1]:
        if source in IN_TREE_SOURCES:
            json_name = core_pb2.PersistentVolumeSpec.DESCRIPTOR.fields_by_name[source].json_name
            errs.extend(validate_in_tree_source(getattr(spec, source), source,
                                                f"spec.{json_name}"))
    if spec.HasField("local"):
        if not spec.local.path:
            errs.append(required("spec.local.path", ""))
        if not spec.HasField("node_affinity"):
            errs.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    if spec.HasField("nfs"):
        if not spec.nfs.server:
            errs.append(required("spec.nfs.server", ""))
        if not spec.nfs.path:
            errs.append(required("spec.nfs.path", ""))
    if spec.HasField("csi"):
        if not spec.csi.driver:
            errs.append(required("spec.csi.driver", ""))
        if not spec.csi.volume_handle:
            errs.append(required("spec.csi.volumeHandle", ""))
    errs.extend(
        enum(
            "spec.persistentVolumeReclaimPolicy",
            spec.persistent_volume_reclaim_policy,
            RECLAIM_POLICIES,
        )
    )
    if spec.HasField("volume_mode"):
        errs.extend(enum("spec.volumeMode", spec.volume_mode, VOLUME_MODES))
    if spec.storage_class_name:
        errs.extend(
            messages(
                "spec.storageClassName",
                spec.storage_class_name,
                names.is_dns1123_subdomain(spec.storage_class_name),
            )
        )
    if spec.HasField("node_affinity") and spec.node_affinity.HasField("required"):
        errs.extend(
            validate_node_selector(spec.node_affinity.required, "spec.nodeAffinity.required")
        )
    if old is not None:
        for name, json_name in (("volume_mode", "volumeMode"),):
            if getattr(spec, name) != getattr(old.spec, name):
                errs.append(immutable(f"spec.{json_name}", getattr(spec, name)))
        for s in _PV_SOURCES:
            if old.spec.HasField(s) and getattr(spec, s) != getattr(old.spec, s):
                errs.append(
                    forbidden(
                        "spec.persistentvolumesource",
                        "spec.persistentvolumesource is immutable after creation",
                    )
                )
                break
    return errs


def validate_pvc_spec(spec: core_pb2.PersistentVolumeClaimSpec, path: str) -> Errors:
    errs = _access_modes(child(path, "accessModes"), list(spec.access_modes))
    if spec.HasField("selector"):
        errs.extend(label_sel.validate_label_selector(spec.selector, child(path, "selector")))
    res_path = child(path, "resources")
    if "storage" not in spec.resources.requests:
        errs.append(required(key(res_path, "storage"), ""))
    errs.extend(_storage_quantity(child(res_path, "requests"), spec.resources.requests))
    _, lim_errs = resource_list(child(res_path, "limits"), spec.resources.limits)
    errs.extend(lim_errs)
    if spec.HasField("volume_mode"):
        errs.extend(enum(child(path, "volumeMode"), spec.volume_mode, VOLUME_MODES))
    if spec.HasField("storage_class_name") and spec.storage_class_name:
        errs.extend(
            messages(
                child(path, "storageClassName"),
                spec.storage_class_name,
                names.is_dns1123_subdomain(spec.storage_class_name),
            )
        )
    return errs


def validate_pvc(
    pvc: core_pb2.PersistentVolumeClaim, old: core_pb2.PersistentVolumeClaim | None
) -> Errors:
    errs = validate_pvc_spec(pvc.spec, "spec")
    if old is not None:
        # Only a size increase and the binding (volumeName "" -> name) may change.
        a, b = core_pb2.PersistentVolumeClaimSpec(), core_pb2.PersistentVolumeClaimSpec()
        a.CopyFrom(pvc.spec)
        b.CopyFrom(old.spec)
        for s in (a, b):
            s.resources.ClearField("requests")
            s.ClearField("volume_attributes_class_name")
        if not old.spec.volume_name:
            a.ClearField("volume_name")
            b.ClearField("volume_name")
        if not old.spec.HasField("storage_class_name"):
            # a claim created with no class may be given the default one later
            # (Kubernetes' retroactive default StorageClass assignment)
            a.ClearField("storage_class_name")
            b.ClearField("storage_class_name")
        if a != b:
            errs.append(
                forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and "
                    "volumeAttributesClassName for bound claims",
                )
            )
    return errs


# ---------------------------------------------------------------------------------------
# Event, ResourceQuota, LimitRange


def validate_event(ev: core_pb2.Event, old: core_pb2.Event | None) -> Errors:
    errs: Errors = []
    if not ev.HasField("involved_object"):
        return [required("involvedObject", "")]
    io = ev.involved_object
    if not io.kind:
        errs.append(required("involvedObject.kind", ""))
    if not io.name:
        errs.append(required("involvedObject.name", ""))
    if io.namespace and ev.metadata.namespace and io.namespace != ev.metadata.namespace:
        errs.append(
            invalid("involvedObject.namespace", io.namespace, "does not match event.namespace")
        )
    if ev.type:
        errs.extend(enum("type", ev.type, ("Normal", "Warning")))
    if ev.count < 0:
        errs.extend(non_negative("count", ev.count))
    return errs


_QUOTA_SCOPES = (
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
)


def validate_resource_quota(
    rq: core_pb2.ResourceQuota, old: core_pb2.ResourceQuota | None
) -> Errors:
    _, errs = resource_list("spec.hard", rq.spec.hard)
    for i, scope in enumerate(rq.spec.scopes):
        errs.extend(enum(index("spec.scopes", i), scope, _QUOTA_SCOPES))
    for i, expr in enumerate(rq.spec.scope_selector.match_expressions):
        p = index("spec.scopeSelector.matchExpressions", i)
        errs.extend(enum(child(p, "scopeName"), expr.scope_name, _QUOTA_SCOPES))
        errs.extend(
            enum(child(p, "operator"), expr.operator, ("In", "NotIn", "Exists", "DoesNotExist"))
        )
    return errs


def validate_limit_range(lr: core_pb2.LimitRange, old: core_pb2.LimitRange | None) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, item in enumerate(lr.spec.limits):
        p = index("spec.limits", i)
        errs.extend(
            enum(child(p, "type"), item.type, ("Pod", "Container", "PersistentVolumeClaim"))
        )
        if item.type in seen:
            errs.append(duplicate(child(p, "type"), item.type))
        seen.add(item.type)
        lists = {}
        for json_name, rl in (
            ("max", item.max),
            ("min", item.min),
            ("default", item.default),
            ("defaultRequest", item.default_request),
        ):
            values, l_errs = resource_list(child(p, json_name), rl)
            errs.extend(l_errs)
            lists[json_name] = values
        if item.type == "Pod" and (item.default or item.default_request):
            errs.append(forbidden(child(p, "default"), "may not be specified when `type` is 'Pod'"))
        # min <= defaultRequest <= default <= max, per resource.
        order = ("min", "defaultRequest", "default", "max")
        for a_i, a in enumerate(order):
            for b in order[a_i + 1 :]:
                for res, av in lists[a].items():
                    bv = lists[b].get(res)
                    if bv is not None and av > bv:
                        errs.append(
                            invalid(
                                key(child(p, a), res),
                                str(av),
                                f"{a} value {_q(item, a, res)} is greater than {b} value {_q(item, b, res)}",
                            )
                        )
    return errs


def _q(item: core_pb2.LimitRangeItem, field: str, res: str) -> str:
    attr = {"defaultRequest": "default_request"}.get(field, field)
    rl: Mapping[str, meta_pb2.Quantity] = getattr(item, attr)
    return rl[res].string


# ---------------------------------------------------------------------------------------
# ReplicationController and PodTemplate


def validate_replication_controller(
    rc: core_pb2.ReplicationController, old: core_pb2.ReplicationController | None
) -> Errors:
    spec = rc.spec
    errs: Errors = []
    if spec.HasField("replicas"):
        errs.extend(non_negative("spec.replicas", spec.replicas))
    errs.extend(non_negative("spec.minReadySeconds", spec.min_ready_seconds))
    if not spec.selector:
        errs.append(required("spec.selector", ""))
    else:
        errs.extend(names.validate_labels(spec.selector, "spec.selector"))
    if not spec.HasField("template"):
        errs.append(required("spec.template", ""))
        return errs
    if spec.selector:
        sel = meta_pb2.LabelSelector(match_labels=dict(spec.selector))
        for e in selector_matches_template(
            sel, spec.template.metadata.labels, "spec.template.metadata.labels"
        ):
            errs.append(
                invalid(
                    e.path,
                    dict(spec.template.metadata.labels),
                    "`selector` does not match template `labels`",
                )
            )
    errs.extend(validate_pod_template(spec.template, "spec.template", restart_policies=("Always",)))
    if spec.template.spec.HasField("active_deadline_seconds"):
        errs.append(
            forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicationController is not Supported",
            )
        )
    return errs


def validate_pod_template_kind(
    pt: core_pb2.PodTemplate, old: core_pb2.PodTemplate | None
) -> Errors:
    return validate_pod_template(pt.template, "template")


__all__ = [
    "validate_config_map",
    "validate_endpoints",
    "validate_event",
    "validate_limit_range",
    "validate_node",
    "validate_persistent_volume",
    "validate_pod_template_kind",
    "validate_pvc",
    "validate_pvc_spec",
    "validate_replication_controller",
    "validate_resource_quota",
    "validate_secret",
    "validate_service",
]
