"""``flotilla describe``: kubectl-describe-like text for an object and what relates to it.

Owns the layout of kubectl's describers (``k8s.io/kubectl/pkg/describe``): specific ones for
Pod, Deployment, Service, Node, Namespace, ConfigMap and Secret, and kubectl's generic
describer (sorted fields as "Title Case: value" lines) for every other kind; each ends with
the Events table when events were fetched.

Two entry points:

- :func:`describe_object` (pure): ``obj``, its kind and ``related`` — a dict the caller
  fills: ``events`` (list of Event messages about the object; the section is printed only
  when the key is present), ``replicasets`` (a Deployment's), ``endpoints`` (a Service's
  Endpoints), ``pods`` (a Node's pods), ``lease`` (a Node's Lease), ``resourcequotas`` /
  ``limitranges`` (a Namespace's);
- :func:`describe` (async): fetches ``related`` through an ``ApiClient`` as kubectl does,
  then calls :func:`describe_object`.

Text is built kubectl's way: lines with tab-separated cells, aligned by Go tabwriter rules
(:func:`control.cli.printers.tabwrite`), so the alignment quirks match kubectl's. Times are
RFC 1123 in local time, as kubectl prints them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from google.protobuf.message import Message

from control.api import convert, quantity, timeutil
from control.api import errors as api_errors
from control.api.kinds import KindInfo
from control.cli import columns
from control.cli.columns import age, format_label_selector, format_labels
from control.cli.printers import tabwrite

__all__ = ["describe", "describe_object", "fetch_related", "format_time", "smart_label"]

_MAX_ANNOTATION = 140
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------------- helpers


def _get(obj: Any, *path: str | int) -> Any:
    cur = obj
    for p in path:
        if isinstance(p, int):
            if not isinstance(cur, list) or not -len(cur) <= p < len(cur):
                return None
            cur = cur[p]
        elif isinstance(cur, Mapping):
            cur = cur.get(p)
        else:
            return None
        if cur is None:
            return None
    return cur


def _s(obj: Any, *path: str | int) -> str:
    v = _get(obj, *path)
    return "" if v is None else _go(v)


def _i(obj: Any, *path: str | int) -> int:
    v = _get(obj, *path)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _list(obj: Any, *path: str | int) -> list[Any]:
    v = _get(obj, *path)
    return v if isinstance(v, list) else []


def _map(obj: Any, *path: str | int) -> Mapping[str, Any]:
    v = _get(obj, *path)
    return v if isinstance(v, Mapping) else {}


def _go(v: Any) -> str:
    """A scalar as Go's ``%v`` prints it (``true``/``false`` for booleans)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _title_bool(v: Any) -> str:
    """kubectl's ``printBool``: ``True``/``False``."""
    return "True" if v else "False"


def format_time(ts: Any) -> str:
    """An RFC 3339 string as Go's ``time.RFC1123Z`` in local time; ``<unset>`` if absent."""
    if not isinstance(ts, str) or not ts:
        return "<unset>"
    secs = columns.time_seconds(ts)
    if secs is None:
        return ts
    t = time.localtime(int(secs))
    off = t.tm_gmtoff or 0
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{off // 3600:02d}{off % 3600 // 60:02d}"
    )


