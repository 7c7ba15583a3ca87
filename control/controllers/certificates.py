"""CertificateSigningRequests: auto-approval of nodes' requests and signing by the cluster CA
(kube-controller-manager's csrapproving and csrsigning controllers).

Approval (:func:`approval`, pure): only two kinds of request are approved, and only when
they ask for exactly what a node is:

- ``kubernetes.io/kube-apiserver-client-kubelet``: subject exactly
  ``CN=system:node:<name>, O=system:nodes``, no SANs, usages ``client auth`` (with
  ``digital signature``/``key encipherment`` at most), asked by a bootstrap token
  (``system:bootstrappers``), by that same node (renewal) or by ``system:masters`` (an
  agent started with an administrator's config; Kubernetes' approver lets whoever may
  create ``certificatesigningrequests/nodeclient`` through, which masters may);
- ``kubernetes.io/kubelet-serving``: the same subject, usages ``server auth`` (at most with
  the two key usages), asked by that node itself, with SANs that are all among the
  Node's own ``status.addresses`` (hostname and IPs); a Node not posted yet is retried.

- ``kubernetes.io/kube-apiserver-client``: only subject exactly ``CN=system:kube-proxy``
  (no group, no SANs, client auth), asked by a node or ``system:masters``: the agent's
  proxy identity, bound to ``system:node-proxier`` (k3s gives every agent that
  certificate; it reads no more than a node does).

Anything else stays pending for a human (Kubernetes does the same). Approved requests of
the signers above (and ``kubernetes.io/kube-apiserver-client``) are signed by
:class:`CsrSigningController` for ``min(expirationSeconds, signing duration)``; a request
the CA cannot sign gets a ``Failed`` condition saying why.

Concurrency contract: each controller is one ``control.runtime.Controller`` keyed by CSR
name; reconciles read the informers' caches and write with update_status (conflicts are
retried by the controller's backoff).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from control.api import errors
from control.client import pki
from control.client.client import ApiClient
from control.client.csr import condition, is_approved, is_finished, set_condition
from control.runtime.controller import Controller, Result

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

log = structlog.get_logger(__name__, component="controller", controller="csr")

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
SIGNERS = (KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, APISERVER_CLIENT_SIGNER)
NODES = "system:nodes"
NODE_PREFIX = "system:node:"
BOOTSTRAPPERS = "system:bootstrappers"
MASTERS = "system:masters"
PROXY_USER = "system:kube-proxy"
KEY_USAGES = {"digital signature", "key encipherment"}
DEFAULT_SIGNING_DURATION = datetime.timedelta(days=365)
# a serving request may come before the node has posted its addresses
NODE_WAIT = 2.0


def _node_subject(request: Any) -> str | None:
    """The node name if the request's subject is exactly a node's, else None."""
    cn, groups = pki.subject_of(request.subject)
    if groups != [NODES] or not cn.startswith(NODE_PREFIX) or len(cn) == len(NODE_PREFIX):
        return None
    if len(request.subject) != 2:  # CN and one O, nothing else
        return None
    return cn[len(NODE_PREFIX):]


def proxy_approval(csr: Any, request: Any) -> tuple[str, str]:
    """A ``kubernetes.io/kube-apiserver-client`` request: approved only for exactly
    ``CN=system:kube-proxy`` (no group, no SAN, client auth) asked by a node (or
    masters), the agent's proxy identity; any other such request waits for a human."""
    cn, groups = pki.subject_of(request.subject)
    if cn != PROXY_USER or groups or len(request.subject) != 1:
        return "ignore", f"only {PROXY_USER}'s client certificate is auto-approved"
    usages = set(csr.spec.usages)
    if "client auth" not in usages or not usages <= KEY_USAGES | {"client auth"}:
        return "ignore", "a kube-proxy client certificate has usage client auth only"
    if any(pki.sans_of(request)):
        return "ignore", "a kube-proxy client certificate has no subject alternative names"
    requester = csr.spec.username
    if (requester.startswith(NODE_PREFIX) and NODES in csr.spec.groups) or \
            MASTERS in csr.spec.groups:
        return "approve", "Auto approving kube-proxy client certificate for a node."
    return "ignore", f"{requester} is not a node: it may not ask for {PROXY_USER}"


