"""The default RBAC policy: reconciled at start (autoupdate honoured), and the aggregated
view role through the API: a user bound to view reads pods but cannot create them nor read
Secrets; edit cannot change roles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control.api import errors
from control.api.pb import core_pb2, rbac_pb2
from control.apiserver.rbac_bootstrap import AUTOUPDATE, default_policy, reconciled
from tests.conftest import Cluster, running_cluster
from tests.support import eventually
from tests.support.token_client import token_client as client


def stored(name: str) -> rbac_pb2.ClusterRole:
    wanted = next(o for o in default_policy() if o.metadata.name == name
                  and isinstance(o, rbac_pb2.ClusterRole))
    out = rbac_pb2.ClusterRole()
    out.CopyFrom(wanted)
    return out


def test_reconcile_adds_back_what_is_missing_and_keeps_additions() -> None:
    wanted = stored("system:kube-scheduler")
    current = stored("system:kube-scheduler")
    assert reconciled(current, wanted) is None
    del current.rules[0]
    current.rules.add(verbs=["get"], api_groups=["example.com"], resources=["widgets"])
    new = reconciled(current, wanted)
    assert new is not None and all(r in new.rules for r in wanted.rules)
    assert any(list(r.resources) == ["widgets"] for r in new.rules)
    current.metadata.annotations[AUTOUPDATE] = "false"
    assert reconciled(current, wanted) is None


def test_bindings_reconcile_subjects_not_role_refs() -> None:
    wanted = next(o for o in default_policy() if o.metadata.name == "cluster-admin"
                  and isinstance(o, rbac_pb2.ClusterRoleBinding))
    current = rbac_pb2.ClusterRoleBinding()
    current.CopyFrom(wanted)
    del current.subjects[:]
    new = reconciled(current, wanted)
    assert new is not None and list(new.subjects) == list(wanted.subjects)
    current.role_ref.name = "view"
    assert reconciled(current, wanted) is None


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    token_file = tmp_path / "tokens.csv"
    token_file.write_text('viewer-token,vic,1,\neditor-token,ed,2,\n')
    async with running_cluster(tmp_path / "data", disable={"scheduler"},
                               token_auth_file=token_file) as cl:
        yield cl



async def bind(c: Cluster, user: str, role: str) -> None:
    rb = rbac_pb2.RoleBinding()
    rb.metadata.name, rb.metadata.namespace = f"{user}-{role}", "default"
    rb.subjects.add(kind="User", name=user)
    rb.role_ref.kind, rb.role_ref.name = "ClusterRole", role
    await c.client.create(rb)


async def test_view_and_edit(c: Cluster) -> None:
    async def aggregated(name: str) -> bool:
        return bool((await c.client.get(rbac_pb2.ClusterRole, name)).rules)

    for name in ("view", "edit", "admin"):
        await eventually(lambda n=name: aggregated(n), f"{name} aggregated")  # type: ignore[misc]
    await bind(c, "vic", "view")
    await bind(c, "ed", "edit")
    vic, ed = client(c, "viewer-token"), client(c, "editor-token")
    try:
        await vic.list(core_pb2.Pod, "default")
        pod = core_pb2.Pod()
        pod.metadata.name, pod.metadata.namespace = "p", "default"
        with pytest.raises(errors.Forbidden, match='User "vic" cannot create'):
            await vic.create(pod)
        with pytest.raises(errors.Forbidden, match='cannot list resource "secrets"'):
            await vic.list(core_pb2.Secret, "default")
        await ed.list(core_pb2.Secret, "default")
        role = rbac_pb2.Role()
        role.metadata.name, role.metadata.namespace = "r", "default"
        with pytest.raises(errors.Forbidden, match='cannot create resource "roles"'):
            await ed.create(role)
        with pytest.raises(errors.Forbidden, match="in the namespace \"kube-system\""):
            await vic.list(core_pb2.Pod, "kube-system")
    finally:
        await vic.channel.close(None)
        await ed.channel.close(None)
