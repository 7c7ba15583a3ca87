"""Describers of the workload kinds: Deployment (with its old and new ReplicaSets).

Pure functions over the object's JSON dict and the ``related`` objects the caller fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.cli.columns import format_label_selector
from control.cli.describe._text import (
    _annotations,
    _as_dict,
    _get,
    _i,
    _labels,
    _list,
    _map,
    _s,
    _Writer,
    format_time,
)
from control.cli.describe.podspec import _pod_template


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