def approval(csr: Any, node: Callable[[str], Any | None]) -> tuple[str, str]:
    """("approve" | "wait" | "ignore", why) for one pending request."""
    signer = csr.spec.signer_name
    if signer not in (KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, APISERVER_CLIENT_SIGNER):
        return "ignore", f"signer {signer} is not auto-approved"
    try:
        request = pki.read_csr(bytes(csr.spec.request))
    except pki.PkiError as e:
        return "ignore", str(e)
    if signer == APISERVER_CLIENT_SIGNER:
        return proxy_approval(csr, request)
    name = _node_subject(request)
    if name is None:
        return "ignore", "the subject is not exactly CN=system:node:<name>, O=system:nodes"
    usages = set(csr.spec.usages)
    dns, ips = pki.sans_of(request)
    requester = csr.spec.username
    if signer == KUBELET_CLIENT_SIGNER:
        if "client auth" not in usages or not usages <= KEY_USAGES | {"client auth"}:
            return "ignore", "a node client certificate has usage client auth only"
        if dns or ips:
            return "ignore", "a node client certificate has no subject alternative names"
        if BOOTSTRAPPERS in csr.spec.groups or requester == NODE_PREFIX + name or \
                MASTERS in csr.spec.groups:
            return "approve", "Auto approving kubelet client certificate after " \
                              "bootstrap token, node or administrator authentication."
        return "ignore", f"{requester} may not ask for node {name}'s client certificate"
    if "server auth" not in usages or not usages <= KEY_USAGES | {"server auth"}:
        return "ignore", "a node serving certificate has usage server auth only"
    if requester != NODE_PREFIX + name or NODES not in csr.spec.groups:
        return "ignore", f"only node {name} may ask for its serving certificate"
    if not dns and not ips:
        return "ignore", "a serving certificate needs at least one name or address"
    obj = node(name)
    if obj is None:
        return "wait", f"node {name} is not registered yet"
    known = {a.address for a in obj.status.addresses}
    unknown = [n for n in (*dns, *ips) if n not in known]
    if unknown:
        if not obj.status.addresses:
            return "wait", f"node {name} has not posted its addresses yet"
        return "ignore", f"names {', '.join(unknown)} are not node {name}'s addresses"
    return "approve", "Auto approving kubelet serving certificate: its names are the node's."


def usages_of(csr: Any) -> tuple[bool, bool]:
    usages = set(csr.spec.usages)
    return "client auth" in usages, "server auth" in usages


class CsrApprovingController:
    name = "csrapproving"

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self._csrs = ctx.informers.informer("certificatesigningrequests")
        self._nodes = ctx.informers.informer("nodes")
        self.controller = Controller(self.name, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        self._csrs.add_event_handler(on_add=self._enqueue,
                                     on_update=lambda _o, n: self._enqueue(n))

    def _enqueue(self, csr: Any) -> None:
        if not is_finished(csr) and not is_approved(csr):
            self.controller.enqueue(csr.metadata.name)

    async def reconcile(self, key: str) -> Result | None:
        csr = self._csrs.indexer.get(key)
        if csr is None or is_finished(csr) or is_approved(csr) or condition(csr, "Denied"):
            return None
        verdict, why = approval(csr, self._nodes.indexer.get)
        if verdict == "wait":
            return Result(requeue_after=NODE_WAIT)
        if verdict == "ignore":
            log.debug("csr left for a human", csr=key, why=why)
            return None
        updated = type(csr)()
        updated.CopyFrom(csr)
        set_condition(updated, "Approved", "AutoApproved", why)
        try:
            await self._client.update_status(updated)
        except errors.NotFound:
            return None
        log.info("csr approved", csr=key, requester=csr.spec.username,
                 signer=csr.spec.signer_name)
        return None


class CsrSigningController:
    name = "csrsigning"

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self._ca: pki.ClusterCA | None = ctx.signer
        self._duration = ctx.signing_duration
        self._csrs = ctx.informers.informer("certificatesigningrequests")
        self.controller = Controller(self.name, self.reconcile, workers=ctx.workers,
                                     clock=ctx.clock)
        self._csrs.add_event_handler(on_add=self._enqueue,
                                     on_update=lambda _o, n: self._enqueue(n))

    def _enqueue(self, csr: Any) -> None:
        if is_approved(csr) and not is_finished(csr) and csr.spec.signer_name in SIGNERS:
            self.controller.enqueue(csr.metadata.name)

    def sign(self, csr: Any) -> bytes:
        assert self._ca is not None
        request = pki.read_csr(bytes(csr.spec.request))
        client, server = usages_of(csr)
        lifetime = self._duration
        if csr.spec.HasField("expiration_seconds"):
            lifetime = min(lifetime, datetime.timedelta(seconds=csr.spec.expiration_seconds))
        cn, groups = pki.subject_of(request.subject)
        dns, ips = pki.sans_of(request)
        cert = self._ca.sign(request.public_key(), cn, groups, client=client, server=server,
                             dns=dns, ips=ips, lifetime=lifetime)
        return pki.cert_pem(cert)

    async def reconcile(self, key: str) -> Result | None:
        csr = self._csrs.indexer.get(key)
        if csr is None or self._ca is None or is_finished(csr) or not is_approved(csr):
            return None
        if csr.spec.signer_name not in SIGNERS:
            return None
        updated = type(csr)()
        updated.CopyFrom(csr)
        try:
            updated.status.certificate = self.sign(csr)
        except (pki.PkiError, ValueError, TypeError) as e:
            set_condition(updated, "Failed", "SigningError", f"cannot sign: {e}")
        try:
            await self._client.update_status(updated)
        except errors.NotFound:
            return None
        log.info("csr signed", csr=key, signer=csr.spec.signer_name)
        return None


__all__ = ["APISERVER_CLIENT_SIGNER", "KUBELET_CLIENT_SIGNER", "KUBELET_SERVING_SIGNER",
           "CsrApprovingController", "CsrSigningController", "approval", "is_approved",
           "is_finished"]
