"""Describers of the core kinds: Pod, Service, Namespace, ConfigMap and Secret.

Pure functions over the object's JSON dict and the ``related`` objects the caller fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.api import timeutil
from control.cli import columns
from control.cli.columns import format_labels
from control.cli.describe._text import (
    _annotations,
    _as_dict,
    _controller,
    _get,
    _go,
    _i,
    _labels,
    _list,
    _map,
    _s,
    _tolerations,
    _Writer,
    format_time,
)
from control.cli.describe.podspec import _containers, _qos_class, _volumes


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
