"""container_spec: $(VAR) expansion, argv, env sources, resources and security mapping."""

from __future__ import annotations

import pytest

from agent.kubelet import container_spec as cs
from control.api import convert
from control.api.pb import core_pb2


def _parse(doc: dict) -> core_pb2.Pod:
    return convert.from_dict(doc, core_pb2.Pod())


@pytest.mark.parametrize(("text", "env", "want"), [
    ("$(A)", {"A": "1"}, "1"),
    ("x$(A)y", {"A": "1"}, "x1y"),
    ("$(MISSING)", {}, "$(MISSING)"),
    ("$$(A)", {"A": "1"}, "$(A)"),
    ("$$$(A)", {"A": "1"}, "$1"),
    ("$(A", {"A": "1"}, "$(A"),
    ("$A", {"A": "1"}, "$A"),
    ("a$", {}, "a$"),
    ("$()", {}, "$()"),
    ("$(A)$(B)", {"A": "1", "B": "2"}, "12"),
    ("$(A)", {"A": "$(B)", "B": "2"}, "$(B)"),  # no recursion
])
def test_expand(text: str, env: dict[str, str], want: str) -> None:
    assert cs.expand(text, env) == want


@pytest.mark.parametrize(("command", "args", "want"), [
    (["sh", "-c"], ["echo $(X)"], ["sh", "-c", "echo hi"]),
    ([], ["sleep", "$(X)"], ["sleep", "hi"]),
    (["/bin/true"], [], ["/bin/true"]),
])
def test_argv(command: list[str], args: list[str], want: list[str]) -> None:
    c = core_pb2.Container(name="c", command=command, args=args)
    assert cs.resolve_argv(c, {"X": "hi"}) == want


def test_no_command_is_a_config_error() -> None:
    with pytest.raises(cs.ContainerConfigError, match="no command specified"):
        cs.resolve_argv(core_pb2.Container(name="c"), {})


def container(doc: dict) -> core_pb2.Container:
    return convert.from_dict({"name": "c", **doc}, core_pb2.Container())


def ctx(pod: core_pb2.Pod | None = None, **kw: object) -> cs.PodContext:
    p = pod or _parse({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "web", "namespace": "ns1", "uid": "u-1", "labels": {"app": "web"},
        "annotations": {"a.b/c": "x"}}, "spec": {"nodeName": "n1",
                                                 "serviceAccountName": "sa"}})
    return cs.PodContext(pod=p, **kw)  # type: ignore[arg-type]


def cm(name: str, **data: str) -> core_pb2.ConfigMap:
    out = core_pb2.ConfigMap(data=data)
    out.metadata.name = name
    return out


def secret(name: str, **data: str) -> core_pb2.Secret:
    out = core_pb2.Secret(data={k: v.encode() for k, v in data.items()})
    out.metadata.name = name
    return out


def test_env_order_expansion_and_sources() -> None:
    c = container({
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "s"}}],
        "env": [{"name": "A", "value": "a"},
                {"name": "B", "value": "$(A)-$(CFG_k)-$(NOPE)"},
                {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {
                    "name": "absent", "key": "k", "optional": True}}}],
    })
    env = dict(cs.resolve_env(c, ctx(config_maps={"cfg": cm("cfg", k="v", **{"bad key": "x"}),
                                                   "absent": None},
                                     secrets={"s": secret("s", pw="hunter2")})))
    assert env == {"CFG_k": "v", "pw": "hunter2", "A": "a", "B": "a-v-$(NOPE)", "K": "v",
                   "P": "hunter2"}


@pytest.mark.parametrize(("env", "message"), [
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k"}}}],
     'configmap "none" not found'),
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "zz"}}}],
     "couldn't find key zz in ConfigMap ns1/cfg"),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "none", "key": "k"}}}],
     'secret "none" not found'),
    ([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}],
     "unsupported fieldRef"),
])
def test_env_errors(env: list[dict], message: str) -> None:
    with pytest.raises(cs.ContainerConfigError, match=message):
        cs.resolve_env(container({"env": env}), ctx(config_maps={"cfg": cm("cfg", k="v")}))


