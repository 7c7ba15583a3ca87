"""Kubernetes' own PersistentVolume and claim examples on a control plane with two real
agents and the default ``local-path`` StorageClass.

The corpus is ``/work/shared/k8s-examples``. Selected: the storage documents whose objects
this machine can run; they are applied unchanged but for the one field the harness adds to
pod templates (the ``host`` RuntimeClass, so the busybox commands run on this machine's
files). Each goes into a namespace of its own and must reach the state its documentation
page describes:

- ``pods/storage/pv-volume.yaml`` + ``pv-claim.yaml`` and ``application/mysql/mysql-pv.yaml``:
  a hostPath volume of class ``manual`` and its claim, both Bound to each other (their
  pages' pods are not run: nginx and mysql images cannot be pulled here, and their
  hostPath ``/mnt/data`` is the machine's own, which a test must not write);
- ``pods/storage/expandable-pvc.yaml`` + ``expandable-pvc-pod.yaml``: the claim names no
  class, gets ``local-path``, is provisioned on the node the scheduler picks, and the pod
  runs with it mounted; growing it is refused, since ``local-path`` does not allow volume
  expansion (as k3s' class).

Not run, because of their images (registry.k8s.io/nginx-slim, mysql, xtrabackup,
cassandra, kubernetes-zookeeper) or their serving on one host port from every replica:
the StatefulSets of ``controllers/statefulset.yaml``, ``application/web/web*.yaml``,
``application/mysql/mysql-statefulset.yaml``, ``application/cassandra`` and
``application/zookeeper``; tests/e2e/test_storage_e2e.py runs a StatefulSet with claims
on busybox commands instead.
"""
# Reading what a container wrote on the host is what these tests are for; the reads are tiny.
# ruff: noqa: ASYNC240
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2
from control.cli.manifest import parse_text
from control.client.client import ApiClient
from tests.support import eventually
from tests.support.cluster import WAIT, Env, real_cluster, running
from tests.support.runtimeclasses import on_host

CORPUS = Path("/work/shared/k8s-examples")
PVC = core_pb2.PersistentVolumeClaim
PV = core_pb2.PersistentVolume

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"{CORPUS} is not here")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tag = uuid.uuid4().hex[:6]
    async with real_cluster(tmp_path, [f"sx-{tag}-a", f"sx-{tag}-b"]) as e:
        yield e


async def apply(c: ApiClient, path: str, ns: str) -> None:
    """Create every document of ``path`` (namespaced ones in ``ns``, pods on the host)."""
    for doc in parse_text((CORPUS / path).read_text(), path):
        data: dict[str, Any] = doc.data
        kind = data["kind"]
        message: Any = {"PersistentVolume": PV(), "PersistentVolumeClaim": PVC(),
                        "Pod": core_pb2.Pod()}[kind]
        if kind != "PersistentVolume":
            data.setdefault("metadata", {})["namespace"] = ns
        if kind == "Pod":
            on_host(data)
        await c.create(convert.from_dict(data, message))


async def namespace(c: ApiClient, name: str) -> str:
    await c.create(convert.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": name}}, core_pb2.Namespace()))
    return name


async def bound_pair(c: ApiClient, claim: str, ns: str, volume: str) -> bool:
    got = await c.get(PVC, claim, ns)
    pv = await c.get(PV, volume)
    return (got.status.phase == "Bound" and got.spec.volume_name == volume
            and pv.status.phase == "Bound" and pv.spec.claim_ref.name == claim
            and pv.spec.claim_ref.namespace == ns)


async def test_static_volume_examples_bind(env: Env) -> None:
    c = env.client
    tag = uuid.uuid4().hex[:6]
    task = await namespace(c, f"task-pv-{tag}")
    await apply(c, "pods/storage/pv-volume.yaml", task)
    await apply(c, "pods/storage/pv-claim.yaml", task)
    mysql = await namespace(c, f"mysql-pv-{tag}")
    await apply(c, "application/mysql/mysql-pv.yaml", mysql)
    try:
        await eventually(lambda: bound_pair(c, "task-pv-claim", task, "task-pv-volume"),
                         "task-pv-claim bound to task-pv-volume", timeout=WAIT)
        await eventually(lambda: bound_pair(c, "mysql-pv-claim", mysql, "mysql-pv-volume"),
                         "mysql-pv-claim bound to mysql-pv-volume", timeout=WAIT)
        got = await c.get(PVC, "task-pv-claim", task)
        # the page: "CAPACITY 10Gi", the volume's, not the 3Gi requested
        assert got.status.capacity["storage"].string == "10Gi"
    finally:
        for name in ("task-pv-volume", "mysql-pv-volume"):
            await c.delete(PV, name)


async def test_expandable_claim_example_is_provisioned_and_mounted(env: Env) -> None:
    c = env.client
    ns = await namespace(c, f"expand-{uuid.uuid4().hex[:6]}")
    await apply(c, "pods/storage/expandable-pvc.yaml", ns)
    await apply(c, "pods/storage/expandable-pvc-pod.yaml", ns)

    async def runs() -> Any:
        p = await c.get(core_pb2.Pod, "expandable-pvc-pod", ns)
        return p if running(p) else None

    pod = await eventually(runs, "the pod running with its claim", timeout=2 * WAIT)
    claim = await c.get(PVC, "expandable-pvc", ns)
    assert claim.spec.storage_class_name == "local-path"
    assert claim.status.phase == "Bound"
    pv = await c.get(PV, claim.spec.volume_name)
    assert pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0].values \
        == [pod.spec.node_name]
    assert Path(pv.spec.host_path.path).is_dir()
    claim.spec.resources.requests["storage"].string = "2Gi"
    with pytest.raises(errors.Forbidden, match="storageclass that provisions the pvc must "
                                               "support resize"):
        await c.update(claim)
