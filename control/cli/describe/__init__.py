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

The describers live by kind family: :mod:`.core` (Pod, Service, Namespace, ConfigMap,
Secret), :mod:`.workloads` (Deployment), :mod:`.batch` (Job, CronJob, DaemonSet), :mod:`.nodes` (Node), :mod:`.generic` (every other
kind); :mod:`.podspec` holds the pod-spec sections they share, :mod:`._text` the text
building blocks, :mod:`.events` the Events section.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from control.api import errors as api_errors
from control.api.kinds import KindInfo
from control.cli.columns import format_label_selector
from control.cli.describe._text import (
    _as_dict,
    _list,
    _map,
    _s,
    _Writer,
    format_time,
    smart_label,
)
from control.cli.describe.batch import _describe_cronjob, _describe_daemonset, _describe_job
from control.cli.describe.core import (
    _describe_configmap,
    _describe_namespace,
    _describe_pod,
    _describe_secret,
    _describe_service,
)
from control.cli.describe.events import _events
from control.cli.describe.generic import _describe_generic
from control.cli.describe.nodes import _describe_node
from control.cli.describe.workloads import _describe_deployment

__all__ = ["describe", "describe_object", "fetch_related", "format_time", "smart_label"]


_DESCRIBERS = {
    "Pod": _describe_pod,
    "Deployment": _describe_deployment,
    "Service": _describe_service,
    "Node": _describe_node,
    "Namespace": _describe_namespace,
    "ConfigMap": _describe_configmap,
    "Secret": _describe_secret,
    "Job": _describe_job,
    "CronJob": _describe_cronjob,
    "DaemonSet": _describe_daemonset,
}


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
    elif info.kind == "DaemonSet":

        async def daemon_pods() -> list[Any]:
            selector = format_label_selector(_map(d, "spec", "selector"))
            res = await client.list(
                "pods", namespace, label_selector="" if selector == "<none>" else selector
            )
            return [p for p in res.items if _owned_by(_as_dict(p), uid)]

        await attempt("pods", daemon_pods())
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
