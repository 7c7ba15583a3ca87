"""Per-kind table columns for ``flotilla get``: kubectl's default and ``-o wide`` columns.

Owns, for every kind in :data:`control.api.kinds.KINDS`, the header and the cell values of
kubectl's table printers (``k8s.io/kubernetes/pkg/printers/internalversion``), including the
derived cells: a pod's READY / STATUS / RESTARTS, a node's STATUS and ROLES, a service's
EXTERNAL-IP and PORT(S), a job's COMPLETIONS and DURATION. Also the small formatters shared
with :mod:`control.cli.describe` (``age``, ``format_labels``, ``format_label_selector``).

Rows are computed from the Kubernetes JSON dict (``convert.to_dict``) rather than from the
protobuf message: the cell rules are then written against the same field names as
kubectl's, and absent fields read uniformly as missing (no HasField juggling). Pure
functions; ``now`` (seconds since the epoch) is always passed in so output is testable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from control.api import timeutil

__all__ = [
    "GENERIC",
    "TableColumns",
    "age",
    "columns_for",
    "event_times",
    "format_endpoints",
    "format_label_selector",
    "format_labels",
    "header_for",
    "join_host_port",
    "node_roles",
    "node_status",
    "pod_status_cells",
    "time_seconds",
]

Obj = Mapping[str, Any]
# Builds the cells of one row from an object dict, ``now`` and ``wide``.
RowFn = Callable[[Obj, float, bool], list[str]]


@dataclass(frozen=True)
class TableColumns:
    """The columns of one kind's table.

    ``name_index`` is the column holding the object's name (prefixed by ``kind/`` when
    several kinds are printed); None for kinds without a NAME column (events).
    """

    header: tuple[str, ...]
    wide_header: tuple[str, ...]
    row: RowFn
    name_index: int | None = 0


# --------------------------------------------------------------------------------- helpers


def _get(obj: Any, *path: str | int) -> Any:
    """``obj[path[0]][path[1]]...``, or None as soon as a step is missing."""
    cur = obj
    for p in path:
        if isinstance(p, int):
            if not isinstance(cur, list) or not -len(cur) <= p < len(cur):
                return None
            cur = cur[p]
        else:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(p)
        if cur is None:
            return None
    return cur


def _s(obj: Any, *path: str | int) -> str:
    v = _get(obj, *path)
    return "" if v is None else str(v)


def _i(obj: Any, *path: str | int) -> int:
    v = _get(obj, *path)
    return v if isinstance(v, int) else 0


def _list(obj: Any, *path: str | int) -> list[Any]:
    v = _get(obj, *path)
    return v if isinstance(v, list) else []


def _map(obj: Any, *path: str | int) -> Mapping[str, Any]:
    v = _get(obj, *path)
    return v if isinstance(v, Mapping) else {}


def time_seconds(ts: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 string; None when absent or malformed."""
    if not isinstance(ts, str) or not ts:
        return None
    try:
        secs, nanos = timeutil.parse_rfc3339_parts(ts)
    except ValueError:
        return None
    return secs + nanos / 1e9


def age(ts: Any, now: float) -> str:
    """kubectl's ``translateTimestampSince``: ``<unknown>`` for a missing time."""
    secs = time_seconds(ts)
    if secs is None:
        return "<unknown>"
    return timeutil.human_age(now - secs)


def _or_none(s: str) -> str:
    return s if s else "<none>"


def format_labels(labels: Mapping[str, Any] | None) -> str:
    """``labels.FormatLabels``: ``a=1,b=2`` sorted by key, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """``metav1.FormatLabelSelector``: ``app=web,tier in (a,b),!legacy``; ``<none>`` if empty."""
    if not selector:
        return "<none>"
    reqs: list[tuple[str, str]] = []
    for k, v in _map(selector, "matchLabels").items():
        reqs.append((k, f"{k}={v}"))
    for e in _list(selector, "matchExpressions"):
        key, op = _s(e, "key"), _s(e, "operator")
        values = ",".join(sorted(str(v) for v in _list(e, "values")))
        if op == "In":
            reqs.append((key, f"{key} in ({values})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({values})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
        else:
            return "<error>"
    # labels.Selector sorts its requirements by key (stable for equal keys).
    reqs.sort(key=lambda r: r[0])
    return ",".join(r[1] for r in reqs) or "<none>"


def join_host_port(host: str, port: int | str) -> str:
    """Go's ``net.JoinHostPort``: brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bool_ptr(v: Any) -> str:
    """kubectl's ``printBoolPtr``: ``<unset>`` for nil, else ``True``/``False``."""
    if v is None:
        return "<unset>"
    return "True" if v else "False"


