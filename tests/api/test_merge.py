"""Table tests for control.api.merge: JSON merge patch and the kubectl apply flow."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from control.api import merge
from control.api.errors import BadRequest
from control.api.merge import apply_strategic_patch, check_depth

LAST = merge.LAST_APPLIED_ANNOTATION


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_json_merge_patch(target: Any, patch: Any, result: Any) -> None:
    before = copy.deepcopy(target)
    assert merge.json_merge_patch(target, patch) == result
    assert target == before  # inputs are not mutated


@pytest.mark.parametrize(
    ("original", "modified"),
    [
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 2, "b": {"c": 2}}),
        ({"a": [1, 2]}, {"a": [1]}),
        ({}, {"a": {"b": 1}}),
        ({"a": {"b": 1}}, {}),
    ],
)
def test_create_json_merge_patch(original: dict[str, Any], modified: dict[str, Any]) -> None:
    patch = merge.create_json_merge_patch(original, modified)
    assert merge.json_merge_patch(original, patch) == modified


def _apply(last: dict[str, Any] | None, manifest: dict[str, Any], live: dict[str, Any]) -> dict:
    """The CLI's apply flow, checking that no input is mutated."""
    inputs = copy.deepcopy((last, manifest, live))
    patch = merge.create_three_way_merge_patch(last, manifest, live)
    json.dumps(patch)  # a patch is plain JSON
    result = merge.apply_strategic_patch(live, patch)
    assert (last, manifest, live) == inputs
    return result


SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "selector": {"app": "web"},
        "type": "NodePort",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
    },
}
SERVICE_LIVE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "web",
        "labels": {"app": "web"},
        "uid": "u1",
        "resourceVersion": "7",
        "annotations": {LAST: json.dumps(SERVICE)},
    },
    "spec": {
        "selector": {"app": "web"},
        "type": "NodePort",
        "clusterIP": "10.96.0.12",
        "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}
        ],
    },
    "status": {"loadBalancer": {}},
}


def _deployment(containers: list[dict[str, Any]], labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": labels or {"app": "d"}},
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}},
        },
    }


def test_service_reapply_keeps_cluster_fields() -> None:
    manifest = copy.deepcopy(SERVICE)
    manifest["spec"]["ports"][0]["targetPort"] = 9090
    out = _apply(SERVICE, manifest, SERVICE_LIVE)
    assert out["spec"]["clusterIP"] == "10.96.0.12"
    assert out["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 9090, "nodePort": 30080, "protocol": "TCP"}
    ]
    assert out["status"] == {"loadBalancer": {}}
    assert out["metadata"]["uid"] == "u1"
    assert LAST in out["metadata"]["annotations"]


def test_service_reapply_unchanged_is_empty_patch() -> None:
    assert merge.create_three_way_merge_patch(SERVICE, SERVICE, SERVICE_LIVE) == {}


def test_service_port_added_and_removed() -> None:
    manifest = copy.deepcopy(SERVICE)
    manifest["spec"]["ports"] = [{"name": "https", "port": 443, "targetPort": 8443}]
    out = _apply(SERVICE, manifest, SERVICE_LIVE)
    assert out["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": 8443}]


C1 = {
    "name": "app",
    "image": "app:1",
    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    "ports": [{"containerPort": 80}],
}
C2 = {"name": "sidecar", "image": "proxy:1", "env": [{"name": "X", "value": "x"}]}


