"""The pod-spec sections kubectl prints for a Pod and for a workload's pod template:
containers (state, probes, environment, mounts), volumes, QoS class.

Pure functions; no I/O, no shared state.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from control.api import quantity
from control.cli import columns
from control.cli.describe._text import (
    _annotations,
    _get,
    _go,
    _i,
    _labels,
    _list,
    _map,
    _s,
    _title_bool,
    _tolerations,
    _Writer,
    format_time,
)

# ------------------------------------------------------------------------------ containers


def _probe(p: Mapping[str, Any]) -> str:
    attrs = (
        f"delay={_i(p, 'initialDelaySeconds')}s timeout={_i(p, 'timeoutSeconds')}s "
        f"period={_i(p, 'periodSeconds')}s #success={_i(p, 'successThreshold')} "
        f"#failure={_i(p, 'failureThreshold')}"
    )
    if "exec" in p:
        return f"exec [{' '.join(str(c) for c in _list(p, 'exec', 'command'))}] {attrs}"
    if "httpGet" in p:
        h = _map(p, "httpGet")
        scheme = (_s(h, "scheme") or "HTTP").lower()
        host = columns.join_host_port(_s(h, "host"), _s(h, "port"))
        return f"http-get {scheme}://{host}{_s(h, 'path')} {attrs}"
    if "tcpSocket" in p:
        return f"tcp-socket {_s(p, 'tcpSocket', 'host')}:{_s(p, 'tcpSocket', 'port')} {attrs}"
    if "grpc" in p:
        return f"grpc <pod>:{_i(p, 'grpc', 'port')} {_s(p, 'grpc', 'service')} {attrs}"
    return f"unknown {attrs}"


def _state(w: _Writer, name: str, state: Mapping[str, Any]) -> None:
    if "running" in state:
        w.write(2, f"{name}:\tRunning\n")
        w.write(3, f"Started:\t{format_time(_get(state, 'running', 'startedAt'))}\n")
    elif "terminated" in state:
        t = _map(state, "terminated")
        w.write(2, f"{name}:\tTerminated\n")
        if _s(t, "reason"):
            w.write(3, f"Reason:\t{_s(t, 'reason')}\n")
        if _s(t, "message"):
            w.write(3, f"Message:\t{_s(t, 'message')}\n")
        w.write(3, f"Exit Code:\t{_i(t, 'exitCode')}\n")
        if _i(t, "signal") > 0:
            w.write(3, f"Signal:\t{_i(t, 'signal')}\n")
        w.write(3, f"Started:\t{format_time(_get(t, 'startedAt'))}\n")
        w.write(3, f"Finished:\t{format_time(_get(t, 'finishedAt'))}\n")
    else:
        w.write(2, f"{name}:\tWaiting\n")
        if _s(state, "waiting", "reason"):
            w.write(3, f"Reason:\t{_s(state, 'waiting', 'reason')}\n")


_FIELD_REFS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "metadata.uid": ("metadata", "uid"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.serviceAccountName": ("spec", "serviceAccountName"),
    "status.podIP": ("status", "podIP"),
    "status.hostIP": ("status", "hostIP"),
}


def _env(w: _Writer, c: Mapping[str, Any], pod: Mapping[str, Any] | None) -> None:
    if c.get("envFrom"):
        w.write(2, "Environment Variables from:\n")
        for e in _list(c, "envFrom"):
            source = "ConfigMap" if "configMapRef" in e else "Secret"
            ref = _map(e, "configMapRef" if source == "ConfigMap" else "secretRef")
            optional = _go(_get(ref, "optional") is True)
            prefix = f" with prefix '{_s(e, 'prefix')}'" if _s(e, "prefix") else ""
            w.write(3, f"{_s(ref, 'name')}\t{source}{prefix}\tOptional: {optional}\n")
    env = _list(c, "env")
    w.write(2, "Environment:\t<none>\n" if not env else "Environment:\n")
    for e in env:
        name = _s(e, "name")
        vf = _map(e, "valueFrom")
        if not vf:
            for n, line in enumerate(_s(e, "value").split("\n")):
                w.write(3, f"{name}:\t{line}\n" if n == 0 else f"\t{line}\n")
        elif "fieldRef" in vf:
            path = _s(vf, "fieldRef", "fieldPath")
            value = _s(pod, *_FIELD_REFS[path]) if pod and path in _FIELD_REFS else ""
            api = _s(vf, "fieldRef", "apiVersion") or "v1"
            w.write(3, f"{name}:\t{value} ({api}:{path})\n")
        elif "resourceFieldRef" in vf:
            w.write(3, f"{name}:\t ({_s(vf, 'resourceFieldRef', 'resource')})\n")
        elif "secretKeyRef" in vf:
            r = _map(vf, "secretKeyRef")
            w.write(
                3,
                f"{name}:\t<set to the key '{_s(r, 'key')}' in secret '{_s(r, 'name')}'>"
                f"\tOptional: {_go(_get(r, 'optional') is True)}\n",
            )
        elif "configMapKeyRef" in vf:
            r = _map(vf, "configMapKeyRef")
            w.write(
                3,
                f"{name}:\t<set to the key '{_s(r, 'key')}' of config map '{_s(r, 'name')}'>"
                f"\tOptional: {_go(_get(r, 'optional') is True)}\n",
            )


def _containers(
    w: _Writer,
    label: str,
    containers: list[Any],
    statuses: list[Any] | None,
    space: str,
    pod: Mapping[str, Any] | None,
) -> None:
    by_name = {_s(s, "name"): s for s in statuses or []}
    w.write(0, f"{space}{label}:\n")
    for c in containers:
        status = by_name.get(_s(c, "name"))
        w.write(1, f"{' ' if space else ''}{_s(c, 'name')}:\n")
        if status is not None:
            w.write(2, f"Container ID:\t{_s(status, 'containerID')}\n")
        w.write(2, f"Image:\t{_s(c, 'image')}\n")
        if status is not None:
            w.write(2, f"Image ID:\t{_s(status, 'imageID')}\n")
        ports = [
            f"{_i(p, 'containerPort')}/{_s(p, 'protocol') or 'TCP'}" for p in _list(c, "ports")
        ]
        host = [f"{_i(p, 'hostPort')}/{_s(p, 'protocol') or 'TCP'}" for p in _list(c, "ports")]
        w.write(
            2,
            f"Ports:\t{', '.join(ports)}\n"
            if len(ports) > 1
            else f"Port:\t{''.join(ports) or '<none>'}\n",
        )
        w.write(
            2,
            f"Host Ports:\t{', '.join(host)}\n"
            if len(host) > 1
            else f"Host Port:\t{''.join(host) or '<none>'}\n",
        )
        if _s(c, "restartPolicy"):
            w.write(2, f"Restart Policy:\t{_s(c, 'restartPolicy')}\n")
        for key, title in (("command", "Command"), ("args", "Args")):
            if _list(c, key):
                w.write(2, f"{title}:\n")
                for arg in _list(c, key):
                    for line in str(arg).split("\n"):
                        w.write(3, f"{line}\n")
        if status is not None:
            _state(w, "State", _map(status, "state"))
            if "terminated" in _map(status, "lastState"):
                _state(w, "Last State", _map(status, "lastState"))
            w.write(2, f"Ready:\t{_title_bool(_get(status, 'ready') is True)}\n")
            w.write(2, f"Restart Count:\t{_i(status, 'restartCount')}\n")
        for key, title in (("limits", "Limits"), ("requests", "Requests")):
            res = _map(c, "resources", key)
            if res:
                w.write(2, f"{title}:\n")
                for rname in sorted(res):
                    w.write(3, f"{rname}:\t{res[rname]}\n")
        for key, title in (
            ("livenessProbe", "Liveness"),
            ("readinessProbe", "Readiness"),
            ("startupProbe", "Startup"),
        ):
            if key in c:
                w.write(2, f"{title}:\t{_probe(_map(c, key))}\n")
        _env(w, c, pod)
        mounts = sorted(_list(c, "volumeMounts"), key=lambda m: _s(m, "mountPath"))
        w.write(2, "Mounts:\t<none>\n" if not mounts else "Mounts:\n")
        for m in mounts:
            flags = ["ro" if _get(m, "readOnly") is True else "rw"]
            if _s(m, "subPath"):
                flags.append(f'path="{_s(m, "subPath")}"')
            w.write(3, f"{_s(m, 'mountPath')} from {_s(m, 'name')} ({','.join(flags)})\n")
        devices = _list(c, "volumeDevices")
        if devices:
            w.write(2, "Devices:\n")
            for dev in devices:
                w.write(3, f"{_s(dev, 'devicePath')} from {_s(dev, 'name')}\n")


def _volumes(w: _Writer, volumes: list[Any], space: str) -> None:
    if not volumes:
        w.write(0, f"{space}Volumes:\t<none>\n")
        return
    w.write(0, f"{space}Volumes:\n")
    for v in volumes:
        w.write(1, f"{' ' if space else ''}{_s(v, 'name')}:\n")
        if "hostPath" in v:
            w.write(2, "Type:\tHostPath (bare host directory volume)\n")
            w.write(2, f"Path:\t{_s(v, 'hostPath', 'path')}\n")
            w.write(2, f"HostPathType:\t{_s(v, 'hostPath', 'type') or '<none>'}\n")
        elif "emptyDir" in v:
            w.write(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n")
            w.write(2, f"Medium:\t{_s(v, 'emptyDir', 'medium')}\n")
            w.write(2, f"SizeLimit:\t{_s(v, 'emptyDir', 'sizeLimit') or '<unset>'}\n")
        elif "secret" in v:
            w.write(2, "Type:\tSecret (a volume populated by a Secret)\n")
            w.write(2, f"SecretName:\t{_s(v, 'secret', 'secretName')}\n")
            w.write(2, f"Optional:\t{_go(_get(v, 'secret', 'optional') is True)}\n")
        elif "configMap" in v:
            w.write(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n")
            w.write(2, f"Name:\t{_s(v, 'configMap', 'name')}\n")
            w.write(2, f"Optional:\t{_go(_get(v, 'configMap', 'optional') is True)}\n")
        elif "persistentVolumeClaim" in v:
            w.write(
                2,
                "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the "
                "same namespace)\n",
            )
            w.write(2, f"ClaimName:\t{_s(v, 'persistentVolumeClaim', 'claimName')}\n")
            w.write(2, f"ReadOnly:\t{_go(_get(v, 'persistentVolumeClaim', 'readOnly') is True)}\n")
        elif "nfs" in v:
            w.write(2, "Type:\tNFS (an NFS mount that lasts the lifetime of a pod)\n")
            w.write(2, f"Server:\t{_s(v, 'nfs', 'server')}\n")
            w.write(2, f"Path:\t{_s(v, 'nfs', 'path')}\n")
            w.write(2, f"ReadOnly:\t{_go(_get(v, 'nfs', 'readOnly') is True)}\n")
        elif "projected" in v:
            w.write(
                2, "Type:\tProjected (a volume that contains injected data from multiple sources)\n"
            )
            for src in _list(v, "projected", "sources"):
                if "secret" in src:
                    w.write(2, f"SecretName:\t{_s(src, 'secret', 'name')}\n")
                    w.write(2, f"SecretOptionalName:\t{_s(src, 'secret', 'optional') or '<nil>'}\n")
                elif "downwardAPI" in src:
                    w.write(2, "DownwardAPI:\ttrue\n")
                elif "configMap" in src:
                    w.write(2, f"ConfigMapName:\t{_s(src, 'configMap', 'name')}\n")
                    w.write(
                        2, f"ConfigMapOptional:\t{_s(src, 'configMap', 'optional') or '<nil>'}\n"
                    )
                elif "serviceAccountToken" in src:
                    secs = _i(src, "serviceAccountToken", "expirationSeconds")
                    w.write(2, f"TokenExpirationSeconds:\t{secs}\n")
        elif "downwardAPI" in v:
            w.write(2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n")
            w.write(2, "Items:\n")
            for item in _list(v, "downwardAPI", "items"):
                ref = _s(item, "fieldRef", "fieldPath") or _s(item, "resourceFieldRef", "resource")
                w.write(3, f"{ref} -> {_s(item, 'path')}\n")
        else:
            source = next((k for k in v if k != "name"), "")
            w.write(2, f"Type:\t{source or '<unknown>'}\n")


def _qos_class(pod: Mapping[str, Any]) -> str:
    """``status.qosClass``, else computed like kubelet's ``GetPodQOS``."""
    if _s(pod, "status", "qosClass"):
        return _s(pod, "status", "qosClass")
    containers = _list(pod, "spec", "containers") + _list(pod, "spec", "initContainers")
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in containers:
        for key, acc in (("requests", requests), ("limits", limits)):
            for rname, q in _map(c, "resources", key).items():
                if rname in ("cpu", "memory") and not quantity.is_zero(str(q)):
                    acc[rname] = acc.get(rname, Fraction(0)) + quantity.add(str(q), 0)
        found = {r for r in _map(c, "resources", "limits") if r in ("cpu", "memory")}
        if found != {"cpu", "memory"}:
            guaranteed = False
        reqs = _map(c, "resources", "requests")
        lims = _map(c, "resources", "limits")
        for r in ("cpu", "memory"):
            if r in reqs and r in lims and quantity.compare(str(reqs[r]), str(lims[r])) != 0:
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# ------------------------------------------------------------------------------ describers


def _pod_template(w: _Writer, template: Mapping[str, Any]) -> None:
    w.write(0, "Pod Template:\n")
    meta, spec = _map(template, "metadata"), _map(template, "spec")
    _labels(w, "  Labels", _map(meta, "labels"))
    if _map(meta, "annotations"):
        _annotations(w, "  Annotations", _map(meta, "annotations"))
    if _s(spec, "serviceAccountName"):
        w.write(1, f"Service Account:\t{_s(spec, 'serviceAccountName')}\n")
    if _list(spec, "initContainers"):
        _containers(w, "Init Containers", _list(spec, "initContainers"), None, "  ", None)
    _containers(w, "Containers", _list(spec, "containers"), None, "  ", None)
    _volumes(w, _list(spec, "volumes"), "  ")
    if _s(spec, "priorityClassName"):
        w.write(1, f"Priority Class Name:\t{_s(spec, 'priorityClassName')}\n")
    _labels(w, "  Node-Selectors", _map(spec, "nodeSelector"))
    _tolerations(w, "  Tolerations", _list(spec, "tolerations"))