def test_env_from_missing_optional_and_required() -> None:
    optional = container({"envFrom": [{"configMapRef": {"name": "x", "optional": True}}]})
    assert cs.resolve_env(optional, ctx()) == []
    with pytest.raises(cs.ContainerConfigError, match='secret "x" not found'):
        cs.resolve_env(container({"envFrom": [{"secretRef": {"name": "x"}}]}), ctx())


@pytest.mark.parametrize(("path", "want"), [
    ("metadata.name", "web"), ("metadata.namespace", "ns1"), ("metadata.uid", "u-1"),
    ("metadata.labels['app']", "web"), ("metadata.annotations['a.b/c']", "x"),
    ("metadata.labels['none']", ""), ("spec.nodeName", "n1"),
    ("spec.serviceAccountName", "sa"), ("status.podIP", "10.0.0.5"),
    ("status.hostIP", "192.168.1.2"),
])
def test_field_ref(path: str, want: str) -> None:
    assert cs.field_value(path, ctx(pod_ip="10.0.0.5", host_ip="192.168.1.2")) == want


@pytest.mark.parametrize(("resource", "divisor", "want"), [
    ("limits.cpu", None, "1"),  # 500m rounds up to 1 core
    ("limits.cpu", "1m", "500"),
    ("requests.cpu", "1m", "250"),
    ("limits.memory", None, str(64 * 1024 * 1024)),
    ("limits.memory", "1Mi", "64"),
    ("requests.memory", "1Mi", "32"),
])
def test_resource_field_ref(resource: str, divisor: str | None, want: str) -> None:
    c = container({"resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                                 "requests": {"cpu": "250m", "memory": "32Mi"}}})
    ref = core_pb2.ResourceFieldSelector(resource=resource)
    if divisor:
        ref.divisor.string = divisor
    assert cs.resource_value(ref, c, ctx()) == want


def test_resource_field_ref_defaults_to_allocatable() -> None:
    ref = core_pb2.ResourceFieldSelector(resource="limits.memory")
    ref.divisor.string = "1Gi"
    c = container({})
    assert cs.resource_value(ref, c, ctx(allocatable={"memory": "8Gi", "cpu": "4"})) == "8"
    cpu = core_pb2.ResourceFieldSelector(resource="limits.cpu")
    assert cs.resource_value(cpu, c, ctx(allocatable={"cpu": "4"})) == "4"


def test_resources_security_mounts_and_config() -> None:
    p = _parse({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "ns1", "uid": "u-1"},
                "spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000,
                                             "supplementalGroups": [3]},
                         "containers": [{"name": "c", "args": ["sleep", "$(T)"],
                                         "env": [{"name": "T", "value": "5"}],
                                         "workingDir": "/tmp",
                                         "resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                                                       "requests": {"cpu": "500m"}},
                                         "securityContext": {"runAsGroup": 7,
                                                             "readOnlyRootFilesystem": True,
                                                             "capabilities": {"drop": ["ALL"]}},
                                         "volumeMounts": [{"name": "data", "mountPath": "/d",
                                                           "readOnly": True,
                                                           "subPath": "sub"}]}]}})
    cfg = cs.build_config(p.spec.containers[0], cs.PodContext(pod=p),
                          volume_paths={"data": "/host/data"}, log_path="/l/0.log")
    assert list(cfg.argv) == ["sleep", "5"]
    assert cfg.working_dir == "/tmp"
    assert cfg.resources.cpu_quota_millis == 2000
    assert cfg.resources.cpu_shares == 512
    assert cfg.resources.memory_limit_bytes == 1 << 30
    assert cfg.security.run_as_user == 1000 and cfg.security.run_as_group == 7
    assert list(cfg.security.supplemental_groups) == [3, 2000]
    assert cfg.security.read_only_root_filesystem
    assert list(cfg.security.capabilities_drop) == ["ALL"]
    assert [(m.host_path, m.container_path, m.read_only) for m in cfg.mounts] == [
        ("/host/data/sub", "/d", True)]
    assert cfg.labels[cs.POD_UID_LABEL] == "u-1"
    with pytest.raises(cs.ContainerConfigError, match="volume 'data'"):
        cs.build_config(p.spec.containers[0], cs.PodContext(pod=p), volume_paths={},
                        log_path="")
