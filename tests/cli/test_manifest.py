"""Manifest loading for apply/create/delete -f: formats, sources, and error messages."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from control.cli import manifest
from control.cli.errors import CliError

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox
        command: [sleep, "3600"]
"""

CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  annotations:
    created: 2024-01-01
data:
  a: "1"
"""


def test_multi_document_yaml(tmp_path: Path) -> None:
    f = tmp_path / "all.yaml"
    f.write_text(DEPLOY + "---\n---\n" + CM)
    ms = manifest.load([str(f)], "default", False)
    assert [(m.info.kind, m.name, m.namespace) for m in ms] == [
        ("Deployment", "web", "default"),
        ("ConfigMap", "settings", "default"),
    ]
    # YAML 1.1 timestamps stay strings (Kubernetes reads them into string fields)
    assert ms[1].data["metadata"]["annotations"]["created"] == "2024-01-01"
    assert ms[0].data["spec"]["replicas"] == 2


def test_json_stream_and_list(tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    lst = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{**cm, "metadata": {"name": "b"}}, {**cm, "metadata": {"name": "c"}}],
    }
    f = tmp_path / "x.json"
    f.write_text(json.dumps(cm) + "\n" + json.dumps(lst, indent=2))
    ms = manifest.load([str(f)], "ns1", False)
    assert [m.name for m in ms] == ["a", "b", "c"]
    assert {m.namespace for m in ms} == {"ns1"}


def test_kyaml_flow_style(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text('{apiVersion: "v1", kind: "ConfigMap", metadata: {name: "k"}, data: {x: "y"}}\n')
    (m,) = manifest.load([str(f)], "default", False)
    assert m.data["data"] == {"x": "y"}


def test_directory_in_name_order_and_recursive(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(CM.replace("settings", "b"))
    (tmp_path / "a.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    )
    (tmp_path / "notes.txt").write_text("not a manifest")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.yml").write_text(CM.replace("settings", "c"))
    assert [m.name for m in manifest.load([str(tmp_path)], "default", False)] == ["a", "b"]
    names = [m.name for m in manifest.load([str(tmp_path)], "default", False, recursive=True)]
    assert names == ["a", "b", "c"]


def test_stdin() -> None:
    ms = manifest.load(["-"], "default", False, stdin=io.StringIO(CM))
    assert ms[0].name == "settings"


def test_bad_yaml_names_file_and_document(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(CM + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [oops\n")
    with pytest.raises(CliError) as e:
        manifest.load([str(f)], "default", False)
    msg = e.value.message
    assert str(f) in msg and "document 2" in msg and "line" in msg


def test_unknown_field_path(tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(
        CM + "---\n" + DEPLOY.replace("image: busybox", "image: busybox\n        bogus: 1")
    )
    with pytest.raises(CliError) as e:
        manifest.load([str(f)], "default", False)
    msg = e.value.message
    assert "document 2" in msg and "spec.template.spec.containers[0].bogus" in msg
    assert "Deployment 'web'" in msg


def test_wrong_type_and_every_error_collected(tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(
        DEPLOY.replace("replicas: 2", "replicas: two") + "---\n" + CM.replace('a: "1"', "a: [1]")
    )
    with pytest.raises(CliError) as e:
        manifest.load([str(f)], "default", False)
    msg = e.value.message
    assert ("spec.replicas" in msg and "data[a]" in msg) or "data.a" in msg


def test_unknown_kind_and_missing_kind(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text("apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n")
    with pytest.raises(CliError, match='no matches for kind "Frobnicator" in version "v1"'):
        manifest.load([str(f)], "default", False)
    f.write_text("metadata: {name: x}\n")
    with pytest.raises(CliError, match="apiVersion not set, kind not set"):
        manifest.load([str(f)], "default", False)


def test_invalid_name(tmp_path: Path) -> None:
    f = tmp_path / "n.yaml"
    f.write_text(CM.replace("name: settings", "name: Not_Valid"))
    with pytest.raises(CliError, match=r"metadata\.name: Invalid value: 'Not_Valid'"):
        manifest.load([str(f)], "default", False)


@pytest.mark.parametrize(
    ("api_version", "kind", "name", "ok"),
    [
        ("rbac.authorization.k8s.io/v1", "ClusterRole", "system:aggregated-metrics-reader", True),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding",
         "metrics-server:system:auth-delegator", True),
        ("rbac.authorization.k8s.io/v1", "Role", "system:kube-scheduler", True),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", "system:kube-scheduler", True),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", "a/b", False),
        ("rbac.authorization.k8s.io/v1", "Role", "..", False),
        ("v1", "ConfigMap", "system:kube-scheduler", False),
        ("v1", "Namespace", "a.b", False),  # a namespace is one DNS label
        ("v1", "ConfigMap", "a.b", True),
    ],
)
def test_name_rule_is_the_kinds(
    tmp_path: Path, api_version: str, kind: str, name: str, ok: bool
) -> None:
    # The same rule as the server's: RBAC names are path segments, not DNS subdomains.
    f = tmp_path / "n.yaml"
    f.write_text(f"apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: '{name}'\n")
    if ok:
        [m] = manifest.load([str(f)], "default", False)
        assert m.obj.metadata.name == name  # type: ignore[attr-defined]
    else:
        with pytest.raises(CliError, match=r"metadata\.name: Invalid value"):
            manifest.load([str(f)], "default", False)


def test_namespace_rules(tmp_path: Path) -> None:
    f = tmp_path / "n.yaml"
    f.write_text(CM.replace("name: settings", "name: s\n  namespace: team-a"))
    (m,) = manifest.load([str(f)], "default", False)  # -n not given: the manifest wins
    assert m.namespace == "team-a"
    (m,) = manifest.load([str(f)], "team-a", True)
    assert m.namespace == "team-a"
    with pytest.raises(CliError, match="does not match the namespace"):
        manifest.load([str(f)], "team-b", True)
    ns = tmp_path / "ns.yaml"
    ns.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, namespace: y}\n")
    (m,) = manifest.load([str(ns)], "other", True)  # cluster-scoped: namespace ignored
    assert m.namespace == ""


def test_missing_path_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="does not exist"):
        manifest.load([str(tmp_path / "nope.yaml")], "default", False)
    empty = tmp_path / "e.yaml"
    empty.write_text("---\n")
    with pytest.raises(CliError, match="no objects"):
        manifest.load([str(empty)], "default", False)


def test_duplicate_object(tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(CM + "---\n" + CM)
    with pytest.raises(CliError, match="also defined"):
        manifest.load([str(f)], "default", False)
