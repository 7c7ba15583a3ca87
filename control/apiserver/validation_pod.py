"""Validation of PodSpec — for Pods and for every workload's pod template — and Pod updates.

Owns :func:`validate_pod_spec` (the pod-wide rules: at least one container, names unique
across init and regular containers, host ports, restart and DNS policies, scheduling
constraints — tolerations, node selector, affinity, topology spread — and gates), with each
container checked by ``validation_container`` and the volumes by ``validation_volume``;
:func:`validate_pod_template`; and :func:`validate_pod_update` (the short list of what may
change in a running pod). Rules and messages follow Kubernetes' ``pkg/apis/core/validation``.

Pure functions returning every failing field; paths are Kubernetes' JSON paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from control.api import labels as label_sel
from control.api import names
from control.api.pb import core_pb2
from control.apiserver.validation_container import validate_container, validate_resources
from control.apiserver.validation_util import (
    Errors,
    child,
    duplicate,
    enum,
    forbidden,
    in_range,
    index,
    invalid,
    ip_errors,
    messages,
    non_negative,
    not_supported,
    positive,
    required,
    resource_list,
)
from control.apiserver.validation_volume import validate_volumes

__all__ = [
    "RESTART_POLICIES",
    "TAINT_EFFECTS",
    "validate_node_selector",
    "validate_pod_spec",
    "validate_pod_template",
    "validate_pod_update",
]

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATION_OPERATORS = ("Exists", "Equal")
NODE_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")

# ---------------------------------------------------------------------------------------
# Scheduling constraints


def validate_tolerations(tolerations: Sequence[core_pb2.Toleration], path: str) -> Errors:
    errs: Errors = []
    for i, t in enumerate(tolerations):
        p = index(path, i)
        if t.key:
            errs.extend(messages(child(p, "key"), t.key, names.is_qualified_name(t.key)))
        if not t.key and t.operator != "Exists":
            errs.append(
                invalid(
                    child(p, "operator"),
                    t.operator,
                    'operator must be Exists when `key` is empty, which means "match all values '
                    'and all keys"',
                )
            )
        if t.HasField("toleration_seconds") and t.effect != "NoExecute":
            errs.append(
                invalid(
                    child(p, "effect"),
                    t.effect,
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        if t.operator in ("", "Equal"):
            errs.extend(messages(child(p, "value"), t.value, names.is_valid_label_value(t.value)))
        elif t.operator == "Exists":
            if t.value:
                errs.append(
                    invalid(
                        child(p, "operator"),
                        t.value,
                        "value must be empty when `operator` is 'Exists'",
                    )
                )
        else:
            errs.append(not_supported(child(p, "operator"), t.operator, TOLERATION_OPERATORS))
        errs.extend(enum(child(p, "effect"), t.effect, TAINT_EFFECTS, allow_empty=True))
    return errs


def _validate_node_selector_requirement(
    req: core_pb2.NodeSelectorRequirement, path: str, *, field: bool
) -> Errors:
    errs: Errors = []
    op_path = child(path, "operator")
    values_path = child(path, "values")
    if req.operator in ("In", "NotIn"):
        if not req.values:
            errs.append(
                required(values_path, "must be specified when `operator` is 'In' or 'NotIn'")
            )
    elif req.operator in ("Exists", "DoesNotExist"):
        if req.values:
            errs.append(
                forbidden(
                    values_path,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
            )
    elif req.operator in ("Gt", "Lt"):
        if len(req.values) != 1:
            errs.append(
                required(
                    values_path, "must be specified single value when `operator` is 'Lt' or 'Gt'"
                )
            )
        else:
            try:
                int(req.values[0])
            except ValueError:
                errs.append(invalid(index(values_path, 0), req.values[0], "must be an integer"))
    else:
        errs.append(not_supported(op_path, req.operator, NODE_SELECTOR_OPERATORS))
    if field:
        if req.key != "metadata.name":
            errs.append(not_supported(child(path, "key"), req.key, ("metadata.name",)))
        elif req.operator not in ("In", "NotIn") or len(req.values) != 1:
            errs.append(
                invalid(path, req.operator, "must be one of 'In', 'NotIn' with exactly one value")
            )
    else:
        errs.extend(messages(child(path, "key"), req.key, names.is_qualified_name(req.key)))
    return errs


def validate_node_selector_term(term: core_pb2.NodeSelectorTerm, path: str) -> Errors:
    errs: Errors = []
    for i, req in enumerate(term.match_expressions):
        errs.extend(
            _validate_node_selector_requirement(
                req, index(child(path, "matchExpressions"), i), field=False
            )
        )
    for i, req in enumerate(term.match_fields):
        errs.extend(
            _validate_node_selector_requirement(
                req, index(child(path, "matchFields"), i), field=True
            )
        )
    return errs


def validate_node_selector(sel: core_pb2.NodeSelector, path: str) -> Errors:
    terms_path = child(path, "nodeSelectorTerms")
    if not sel.node_selector_terms:
        return [required(terms_path, "must have at least one node selector term")]
    errs: Errors = []
    for i, term in enumerate(sel.node_selector_terms):
        errs.extend(validate_node_selector_term(term, index(terms_path, i)))
    return errs


def _validate_weight(path: str, weight: int) -> Errors:
    if 1 <= weight <= 100:
        return []
    return [invalid(path, weight, "must be in the range 1-100")]


def _validate_pod_affinity_term(term: core_pb2.PodAffinityTerm, path: str) -> Errors:
    errs: Errors = []
    if term.HasField("label_selector"):
        errs.extend(
            label_sel.validate_label_selector(term.label_selector, child(path, "labelSelector"))
        )
    if term.HasField("namespace_selector"):
        errs.extend(
            label_sel.validate_label_selector(
                term.namespace_selector, child(path, "namespaceSelector")
            )
        )
    for i, ns in enumerate(term.namespaces):
        errs.extend(messages(index(child(path, "namespaces"), i), ns, names.is_dns1123_label(ns)))
    if not term.topology_key:
        errs.append(required(child(path, "topologyKey"), "can not be empty"))
    else:
        errs.extend(
            messages(
                child(path, "topologyKey"),
                term.topology_key,
                names.is_qualified_name(term.topology_key),
            )
        )
    return errs


def _validate_pod_affinity(
    aff: core_pb2.PodAffinity | core_pb2.PodAntiAffinity, path: str
) -> Errors:
    errs: Errors = []
    req_path = child(path, "requiredDuringSchedulingIgnoredDuringExecution")
    for i, term in enumerate(aff.required_during_scheduling_ignored_during_execution):
        errs.extend(_validate_pod_affinity_term(term, index(req_path, i)))
    pref_path = child(path, "preferredDuringSchedulingIgnoredDuringExecution")
    for i, w in enumerate(aff.preferred_during_scheduling_ignored_during_execution):
        p = index(pref_path, i)
        errs.extend(_validate_weight(child(p, "weight"), w.weight))
        errs.extend(_validate_pod_affinity_term(w.pod_affinity_term, child(p, "podAffinityTerm")))
    return errs


def _validate_affinity(aff: core_pb2.Affinity, path: str) -> Errors:
    errs: Errors = []
    if aff.HasField("node_affinity"):
        na = aff.node_affinity
        p = child(path, "nodeAffinity")
        if na.HasField("required_during_scheduling_ignored_during_execution"):
            errs.extend(
                validate_node_selector(
                    na.required_during_scheduling_ignored_during_execution,
                    child(p, "requiredDuringSchedulingIgnoredDuringExecution"),
                )
            )
        pref_path = child(p, "preferredDuringSchedulingIgnoredDuringExecution")
        for i, term in enumerate(na.preferred_during_scheduling_ignored_during_execution):
            tp = index(pref_path, i)
            errs.extend(_validate_weight(child(tp, "weight"), term.weight))
            errs.extend(validate_node_selector_term(term.preference, child(tp, "preference")))
    if aff.HasField("pod_affinity"):
        errs.extend(_validate_pod_affinity(aff.pod_affinity, child(path, "podAffinity")))
    if aff.HasField("pod_anti_affinity"):
        errs.extend(_validate_pod_affinity(aff.pod_anti_affinity, child(path, "podAntiAffinity")))
    return errs


def _validate_topology_spread(
    constraints: Sequence[core_pb2.TopologySpreadConstraint], path: str
) -> Errors:
    errs: Errors = []
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(constraints):
        p = index(path, i)
        errs.extend(positive(child(p, "maxSkew"), c.max_skew))
        if not c.topology_key:
            errs.append(required(child(p, "topologyKey"), "can not be empty"))
        else:
            errs.extend(
                messages(
                    child(p, "topologyKey"), c.topology_key, names.is_qualified_name(c.topology_key)
                )
            )
        errs.extend(
            enum(
                child(p, "whenUnsatisfiable"),
                c.when_unsatisfiable,
                ("DoNotSchedule", "ScheduleAnyway"),
            )
        )
        pair = (c.topology_key, c.when_unsatisfiable)
        if pair in seen:
            errs.append(duplicate(p, f"{{{c.topology_key}, {c.when_unsatisfiable}}}"))
        seen.add(pair)
        if c.HasField("min_domains"):
            if c.min_domains <= 0:
                errs.append(
                    invalid(child(p, "minDomains"), c.min_domains, "must be greater than 0")
                )
            elif c.when_unsatisfiable != "DoNotSchedule":
                errs.append(
                    invalid(
                        child(p, "minDomains"),
                        c.min_domains,
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, "
                        f"not {c.when_unsatisfiable}",
                    )
                )
        if c.HasField("label_selector"):
            errs.extend(
                label_sel.validate_label_selector(c.label_selector, child(p, "labelSelector"))
            )
        for name, value in (
            (
                "nodeAffinityPolicy",
                c.node_affinity_policy if c.HasField("node_affinity_policy") else None,
            ),
            (
                "nodeTaintsPolicy",
                c.node_taints_policy if c.HasField("node_taints_policy") else None,
            ),
        ):
            if value is not None:
                errs.extend(enum(child(p, name), value, ("Honor", "Ignore")))
    return errs


# ---------------------------------------------------------------------------------------
# PodSpec


def validate_pod_spec(
    spec: core_pb2.PodSpec,
    path: str = "spec",
    *,
    restart_policies: Sequence[str] = RESTART_POLICIES,
    extra_volumes: Iterable[str] = (),
) -> Errors:
    """Every failing field of a PodSpec; ``restart_policies`` narrows what the owner allows
    (``("Always",)`` for ReplicaSets, ``("OnFailure", "Never")`` for Jobs), and
    ``extra_volumes`` names volumes the owner adds (a StatefulSet's claim templates)."""
    errs: Errors = []
    volume_names, vol_errs = validate_volumes(spec.volumes, child(path, "volumes"))
    volume_names |= set(extra_volumes)
    errs.extend(vol_errs)

    containers_path = child(path, "containers")
    init_path = child(path, "initContainers")
    if not spec.containers:
        errs.append(required(containers_path, ""))
    seen: set[str] = set()
    # Init containers first: a regular container reusing an init container's name is the
    # duplicate, as in Kubernetes.
    for group_path, group, init in (
        (init_path, spec.init_containers, True),
        (containers_path, spec.containers, False),
    ):
        for i, c in enumerate(group):
            p = index(group_path, i)
            errs.extend(validate_container(c, p, volume_names, init=init))
            if c.name:
                if c.name in seen:
                    errs.append(duplicate(child(p, "name"), c.name))
                seen.add(c.name)
    errs.extend(_validate_host_ports(spec, containers_path, init_path))

    rp = child(path, "restartPolicy")
    if not spec.restart_policy:
        if len(restart_policies) < len(RESTART_POLICIES):
            errs.append(
                required(rp, "valid values: " + ", ".join(f'"{v}"' for v in restart_policies))
            )
        else:
            errs.append(required(rp, ""))
    elif spec.restart_policy not in restart_policies:
        errs.append(not_supported(rp, spec.restart_policy, restart_policies))
    errs.extend(enum(child(path, "dnsPolicy"), spec.dns_policy, DNS_POLICIES))
    if spec.dns_policy == "None" and not (
        spec.HasField("dns_config") and spec.dns_config.nameservers
    ):
        errs.append(
            required(
                child(path, "dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )
        )
    if spec.HasField("dns_config"):
        for i, ns in enumerate(spec.dns_config.nameservers):
            errs.extend(messages(index(child(path, "dnsConfig.nameservers"), i), ns, ip_errors(ns)))
    errs.extend(names.validate_labels(spec.node_selector, child(path, "nodeSelector")))
    if spec.service_account_name:
        errs.extend(
            messages(
                child(path, "serviceAccountName"),
                spec.service_account_name,
                names.is_dns1123_subdomain(spec.service_account_name),
            )
        )
    if spec.node_name:
        errs.extend(
            messages(
                child(path, "nodeName"), spec.node_name, names.is_dns1123_subdomain(spec.node_name)
            )
        )
    if spec.hostname:
        errs.extend(
            messages(child(path, "hostname"), spec.hostname, names.is_dns1123_label(spec.hostname))
        )
    if spec.subdomain:
        errs.extend(
            messages(
                child(path, "subdomain"), spec.subdomain, names.is_dns1123_label(spec.subdomain)
            )
        )
    if spec.priority_class_name:
        errs.extend(
            messages(
                child(path, "priorityClassName"),
                spec.priority_class_name,
                names.is_dns1123_subdomain(spec.priority_class_name),
            )
        )
    if spec.HasField("termination_grace_period_seconds"):
        errs.extend(
            non_negative(
                child(path, "terminationGracePeriodSeconds"), spec.termination_grace_period_seconds
            )
        )
    if spec.HasField("active_deadline_seconds"):
        errs.extend(
            in_range(
                child(path, "activeDeadlineSeconds"), spec.active_deadline_seconds, 1, 2**31 - 1
            )
        )
    errs.extend(validate_tolerations(spec.tolerations, child(path, "tolerations")))
    if spec.HasField("affinity"):
        errs.extend(_validate_affinity(spec.affinity, child(path, "affinity")))
    errs.extend(
        _validate_topology_spread(
            spec.topology_spread_constraints, child(path, "topologySpreadConstraints")
        )
    )
    for i, s in enumerate(spec.image_pull_secrets):
        if not s.name:
            errs.append(required(child(index(child(path, "imagePullSecrets"), i), "name"), ""))
    gate_names: set[str] = set()
    for i, g in enumerate(spec.scheduling_gates):
        gp = child(index(child(path, "schedulingGates"), i), "name")
        errs.extend(messages(gp, g.name, names.is_qualified_name(g.name)))
        if g.name in gate_names:
            errs.append(duplicate(gp, g.name))
        gate_names.add(g.name)
    if spec.scheduling_gates and spec.node_name:
        errs.append(
            forbidden(
                child(path, "nodeName"), "cannot be set until all schedulingGates have been cleared"
            )
        )
    if spec.HasField("os"):
        errs.extend(enum(child(path, "os.name"), spec.os.name, ("linux", "windows")))
    if spec.HasField("preemption_policy"):
        errs.extend(
            enum(
                child(path, "preemptionPolicy"),
                spec.preemption_policy,
                ("PreemptLowerPriority", "Never"),
            )
        )
    if spec.HasField("resources"):
        errs.extend(validate_resources(spec.resources, child(path, "resources"), pod_level=True))
    _, overhead_errs = resource_list(child(path, "overhead"), spec.overhead)
    errs.extend(overhead_errs)
    return errs


def _validate_host_ports(spec: core_pb2.PodSpec, containers_path: str, init_path: str) -> Errors:
    """Host ports are unique per protocol; with the host's network they equal the
    container port (there is no translation)."""
    errs: Errors = []
    seen: set[tuple[int, str, str]] = set()
    for group_path, group in (
        (init_path, spec.init_containers),
        (containers_path, spec.containers),
    ):
        for ci, c in enumerate(group):
            for pi, port in enumerate(c.ports):
                pp = index(child(index(group_path, ci), "ports"), pi)
                if spec.host_network and port.host_port not in (0, port.container_port):
                    errs.append(
                        invalid(
                            child(pp, "hostPort"),
                            port.host_port,
                            "must match `containerPort` when `hostNetwork` is true",
                        )
                    )
                if port.host_port == 0:
                    continue
                k = (port.host_port, port.protocol, port.host_ip)
                if k in seen:
                    errs.append(
                        duplicate(child(pp, "hostPort"), f"{port.host_port}/{port.protocol}")
                    )
                seen.add(k)
    return errs


def validate_pod_template(
    template: core_pb2.PodTemplateSpec,
    path: str,
    *,
    restart_policies: Sequence[str] = RESTART_POLICIES,
    extra_volumes: Iterable[str] = (),
) -> Errors:
    """A PodTemplateSpec: its labels and annotations, and its PodSpec."""
    meta_path = child(path, "metadata")
    errs = names.validate_labels(template.metadata.labels, child(meta_path, "labels"))
    errs.extend(
        names.validate_annotations(template.metadata.annotations, child(meta_path, "annotations"))
    )
    errs.extend(
        validate_pod_spec(
            template.spec,
            child(path, "spec"),
            restart_policies=restart_policies,
            extra_volumes=extra_volumes,
        )
    )
    return errs


# ---------------------------------------------------------------------------------------
# Pod update

_MUTABLE_HINT = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def validate_pod_update(new: core_pb2.Pod, old: core_pb2.Pod) -> Errors:
    """What may change in a Pod's spec after creation (see ``_MUTABLE_HINT``)."""
    errs: Errors = []
    ns, os_ = new.spec, old.spec

    # activeDeadlineSeconds: may be set, or lowered, never raised or removed.
    adl = "spec.activeDeadlineSeconds"
    if ns.HasField("active_deadline_seconds"):
        if os_.HasField("active_deadline_seconds") and (
            ns.active_deadline_seconds > os_.active_deadline_seconds
        ):
            errs.append(
                invalid(
                    adl, ns.active_deadline_seconds, "must be less than or equal to previous value"
                )
            )
    elif os_.HasField("active_deadline_seconds"):
        errs.append(invalid(adl, None, "must not update from a positive integer to nil value"))

    # tolerations: existing ones stay (tolerationSeconds may change), new ones may be added.
    remaining = list(ns.tolerations)
    for t in os_.tolerations:
        match = next(
            (
                n
                for n in remaining
                if (n.key, n.operator, n.value, n.effect) == (t.key, t.operator, t.value, t.effect)
            ),
            None,
        )
        if match is None:
            errs.append(
                forbidden(
                    "spec.tolerations",
                    "existing toleration can not be modified except its tolerationSeconds",
                )
            )
            break
        remaining.remove(match)

    # schedulingGates: only removals.
    old_gates = {g.name for g in os_.scheduling_gates}
    for i, g in enumerate(ns.scheduling_gates):
        if g.name not in old_gates:
            errs.append(
                forbidden(
                    index("spec.schedulingGates", i),
                    f"only deletion is allowed, but found new scheduling gate '{g.name}'",
                )
            )

    # nodeName: set once (by the binding); never moved or cleared afterwards.
    if os_.node_name and ns.node_name != os_.node_name:
        errs.append(invalid("spec.nodeName", ns.node_name, "may not be changed once set"))

    # Everything else must be equal: compare copies with the mutable fields neutralised.
    a, b = core_pb2.PodSpec(), core_pb2.PodSpec()
    a.CopyFrom(ns)
    b.CopyFrom(os_)
    for spec, src in ((a, os_), (b, os_)):
        for group in ("containers", "init_containers"):
            cs = getattr(spec, group)
            olds = getattr(src, group)
            for i in range(min(len(cs), len(olds))):
                cs[i].image = olds[i].image
        # nodeName is checked above (set once, by the binding).
        for name in ("active_deadline_seconds", "tolerations", "scheduling_gates", "node_name"):
            spec.ClearField(name)
    if a != b:
        diff = _first_difference(a, b)
        detail = _MUTABLE_HINT + (f"; first difference at {diff}" if diff else "")
        errs.append(forbidden("spec", detail))
    return errs


def _first_difference(a: Any, b: Any, path: str = "spec") -> str:
    """The JSON path of the first field that differs, for a helpful message."""
    for fd in a.DESCRIPTOR.fields:
        va, vb = getattr(a, fd.name), getattr(b, fd.name)
        if va == vb:
            continue
        p = child(path, fd.json_name)
        if fd.message_type is not None and not fd.is_repeated:
            return _first_difference(va, vb, p)
        if (
            fd.is_repeated
            and fd.message_type is not None
            and not (fd.message_type.GetOptions().map_entry)
        ):
            for i in range(min(len(va), len(vb))):
                if va[i] != vb[i]:
                    return _first_difference(va[i], vb[i], index(p, i))
        return p
    return ""


def validate_pod_log_options(req: Any) -> Errors:
    """Kubernetes' ValidatePodLogOptions on a LogsRequest: tailLines not negative,
    sinceSeconds and limitBytes positive when given."""
    errs: Errors = []
    if req.HasField("tail_lines"):
        errs += non_negative("tailLines", req.tail_lines)
    if req.HasField("since_seconds"):
        errs += positive("sinceSeconds", req.since_seconds)
    if req.HasField("limit_bytes"):
        errs += positive("limitBytes", req.limit_bytes)
    return errs
