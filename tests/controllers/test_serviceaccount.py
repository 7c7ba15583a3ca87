"""ServiceAccounts controller (a default ServiceAccount in every namespace, recreated
when deleted) and the root CA publisher (kube-root-ca.crt everywhere, put back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control.api import errors
from control.api.pb import core_pb2
from control.controllers.manager import ControllerManager
from control.controllers.root_ca_publisher import RootCAPublisher
from control.controllers.serviceaccount import ServiceAccountsController
from tests.conftest import Cluster, running_cluster
from tests.support import eventually


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        manager = ControllerManager(c.client, controllers={
            "serviceaccount": ServiceAccountsController})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


async def test_default_account_in_every_namespace_and_back_after_delete(api: Cluster) -> None:
    c = api.client

    async def has_default(ns: str) -> bool:
        try:
            await c.get(core_pb2.ServiceAccount, "default", ns)
            return True
        except errors.NotFound:
            return False

    for ns in ("default", "kube-system"):
        await eventually(lambda n=ns: has_default(n), f"default account in {ns}")  # type: ignore[misc]
    created = core_pb2.Namespace()
    created.metadata.name = "team"
    await c.create(created)
    await eventually(lambda: has_default("team"), "default account in a new namespace")
    first = await c.get(core_pb2.ServiceAccount, "default", "team")
    await c.delete(core_pb2.ServiceAccount, "default", "team")

    async def recreated() -> bool:
        try:
            sa = await c.get(core_pb2.ServiceAccount, "default", "team")
        except errors.NotFound:
            return False
        return sa.metadata.uid != first.metadata.uid

    await eventually(recreated, "the deleted default account recreated")


@pytest.fixture
async def publisher(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        manager = ControllerManager(c.client, controllers={
            "root-ca-cert-publisher": RootCAPublisher})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


async def test_root_ca_configmap_everywhere_and_put_back(publisher: Cluster) -> None:
    c = publisher.client
    ca = publisher.credentials.ca_pem.decode()

    async def published(ns: str) -> bool:
        try:
            cm = await c.get(core_pb2.ConfigMap, "kube-root-ca.crt", ns)
        except errors.NotFound:
            return False
        return dict(cm.data) == {"ca.crt": ca}

    await eventually(lambda: published("default"), "kube-root-ca.crt in default")
    created = core_pb2.Namespace()
    created.metadata.name = "team"
    await c.create(created)
    await eventually(lambda: published("team"), "kube-root-ca.crt in a new namespace")
    await c.delete(core_pb2.ConfigMap, "kube-root-ca.crt", "team")
    await eventually(lambda: published("team"), "a deleted kube-root-ca.crt recreated")
    cm = await c.get(core_pb2.ConfigMap, "kube-root-ca.crt", "team")
    cm.data["ca.crt"] = "tampered"
    await c.update(cm)
    await eventually(lambda: published("team"), "an edited kube-root-ca.crt restored")
