"""A real pod and its ServiceAccount: the projected volume at
/var/run/secrets/kubernetes.io/serviceaccount holds a token bound to the pod (asked for by
the agent as its node), the cluster CA and the namespace; the token reads pods only once a
RoleBinding allows it and is refused once the pod is gone; automountServiceAccountToken
(the pod wins over the account) keeps the volume out."""

from __future__ import annotations

import pytest

from agent.main import Agent
from control.api import errors
from control.api.pb import core_pb2, rbac_pb2
from control.apiserver import jws
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.agents import pod, wait_pod
from tests.support.token_client import token_client

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RBAC = "rbac.authorization.k8s.io"


async def exec_out(cluster: Cluster, name: str, argv: list[str]) -> tuple[int, str]:
    code, out, _ = await cluster.client.exec("default", name, argv).wait()
    return code, out.decode()


async def make_sa(cluster: Cluster, name: str, automount: bool | None = None) -> None:
    sa = core_pb2.ServiceAccount()
    sa.metadata.name, sa.metadata.namespace = name, "default"
    if automount is not None:
        sa.automount_service_account_token = automount
    await cluster.client.create(sa)


@pytest.mark.root(reason="the token volume is mounted inside the container's own root")
async def test_a_pod_reads_its_token_and_uses_it(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await make_sa(cluster, "robot")
    created = await c.create(pod("reader", ["sleep", "600"], serviceAccountName="robot"))
    await wait_pod(cluster, "reader", lambda p: p.status.phase == "Running")
    code, token = await exec_out(cluster, "reader", ["cat", f"{SA_DIR}/token"])
    assert code == 0
    claims = jws.header_and_claims(token)[1]
    assert claims["kubernetes.io"]["pod"] == {"name": "reader", "uid": created.metadata.uid}
    assert claims["exp"] - claims["iat"] == 3607
    assert await exec_out(cluster, "reader", ["cat", f"{SA_DIR}/namespace"]) == (0, "default")
    code, ca = await exec_out(cluster, "reader", ["cat", f"{SA_DIR}/ca.crt"])
    assert code == 0 and ca.encode() == cluster.credentials.ca_pem
    # the pod cannot write its credentials
    code, _ = await exec_out(cluster, "reader", ["sh", "-c", f"echo x > {SA_DIR}/token"])
    assert code != 0

    robot = token_client(cluster, token)
    try:
        with pytest.raises(errors.Forbidden, match="system:serviceaccount:default:robot"):
            await robot.list(core_pb2.Pod, "default")
        rb = rbac_pb2.RoleBinding()
        rb.metadata.name, rb.metadata.namespace = "robot-view", "default"
        rb.subjects.add(kind="ServiceAccount", name="robot", namespace="default")
        rb.role_ref.kind, rb.role_ref.name, rb.role_ref.api_group = "ClusterRole", "view", RBAC

        async def view_aggregated() -> bool:
            return bool((await c.get(rbac_pb2.ClusterRole, "view")).rules)

        await eventually(view_aggregated, "the view role aggregated")
        await c.create(rb)
        listed = await robot.list(core_pb2.Pod, "default")
        assert "reader" in [p.metadata.name for p in listed.items]
        await c.delete(core_pb2.Pod, "reader", "default")

        async def gone() -> bool:
            try:
                await c.get(core_pb2.Pod, "reader", "default")
            except errors.NotFound:
                return True
            return False

        await eventually(gone, "the pod deleted", timeout=30)
        with pytest.raises(errors.Unauthorized, match="no longer exists"):
            await robot.list(core_pb2.Pod, "default")
    finally:
        await robot.channel.close(None)


@pytest.mark.root(reason="volumes are mounted inside the container's own root")
async def test_automount_the_pod_wins_over_the_account(cluster: Cluster,
                                                       agent: Agent) -> None:
    c = cluster.client
    await make_sa(cluster, "quiet", automount=False)
    quiet = await c.create(pod("quiet", ["sleep", "600"], serviceAccountName="quiet"))
    loud = await c.create(pod("loud", ["sleep", "600"], serviceAccountName="quiet",
                              automountServiceAccountToken=True))
    off = await c.create(pod("off", ["sleep", "600"], automountServiceAccountToken=False))
    assert not quiet.spec.volumes and not off.spec.volumes
    assert off.spec.service_account_name == "default"
    assert [v.name[:16] for v in loud.spec.volumes] == ["kube-api-access-"]
    for name in ("quiet", "loud", "off"):
        await wait_pod(cluster, name, lambda p: p.status.phase == "Running")
    assert (await exec_out(cluster, "loud", ["test", "-s", f"{SA_DIR}/token"]))[0] == 0
    for name in ("quiet", "off"):
        assert (await exec_out(cluster, name, ["test", "-e", f"{SA_DIR}/token"]))[0] != 0
