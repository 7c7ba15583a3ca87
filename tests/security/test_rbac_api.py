"""RBAC through the API: a user with no binding is refused, a Role and RoleBinding made by
an admin let them read pods in one namespace only, and removing the binding takes it back
at once (the authorizer's index follows the watch cache)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from control.api import errors
from control.api.pb import api_pb2, api_pb2_grpc, apps_pb2, core_pb2, rbac_pb2
from tests.conftest import Cluster, running_cluster
from tests.support.token_client import token_client as client


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    token_file = tmp_path / "tokens.csv"
    token_file.write_text('bob-token,bob,1002\nops-token,ops,1003,"operators"\n')
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"},
                               token_auth_file=token_file) as cl:
        yield cl



async def test_a_role_binding_grants_reads_in_its_namespace_only(c: Cluster) -> None:
    admin = c.client
    ns = core_pb2.Namespace()
    ns.metadata.name = "other"
    await admin.create(ns)
    bob = client(c, "bob-token")
    try:
        with pytest.raises(errors.Forbidden, match='pods is forbidden: User "bob" cannot '
                                                   'list resource "pods"'):
            await bob.list(core_pb2.Pod, "default")
        role = rbac_pb2.Role()
        role.metadata.name, role.metadata.namespace = "pod-reader", "default"
        role.rules.add(api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"])
        await admin.create(role)
        rb = rbac_pb2.RoleBinding()
        rb.metadata.name, rb.metadata.namespace = "read-pods", "default"
        rb.subjects.add(kind="User", name="bob", api_group="rbac.authorization.k8s.io")
        rb.role_ref.kind, rb.role_ref.name = "Role", "pod-reader"
        rb.role_ref.api_group = "rbac.authorization.k8s.io"
        await admin.create(rb)
        await bob.list(core_pb2.Pod, "default")
        with pytest.raises(errors.Forbidden, match='in the namespace "other"'):
            await bob.list(core_pb2.Pod, "other")
        pod = core_pb2.Pod()
        pod.metadata.name, pod.metadata.namespace = "p", "default"
        with pytest.raises(errors.Forbidden, match='cannot create resource "pods"'):
            await bob.create(pod)
        await admin.delete(rbac_pb2.RoleBinding, "read-pods", "default")
        with pytest.raises(errors.Forbidden):
            await bob.list(core_pb2.Pod, "default")
    finally:
        await bob.channel.close(None)


async def test_a_cluster_role_binding_to_a_group_and_subresources(c: Cluster) -> None:
    admin = c.client
    ops = client(c, "ops-token")
    try:
        cr = rbac_pb2.ClusterRole()
        cr.metadata.name = "scaler"
        cr.rules.add(api_groups=["apps"], resources=["deployments", "deployments/scale"],
                     verbs=["get", "list", "update"])
        await admin.create(cr)
        crb = rbac_pb2.ClusterRoleBinding()
        crb.metadata.name = "operators-scale"
        crb.subjects.add(kind="Group", name="operators")
        crb.role_ref.kind, crb.role_ref.name = "ClusterRole", "scaler"
        await admin.create(crb)
        await ops.list(apps_pb2.Deployment, "")  # every namespace
        d = apps_pb2.Deployment()
        d.metadata.name, d.metadata.namespace = "d", "default"
        with pytest.raises(errors.Forbidden) as denied:
            await ops.create(d)
        assert denied.value.message == (
            'deployments.apps "d" is forbidden: User "ops" cannot create resource '
            '"deployments" in API group "apps" in the namespace "default"')
    finally:
        await ops.channel.close(None)


async def test_escalation_is_refused_through_the_api(c: Cluster) -> None:
    admin = c.client
    role = rbac_pb2.Role()
    role.metadata.name, role.metadata.namespace = "role-admin", "default"
    role.rules.add(api_groups=["rbac.authorization.k8s.io"],
                   resources=["roles", "rolebindings"],
                   verbs=["get", "list", "create", "update", "delete"])  # "*" would escalate
    role.rules.add(api_groups=[""], resources=["pods"], verbs=["get"])
    await admin.create(role)
    rb = rbac_pb2.RoleBinding()
    rb.metadata.name, rb.metadata.namespace = "bob-roles", "default"
    rb.subjects.add(kind="User", name="bob")
    rb.role_ref.kind, rb.role_ref.name = "Role", "role-admin"
    await admin.create(rb)
    cluster_admin = rbac_pb2.ClusterRole()
    cluster_admin.metadata.name = "everything"
    cluster_admin.rules.add(api_groups=["*"], resources=["*"], verbs=["*"])
    await admin.create(cluster_admin)
    bob = client(c, "bob-token")
    try:
        mine = rbac_pb2.Role()
        mine.metadata.name, mine.metadata.namespace = "reader", "default"
        mine.rules.add(api_groups=[""], resources=["pods"], verbs=["get"])
        await bob.create(mine)  # what he holds
        mine.rules[0].verbs.append("delete")
        with pytest.raises(errors.Forbidden, match="not currently held"):
            await bob.update(mine)
        grab = rbac_pb2.RoleBinding()
        grab.metadata.name, grab.metadata.namespace = "grab", "default"
        grab.subjects.add(kind="User", name="bob")
        grab.role_ref.kind, grab.role_ref.name = "ClusterRole", "everything"
        with pytest.raises(errors.Forbidden, match="not currently held"):
            await bob.create(grab)
        # once allowed to bind that role, he may
        binder = rbac_pb2.ClusterRole()
        binder.metadata.name = "bind-everything"
        binder.rules.add(api_groups=["rbac.authorization.k8s.io"],
                         resources=["clusterroles"], verbs=["bind"],
                         resource_names=["everything"])
        await admin.create(binder)
        allow = rbac_pb2.RoleBinding()
        allow.metadata.name, allow.metadata.namespace = "bob-binds", "default"
        allow.subjects.add(kind="User", name="bob")
        allow.role_ref.kind, allow.role_ref.name = "ClusterRole", "bind-everything"
        await admin.create(allow)
        await bob.create(grab)
        # and now holds everything in default (the binding is namespaced)
        await bob.list(core_pb2.Secret, "default")
        with pytest.raises(errors.Forbidden):
            await bob.list(core_pb2.Secret, "kube-system")
    finally:
        await bob.channel.close(None)


async def test_impersonation_needs_the_impersonate_verb(c: Cluster) -> None:
    admin = c.client
    cr = rbac_pb2.ClusterRole()
    cr.metadata.name = "impersonate-ops"
    cr.rules.add(api_groups=[""], resources=["users"], verbs=["impersonate"],
                 resource_names=["ops"])
    cr.rules.add(api_groups=[""], resources=["groups"], verbs=["impersonate"],
                 resource_names=["operators"])
    await admin.create(cr)
    crb = rbac_pb2.ClusterRoleBinding()
    crb.metadata.name = "bob-impersonates"
    crb.subjects.add(kind="User", name="bob")
    crb.role_ref.kind, crb.role_ref.name = "ClusterRole", "impersonate-ops"
    await admin.create(crb)
    reader = rbac_pb2.ClusterRole()
    reader.metadata.name = "pod-lister"
    reader.rules.add(api_groups=[""], resources=["pods"], verbs=["list"])
    await admin.create(reader)
    grant = rbac_pb2.ClusterRoleBinding()
    grant.metadata.name = "operators-list"
    grant.subjects.add(kind="Group", name="operators")
    grant.role_ref.kind, grant.role_ref.name = "ClusterRole", "pod-lister"
    await admin.create(grant)
    bob = client(c, "bob-token")
    stub = api_pb2_grpc.ApiStub(bob.channel)
    req = api_pb2.ListRequest(resource="pods", namespace="default")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.List(req, timeout=3)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # as ops in operators: allowed to list pods
        await stub.List(req, timeout=3, metadata=[("impersonate-user", "ops"),
                                                  ("impersonate-group", "operators")])
        # as ops alone: impersonation allowed, the list is not (ops has no grant)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.List(req, timeout=3, metadata=[("impersonate-user", "ops")])
        assert 'User "ops" cannot list' in (denied.value.details() or "")
        # another user: the impersonation itself is refused, naming it
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.List(req, timeout=3, metadata=[("impersonate-user", "alice")])
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert 'User "bob" cannot impersonate resource "users"' in (
            denied.value.details() or "")
    finally:
        await bob.channel.close(None)
