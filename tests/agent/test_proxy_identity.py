"""The agent's proxy moves from the node's identity to system:kube-proxy on a real
server: its client answers as the node first, as kube-proxy once the certificate is
signed, and a restart reuses the kept certificate instead of asking again."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from agent import certs
from agent.proxy_identity import ProxyIdentity
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.runtime.clock import RealClock
from tests.conftest import Cluster
from tests.support import eventually


async def proxy_csrs(cluster: Cluster) -> int:
    csrs = (await cluster.client.list("certificatesigningrequests")).items
    return sum(c.spec.signer_name == certs.PROXY_SIGNER for c in csrs)


async def run_until_switched(cluster: Cluster, node: ApiClient, proxy: ApiClient,
                             node_pki: certs.NodePki, name: str) -> None:
    """Run a ProxyIdentity until the proxy's client answers as kube-proxy and the old
    channel is drained and closed (the renewal then runs), then stop it."""
    creds = cluster.credentials
    identity = ProxyIdentity(node, proxy, server=cluster.address, ca_pem=creds.ca_pem or b"",
                             node_name="n1", node_pki=node_pki, clock=RealClock(),
                             csr_timeout=20, drain=0.2)
    task = asyncio.create_task(identity.run(), name=name)
    try:
        async def as_kube_proxy() -> bool:
            return (await proxy.whoami()).username == certs.PROXY_USER

        await eventually(as_kube_proxy, "the proxy's client to be system:kube-proxy",
                         timeout=20)
        await eventually(lambda: identity.rotator is not None, "the renewal", timeout=5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_proxy_client_moves_to_kube_proxy(cluster: Cluster, tmp_path: Path) -> None:
    node_creds, _ = cluster.plane.node_identity("n1", ["127.0.0.1"])
    node_pki = certs.NodePki(tmp_path / "pki")
    node = ApiClient(open_channel(cluster.address, node_creds), cluster.address, timeout=5)
    proxy = ApiClient(open_channel(cluster.address, node_creds), cluster.address, timeout=5)
    try:
        assert (await proxy.whoami()).username == "system:node:n1"
        for run in (1, 2):  # the second run is a restart: the kept certificate serves
            await run_until_switched(cluster, node, proxy, node_pki, f"proxy-identity-{run}")
            assert await proxy_csrs(cluster) == 1
        assert node_pki.proxy_cert.exists() and node_pki.proxy_key.stat().st_mode & 0o077 == 0
        # the node's own client is untouched
        assert (await node.whoami()).username == "system:node:n1"
    finally:
        await proxy.channel.close(None)
        await node.channel.close(None)
