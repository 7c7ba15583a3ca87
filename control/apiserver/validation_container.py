"""Validation of one container of a PodSpec: name, image, ports, env, resources, probes,
lifecycle hooks, volume mounts, and the init/sidecar rules.

Owns :func:`validate_container` and :func:`validate_resources` (also used for pod-level
resources), plus the downward API field checks shared with volumes. Rules and messages
follow Kubernetes' ``pkg/apis/core/validation``. Pure functions returning every failing
field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from control.api import names
from control.api.pb import core_pb2
from control.apiserver.validation_util import (
    Errors,
    child,
    config_map_key_errors,
    duplicate,
    enum,
    env_var_name_errors,
    forbidden,
    index,
    invalid,
    ip_errors,
    key,
    messages,
    non_negative,
    not_found,
    not_supported,
    port_name_errors,
    port_num_errors,
    port_num_or_name,
    positive,
    required,
    resource_list,
)

__all__ = [
    "PROTOCOLS",
    "relative_path",
    "validate_container",
    "validate_field_ref",
    "validate_resource_field_ref",
    "validate_resources",
]

PROTOCOLS = ("TCP", "UDP", "SCTP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
MOUNT_PROPAGATIONS = ("None", "HostToContainer", "Bidirectional")
URI_SCHEMES = ("HTTP", "HTTPS")
ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
VOLUME_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)
RESOURCE_FIELD_REFS = (
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
)

# ---------------------------------------------------------------------------------------
# Containers


def _validate_ports(ports: Sequence[core_pb2.ContainerPort], path: str) -> Errors:
    errs: Errors = []
    seen_names: set[str] = set()
    for i, port in enumerate(ports):
        p = index(path, i)
        if port.name:
            msgs = port_name_errors(port.name)
            if msgs:
                errs.extend(messages(child(p, "name"), port.name, msgs))
            elif port.name in seen_names:
                errs.append(duplicate(child(p, "name"), port.name))
            seen_names.add(port.name)
        if port.container_port == 0:
            errs.append(required(child(p, "containerPort"), ""))
        else:
            errs.extend(
                messages(
                    child(p, "containerPort"),
                    port.container_port,
                    port_num_errors(port.container_port),
                )
            )
        if port.host_port != 0:
            errs.extend(
                messages(child(p, "hostPort"), port.host_port, port_num_errors(port.host_port))
            )
        errs.extend(enum(child(p, "protocol"), port.protocol, PROTOCOLS))
        if port.host_ip:
            errs.extend(messages(child(p, "hostIP"), port.host_ip, ip_errors(port.host_ip)))
    return errs


def validate_field_ref(
    ref: core_pb2.ObjectFieldSelector, path: str, allowed: Sequence[str]
) -> Errors:
    errs: Errors = []
    if not ref.api_version:
        errs.append(required(child(path, "apiVersion"), ""))
    elif ref.api_version != "v1":
        errs.append(not_supported(child(path, "apiVersion"), ref.api_version, ("v1",)))
    fp = ref.field_path
    if not fp:
        errs.append(required(child(path, "fieldPath"), ""))
        return errs
    # metadata.labels['key'] and metadata.annotations['key'] read one entry.
    for prefix in ("metadata.labels", "metadata.annotations"):
        if fp.startswith(prefix + "['") and fp.endswith("']"):
            k = fp[len(prefix) + 2 : -2]
            errs.extend(messages(child(path, "fieldPath"), fp, names.is_qualified_name(k)))
            return errs
    if fp not in allowed:
        errs.append(not_supported(child(path, "fieldPath"), fp, allowed))
    return errs


def validate_resource_field_ref(ref: core_pb2.ResourceFieldSelector, path: str) -> Errors:
    if not ref.resource:
        return [required(child(path, "resource"), "")]
    if ref.resource not in RESOURCE_FIELD_REFS and not ref.resource.startswith(
        ("limits.hugepages-", "requests.hugepages-")
    ):
        return [not_supported(child(path, "resource"), ref.resource, RESOURCE_FIELD_REFS)]
    return []


def _key_ref(ref: Any, path: str) -> Errors:
    errs: Errors = []
    if not ref.name:
        errs.append(required(child(path, "name"), ""))
    if not ref.key:
        errs.append(required(child(path, "key"), ""))
    else:
        errs.extend(messages(child(path, "key"), ref.key, config_map_key_errors(ref.key)))
    return errs


def _validate_env(env: Sequence[core_pb2.EnvVar], path: str) -> Errors:
    errs: Errors = []
    for i, ev in enumerate(env):
        p = index(path, i)
        if not ev.name:
            errs.append(required(child(p, "name"), ""))
        else:
            errs.extend(messages(child(p, "name"), ev.name, env_var_name_errors(ev.name)))
        if not ev.HasField("value_from"):
            continue
        vp = child(p, "valueFrom")
        src = ev.value_from
        present = [
            n
            for n in (
                "field_ref",
                "resource_field_ref",
                "config_map_key_ref",
                "secret_key_ref",
                "file_key_ref",
            )
            if src.HasField(n)
        ]
        if not present:
            errs.append(
                invalid(
                    vp,
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` "
                    "or `secretKeyRef`",
                )
            )
        elif len(present) > 1:
            errs.append(invalid(vp, "", "may not have more than one field specified at a time"))
        if ev.value:
            errs.append(invalid(vp, "", "may not be specified when `value` is not empty"))
        if src.HasField("field_ref"):
            errs.extend(validate_field_ref(src.field_ref, child(vp, "fieldRef"), ENV_FIELD_PATHS))
        if src.HasField("resource_field_ref"):
            errs.extend(
                validate_resource_field_ref(src.resource_field_ref, child(vp, "resourceFieldRef"))
            )
        if src.HasField("config_map_key_ref"):
            errs.extend(_key_ref(src.config_map_key_ref, child(vp, "configMapKeyRef")))
        if src.HasField("secret_key_ref"):
            errs.extend(_key_ref(src.secret_key_ref, child(vp, "secretKeyRef")))
    return errs


def _validate_env_from(env_from: Sequence[core_pb2.EnvFromSource], path: str) -> Errors:
    errs: Errors = []
    for i, ef in enumerate(env_from):
        p = index(path, i)
        if ef.prefix:
            errs.extend(messages(child(p, "prefix"), ef.prefix, env_var_name_errors(ef.prefix)))
        present = [n for n in ("config_map_ref", "secret_ref") if ef.HasField(n)]
        if not present:
            errs.append(invalid(p, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(present) > 1:
            errs.append(invalid(p, "", "may not have more than one field specified at a time"))
        if ef.HasField("config_map_ref") and not ef.config_map_ref.name:
            errs.append(required(child(p, "configMapRef.name"), ""))
        if ef.HasField("secret_ref") and not ef.secret_ref.name:
            errs.append(required(child(p, "secretRef.name"), ""))
    return errs


def validate_resources(
    res: core_pb2.ResourceRequirements, path: str, *, pod_level: bool = False
) -> Errors:
    """Resource names and quantities, and requests <= limits per resource. Pod-level
    resources accept any well-formed name (Kubernetes keeps adding some, such as pids)."""
    container = not pod_level
    limits, errs = resource_list(child(path, "limits"), res.limits, container=container)
    requests, req_errs = resource_list(child(path, "requests"), res.requests, container=container)
    errs.extend(req_errs)
    for name, req in requests.items():
        limit = limits.get(name)
        if limit is not None and req > limit:
            errs.append(
                invalid(
                    key(child(path, "requests"), name),
                    res.requests[name].string,
                    f"must be less than or equal to {name} limit of {res.limits[name].string}",
                )
            )
    return errs


def _validate_http_get(action: core_pb2.HTTPGetAction, path: str) -> Errors:
    errs: Errors = []
    if not action.path:
        errs.append(required(child(path, "path"), ""))
    errs.extend(port_num_or_name(child(path, "port"), action.port))
    errs.extend(enum(child(path, "scheme"), action.scheme, URI_SCHEMES))
    for i, h in enumerate(action.http_headers):
        if not h.name:
            errs.append(required(child(index(child(path, "httpHeaders"), i), "name"), ""))
    return errs


def _validate_handler(msg: Any, path: str, handlers: Sequence[tuple[str, str]]) -> Errors:
    """Exactly one of ``handlers`` ((proto name, json name)) is set; each is valid."""
    errs: Errors = []
    present = [(n, j) for n, j in handlers if msg.HasField(n)]
    if not present:
        return [required(path, "must specify a handler type")]
    for _n, j in present[1:]:
        errs.append(forbidden(child(path, j), "may not specify more than 1 handler type"))
    for n, j in present:
        p = child(path, j)
        sub = getattr(msg, n)
        if n == "exec":
            if not sub.command:
                errs.append(required(child(p, "command"), ""))
        elif n == "http_get":
            errs.extend(_validate_http_get(sub, p))
        elif n == "tcp_socket":
            errs.extend(port_num_or_name(child(p, "port"), sub.port))
        elif n == "grpc":
            errs.extend(messages(child(p, "port"), sub.port, port_num_errors(sub.port)))
        elif n == "sleep":
            errs.extend(non_negative(child(p, "seconds"), sub.seconds))
    return errs


_PROBE_HANDLERS = (
    ("exec", "exec"),
    ("http_get", "httpGet"),
    ("tcp_socket", "tcpSocket"),
    ("grpc", "grpc"),
)
_LIFECYCLE_HANDLERS = (
    ("exec", "exec"),
    ("http_get", "httpGet"),
    ("tcp_socket", "tcpSocket"),
    ("sleep", "sleep"),
)


def _validate_probe(probe: core_pb2.Probe, path: str, *, success_must_be_1: bool) -> Errors:
    errs = _validate_handler(probe, path, _PROBE_HANDLERS)
    errs.extend(non_negative(child(path, "initialDelaySeconds"), probe.initial_delay_seconds))
    for name, value in (
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ):
        errs.extend(non_negative(child(path, name), value))
    if success_must_be_1 and probe.success_threshold != 1:
        errs.append(invalid(child(path, "successThreshold"), probe.success_threshold, "must be 1"))
    if probe.HasField("termination_grace_period_seconds"):
        errs.extend(
            positive(
                child(path, "terminationGracePeriodSeconds"), probe.termination_grace_period_seconds
            )
        )
    return errs


def _validate_mounts(
    mounts: Sequence[core_pb2.VolumeMount], path: str, volumes: set[str]
) -> Errors:
    errs: Errors = []
    seen_paths: set[str] = set()
    for i, m in enumerate(mounts):
        p = index(path, i)
        if not m.name:
            errs.append(required(child(p, "name"), ""))
        elif m.name not in volumes:
            errs.append(not_found(child(p, "name"), m.name))
        if not m.mount_path:
            errs.append(required(child(p, "mountPath"), ""))
        elif m.mount_path in seen_paths:
            errs.append(invalid(child(p, "mountPath"), m.mount_path, "must be unique"))
        seen_paths.add(m.mount_path)
        if m.sub_path:
            errs.extend(relative_path(child(p, "subPath"), m.sub_path))
        if m.sub_path and m.sub_path_expr:
            errs.append(
                invalid(
                    child(p, "subPathExpr"),
                    m.sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                )
            )
        if m.HasField("mount_propagation"):
            errs.extend(enum(child(p, "mountPropagation"), m.mount_propagation, MOUNT_PROPAGATIONS))
    return errs


def relative_path(path: str, value: str) -> Errors:
    errs: Errors = []
    if value.startswith("/"):
        errs.append(invalid(path, value, "must be a relative path"))
    if ".." in value.split("/"):
        errs.append(invalid(path, value, "must not contain '..'"))
    return errs


def validate_container(
    c: core_pb2.Container,
    path: str,
    volumes: set[str],
    *,
    init: bool,
) -> Errors:
    errs: Errors = []
    if not c.name:
        errs.append(required(child(path, "name"), ""))
    else:
        errs.extend(messages(child(path, "name"), c.name, names.is_dns1123_label(c.name)))
    if not c.image:
        errs.append(required(child(path, "image"), ""))
    elif c.image != c.image.strip():
        errs.append(
            invalid(child(path, "image"), c.image, "must not have leading or trailing whitespace")
        )
    errs.extend(enum(child(path, "imagePullPolicy"), c.image_pull_policy, PULL_POLICIES))
    errs.extend(
        enum(
            child(path, "terminationMessagePolicy"),
            c.termination_message_policy,
            TERMINATION_MESSAGE_POLICIES,
        )
    )
    sidecar = init and c.HasField("restart_policy") and c.restart_policy == "Always"
    if c.HasField("restart_policy"):
        rp = child(path, "restartPolicy")
        if not init:
            errs.append(forbidden(rp, "may not be set for non-init containers"))
        elif c.restart_policy != "Always":
            errs.append(not_supported(rp, c.restart_policy, ("Always",)))
    errs.extend(_validate_ports(c.ports, child(path, "ports")))
    errs.extend(_validate_env(c.env, child(path, "env")))
    errs.extend(_validate_env_from(c.env_from, child(path, "envFrom")))
    if c.HasField("resources"):
        errs.extend(validate_resources(c.resources, child(path, "resources")))
    errs.extend(_validate_mounts(c.volume_mounts, child(path, "volumeMounts"), volumes))
    for name, json_name in (
        ("liveness_probe", "livenessProbe"),
        ("readiness_probe", "readinessProbe"),
        ("startup_probe", "startupProbe"),
    ):
        if not c.HasField(name):
            continue
        p = child(path, json_name)
        if init and not sidecar:
            errs.append(
                forbidden(p, "may not be set for init containers without restartPolicy=Always")
            )
            continue
        errs.extend(
            _validate_probe(getattr(c, name), p, success_must_be_1=name != "readiness_probe")
        )
    if c.HasField("lifecycle"):
        if init and not sidecar:
            errs.append(
                forbidden(
                    child(path, "lifecycle"),
                    "may not be set for init containers without restartPolicy=Always",
                )
            )
        else:
            for name, json_name in (("post_start", "postStart"), ("pre_stop", "preStop")):
                if c.lifecycle.HasField(name):
                    errs.extend(
                        _validate_handler(
                            getattr(c.lifecycle, name),
                            child(path, f"lifecycle.{json_name}"),
                            _LIFECYCLE_HANDLERS,
                        )
                    )
    if c.working_dir and c.working_dir != c.working_dir.strip():
        errs.append(
            invalid(
                child(path, "workingDir"),
                c.working_dir,
                "must not have leading or trailing whitespace",
            )
        )
    return errs