def _containers_images(spec: Any) -> list[str]:
    containers = _list(spec, "containers")
    return [
        ",".join(_s(c, "name") for c in containers),
        ",".join(_s(c, "image") for c in containers),
    ]


def _replicas(obj: Obj) -> int:
    """``spec.replicas``, defaulted to 1 as the apiserver does when unset."""
    v = _get(obj, "spec", "replicas")
    return v if isinstance(v, int) else 1


def _int_or_string(v: Any) -> str:
    return "N/A" if v is None else str(v)


# ------------------------------------------------------------------------------------ pods


def _restartable_init(container: Any) -> bool:
    return _s(container, "restartPolicy") == "Always"


def _condition_true(conditions: list[Any], ctype: str) -> bool:
    return any(_s(c, "type") == ctype and _s(c, "status") == "True" for c in conditions)


def pod_status_cells(pod: Obj, now: float) -> tuple[str, str, str]:
    """READY, STATUS and RESTARTS of a pod, following kubectl's ``printPod`` rule by rule."""
    spec, status = _map(pod, "spec"), _map(pod, "status")
    conditions = _list(status, "conditions")
    restarts = 0
    init_restarts = 0  # restarts of sidecars (restartable init containers)
    total = len(_list(spec, "containers"))
    ready = 0
    last_restart: float | None = None
    last_init_restart: float | None = None

    reason = _s(status, "phase")
    if _s(status, "reason"):
        reason = _s(status, "reason")
    for c in conditions:
        if _s(c, "type") == "PodScheduled" and _s(c, "reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {_s(c, "name"): c for c in _list(spec, "initContainers")}
    total += sum(1 for c in init_specs.values() if _restartable_init(c))

    def later(a: float | None, b: Any) -> float | None:
        t = time_seconds(b)
        if t is None:
            return a
        return t if a is None or t > a else a

    initializing = False
    n_init = len(_list(spec, "initContainers"))
    for i, cs in enumerate(_list(status, "initContainerStatuses")):
        restarts += _i(cs, "restartCount")
        finished = _get(cs, "lastState", "terminated", "finishedAt")
        last_restart = later(last_restart, finished)
        sidecar = _restartable_init(init_specs.get(_s(cs, "name")))
        if sidecar:
            init_restarts += _i(cs, "restartCount")
            last_init_restart = later(last_init_restart, finished)
        terminated = _get(cs, "state", "terminated")
        waiting = _get(cs, "state", "waiting")
        if terminated is not None and _i(terminated, "exitCode") == 0:
            continue
        if sidecar and _get(cs, "started") is True:
            if _get(cs, "ready") is True:
                ready += 1
            continue
        if terminated is not None:
            if _s(terminated, "reason"):
                reason = "Init:" + _s(terminated, "reason")
            elif _i(terminated, "signal"):
                reason = f"Init:Signal:{_i(terminated, 'signal')}"
            else:
                reason = f"Init:ExitCode:{_i(terminated, 'exitCode')}"
        elif waiting is not None and _s(waiting, "reason") not in ("", "PodInitializing"):
            reason = "Init:" + _s(waiting, "reason")
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = init_restarts
        last_restart = last_init_restart
        has_running = False
        # kubectl walks the statuses backwards so the first container's reason wins.
        for cs in reversed(_list(status, "containerStatuses")):
            restarts += _i(cs, "restartCount")
            last_restart = later(last_restart, _get(cs, "lastState", "terminated", "finishedAt"))
            waiting = _get(cs, "state", "waiting")
            terminated = _get(cs, "state", "terminated")
            if waiting is not None and _s(waiting, "reason"):
                reason = _s(waiting, "reason")
            elif terminated is not None and _s(terminated, "reason"):
                reason = _s(terminated, "reason")
            elif terminated is not None:
                if _i(terminated, "signal"):
                    reason = f"Signal:{_i(terminated, 'signal')}"
                else:
                    reason = f"ExitCode:{_i(terminated, 'exitCode')}"
            elif _get(cs, "ready") is True and _get(cs, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if _get(pod, "metadata", "deletionTimestamp") is not None:
        if _s(status, "reason") == "NodeLost":
            reason = "Unknown"
        elif _s(status, "phase") not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({timeutil.human_age(now - last_restart)} ago)"
    return f"{ready}/{total}", reason, restarts_cell


def _pod_row(pod: Obj, now: float, wide: bool) -> list[str]:
    ready, reason, restarts = pod_status_cells(pod, now)
    cells = [_s(pod, "metadata", "name"), ready, reason, restarts, _age(pod, now)]
    if wide:
        ip = _s(pod, "status", "podIPs", 0, "ip") or _s(pod, "status", "podIP")
        gates = _list(pod, "spec", "readinessGates")
        gates_cell = "<none>"
        if gates:
            conditions = _list(pod, "status", "conditions")
            true = 0
            for g in gates:
                for c in conditions:
                    if _s(c, "type") == _s(g, "conditionType"):
                        true += _s(c, "status") == "True"
                        break
            gates_cell = f"{true}/{len(gates)}"
        cells += [
            _or_none(ip),
            _or_none(_s(pod, "spec", "nodeName")),
            _or_none(_s(pod, "status", "nominatedNodeName")),
            gates_cell,
        ]
    return cells


def _age(obj: Obj, now: float) -> str:
    return age(_get(obj, "metadata", "creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return _s(obj, "metadata", "name")


# -------------------------------------------------------------------------------- workloads


def _deployment_row(d: Obj, now: float, wide: bool) -> list[str]:
    st = _map(d, "status")
    cells = [
        _name(d),
        f"{_i(st, 'readyReplicas')}/{_replicas(d)}",
        str(_i(st, "updatedReplicas")),
        str(_i(st, "availableReplicas")),
        _age(d, now),
    ]
    if wide:
        cells += _containers_images(_get(d, "spec", "template", "spec"))
        cells.append(format_label_selector(_get(d, "spec", "selector")))
    return cells


def _replicaset_row(rs: Obj, now: float, wide: bool) -> list[str]:
    st = _map(rs, "status")
    cells = [
        _name(rs),
        str(_replicas(rs)),
        str(_i(st, "replicas")),
        str(_i(st, "readyReplicas")),
        _age(rs, now),
    ]
    if wide:
        cells += _containers_images(_get(rs, "spec", "template", "spec"))
        cells.append(format_label_selector(_get(rs, "spec", "selector")))
    return cells


def _rc_row(rc: Obj, now: float, wide: bool) -> list[str]:
    cells = _replicaset_row(rc, now, False)
    if wide:
        cells += _containers_images(_get(rc, "spec", "template", "spec"))
        cells.append(format_labels(_map(rc, "spec", "selector")))
    return cells


def _daemonset_row(ds: Obj, now: float, wide: bool) -> list[str]:
    st = _map(ds, "status")
    cells = [
        _name(ds),
        str(_i(st, "desiredNumberScheduled")),
        str(_i(st, "currentNumberScheduled")),
        str(_i(st, "numberReady")),
        str(_i(st, "updatedNumberScheduled")),
        str(_i(st, "numberAvailable")),
        format_labels(_map(ds, "spec", "template", "spec", "nodeSelector")),
        _age(ds, now),
    ]
    if wide:
        cells += _containers_images(_get(ds, "spec", "template", "spec"))
        cells.append(format_label_selector(_get(ds, "spec", "selector")))
    return cells


def _statefulset_row(ss: Obj, now: float, wide: bool) -> list[str]:
    cells = [
        _name(ss),
        f"{_i(ss, 'status', 'readyReplicas')}/{_replicas(ss)}",
        _age(ss, now),
    ]
    if wide:
        cells += _containers_images(_get(ss, "spec", "template", "spec"))
    return cells


def _job_status(job: Obj) -> str:
    conditions = _list(job, "status", "conditions")
    if _condition_true(conditions, "Complete"):
        return "Complete"
    if _condition_true(conditions, "Failed"):
        return "Failed"
    if _get(job, "metadata", "deletionTimestamp") is not None:
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _condition_true(conditions, ctype):
            return ctype
    return "Running"


def _job_row(job: Obj, now: float, wide: bool) -> list[str]:
    spec, st = _map(job, "spec"), _map(job, "status")
    succeeded = _i(st, "succeeded")
    completions_v = spec.get("completions")
    parallelism = _i(spec, "parallelism")
    if isinstance(completions_v, int):
        completions = f"{succeeded}/{completions_v}"
    elif parallelism > 1:
        completions = f"{succeeded}/1 of {parallelism}"
    else:
        completions = f"{succeeded}/1"
    start, end = time_seconds(st.get("startTime")), time_seconds(st.get("completionTime"))
    duration = ""
    if start is not None:
        duration = timeutil.human_age((end if end is not None else now) - start)
    cells = [_name(job), _job_status(job), completions, duration, _age(job, now)]
    if wide:
        cells += _containers_images(_get(spec, "template", "spec"))
        cells.append(format_label_selector(_get(spec, "selector")))
    return cells


def _cronjob_row(cj: Obj, now: float, wide: bool) -> list[str]:
    spec = _map(cj, "spec")
    last = _get(cj, "status", "lastScheduleTime")
    cells = [
        _name(cj),
        _s(spec, "schedule"),
        _s(spec, "timeZone") or "<none>",
        _bool_ptr(spec.get("suspend")),
        str(len(_list(cj, "status", "active"))),
        "<none>" if last is None else age(last, now),
        _age(cj, now),
    ]
    if wide:
        cells += _containers_images(_get(spec, "jobTemplate", "spec", "template", "spec"))
        cells.append(format_label_selector(_get(spec, "jobTemplate", "spec", "selector")))
    return cells


def _controllerrevision_row(cr: Obj, now: float, wide: bool) -> list[str]:
    controller = "<none>"
    for ref in _list(cr, "metadata", "ownerReferences"):
        if _get(ref, "controller") is True:
            group = _s(ref, "apiVersion").rpartition("/")[0]
            kind = _s(ref, "kind") + (f".{group}" if group else "")
            controller = f"{kind.lower()}/{_s(ref, 'name')}"
    return [_name(cr), controller, str(_i(cr, "revision")), _age(cr, now)]


def _podtemplate_row(pt: Obj, now: float, wide: bool) -> list[str]:
    return [
        _name(pt),
        *_containers_images(_get(pt, "template", "spec")),
        format_labels(_map(pt, "template", "metadata", "labels")),
    ]


# ---------------------------------------------------------------------------------- network


def _lb_ingress(svc: Obj, wide: bool) -> str:
    ips = [
        _s(i, "ip") or _s(i, "hostname") for i in _list(svc, "status", "loadBalancer", "ingress")
    ]
    out = ",".join(x for x in ips if x)
    if not wide and len(out) > 16:
        out = out[:13] + "..."  # kubectl keeps the narrow table narrow
    return out


def _external_ip(svc: Obj, wide: bool) -> str:
    spec = _map(svc, "spec")
    external = [str(x) for x in _list(spec, "externalIPs")]
    stype = _s(spec, "type") or "ClusterIP"
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if stype == "LoadBalancer":
        lb = _lb_ingress(svc, wide)
        parts = ([*lb.split(",")] if lb else []) + external
        return ",".join(parts) or "<pending>"
    if stype == "ExternalName":
        return _s(spec, "externalName")
    return "<unknown>"


def _ports(ports: list[Any]) -> str:
    out = []
    for p in ports:
        proto = _s(p, "protocol") or "TCP"
        if _i(p, "nodePort"):
            out.append(f"{_i(p, 'port')}:{_i(p, 'nodePort')}/{proto}")
        else:
            out.append(f"{_i(p, 'port')}/{proto}")
    return ",".join(out) or "<none>"


def _service_row(svc: Obj, now: float, wide: bool) -> list[str]:
    spec = _map(svc, "spec")
    cells = [
        _name(svc),
        _s(spec, "type") or "ClusterIP",
        _or_none(_s(spec, "clusterIP")),
        _external_ip(svc, wide),
        _ports(_list(spec, "ports")),
        _age(svc, now),
    ]
    if wide:
        cells.append(format_labels(_map(spec, "selector")))
    return cells


def format_endpoints(endpoints: Obj | None, port_names: set[str] | None = None) -> str:
    """kubectl's ``formatEndpoints``: ``10.0.0.1:80,10.0.0.2:80 + 3 more...``.

    ``port_names`` restricts to ports of those names (describe service, per port).
    """
    subsets = _list(endpoints, "subsets")
    if not subsets:
        return "<none>"
    shown: list[str] = []
    limit, count = 3, 0
    for ss in subsets:
        addresses = [_s(a, "ip") for a in _list(ss, "addresses")]
        ports = _list(ss, "ports")
        if not ports:
            count += len(addresses)
            shown += addresses[: max(0, limit - len(shown))]
            continue
        for p in ports:
            if port_names is not None and _s(p, "name") not in port_names:
                continue
            count += len(addresses)
            for ip in addresses:
                if len(shown) < limit:
                    shown.append(join_host_port(ip, _i(p, "port")))
    out = ",".join(shown)
    if count > limit:
        return f"{out} + {count - limit} more..."
    return out or "<none>"


def _endpoints_row(ep: Obj, now: float, wide: bool) -> list[str]:
    return [_name(ep), format_endpoints(ep), _age(ep, now)]


# ------------------------------------------------------------------------------------ nodes


def node_roles(node: Obj) -> list[str]:
    """kubectl's ``findNodeRoles``: ``node-role.kubernetes.io/<role>`` and ``kubernetes.io/role``."""
    roles: set[str] = set()
    for k, v in _map(node, "metadata", "labels").items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(str(v))
    return sorted(roles)


def node_status(node: Obj) -> str:
    """``Ready`` / ``NotReady`` / ``Unknown``, plus ``,SchedulingDisabled`` when cordoned."""
    parts = []
    for c in _list(node, "status", "conditions"):
        if _s(c, "type") == "Ready":
            parts = ["Ready" if _s(c, "status") == "True" else "NotReady"]
    if not parts:
        parts = ["Unknown"]
    if _get(node, "spec", "unschedulable") is True:
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def _node_address(node: Obj, atype: str) -> str:
    for a in _list(node, "status", "addresses"):
        if _s(a, "type") == atype:
            return _s(a, "address")
    return "<none>"


def _node_row(node: Obj, now: float, wide: bool) -> list[str]:
    info = _map(node, "status", "nodeInfo")
    cells = [
        _name(node),
        node_status(node),
        ",".join(node_roles(node)) or "<none>",
        _age(node, now),
        _s(info, "kubeletVersion"),
    ]
    if wide:
        cells += [
            _node_address(node, "InternalIP"),
            _node_address(node, "ExternalIP"),
            _s(info, "osImage") or "<unknown>",
            _s(info, "kernelVersion") or "<unknown>",
            _s(info, "containerRuntimeVersion") or "<unknown>",
        ]
    return cells


# ------------------------------------------------------------------------ config and misc


def _namespace_row(ns: Obj, now: float, wide: bool) -> list[str]:
    return [_name(ns), _s(ns, "status", "phase"), _age(ns, now)]


def _configmap_row(cm: Obj, now: float, wide: bool) -> list[str]:
    n = len(_map(cm, "data")) + len(_map(cm, "binaryData"))
    return [_name(cm), str(n), _age(cm, now)]


def _secret_row(s: Obj, now: float, wide: bool) -> list[str]:
    return [_name(s), _s(s, "type"), str(len(_map(s, "data"))), _age(s, now)]


def _serviceaccount_row(sa: Obj, now: float, wide: bool) -> list[str]:
    return [_name(sa), str(len(_list(sa, "secrets"))), _age(sa, now)]


def _event_source(ev: Obj) -> str:
    component = _s(ev, "source", "component") or _s(ev, "reportingComponent")
    host = _s(ev, "source", "host") or _s(ev, "reportingInstance")
    return f"{component}, {host}" if host else component


def event_times(ev: Obj, now: float) -> tuple[str, str, int]:
    """(last seen, first seen, count) of an event as kubectl's ``printEvent`` computes them.

    "last seen" carries ``(xN over AGE)`` for a repeated event.
    """
    first = _get(ev, "firstTimestamp")
    first_age = age(first if first is not None else _get(ev, "eventTime"), now)
    last = _get(ev, "lastTimestamp")
    last_age = first_age if last is None else age(last, now)
    count = _i(ev, "count")
    series = _get(ev, "series")
    if isinstance(series, Mapping):
        last_age = age(_get(series, "lastObservedTime"), now)
        count = _i(series, "count")
    elif count > 1:
        last_age = f"{last_age} (x{count} over {first_age})"
    return last_age, first_age, count


def _event_row(ev: Obj, now: float, wide: bool) -> list[str]:
    last_seen, first_seen, count = event_times(ev, now)
    inv = _map(ev, "involvedObject")
    kind = _s(inv, "kind").lower()
    target = f"{kind}/{_s(inv, 'name')}" if _s(inv, "name") else kind
    message = _s(ev, "message").strip()
    if wide:
        return [
            last_seen,
            _s(ev, "type"),
            _s(ev, "reason"),
            target,
            _s(inv, "fieldPath"),
            _event_source(ev),
            message,
            first_seen,
            str(count),
            _name(ev),
        ]
    return [last_seen, _s(ev, "type"), _s(ev, "reason"), target, message]


def _access_modes(modes: list[Any]) -> str:
    """``GetAccessModesAsString``: RWO,ROX,RWX,RWOP in that order."""
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return ",".join(abbr for full, abbr in short.items() if full in modes)


def _storage_class(obj: Obj) -> str:
    ann = _map(obj, "metadata", "annotations")
    beta = ann.get("volume.beta.kubernetes.io/storage-class")
    if beta is not None:
        return str(beta)
    return _s(obj, "spec", "storageClassName")


def _pv_row(pv: Obj, now: float, wide: bool) -> list[str]:
    spec = _map(pv, "spec")
    claim = ""
    if _get(spec, "claimRef") is not None:
        claim = f"{_s(spec, 'claimRef', 'namespace')}/{_s(spec, 'claimRef', 'name')}"
    cells = [
        _name(pv),
        _s(spec, "capacity", "storage"),
        _access_modes(_list(spec, "accessModes")),
        _s(spec, "persistentVolumeReclaimPolicy"),
        _s(pv, "status", "phase"),
        claim,
        _storage_class(pv),
        _s(spec, "volumeAttributesClassName") or "<unset>",
        _s(pv, "status", "reason"),
        _age(pv, now),
    ]
    if wide:
        cells.append(_s(spec, "volumeMode") or "<unset>")
    return cells


def _pvc_row(pvc: Obj, now: float, wide: bool) -> list[str]:
    spec, st = _map(pvc, "spec"), _map(pvc, "status")
    phase = _s(st, "phase")
    if _get(pvc, "metadata", "deletionTimestamp") is not None:
        phase = "Terminating"
    capacity = modes = ""
    if _s(spec, "volumeName"):
        modes = _access_modes(_list(st, "accessModes"))
        capacity = _s(st, "capacity", "storage")
    cells = [
        _name(pvc),
        phase,
        _s(spec, "volumeName"),
        capacity,
        modes,
        _storage_class(pvc),
        _s(spec, "volumeAttributesClassName") or "<unset>",
        _age(pvc, now),
    ]
    if wide:
        cells.append(_s(spec, "volumeMode") or "<unset>")
    return cells


def _resourcequota_row(rq: Obj, now: float, wide: bool) -> list[str]:
    hard, used = _map(rq, "status", "hard"), _map(rq, "status", "used")
    requests: list[str] = []
    limits: list[str] = []
    for res in sorted(hard):
        cell = f"{res}: {used.get(res, '0')}/{hard[res]}"
        (limits if res.split(".")[0] == "limits" and "." in res else requests).append(cell)
    return [_name(rq), _age(rq, now), ", ".join(requests), ", ".join(limits)]


def _created_at(obj: Obj, now: float, wide: bool) -> list[str]:
    # kubectl prints the timestamp itself (RFC 3339, UTC) for these kinds.
    return [_name(obj), _s(obj, "metadata", "creationTimestamp")]


def _lease_row(lease: Obj, now: float, wide: bool) -> list[str]:
    return [_name(lease), _s(lease, "spec", "holderIdentity"), _age(lease, now)]


def _csr_row(csr: Obj, now: float, wide: bool) -> list[str]:
    """kubectl's CSR columns: the condition is Approved/Denied/Failed (joined with
    Issued once a certificate is there), else Pending."""
    spec, status = _map(csr, "spec"), _map(csr, "status")
    seconds = spec.get("expirationSeconds")
    duration = "<none>" if seconds is None else _go_duration(int(seconds))
    conds = [_s(c, "type") for c in _list(status, "conditions") if _s(c, "status") == "True"]
    if status.get("certificate"):
        conds.append("Issued")
    return [_name(csr), _age(csr, now), _s(spec, "signerName"), _s(spec, "username"),
            duration, ",".join(conds) or "Pending"]


def _go_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + \
        (f"{secs}s" if secs or not (hours or minutes) else "")


def _binding_row(b: Obj, now: float, wide: bool) -> list[str]:
    ref = _map(b, "roleRef")
    cells = [_name(b), f"{_s(ref, 'kind')}/{_s(ref, 'name')}", _age(b, now)]
    if wide:
        users: list[str] = []
        groups: list[str] = []
        sas: list[str] = []
        for s in _list(b, "subjects"):
            kind = _s(s, "kind")
            if kind == "User":
                users.append(_s(s, "name"))
            elif kind == "Group":
                groups.append(_s(s, "name"))
            elif kind == "ServiceAccount":
                sas.append(f"{_s(s, 'namespace')}/{_s(s, 'name')}")
        cells += [", ".join(users), ", ".join(groups), ", ".join(sas)]
    return cells


def _storageclass_row(sc: Obj, now: float, wide: bool) -> list[str]:
    ann = _map(sc, "metadata", "annotations")
    name = _name(sc)
    if "true" in (
        ann.get("storageclass.kubernetes.io/is-default-class"),
        ann.get("storageclass.beta.kubernetes.io/is-default-class"),
    ):
        name += " (default)"
    return [
        name,
        _s(sc, "provisioner"),
        _s(sc, "reclaimPolicy") or "Delete",
        _s(sc, "volumeBindingMode") or "Immediate",
        "true" if _get(sc, "allowVolumeExpansion") is True else "false",
        _age(sc, now),
    ]


def _runtimeclass_row(rc: Obj, now: float, wide: bool) -> list[str]:
    return [_name(rc), _s(rc, "handler"), _age(rc, now)]


def _priorityclass_row(pc: Obj, now: float, wide: bool) -> list[str]:
    return [
        _name(pc),
        str(_i(pc, "value")),
        "true" if _get(pc, "globalDefault") is True else "false",
        _s(pc, "preemptionPolicy") or "<unset>",
        _age(pc, now),
    ]


def _pdb_row(pdb: Obj, now: float, wide: bool) -> list[str]:
    spec = _map(pdb, "spec")
    return [
        _name(pdb),
        _int_or_string(spec.get("minAvailable")),
        _int_or_string(spec.get("maxUnavailable")),
        str(_i(pdb, "status", "disruptionsAllowed")),
        _age(pdb, now),
    ]


def _generic_row(obj: Obj, now: float, wide: bool) -> list[str]:
    return [_name(obj), _age(obj, now)]


# ------------------------------------------------------------------------------ the table


def _c(header: str, row: RowFn, wide: str = "", name_index: int | None = 0) -> TableColumns:
    return TableColumns(
        tuple(header.split("|")), tuple(wide.split("|")) if wide else (), row, name_index
    )


_WORKLOAD_WIDE = "CONTAINERS|IMAGES|SELECTOR"

GENERIC = _c("NAME|AGE", _generic_row)

_BY_KIND: dict[str, TableColumns] = {
    "Pod": _c("NAME|READY|STATUS|RESTARTS|AGE", _pod_row, "IP|NODE|NOMINATED NODE|READINESS GATES"),
    "PodTemplate": _c("NAME|CONTAINERS|IMAGES|POD LABELS", _podtemplate_row),
    "Deployment": _c("NAME|READY|UP-TO-DATE|AVAILABLE|AGE", _deployment_row, _WORKLOAD_WIDE),
    "ReplicaSet": _c("NAME|DESIRED|CURRENT|READY|AGE", _replicaset_row, _WORKLOAD_WIDE),
    "ReplicationController": _c("NAME|DESIRED|CURRENT|READY|AGE", _rc_row, _WORKLOAD_WIDE),
    "DaemonSet": _c(
        "NAME|DESIRED|CURRENT|READY|UP-TO-DATE|AVAILABLE|NODE SELECTOR|AGE",
        _daemonset_row,
        _WORKLOAD_WIDE,
    ),
    "StatefulSet": _c("NAME|READY|AGE", _statefulset_row, "CONTAINERS|IMAGES"),
    "ControllerRevision": _c("NAME|CONTROLLER|REVISION|AGE", _controllerrevision_row),
    "Job": _c("NAME|STATUS|COMPLETIONS|DURATION|AGE", _job_row, _WORKLOAD_WIDE),
    "CronJob": _c(
        "NAME|SCHEDULE|TIMEZONE|SUSPEND|ACTIVE|LAST SCHEDULE|AGE", _cronjob_row, _WORKLOAD_WIDE
    ),
    "Service": _c("NAME|TYPE|CLUSTER-IP|EXTERNAL-IP|PORT(S)|AGE", _service_row, "SELECTOR"),
    "Endpoints": _c("NAME|ENDPOINTS|AGE", _endpoints_row),
    "Node": _c(
        "NAME|STATUS|ROLES|AGE|VERSION",
        _node_row,
        "INTERNAL-IP|EXTERNAL-IP|OS-IMAGE|KERNEL-VERSION|CONTAINER-RUNTIME",
    ),
    "Namespace": _c("NAME|STATUS|AGE", _namespace_row),
    "ConfigMap": _c("NAME|DATA|AGE", _configmap_row),
    "Secret": _c("NAME|TYPE|DATA|AGE", _secret_row),
    "ServiceAccount": _c("NAME|SECRETS|AGE", _serviceaccount_row),
    # Events have no NAME column; wide mode rebuilds the whole row, hence the full header.
    "Event": _c("LAST SEEN|TYPE|REASON|OBJECT|MESSAGE", _event_row, name_index=None),
    "PersistentVolume": _c(
        "NAME|CAPACITY|ACCESS MODES|RECLAIM POLICY|STATUS|CLAIM|STORAGECLASS"
        "|VOLUMEATTRIBUTESCLASS|REASON|AGE",
        _pv_row,
        "VOLUMEMODE",
    ),
    "PersistentVolumeClaim": _c(
        "NAME|STATUS|VOLUME|CAPACITY|ACCESS MODES|STORAGECLASS|VOLUMEATTRIBUTESCLASS|AGE",
        _pvc_row,
        "VOLUMEMODE",
    ),
    "ResourceQuota": _c("NAME|AGE|REQUEST|LIMIT", _resourcequota_row),
    "LimitRange": _c("NAME|CREATED AT", _created_at),
    "Lease": _c("NAME|HOLDER|AGE", _lease_row),
    "CertificateSigningRequest": _c(
        "NAME|AGE|SIGNERNAME|REQUESTOR|REQUESTEDDURATION|CONDITION", _csr_row),
    "Role": _c("NAME|CREATED AT", _created_at),
    "ClusterRole": _c("NAME|CREATED AT", _created_at),
    "RoleBinding": _c("NAME|ROLE|AGE", _binding_row, "USERS|GROUPS|SERVICEACCOUNTS"),
    "ClusterRoleBinding": _c("NAME|ROLE|AGE", _binding_row, "USERS|GROUPS|SERVICEACCOUNTS"),
    "StorageClass": _c(
        "NAME|PROVISIONER|RECLAIMPOLICY|VOLUMEBINDINGMODE|ALLOWVOLUMEEXPANSION|AGE",
        _storageclass_row,
    ),
    "PriorityClass": _c("NAME|VALUE|GLOBAL-DEFAULT|PREEMPTIONPOLICY|AGE", _priorityclass_row),
    "RuntimeClass": _c("NAME|HANDLER|AGE", _runtimeclass_row),
    "PodDisruptionBudget": _c(
        "NAME|MIN AVAILABLE|MAX UNAVAILABLE|ALLOWED DISRUPTIONS|AGE", _pdb_row
    ),
}

_EVENT_WIDE = (
    "LAST SEEN",
    "TYPE",
    "REASON",
    "OBJECT",
    "SUBOBJECT",
    "SOURCE",
    "MESSAGE",
    "FIRST SEEN",
    "COUNT",
    "NAME",
)


def columns_for(kind: str) -> TableColumns:
    """The table columns of ``kind`` ("Pod"); NAME and AGE for a kind without its own."""
    return _BY_KIND.get(kind, GENERIC)


def header_for(kind: str, wide: bool) -> list[str]:
    """The header of ``kind``'s table, with the wide columns when ``wide``."""
    cols = columns_for(kind)
    if wide and kind == "Event":
        return list(_EVENT_WIDE)
    return list(cols.header) + (list(cols.wide_header) if wide else [])
