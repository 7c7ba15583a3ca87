"""RuntimeClass: validation, and admission of pods that name one (existence, overhead,
scheduling constraints), against a real apiserver."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2, node_pb2
from tests.conftest import Cluster


@pytest.fixture
def cluster(api_cluster: Cluster) -> Cluster:
    return api_cluster


def rc(name: str, handler: str, **extra: Any) -> node_pb2.RuntimeClass:
    return convert.from_dict({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                              "metadata": {"name": name}, "handler": handler, **extra},
                             node_pb2.RuntimeClass())


def pod(name: str, **spec: Any) -> core_pb2.Pod:
    return convert.from_dict({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": name, "namespace": "default"},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                       **spec}}, core_pb2.Pod())


async def test_validation(cluster: Cluster) -> None:
    with pytest.raises(errors.Invalid, match="handler"):
        await cluster.client.create(rc("a", ""))
    with pytest.raises(errors.Invalid, match="handler"):
        await cluster.client.create(rc("a", "Not_A_Label"))
    created = await cluster.client.create(rc("a", "host"))
    created.handler = "other"
    with pytest.raises(errors.Invalid, match="immutable"):
        await cluster.client.update(created)


async def test_pod_admission(cluster: Cluster) -> None:
    with pytest.raises(errors.Forbidden, match='RuntimeClass "gvisor" not found'):
        await cluster.client.create(pod("p0", runtimeClassName="gvisor"))
    await cluster.client.create(rc("gvisor", "runsc", overhead={"podFixed": {"memory": "64Mi"}},
                                   scheduling={"nodeSelector": {"sandbox": "yes"},
                                               "tolerations": [{"key": "sandbox",
                                                                "operator": "Exists"}]}))
    got = await cluster.client.create(pod("p1", runtimeClassName="gvisor",
                                          nodeSelector={"zone": "a"}))
    assert got.spec.overhead["memory"].string == "64Mi"
    assert dict(got.spec.node_selector) == {"zone": "a", "sandbox": "yes"}
    assert any(t.key == "sandbox" for t in got.spec.tolerations)
    with pytest.raises(errors.Forbidden, match="Overhead doesn't match"):
        await cluster.client.create(pod("p2", runtimeClassName="gvisor",
                                        overhead={"memory": "1Gi"}))
    with pytest.raises(errors.Forbidden, match=r"nodeSelector\[sandbox\] = no"):
        await cluster.client.create(pod("p3", runtimeClassName="gvisor",
                                        nodeSelector={"sandbox": "no"}))


async def test_service_account_pull_secrets_copied(cluster: Cluster) -> None:
    sa = convert.from_dict({"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": "builder", "namespace": "default"},
                            "imagePullSecrets": [{"name": "regcred"}]}, core_pb2.ServiceAccount())
    await cluster.client.create(sa)
    got = await cluster.client.create(pod("sa1", serviceAccountName="builder"))
    assert [s.name for s in got.spec.image_pull_secrets] == ["regcred"]
    own = await cluster.client.create(pod("sa2", serviceAccountName="builder",
                                          imagePullSecrets=[{"name": "mine"}]))
    assert [s.name for s in own.spec.image_pull_secrets] == ["mine"]
    plain = await cluster.client.create(pod("sa3"))  # no "default" account: nothing added
    assert list(plain.spec.image_pull_secrets) == []