_WORD = re.compile(r"[A-Z]+s?(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_ACRONYMS = {"API", "URL", "UID", "OSB", "GUID"}


def smart_label(field: str) -> str:
    """kubectl's ``smartLabelFor``: ``creationTimestamp`` -> ``Creation Timestamp``."""
    if any(not (c.isalpha() or c == "-") for c in field):
        return field
    if "-" in field:
        return "-".join(smart_label(piece) for piece in field.split("-"))
    words = []
    for part in _WORD.findall(field):
        words.append(part.upper() if part.upper() in _ACRONYMS else part[:1].upper() + part[1:])
    return " ".join(words) or field


class _Writer:
    """kubectl's PrefixWriter: each level indents two spaces; text keeps its tabs."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, level: int, text: str) -> None:
        self._parts.append("  " * level + text)

    def text(self) -> str:
        return tabwrite("".join(self._parts))


def _labels(w: _Writer, title: str, labels: Mapping[str, Any] | None) -> None:
    """``printLabelsMultiline``: first label on the title line, the others below it."""
    if not labels:
        w.write(0, f"{title}:\t<none>\n")
        return
    for n, k in enumerate(sorted(labels)):
        w.write(0, f"{title}:\t" if n == 0 else "\t")
        w.write(0, f"{k}={labels[k]}\n")


def _annotations(w: _Writer, title: str, annotations: Mapping[str, Any] | None) -> None:
    # kubectl hides the (large, redundant) last-applied-configuration.
    shown = {
        k: v
        for k, v in (annotations or {}).items()
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    if not shown:
        w.write(0, f"{title}:\t<none>\n")
        return
    for n, k in enumerate(sorted(shown)):
        w.write(0, f"{title}:\t" if n == 0 else "\t")
        value = str(shown[k]).removesuffix("\n")
        if len(value) + len(k) + 2 > _MAX_ANNOTATION or "\n" in value:
            w.write(0, f"{k}:\n")
            for line in value.split("\n"):
                if len(line) > _MAX_ANNOTATION - 2:
                    line = line[: _MAX_ANNOTATION - 5] + "..."
                w.write(0, f"\t  {line}\n")
        else:
            w.write(0, f"{k}: {value}\n")


def _tolerations(w: _Writer, title: str, tolerations: list[Any]) -> None:
    if not tolerations:
        w.write(0, f"{title}:\t<none>\n")
        return
    for n, t in enumerate(tolerations):
        w.write(0, f"{title}:\t" if n == 0 else "\t")
        text = _s(t, "key")
        if _s(t, "value"):
            text += f"={_s(t, 'value')}"
        if _s(t, "effect"):
            text += f":{_s(t, 'effect')}"
        if _s(t, "operator") == "Exists" and not _s(t, "value"):
            text += " op=Exists" if (_s(t, "key") or _s(t, "effect")) else "op=Exists"
        if _get(t, "tolerationSeconds") is not None:
            text += f" for {_i(t, 'tolerationSeconds')}s"
        w.write(0, text + "\n")


def _taints(w: _Writer, title: str, taints: list[Any]) -> None:
    if not taints:
        w.write(0, f"{title}:\t<none>\n")
        return
    for n, t in enumerate(taints):
        w.write(0, f"{title}:\t" if n == 0 else "\t")
        value = f"={_s(t, 'value')}" if _s(t, "value") else ""
        w.write(0, f"{_s(t, 'key')}{value}:{_s(t, 'effect')}\n")


def _controller(meta: Mapping[str, Any]) -> str:
    for ref in _list(meta, "ownerReferences"):
        if _get(ref, "controller") is True:
            return f"{_s(ref, 'kind')}/{_s(ref, 'name')}"
    return ""


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Message):
        d: dict[str, Any] = convert.to_dict(obj)
        return d
    return dict(obj)


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


def _describe_pod(w: _Writer, pod: dict[str, Any], related: Mapping[str, Any], now: float) -> None:
    meta, spec, st = _map(pod, "metadata"), _map(pod, "spec"), _map(pod, "status")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    w.write(0, f"Namespace:\t{_s(meta, 'namespace')}\n")
    if _get(spec, "priority") is not None:
        w.write(0, f"Priority:\t{_i(spec, 'priority')}\n")
    if _s(spec, "priorityClassName"):
        w.write(0, f"Priority Class Name:\t{_s(spec, 'priorityClassName')}\n")
    if _s(spec, "runtimeClassName"):
        w.write(0, f"Runtime Class Name:\t{_s(spec, 'runtimeClassName')}\n")
    if _s(spec, "serviceAccountName"):
        w.write(0, f"Service Account:\t{_s(spec, 'serviceAccountName')}\n")
    node = _s(spec, "nodeName")
    w.write(0, f"Node:\t{node}/{_s(st, 'hostIP')}\n" if node else "Node:\t<none>\n")
    if _get(st, "startTime") is not None:
        w.write(0, f"Start Time:\t{format_time(_get(st, 'startTime'))}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    deletion = _get(meta, "deletionTimestamp")
    if deletion is not None and _s(st, "phase") not in ("Failed", "Succeeded"):
        left = columns.time_seconds(deletion)
        lasts = timeutil.human_age(left - now) if left is not None else "<unknown>"
        w.write(0, f"Status:\tTerminating (lasts {lasts})\n")
        w.write(0, f"Termination Grace Period:\t{_i(meta, 'deletionGracePeriodSeconds')}s\n")
    else:
        w.write(0, f"Status:\t{_s(st, 'phase')}\n")
    if _s(st, "reason"):
        w.write(0, f"Reason:\t{_s(st, 'reason')}\n")
    if _s(st, "message"):
        w.write(0, f"Message:\t{_s(st, 'message')}\n")
    w.write(0, f"IP:\t{_s(st, 'podIP')}\n")
    ips = _list(st, "podIPs")
    if not ips:
        w.write(0, "IPs:\t<none>\n")
    else:
        w.write(0, "IPs:\n")
        for ip in ips:
            w.write(1, f"IP:\t{_s(ip, 'ip')}\n")
    if _controller(meta):
        w.write(0, f"Controlled By:\t{_controller(meta)}\n")
    if _s(st, "nominatedNodeName"):
        w.write(0, f"NominatedNodeName:\t{_s(st, 'nominatedNodeName')}\n")
    if _list(spec, "initContainers"):
        _containers(
            w,
            "Init Containers",
            _list(spec, "initContainers"),
            _list(st, "initContainerStatuses"),
            "",
            pod,
        )
    _containers(w, "Containers", _list(spec, "containers"), _list(st, "containerStatuses"), "", pod)
    conditions = _list(st, "conditions")
    gates = _list(spec, "readinessGates")
    if gates:
        w.write(0, "Readiness Gates:\n  Type\tStatus\n")
        for g in gates:
            status = next(
                (_s(c, "status") for c in conditions if _s(c, "type") == _s(g, "conditionType")),
                "<none>",
            )
            w.write(1, f"{_s(g, 'conditionType')} \t{status} \n")
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\n")
        for c in conditions:
            w.write(1, f"{_s(c, 'type')} \t{_s(c, 'status')} \n")
    _volumes(w, _list(spec, "volumes"), "")
    w.write(0, f"QoS Class:\t{_qos_class(pod)}\n")
    _labels(w, "Node-Selectors", _map(spec, "nodeSelector"))
    _tolerations(w, "Tolerations", _list(spec, "tolerations"))


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


def _template_without_hash(template: Any) -> Any:
    """A pod template with the ``pod-template-hash`` label dropped, for comparing to RSes."""
    t = dict(_map(template))
    meta = dict(_map(t, "metadata"))
    labels = {k: v for k, v in _map(meta, "labels").items() if k != "pod-template-hash"}
    meta["labels"] = labels
    t["metadata"] = meta
    return t


def _split_replicasets(
    d: Mapping[str, Any], replicasets: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(old, new) ReplicaSets of a Deployment, as ``deploymentutil.GetAllReplicaSets``.

    The new one has the Deployment's pod template (ignoring ``pod-template-hash``); the old
    ones are the others that still own pods, oldest first.
    """
    uid = _s(d, "metadata", "uid")
    owned = [
        rs
        for rs in replicasets
        if not uid or any(_s(r, "uid") == uid for r in _list(rs, "metadata", "ownerReferences"))
    ]
    owned.sort(key=lambda rs: (_s(rs, "metadata", "creationTimestamp"), _s(rs, "metadata", "name")))
    want = _template_without_hash(_get(d, "spec", "template"))
    new = next(
        (rs for rs in owned if _template_without_hash(_get(rs, "spec", "template")) == want), None
    )
    old = [rs for rs in owned if rs is not new and _i(rs, "status", "replicas") > 0]
    return old, new


def _rs_list(rss: list[dict[str, Any]]) -> str:
    parts = []
    for rs in rss:
        desired = _get(rs, "spec", "replicas")
        desired_n = desired if isinstance(desired, int) else 1
        parts.append(
            f"{_s(rs, 'metadata', 'name')} ({_i(rs, 'status', 'replicas')}/{desired_n} "
            "replicas created)"
        )
    return ", ".join(parts) or "<none>"


def _describe_deployment(
    w: _Writer, d: dict[str, Any], related: Mapping[str, Any], now: float
) -> None:
    meta, spec, st = _map(d, "metadata"), _map(d, "spec"), _map(d, "status")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    w.write(0, f"Namespace:\t{_s(meta, 'namespace')}\n")
    w.write(0, f"CreationTimestamp:\t{format_time(_get(meta, 'creationTimestamp'))}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, f"Selector:\t{format_label_selector(_map(spec, 'selector'))}\n")
    desired = spec.get("replicas")
    w.write(
        0,
        f"Replicas:\t{desired if isinstance(desired, int) else 1} desired | "
        f"{_i(st, 'updatedReplicas')} updated | {_i(st, 'replicas')} total | "
        f"{_i(st, 'availableReplicas')} available | {_i(st, 'unavailableReplicas')} unavailable\n",
    )
    w.write(0, f"StrategyType:\t{_s(spec, 'strategy', 'type')}\n")
    w.write(0, f"MinReadySeconds:\t{_i(spec, 'minReadySeconds')}\n")
    ru = _get(spec, "strategy", "rollingUpdate")
    if isinstance(ru, Mapping):
        w.write(
            0,
            f"RollingUpdateStrategy:\t{_s(ru, 'maxUnavailable') or '0'} max unavailable, "
            f"{_s(ru, 'maxSurge') or '0'} max surge\n",
        )
    _pod_template(w, _map(spec, "template"))
    conditions = _list(st, "conditions")
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
        w.write(1, "----\t------\t------\n")
        for c in conditions:
            w.write(1, f"{_s(c, 'type')} \t{_s(c, 'status')}\t{_s(c, 'reason')}\n")
    if "replicasets" in related:
        old, new = _split_replicasets(d, [_as_dict(r) for r in related["replicasets"] or []])
        w.write(0, f"OldReplicaSets:\t{_rs_list(old)}\n")
        w.write(0, f"NewReplicaSet:\t{_rs_list([new] if new else [])}\n")


def _describe_service(
    w: _Writer, svc: dict[str, Any], related: Mapping[str, Any], now: float
) -> None:
    meta, spec = _map(svc, "metadata"), _map(svc, "spec")
    endpoints = related.get("endpoints")
    ep = _as_dict(endpoints) if endpoints is not None else None
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    w.write(0, f"Namespace:\t{_s(meta, 'namespace')}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, f"Selector:\t{format_labels(_map(spec, 'selector'))}\n")
    w.write(0, f"Type:\t{_s(spec, 'type') or 'ClusterIP'}\n")
    if _s(spec, "ipFamilyPolicy"):
        w.write(0, f"IP Family Policy:\t{_s(spec, 'ipFamilyPolicy')}\n")
    w.write(0, f"IP Families:\t{','.join(map(str, _list(spec, 'ipFamilies'))) or '<none>'}\n")
    w.write(0, f"IP:\t{_s(spec, 'clusterIP')}\n")
    w.write(0, f"IPs:\t{','.join(map(str, _list(spec, 'clusterIPs'))) or '<none>'}\n")
    if _list(spec, "externalIPs"):
        w.write(0, f"External IPs:\t{','.join(map(str, _list(spec, 'externalIPs')))}\n")
    if _s(spec, "loadBalancerIP"):
        w.write(0, f"Desired LoadBalancer IP:\t{_s(spec, 'loadBalancerIP')}\n")
    ingress = _list(svc, "status", "loadBalancer", "ingress")
    if ingress:
        text = ", ".join(_s(i, "ip") or _s(i, "hostname") for i in ingress)
        w.write(0, f"LoadBalancer Ingress:\t{text}\n")
    if _s(spec, "externalName"):
        w.write(0, f"External Name:\t{_s(spec, 'externalName')}\n")
    for p in _list(spec, "ports"):
        name = _s(p, "name") or "<unset>"
        proto = _s(p, "protocol") or "TCP"
        w.write(0, f"Port:\t{name}\t{_i(p, 'port')}/{proto}\n")
        target = _get(p, "targetPort")
        w.write(0, f"TargetPort:\t{_go(target if target is not None else _i(p, 'port'))}/{proto}\n")
        if _i(p, "nodePort"):
            w.write(0, f"NodePort:\t{name}\t{_i(p, 'nodePort')}/{proto}\n")
        w.write(0, f"Endpoints:\t{columns.format_endpoints(ep, {_s(p, 'name')})}\n")
    if _s(spec, "externalTrafficPolicy"):
        w.write(0, f"External Traffic Policy:\t{_s(spec, 'externalTrafficPolicy')}\n")
    if _i(spec, "healthCheckNodePort"):
        w.write(0, f"HealthCheck NodePort:\t{_i(spec, 'healthCheckNodePort')}\n")
    w.write(0, f"Session Affinity:\t{_s(spec, 'sessionAffinity') or 'None'}\n")
    if _s(spec, "internalTrafficPolicy"):
        w.write(0, f"Internal Traffic Policy:\t{_s(spec, 'internalTrafficPolicy')}\n")


def _pod_requests_limits(pod: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """A pod's effective requests and limits (``resourcehelper.PodRequestsAndLimits``):
    the sum over containers, at least each init container's, plus the pod overhead."""

    def total(key: str) -> dict[str, str]:
        acc: dict[str, Fraction] = {}
        family: dict[str, quantity.SuffixFamily] = {}
        for c in _list(pod, "spec", "containers"):
            for r, q in _map(c, "resources", key).items():
                acc[r] = acc.get(r, Fraction(0)) + quantity.add(str(q), 0)
                family.setdefault(r, quantity.quantity_family(str(q)))
        for c in _list(pod, "spec", "initContainers"):
            for r, q in _map(c, "resources", key).items():
                v = quantity.add(str(q), 0)
                family.setdefault(r, quantity.quantity_family(str(q)))
                if v > acc.get(r, Fraction(0)):
                    acc[r] = v
        for r, q in _map(pod, "spec", "overhead").items():
            if r in acc:
                acc[r] += quantity.add(str(q), 0)
        return {r: quantity.format_quantity(v, family[r]) for r, v in acc.items()}

    return total("requests"), total("limits")


def _percent(part: str, whole: str | None, milli: bool) -> int:
    if not whole:
        return 0
    w = quantity.milli_value(whole) if milli else quantity.value(whole)
    if w == 0:
        return 0
    p = quantity.milli_value(part) if milli else quantity.value(part)
    return int(p / w * 100)


def _describe_node(
    w: _Writer, node: dict[str, Any], related: Mapping[str, Any], now: float
) -> None:
    meta, spec, st = _map(node, "metadata"), _map(node, "spec"), _map(node, "status")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    w.write(0, f"Roles:\t{','.join(columns.node_roles(node)) or '<none>'}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, f"CreationTimestamp:\t{format_time(_get(meta, 'creationTimestamp'))}\n")
    _taints(w, "Taints", _list(spec, "taints"))
    w.write(0, f"Unschedulable:\t{_go(_get(spec, 'unschedulable') is True)}\n")
    lease = related.get("lease")
    if lease is not None:
        ls = _map(_as_dict(lease), "spec")
        w.write(0, "Lease:\n")
        w.write(1, f"HolderIdentity:\t{_s(ls, 'holderIdentity') or '<unset>'}\n")
        w.write(1, f"AcquireTime:\t{format_time(_get(ls, 'acquireTime'))}\n")
        w.write(1, f"RenewTime:\t{format_time(_get(ls, 'renewTime'))}\n")
    conditions = _list(st, "conditions")
    if conditions:
        w.write(0, "Conditions:\n")
        w.write(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
        w.write(1, "----\t------\t-----------------\t------------------\t------\t-------\n")
        for c in conditions:
            w.write(
                1,
                f"{_s(c, 'type')} \t{_s(c, 'status')} \t"
                f"{format_time(_get(c, 'lastHeartbeatTime'))} \t"
                f"{format_time(_get(c, 'lastTransitionTime'))} \t"
                f"{_s(c, 'reason')} \t{_s(c, 'message')}\n",
            )
    w.write(0, "Addresses:\n")
    for a in _list(st, "addresses"):
        w.write(1, f"{_s(a, 'type')}:\t{_s(a, 'address')}\n")
    for key, title in (("capacity", "Capacity"), ("allocatable", "Allocatable")):
        res = _map(st, key)
        if res:
            w.write(0, f"{title}:\n")
            for r in sorted(res):
                w.write(1, f"{r}:\t{res[r]}\n")
    info = _map(st, "nodeInfo")
    w.write(0, "System Info:\n")
    for title, key in (
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
        ("Kube-Proxy Version", "kubeProxyVersion"),
    ):
        w.write(1, f"{title}:\t{_s(info, key)}\n")
    if _s(spec, "podCIDR"):
        w.write(0, f"PodCIDR:\t{_s(spec, 'podCIDR')}\n")
    if _list(spec, "podCIDRs"):
        w.write(0, f"PodCIDRs:\t{','.join(map(str, _list(spec, 'podCIDRs')))}\n")
    if _s(spec, "providerID"):
        w.write(0, f"ProviderID:\t{_s(spec, 'providerID')}\n")
    if "pods" in related:
        _node_pods(w, node, [_as_dict(p) for p in related["pods"] or []], now)


def _node_pods(w: _Writer, node: Mapping[str, Any], pods: list[dict[str, Any]], now: float) -> None:
    pods = [p for p in pods if _s(p, "status", "phase") not in ("Succeeded", "Failed")]
    alloc = _map(node, "status", "allocatable") or _map(node, "status", "capacity")
    cpu_total, mem_total = alloc.get("cpu"), alloc.get("memory")
    w.write(0, f"Non-terminated Pods:\t({len(pods)} in total)\n")
    w.write(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n")
    w.write(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n")
    sums: dict[str, dict[str, Fraction]] = {"requests": {}, "limits": {}}
    for p in pods:
        req, lim = _pod_requests_limits(p)
        for key, res in (("requests", req), ("limits", lim)):
            for r, q in res.items():
                sums[key][r] = sums[key].get(r, Fraction(0)) + quantity.add(q, 0)
        cells = []
        for res, r in ((req, "cpu"), (lim, "cpu"), (req, "memory"), (lim, "memory")):
            q = res.get(r, "0")
            total = cpu_total if r == "cpu" else mem_total
            cells.append(f"{q} ({_percent(q, total, r == 'cpu')}%)")
        w.write(
            1,
            f"{_s(p, 'metadata', 'namespace')}\t{_s(p, 'metadata', 'name')}\t\t"
            + "\t".join(cells)
            + f"\t{age(_get(p, 'metadata', 'creationTimestamp'), now)}\n",
        )
    w.write(
        0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n"
    )
    w.write(1, "Resource\tRequests\tLimits\n")
    w.write(1, "--------\t--------\t------\n")
    for r in ("cpu", "memory", "ephemeral-storage"):
        total = alloc.get(r)
        family = quantity.SuffixFamily.BINARY_SI if r != "cpu" else quantity.SuffixFamily.DECIMAL_SI
        vals = []
        for key in ("requests", "limits"):
            q = quantity.format_quantity(sums[key].get(r, Fraction(0)), family)
            vals.append(f"{q} ({_percent(q, total, r == 'cpu')}%)")
        w.write(1, f"{r}\t{vals[0]}\t{vals[1]}\n")


def _describe_namespace(
    w: _Writer, ns: dict[str, Any], related: Mapping[str, Any], now: float
) -> None:
    meta = _map(ns, "metadata")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, f"Status:\t{_s(ns, 'status', 'phase')}\n")
    conditions = _list(ns, "status", "conditions")
    if conditions:
        w.write(0, "Conditions:\n")
        w.write(1, "Type\tStatus\tLastTransitionTime\tReason\tMessage\n")
        w.write(1, "----\t------\t------------------\t------\t-------\n")
        for c in conditions:
            w.write(
                1,
                f"{_s(c, 'type')}\t{_s(c, 'status')}\t"
                f"{format_time(_get(c, 'lastTransitionTime'))}\t{_s(c, 'reason')}\t"
                f"{_s(c, 'message')}\n",
            )
    if "resourcequotas" in related:
        w.write(0, "\n")
        quotas = sorted(
            (_as_dict(q) for q in related["resourcequotas"] or []),
            key=lambda q: _s(q, "metadata", "name"),
        )
        if not quotas:
            w.write(0, "No resource quota.\n")
        else:
            w.write(0, "Resource Quotas\n")
            for q in quotas:
                w.write(1, f"Name:\t{_s(q, 'metadata', 'name')}\n")
                w.write(1, "Resource\tUsed\tHard\n")
                w.write(1, "--------\t---\t---\n")
                hard, used = _map(q, "status", "hard"), _map(q, "status", "used")
                for r in sorted(hard):
                    w.write(1, f"{r}\t{used.get(r, '0')}\t{hard[r]}\n")
    if "limitranges" in related:
        w.write(0, "\n")
        ranges = [_as_dict(r) for r in related["limitranges"] or []]
        if not ranges:
            w.write(0, "No LimitRange resource.\n")
        else:
            w.write(
                0,
                "Resource Limits\n Type\tResource\tMin\tMax\tDefault Request\tDefault Limit"
                "\tMax Limit/Request Ratio\n",
            )
            w.write(
                0,
                " ----\t--------\t---\t---\t---------------\t-------------\t-----------------------\n",
            )
            for lr in ranges:
                for item in _list(lr, "spec", "limits"):
                    maps = [
                        _map(item, k)
                        for k in ("min", "max", "defaultRequest", "default", "maxLimitRequestRatio")
                    ]
                    for r in sorted(set().union(*maps)):
                        vals = "\t".join(_go(m[r]) if r in m else "-" for m in maps)
                        w.write(0, f" {_s(item, 'type')}\t{r}\t{vals}\n")


def _describe_configmap(
    w: _Writer, cm: dict[str, Any], related: Mapping[str, Any], now: float
) -> None:
    meta = _map(cm, "metadata")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    w.write(0, f"Namespace:\t{_s(meta, 'namespace')}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, "\nData\n====\n")
    data = _map(cm, "data")
    for k in sorted(data):
        w.write(0, f"{k}:\n----\n{data[k]}\n\n")
    w.write(0, "\nBinaryData\n====\n")
    binary = _map(cm, "binaryData")
    for k in sorted(binary):
        # binaryData is base64 in JSON; kubectl prints the decoded size.
        w.write(0, f"{k}: {len(str(binary[k])) * 3 // 4 - str(binary[k]).count('=')} bytes\n")
    w.write(0, "\n")


def _describe_secret(w: _Writer, s: dict[str, Any], related: Mapping[str, Any], now: float) -> None:
    meta = _map(s, "metadata")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    w.write(0, f"Namespace:\t{_s(meta, 'namespace')}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    w.write(0, f"\nType:\t{_s(s, 'type')}\n")
    w.write(0, "\nData\n====\n")
    data = _map(s, "data")
    # Values stay hidden (kubectl shows sizes only): describe output ends up in tickets.
    for k in sorted(data):
        v = str(data[k])
        w.write(0, f"{k}:\t{len(v) * 3 // 4 - v.count('=')} bytes\n")


def _unstructured(
    w: _Writer, level: int, content: Mapping[str, Any], skip: str, skips: set[str]
) -> None:
    """kubectl's ``printUnstructuredContent``: sorted fields, smart labels, nested levels."""
    for key in sorted(content):
        path = f"{skip}.{key}"
        if path in skips:
            continue
        value = content[key]
        if isinstance(value, Mapping):
            w.write(level, f"{smart_label(key)}:\n")
            _unstructured(w, level + 1, value, path, skips)
        elif isinstance(value, list):
            w.write(level, f"{smart_label(key)}:\n")
            for item in value:
                if isinstance(item, Mapping):
                    _unstructured(w, level + 1, item, path, skips)
                else:
                    w.write(level + 1, f"{_go(item)}\n")
        else:
            w.write(level, f"{smart_label(key)}:\t{_go(value)}\n")


def _describe_generic(
    w: _Writer, obj: dict[str, Any], related: Mapping[str, Any], now: float, info: KindInfo
) -> None:
    meta = _map(obj, "metadata")
    w.write(0, f"Name:\t{_s(meta, 'name')}\n")
    if info.namespaced:
        w.write(0, f"Namespace:\t{_s(meta, 'namespace')}\n")
    _labels(w, "Labels", _map(meta, "labels"))
    _annotations(w, "Annotations", _map(meta, "annotations"))
    content = {"apiVersion": info.api_version, "kind": info.kind, **obj}
    skips = {
        ".metadata.managedFields",
        ".metadata.name",
        ".metadata.namespace",
        ".metadata.labels",
        ".metadata.annotations",
    }
    _unstructured(w, 0, content, "", skips)


_DESCRIBERS = {
    "Pod": _describe_pod,
    "Deployment": _describe_deployment,
    "Service": _describe_service,
    "Node": _describe_node,
    "Namespace": _describe_namespace,
    "ConfigMap": _describe_configmap,
    "Secret": _describe_secret,
}


# ----------------------------------------------------------------------------------- events


def _events(w: _Writer, events: list[dict[str, Any]], now: float) -> None:
    """kubectl's ``DescribeEvents``: oldest first, ``Age`` as ``2m (x3 over 5m)``."""
    if not events:
        w.write(0, "Events:\t<none>\n")
        return

    def when(e: Mapping[str, Any]) -> float:
        t = columns.time_seconds(_get(e, "lastTimestamp")) or columns.time_seconds(
            _get(e, "eventTime")
        )
        return t or 0.0

    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")
    for e in sorted(events, key=when):
        first = age(_get(e, "eventTime") or _get(e, "firstTimestamp"), now)
        series = _get(e, "series")
        if isinstance(series, Mapping):
            interval = (
                f"{age(_get(series, 'lastObservedTime'), now)} "
                f"(x{_i(series, 'count')} over {first})"
            )
        elif _i(e, "count") > 1:
            interval = f"{age(_get(e, 'lastTimestamp'), now)} (x{_i(e, 'count')} over {first})"
        else:
            interval = first
        source = _s(e, "source", "component") or _s(e, "reportingComponent")
        w.write(
            1,
            f"{_s(e, 'type')}\t{_s(e, 'reason')}\t{interval}\t{source}\t"
            f"{_s(e, 'message').strip()}\n",
        )


# ------------------------------------------------------------------------------ entry points


def describe_object(
    obj: Message | Mapping[str, Any],
    info: KindInfo,
    related: Mapping[str, Any] | None = None,
    *,
    now: float | None = None,
) -> str:
    """The ``describe`` text of ``obj`` (a message, or its Kubernetes JSON dict).

    ``related`` is described in the module docstring; the Events section is printed only
    when ``related`` has an ``events`` key (an empty list prints ``Events: <none>``).
    """
    related = related or {}
    now = time.time() if now is None else now
    d = _as_dict(obj)
    w = _Writer()
    describer = _DESCRIBERS.get(info.kind)
    if describer is not None:
        describer(w, d, related, now)
    else:
        _describe_generic(w, d, related, now, info)
    if "events" in related:
        _events(w, [_as_dict(e) for e in related["events"] or []], now)
    return w.text()


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return not uid or any(_s(r, "uid") == uid for r in _list(obj, "metadata", "ownerReferences"))


async def fetch_related(client: Any, info: KindInfo, obj: Message) -> dict[str, Any]:
    """What kubectl's describer for ``info`` reads besides the object, via ``client``.

    Each read is best effort: one the server refuses is left out (its section then is not
    printed), as describe should still show the object itself.
    """
    meta = obj.metadata  # type: ignore[attr-defined]
    name, namespace, uid = meta.name, meta.namespace, meta.uid
    related: dict[str, Any] = {}

    async def attempt(key: str, coro: Any) -> None:
        try:
            related[key] = await coro
        except api_errors.NotFound:
            pass
        except api_errors.ApiError:
            pass

    async def events() -> list[Any]:
        res = await client.list(
            "events",
            namespace,
            field_selector=f"involvedObject.name={name},involvedObject.kind={info.kind}",
        )
        return [
            e
            for e in res.items
            if not uid or not e.involved_object.uid or e.involved_object.uid == uid
        ]

    await attempt("events", events())
    d = _as_dict(obj)
    if info.kind == "Deployment":

        async def replicasets() -> list[Any]:
            selector = format_label_selector(_map(d, "spec", "selector"))
            res = await client.list(
                "replicasets", namespace, label_selector="" if selector == "<none>" else selector
            )
            return [rs for rs in res.items if _owned_by(_as_dict(rs), uid)]

        await attempt("replicasets", replicasets())
    elif info.kind == "Service":
        await attempt("endpoints", client.get("endpoints", name, namespace))
    elif info.kind == "Node":

        async def pods() -> list[Any]:
            res = await client.list_all("pods", "", field_selector=f"spec.nodeName={name}")
            return [p for p in res.items if p.spec.node_name == name]

        await attempt("pods", pods())
        await attempt("lease", client.get("leases", name, "kube-node-lease"))
    elif info.kind == "Namespace":

        async def items(resource: str) -> list[Any]:
            return list((await client.list_all(resource, name)).items)

        await attempt("resourcequotas", items("resourcequotas"))
        await attempt("limitranges", items("limitranges"))
    return related


async def describe(client: Any, info: KindInfo, obj: Message, *, now: float | None = None) -> str:
    """``describe_object`` of ``obj`` with its related objects fetched through ``client``."""
    related = await fetch_related(client, info, obj)
    return describe_object(obj, info, related, now=now)
