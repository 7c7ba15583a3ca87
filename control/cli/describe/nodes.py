"""The Node describer: conditions, capacity, system info, lease, and the node's pods with
their summed requests and limits.

Pure functions over the object's JSON dict and the ``related`` objects the caller fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from control.api import quantity
from control.cli import columns
from control.cli.columns import age
from control.cli.describe._text import (
    _annotations,
    _as_dict,
    _get,
    _go,
    _labels,
    _list,
    _map,
    _s,
    _taints,
    _Writer,
    format_time,
)


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
