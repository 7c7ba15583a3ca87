"""The proxy's own identity: ``system:kube-proxy`` on the proxy's client.

The agent's proxy reads Services and EndpointSlices as kube-proxy does, under the user
``system:kube-proxy`` (bound to ``system:node-proxier``), not as the node. The proxy's
client starts on the node's identity, so Services work from the first moment (and keep
working if no controller manager approves the request: the node may read what the proxy
reads). :meth:`ProxyIdentity.run` then gets the certificate (the one kept in the node's
pki directory while it lives, else a CSR made with the node's client: the approver grants
it to any node, as k3s hands every agent a kube-proxy certificate), moves the proxy's
client onto a channel carrying it (new calls go there at once; the old channel is closed
once calls already on it had their time, which ends the informers' watches, and they
resume on the new one from their last resourceVersion) and renews it at 70-90% of its
life like the node's own certificates.

Concurrency contract: ``run`` is one supervised task on the agent's loop; it only swaps
the proxy client's channel, which the proxy's calls pick up on their next call.
"""

from __future__ import annotations

import datetime

import structlog

from agent import certs
from control.client import pki
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.credentials import Credentials
from control.runtime.clock import Clock

log = structlog.get_logger(__name__, component="agent-proxy-identity")


class ProxyIdentity:
    """``node_client`` asks for the certificate; ``proxy_client`` is moved onto it."""

    def __init__(self, node_client: ApiClient, proxy_client: ApiClient, *, server: str,
                 ca_pem: bytes, node_name: str, node_pki: certs.NodePki, clock: Clock,
                 csr_timeout: float = certs.DEFAULT_CSR_TIMEOUT,
                 drain: float | None = None) -> None:
        self.node_client = node_client
        self.proxy_client = proxy_client
        self.server = server
        self.ca_pem = ca_pem
        self.node_name = node_name
        self.node_pki = node_pki
        self.clock = clock
        self.csr_timeout = csr_timeout
        # how long the old channel stays open after the swap: calls already on it finish
        # (a request lasts at most the client's timeout) before closing it ends them
        self.drain = drain if drain is not None else (proxy_client.timeout or 30.0) + 1.0
        self.rotator: certs.Rotator | None = None

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.now(), datetime.UTC)

    async def run(self) -> None:
        creds = await certs.proxy_identity(self.node_client, self.ca_pem, self.node_name,
                                           self.node_pki, self._now(), wait=self.csr_timeout)
        cert_pem, key_pem = creds.cert_pem or b"", creds.key_pem or b""
        await self.install(cert_pem, key_pem)
        self.rotator = certs.Rotator("kube-proxy", cert_pem, self._renew, self.install,
                                     cert_path=self.node_pki.proxy_cert,
                                     key_path=self.node_pki.proxy_key, clock=self.clock)
        await self.rotator.run()

    async def _renew(self, key: pki.PrivateKey) -> bytes:
        return await certs.request_certificate(self.node_client, key, self.node_name,
                                               certs.PROXY_SIGNER, certs.CLIENT_USAGES,
                                               wait=self.csr_timeout)

    async def install(self, cert_pem: bytes, key_pem: bytes) -> None:
        creds = Credentials(ca_pem=self.ca_pem, cert_pem=cert_pem, key_pem=key_pem)
        old = self.proxy_client.use_channel(open_channel(self.server, creds))
        log.info("the proxy's client runs as " + certs.PROXY_USER, node=self.node_name)
        try:
            await self.clock.sleep(self.drain)
        finally:
            await old.close(None)


__all__ = ["ProxyIdentity"]
