"""The node authorizer, NodeRestriction and the components' roles against a real server:
an agent's certificate reads the Secret of its own pod but not of a pod on another node,
cannot touch another Node, cannot give itself a node-restriction label or drop its
taints; the scheduler's identity cannot read Secrets; the agent's proxy gets its own
system:kube-proxy identity."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agent import certs
from control.api import errors
from control.api.pb import core_pb2, discovery_pb2
from control.apiserver import authn
from control.client import pki
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.credentials import Credentials
from control.client.retry import guaranteed_update
from tests.conftest import Cluster
from tests.support import eventually

NS = "default"


@asynccontextmanager
async def client_as(c: Cluster, creds: Credentials) -> AsyncIterator[ApiClient]:
    channel = open_channel(c.address, creds)
    try:
        yield ApiClient(channel, c.address, timeout=5)
    finally:
        await channel.close(None)


@asynccontextmanager
async def node_client(c: Cluster, name: str) -> AsyncIterator[ApiClient]:
    """A client with the certificate the cluster issues agent ``name``."""
    creds, _ = c.plane.node_identity(name, ["127.0.0.1"])
    async with client_as(c, creds) as client:
        yield client


def secret(name: str) -> core_pb2.Secret:
    s = core_pb2.Secret()
    s.metadata.namespace, s.metadata.name = NS, name
    s.data["password"] = b"hunter2"
    return s


def bound_pod(name: str, node: str, secret_name: str) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.namespace, p.metadata.name = NS, name
    p.spec.node_name = node
    p.spec.containers.add(name="c", image="busybox")
    p.spec.volumes.add(name="s").secret.secret_name = secret_name
    return p


def new_node(name: str, **labels: str) -> core_pb2.Node:
    n = core_pb2.Node()
    n.metadata.name = name
    n.metadata.labels.update({"kubernetes.io/hostname": name, **labels})
    return n


async def test_a_node_reads_only_its_own_pods_secrets(cluster: Cluster) -> None:
    admin = cluster.client
    for name in ("mine", "theirs"):
        await admin.create(secret(name))
    await admin.create(bound_pod("p1", "n1", "mine"))
    await admin.create(bound_pod("p2", "n2", "theirs"))
    async with node_client(cluster, "n1") as n1:
        got = await n1.get(core_pb2.Secret, "mine", NS)
        assert bytes(got.data["password"]) == b"hunter2"
        with pytest.raises(errors.Forbidden) as e:
            await n1.get(core_pb2.Secret, "theirs", NS)
        assert e.value.message == (
            'secrets "theirs" is forbidden: User "system:node:n1" cannot get resource '
            '"secrets" in API group "" in the namespace "default": no relationship found '
            "between node 'n1' and this object")
        # one named Secret by field selector, as a kubelet watches it; never all of them
        listed = await n1.list(core_pb2.Secret, NS, field_selector="metadata.name=mine")
        assert [s.metadata.name for s in listed.items] == ["mine"]
        with pytest.raises(errors.Forbidden, match="can only read individual secrets"):
            await n1.list(core_pb2.Secret, NS)
        with pytest.raises(errors.Forbidden):
            await n1.list(core_pb2.Secret, NS, field_selector="metadata.name=theirs")
        # its pod's status is its to write, the other node's pod's is not
        theirs = await admin.get(core_pb2.Pod, "p2", NS)
        theirs.status.phase = "Running"
        with pytest.raises(errors.Forbidden, match=r"spec\.nodeName set to itself"):
            await n1.update_status(theirs)
        with pytest.raises(errors.Forbidden, match=r"spec\.nodeName set to itself"):
            await n1.delete(core_pb2.Pod, "p2", NS)
        # the pod leaves the node: so does the Secret
        await admin.delete(core_pb2.Pod, "p1", NS, grace_period_seconds=0)

        async def refused() -> bool:
            try:
                await n1.get(core_pb2.Secret, "mine", NS)
            except errors.Forbidden:
                return True
            return False

        await eventually(refused, "n1 to lose the Secret of its deleted pod", timeout=10)


async def test_a_node_cannot_touch_other_nodes_or_restricted_labels(
        cluster: Cluster) -> None:
    admin = cluster.client
    async with node_client(cluster, "n1") as n1, node_client(cluster, "n2") as n2:
        with pytest.raises(errors.Forbidden, match="not allowed to set the following "
                                                   "labels: node-restriction"):
            await n1.create(new_node("n1", **{"node-restriction.kubernetes.io/pci": "true"}))
        await n1.create(new_node("n1", **{"example.com/disk": "ssd"}))
        await n2.create(new_node("n2"))
        # another node: neither its spec nor its status
        with pytest.raises(errors.Forbidden, match="not allowed to modify node 'n2'"):
            await guaranteed_update(n1, core_pb2.Node, "", "n2", _label("example.com/x"))
        other = await admin.get(core_pb2.Node, "n2")
        with pytest.raises(errors.Forbidden):
            await n1.update_status(other)
        # itself: allowed labels yes, node-restriction ones no (adding or removing)
        await guaranteed_update(n1, core_pb2.Node, "", "n1", _label("example.com/x"))
        with pytest.raises(errors.Forbidden, match=r"is not allowed to modify labels: "
                                                   r"node-restriction\.kubernetes\.io/x"):
            await guaranteed_update(n1, core_pb2.Node, "", "n1",
                                    _label("node-restriction.kubernetes.io/x"))
        await guaranteed_update(admin, core_pb2.Node, "", "n1",
                                _label("node-restriction.kubernetes.io/x"))

        def unlabel(n: core_pb2.Node) -> bool:
            del n.metadata.labels["node-restriction.kubernetes.io/x"]
            return True

        with pytest.raises(errors.Forbidden):
            await guaranteed_update(n1, core_pb2.Node, "", "n1", unlabel)
        # a taint an admin put there stays
        def taint(n: core_pb2.Node) -> bool:
            n.spec.taints.add(key="dedicated", value="db", effect="NoSchedule")
            return True

        def untaint(n: core_pb2.Node) -> bool:
            kept = [t for t in n.spec.taints if t.key != "dedicated"]
            del n.spec.taints[:]
            n.spec.taints.extend(kept)
            return True

        await guaranteed_update(admin, core_pb2.Node, "", "n1", taint)
        with pytest.raises(errors.Forbidden, match="not allowed to modify taints"):
            await guaranteed_update(n1, core_pb2.Node, "", "n1", untaint)
        # nor another node's Lease
        with pytest.raises(errors.Forbidden):
            await n1.get("leases", "n2", "kube-node-lease")
    stored = await admin.get(core_pb2.Node, "n1")
    assert stored.metadata.labels["node-restriction.kubernetes.io/x"] == "true"
    assert [t.key for t in stored.spec.taints if t.key == "dedicated"] == ["dedicated"]


def _label(key: str) -> Callable[[core_pb2.Node], bool]:
    def mutate(n: core_pb2.Node) -> bool:
        n.metadata.labels[key] = "true"
        return True
    return mutate


async def test_the_scheduler_identity_cannot_read_secrets(cluster: Cluster) -> None:
    await cluster.client.create(secret("s"))
    async with client_as(cluster, cluster.plane.credentials(authn.SCHEDULER)) as sched:
        await sched.list(core_pb2.Pod, NS)  # what it needs
        with pytest.raises(errors.Forbidden, match='User "system:kube-scheduler" cannot '
                                                   'get resource "secrets"'):
            await sched.get(core_pb2.Secret, "s", NS)
    async with client_as(cluster, cluster.plane.credentials(authn.CLUSTER_DNS)) as dns:
        with pytest.raises(errors.Forbidden):
            await dns.list(core_pb2.Secret, NS)


async def test_the_proxy_gets_its_own_identity(cluster: Cluster, tmp_path: Path) -> None:
    """The agent's proxy asks, as its node, for system:kube-proxy's certificate; with it
    the proxy reads what system:node-proxier allows and nothing of the node's."""
    node_pki = certs.NodePki(tmp_path / "pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_pem = cluster.credentials.ca_pem or b""
    async with node_client(cluster, "n1") as n1:
        creds = await certs.proxy_identity(n1, ca_pem, "n1", node_pki, now, wait=20)
        # kept: the next start reuses it instead of asking again
        again = await certs.proxy_identity(n1, ca_pem, "n1", node_pki, now, wait=20)
    assert again.cert_pem == creds.cert_pem
    assert pki.subject_of(pki.load_cert(creds.cert_pem or b"").subject) == (
        "system:kube-proxy", [])
    csrs = await cluster.client.list("certificatesigningrequests")
    assert [c.spec.username for c in csrs.items
            if c.spec.signer_name == certs.PROXY_SIGNER] == ["system:node:n1"]
    await cluster.client.create(secret("s"))
    async with client_as(cluster, creds) as proxy:
        await proxy.list(discovery_pb2.EndpointSlice)
        await proxy.list(core_pb2.Service)
        with pytest.raises(errors.Forbidden, match='User "system:kube-proxy"'):
            await proxy.get(core_pb2.Secret, "s", NS)
        with pytest.raises(errors.Forbidden):
            await proxy.list(core_pb2.Pod, NS)  # a node may; the proxy needs not
