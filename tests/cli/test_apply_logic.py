"""Client-side apply computations and wait conditions, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.message import Message

from control.api import convert, kinds
from control.cli.errors import UsageError
from control.cli.verbs_apply import LAST_APPLIED, apply_patch, last_applied_text, with_last_applied
from control.cli.verbs_wait import jsonpath_values, parse_for

SVC = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "x"}},
    "spec": {
        "selector": {"app": "web"},
        "type": "NodePort",
        "ports": [{"port": 80, "targetPort": 8080}],
    },
}


def _msg(data: dict[str, Any]) -> Message:
    return convert.from_dict(data, kinds.by_kind("Service").message())


def test_last_applied_excludes_itself() -> None:
    first = with_last_applied(SVC)
    again = with_last_applied(first)
    assert again == first
    recorded = json.loads(first["metadata"]["annotations"][LAST_APPLIED])
    assert LAST_APPLIED not in recorded["metadata"].get("annotations", {})
    assert recorded == json.loads(last_applied_text(SVC))


def test_reapply_same_manifest_is_empty_patch() -> None:
    modified = with_last_applied(SVC)
    live = convert.to_dict(_msg(modified))
    live["spec"]["ports"][0]["nodePort"] = 30080  # set by the cluster
    live["spec"]["clusterIP"] = "10.96.0.5"
    assert apply_patch(_msg(live), modified) == {}


def test_removed_field_is_deleted_cluster_field_kept() -> None:
    pytest.importorskip("control.api.merge")
    from control.api import merge

    live = convert.to_dict(_msg(with_last_applied(SVC)))
    live["spec"]["ports"][0]["nodePort"] = 30080
    changed = json.loads(json.dumps(SVC))
    del changed["metadata"]["labels"]["tier"]
    modified = with_last_applied(changed)
    patch = apply_patch(_msg(live), modified)
    assert patch["metadata"]["labels"] == {"tier": None}
    result = merge.apply_strategic_patch(live, patch)
    assert result["metadata"]["labels"] == {"app": "web"}
    assert result["spec"]["ports"][0]["nodePort"] == 30080


def test_jsonpath_values() -> None:
    doc = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Other", "status": "False"},
            ],
        },
        "spec": {"replicas": 3},
    }
    assert jsonpath_values("{.status.phase}", doc) == ["Running"]
    assert jsonpath_values("{.spec.replicas}", doc) == [3]
    assert jsonpath_values('{.status.conditions[?(@.type=="Other")].status}', doc) == ["False"]
    assert jsonpath_values("{.status.conditions[*].type}", doc) == ["Ready", "Other"]
    assert jsonpath_values("{.status.conditions[0].type}", doc) == ["Ready"]
    assert jsonpath_values("{.missing.x}", doc) == []


def test_parse_for_forms() -> None:
    pod = convert.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        },
        kinds.by_kind("Pod").message(),
    )
    assert parse_for("condition=Ready").check(pod)
    assert parse_for("condition=ready=true").check(pod)
    assert not parse_for("condition=Ready=False").check(pod)
    assert parse_for("jsonpath={.status.phase}=Running").check(pod)
    assert parse_for("jsonpath='{.status.phase}'=Running").check(pod)
    assert not parse_for("jsonpath={.status.phase}=Pending").check(pod)
    assert parse_for("delete").check(None) and not parse_for("delete").check(pod)
    with pytest.raises(UsageError):
        parse_for("ready")
    with pytest.raises(UsageError):
        parse_for("jsonpath=.status.phase")