def _live(d: dict[str, Any]) -> dict[str, Any]:
    """What the server stores: the manifest plus defaults and status."""
    live = copy.deepcopy(d)
    live["metadata"]["uid"] = "u"
    live["metadata"]["annotations"] = {LAST: json.dumps(d)}
    for c in live["spec"]["template"]["spec"]["containers"]:
        c["imagePullPolicy"] = "IfNotPresent"
        c["terminationMessagePath"] = "/dev/termination-log"
        for p in c.get("ports", []):
            p["protocol"] = "TCP"
    live["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    live["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    return live


def _containers(d: dict[str, Any]) -> list[dict[str, Any]]:
    return d["spec"]["template"]["spec"]["containers"]


def test_container_removed_from_manifest_is_removed() -> None:
    last = _deployment([C1, C2])
    out = _apply(last, _deployment([C1]), _live(last))
    assert [c["name"] for c in _containers(out)] == ["app"]
    assert _containers(out)[0]["imagePullPolicy"] == "IfNotPresent"  # defaults kept
    assert out["status"]["replicas"] == 2


def test_env_var_removed_only_where_removed() -> None:
    last = _deployment([C1, C2])
    c1 = copy.deepcopy(C1)
    c1["env"] = [{"name": "A", "value": "1"}]
    out = _apply(last, _deployment([c1, C2]), _live(last))
    app, sidecar = _containers(out)
    assert app["env"] == [{"name": "A", "value": "1"}]
    assert sidecar["env"] == [{"name": "X", "value": "x"}]
    assert app["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_image_change_keeps_defaults() -> None:
    last = _deployment([C1, C2])
    c2 = {**C2, "image": "proxy:2"}
    out = _apply(last, _deployment([C1, c2]), _live(last))
    sidecar = _containers(out)[1]
    assert sidecar["image"] == "proxy:2"
    assert sidecar["terminationMessagePath"] == "/dev/termination-log"


def test_labels_removed_vs_added_by_someone_else() -> None:
    last = _deployment([C1], labels={"app": "d", "team": "a"})
    live = _live(last)
    live["metadata"]["labels"]["owner"] = "ops"  # kubectl label by someone else
    out = _apply(last, _deployment([C1], labels={"app": "d"}), live)
    assert out["metadata"]["labels"] == {"app": "d", "owner": "ops"}


def test_last_applied_annotation_is_never_deleted() -> None:
    last = _deployment([C1])
    last_with_annotation = copy.deepcopy(last)
    last_with_annotation["metadata"]["annotations"] = {LAST: "{}", "note": "x"}
    live = _live(last)
    live["metadata"]["annotations"]["note"] = "x"
    out = _apply(last_with_annotation, _deployment([C1]), live)
    assert out["metadata"]["annotations"] == {LAST: live["metadata"]["annotations"][LAST]}


def test_new_last_applied_in_manifest_is_set() -> None:
    last = _deployment([C1])
    manifest = _deployment([C1])
    manifest["metadata"]["annotations"] = {LAST: '{"new": true}'}
    out = _apply(last, manifest, _live(last))
    assert out["metadata"]["annotations"][LAST] == '{"new": true}'


def test_container_added_and_reordered() -> None:
    last = _deployment([C1])
    out = _apply(last, _deployment([C2, C1]), _live(last))
    assert [c["name"] for c in _containers(out)] == ["sidecar", "app"]
    assert _containers(out)[1]["imagePullPolicy"] == "IfNotPresent"


def test_first_apply_without_last_applied() -> None:
    live = _live(_deployment([C1, C2]))
    out = _apply(None, _deployment([C1]), live)
    # nothing was applied before: nothing is deleted, the manifest's fields are set
    assert [c["name"] for c in _containers(out)] == ["app", "sidecar"]


def test_replaced_lists() -> None:
    last = _deployment([{**C1, "args": ["a", "b"]}])
    live = _live(last)
    live["spec"]["template"]["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    out = _apply(last, _deployment([{**C1, "args": ["c"]}]), live)
    assert _containers(out)[0]["args"] == ["c"]
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]


def test_field_removed_from_manifest() -> None:
    last = _deployment([C1])
    manifest = _deployment([C1])
    del manifest["spec"]["replicas"]
    out = _apply(last, manifest, _live(last))
    assert "replicas" not in out["spec"]


@pytest.mark.parametrize(
    ("current", "patch", "result"),
    [
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"a": {"b": 1}}, {"a": {"c": 2}}, {"a": {"b": 1, "c": 2}}),
        ({"a": {"b": 1}}, {"a": {"$patch": "delete"}}, {}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"$patch": "replace", "d": 3}}, {"a": {"d": 3}}),
        (
            {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]},
            {"containers": [{"name": "b", "image": "2"}]},
            {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]},
        ),
        (
            {"containers": [{"name": "a"}, {"name": "b"}]},
            {"containers": [{"name": "a", "$patch": "delete"}, {"name": "c"}]},
            {"containers": [{"name": "b"}, {"name": "c"}]},
        ),
        (
            {"containers": [{"name": "a"}, {"name": "b"}]},
            {"containers": [{"name": "x"}, {"$patch": "replace"}]},
            {"containers": [{"name": "x"}]},
        ),
        (
            {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
            {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]},
            {"containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]},
        ),
        ({"args": ["a", "b"]}, {"args": ["c"]}, {"args": ["c"]}),
        (
            {"tolerations": [{"key": "a"}]},
            {"tolerations": [{"key": "b"}]},
            {"tolerations": [{"key": "b"}]},
        ),
        ({}, {"containers": [{"name": "a", "x": None}]}, {"containers": [{"name": "a"}]}),
        (
            {"spec": {"ports": [{"port": 80, "nodePort": 1}, {"port": 81}]}},
            {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
            {"spec": {"ports": [{"port": 80, "nodePort": 1, "targetPort": 8080}, {"port": 81}]}},
        ),
        (
            {
                "containers": [
                    {"name": "c", "ports": [{"containerPort": 80}, {"containerPort": 81}]}
                ]
            },
            {"containers": [{"name": "c", "ports": [{"containerPort": 81, "$patch": "delete"}]}]},
            {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
        ),
        (
            {"containers": [{"name": "c", "volumeMounts": [{"mountPath": "/a", "name": "v"}]}]},
            {
                "containers": [
                    {"name": "c", "volumeMounts": [{"mountPath": "/a", "readOnly": True}]}
                ]
            },
            {
                "containers": [
                    {
                        "name": "c",
                        "volumeMounts": [{"mountPath": "/a", "name": "v", "readOnly": True}],
                    }
                ]
            },
        ),
        (
            {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X"}]}},
            {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X"}]}},
        ),
        (
            {"metadata": {"finalizers": ["a", "b"]}},
            {"metadata": {"finalizers": ["c"]}},
            {"metadata": {"finalizers": ["c"]}},
        ),
    ],
)
def test_apply_strategic_patch(current: dict, patch: dict, result: dict) -> None:
    before = copy.deepcopy((current, patch))
    assert merge.apply_strategic_patch(current, patch) == result
    assert (current, patch) == before


def test_patch_item_without_merge_key_is_refused() -> None:
    with pytest.raises(BadRequest, match="merge key 'name'"):
        merge.apply_strategic_patch(
            {"containers": [{"name": "a"}]}, {"containers": [{"image": "x"}]}
        )


@pytest.mark.parametrize(
    ("parent", "field", "key"),
    [
        ("spec", "containers", "name"),
        ("containers", "ports", "containerPort"),
        ("spec", "ports", "port"),
        ("containers", "volumeMounts", "mountPath"),
        ("containers", "envFrom", None),
        ("spec", "tolerations", None),
        ("metadata", "ownerReferences", "uid"),
        ("metadata", "finalizers", None),
        ("status", "conditions", "type"),
        ("spec", "hostAliases", "ip"),
        ("spec", "imagePullSecrets", "name"),
        ("subsets", "addresses", None),
        ("status", "addresses", "type"),
    ],
)
def test_merge_key_table(parent: str, field: str, key: str | None) -> None:
    assert merge.merge_key(parent, field) == key


def test_all_labels_removed_keeps_others_labels() -> None:
    last = _deployment([C1], labels={"app": "d"})
    live = _live(last)
    live["metadata"]["labels"]["owner"] = "ops"
    manifest = _deployment([C1])
    del manifest["metadata"]["labels"]
    out = _apply(last, manifest, live)
    assert out["metadata"]["labels"] == {"owner": "ops"}


def test_removed_object_goes_as_a_whole() -> None:
    probe = {"httpGet": {"path": "/", "port": 80}}
    last = _deployment([{**C1, "livenessProbe": probe}])
    live = _live(last)
    _containers(live)[0]["livenessProbe"]["periodSeconds"] = 10  # a server default
    out = _apply(last, _deployment([C1]), live)
    assert "livenessProbe" not in _containers(out)[0]


@pytest.mark.parametrize(("doc", "ok"), [
    ({}, True),
    ({"a": [[[]]]}, True),
    (json.loads("[" * 100 + "]" * 100), True),
    (json.loads("[" * 101 + "]" * 101), False),
    ({"a": json.loads('{"b": ' * 99 + "1" + "}" * 99)}, True),
    ({"a": json.loads('{"b": ' * 100 + "1" + "}" * 100)}, False),
])
def test_check_depth(doc: Any, ok: bool) -> None:
    if ok:
        check_depth(doc)
    else:
        with pytest.raises(BadRequest, match="deeper than 100"):
            check_depth(doc)


@pytest.mark.parametrize(("patch", "error"), [
    ({"a": {"$patch": "merge", "b": 1}}, None),
    ({"a": [{"name": "x", "$patch": "delete"}]}, None),
    ({"$patch": "bogus"}, "invalid patch type 'bogus' at ."),
    ({"a": {"b": [{"$patch": None}, {"$patch": "nope"}]}}, "at .a.b[1]"),
    ({"a": {"$patch": ["replace"]}}, "invalid patch type"),
    ({"$setElementOrder/a": "x"}, "must be a list"),
])
def test_strategic_directives_checked(patch: dict[str, Any], error: str | None) -> None:
    if error is None:
        apply_strategic_patch({"a": {"c": 2}}, patch)
    else:
        with pytest.raises(BadRequest, match=re.escape(error)):
            apply_strategic_patch({"a": {"c": 2}}, patch)
