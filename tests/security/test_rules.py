"""The pure rules of security, as tables: the authorizer chain, CSR auto-approval, tokens,
renewal deadlines, config files."""

from __future__ import annotations

import datetime
import random
from pathlib import Path
from typing import Any

import pytest

from agent.certs import JoinError, parse_token
from control.api import errors, kinds
from control.api.pb import certificates_pb2, core_pb2
from control.apiserver.authn import UserInfo, parse_token_file
from control.apiserver.authz import Attributes, Decision, default_chain
from control.client import config as client_config
from control.client import pki
from control.client.tls import Credentials
from control.controllers.certificates import (
    KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
    approval,
)
from tests.support.node_authz import Objects, pod

NODE_N1 = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
ADMIN = UserInfo("admin", ("system:masters",))
BOOT = UserInfo("system:bootstrap:abcdef", ("system:bootstrappers",))
BOB = UserInfo("bob", ("system:authenticated",))


def _objects() -> Objects:
    o = Objects()
    mine = pod("default", "mine", "n1")
    mine.spec.volumes.add(name="s").secret.secret_name = "s"
    o.put_pod(mine)
    o.put_pod(pod("default", "theirs", "n2"))
    return o


CHAIN = default_chain(_objects().authorizer())


@pytest.mark.parametrize(("user", "verb", "resource", "sub", "ns", "name", "allowed"), [
    (ADMIN, "delete", "nodes", "", "", "n2", True),
    (NODE_N1, "update", "nodes", "status", "", "n1", True),
    (NODE_N1, "update", "nodes", "status", "", "n2", False),
    (NODE_N1, "create", "leases", "", "kube-node-lease", "n1", True),
    (NODE_N1, "update", "leases", "", "kube-node-lease", "n2", False),
    (NODE_N1, "update", "leases", "", "kube-system", "n1", False),
    (NODE_N1, "patch", "pods", "status", "default", "mine", True),
    (NODE_N1, "patch", "pods", "status", "default", "theirs", False),
    (NODE_N1, "update", "pods", "", "default", "mine", False),
    (NODE_N1, "delete", "pods", "", "default", "mine", True),
    (NODE_N1, "delete", "pods", "", "default", "theirs", False),
    (NODE_N1, "create", "pods", "exec", "default", "mine", False),
    (NODE_N1, "get", "secrets", "", "default", "s", True),  # its pod mounts it
    (NODE_N1, "get", "secrets", "", "kube-system", "s", False),
    (NODE_N1, "watch", "pods", "", "", "", True),
    (NODE_N1, "create", "events", "", "default", "e", True),
    (NODE_N1, "create", "certificatesigningrequests", "", "", "c", True),
    (NODE_N1, "update", "certificatesigningrequests", "status", "", "c", False),
    (BOOT, "create", "certificatesigningrequests", "", "", "c", True),
    (BOOT, "list", "pods", "", "default", "", False),
    (BOB, "get", "pods", "", "default", "x", False),
    (None, "get", "configmaps", "", "kube-public", "cluster-info", True),
    (None, "get", "configmaps", "", "kube-public", "other", False),
    # the components hold only their RBAC roles (none in this chain)
    (UserInfo("system:kube-scheduler"), "create", "pods", "binding", "default", "x", False),
])
def test_authorizer_chain(user: UserInfo | None, verb: str, resource: str, sub: str, ns: str,
                          name: str, allowed: bool) -> None:
    a = Attributes(user, verb, resource, kinds.by_resource(resource).group, sub, ns, name)
    assert (CHAIN.decide(a) is Decision.ALLOW) == allowed


def test_denials_say_who_what_and_where() -> None:
    with pytest.raises(errors.Forbidden) as e:
        CHAIN.check(Attributes(NODE_N1, "update", "nodes", "", "", "", "n2"))
    assert e.value.message == ('nodes "n2" is forbidden: User "system:node:n1" cannot update '
                               'resource "nodes" in API group "" at the cluster scope: '
                               "node 'n1' is not allowed to modify node 'n2'")
    with pytest.raises(errors.Unauthorized):
        CHAIN.check(Attributes(None, "list", "pods", "", "", "default"))


def csr(cn: str, groups: list[str], signer: str, usages: list[str], requester: str,
        requester_groups: list[str], dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = ()) -> Any:
    c = certificates_pb2.CertificateSigningRequest()
    c.spec.request = pki.make_csr(pki.new_key(), cn, groups, dns=dns, ips=ips)
    c.spec.signer_name = signer
    c.spec.usages.extend(usages)
    c.spec.username = requester
    c.spec.groups.extend(requester_groups)
    return c


def node_with(*addresses: str) -> Any:
    n = core_pb2.Node()
    for a in addresses:
        n.status.addresses.add(type="InternalIP", address=a)
    return n


NODE = "system:node:n1"
NODES = ["system:nodes"]
CLIENT = ["digital signature", "client auth"]
SERVING = ["digital signature", "server auth"]
PROXY = "system:kube-proxy"
APISERVER = "kubernetes.io/kube-apiserver-client"


@pytest.mark.parametrize(("request_", "node", "verdict"), [
    (csr(NODE, NODES, KUBELET_CLIENT_SIGNER, CLIENT, "system:bootstrap:x",
         ["system:bootstrappers"]), None, "approve"),
    (csr(NODE, NODES, KUBELET_CLIENT_SIGNER, CLIENT, NODE, NODES), None, "approve"),
    (csr(NODE, NODES, KUBELET_CLIENT_SIGNER, CLIENT, "system:node:n2", NODES), None, "ignore"),
    (csr(NODE, NODES, KUBELET_CLIENT_SIGNER, CLIENT, "bob", []), None, "ignore"),
    (csr(NODE, [*NODES, "system:masters"], KUBELET_CLIENT_SIGNER, CLIENT, "system:bootstrap:x",
         ["system:bootstrappers"]), None, "ignore"),
    (csr("admin", NODES, KUBELET_CLIENT_SIGNER, CLIENT, "system:bootstrap:x",
         ["system:bootstrappers"]), None, "ignore"),
    (csr(NODE, NODES, KUBELET_CLIENT_SIGNER, [*CLIENT, "server auth"], NODE, NODES), None,
     "ignore"),
    (csr(NODE, NODES, KUBELET_CLIENT_SIGNER, CLIENT, NODE, NODES, dns=("n1",)), None,
     "ignore"),
    (csr(NODE, NODES, KUBELET_SERVING_SIGNER, SERVING, NODE, NODES, ("n1",), ("10.0.0.1",)),
     node_with("n1", "10.0.0.1"), "approve"),
    (csr(NODE, NODES, KUBELET_SERVING_SIGNER, SERVING, NODE, NODES, ("n1",), ("10.0.0.9",)),
     node_with("n1", "10.0.0.1"), "ignore"),
    (csr(NODE, NODES, KUBELET_SERVING_SIGNER, SERVING, NODE, NODES, ("n1",)), None, "wait"),
    (csr(NODE, NODES, KUBELET_SERVING_SIGNER, SERVING, "system:bootstrap:x",
         ["system:bootstrappers"], ("n1",)), node_with("n1"), "ignore"),
    (csr(NODE, NODES, "example.com/other", CLIENT, NODE, NODES), None, "ignore"),
    # the agent's proxy identity: exactly CN=system:kube-proxy, asked by a node
    (csr(PROXY, [], APISERVER, CLIENT, NODE, NODES), None, "approve"),
    (csr(PROXY, [], APISERVER, CLIENT, "admin", ["system:masters"]), None, "approve"),
    (csr(PROXY, [], APISERVER, CLIENT, "system:bootstrap:x", ["system:bootstrappers"]), None,
     "ignore"),
    (csr(PROXY, [], APISERVER, CLIENT, "bob", []), None, "ignore"),
    (csr(PROXY, ["system:masters"], APISERVER, CLIENT, NODE, NODES), None, "ignore"),
    (csr("system:kube-scheduler", [], APISERVER, CLIENT, NODE, NODES), None, "ignore"),
    (csr(PROXY, [], APISERVER, [*CLIENT, "server auth"], NODE, NODES), None, "ignore"),
    (csr(PROXY, [], APISERVER, CLIENT, NODE, NODES, dns=("n1",)), None, "ignore"),
])
def test_csr_auto_approval(request_: Any, node: Any, verdict: str) -> None:
    assert approval(request_, lambda _name: node)[0] == verdict


CA_HASH = "a" * 64


@pytest.mark.parametrize("text", ["", "abcdef.0123456789abcdef", f"K10{CA_HASH}::ABCDEF."
                                  "0123456789abcdef", f"K10{CA_HASH[:-1]}::abcdef.0123456789abc"
                                  "def", f"K10{CA_HASH}::abcdef.0123"])
def test_malformed_tokens(text: str) -> None:
    with pytest.raises(JoinError, match="malformed join token"):
        parse_token(text)


def test_a_token() -> None:
    t = parse_token(f"K10{CA_HASH}::abcdef.0123456789abcdef")
    assert (t.ca_hash, t.bearer) == (CA_HASH, "abcdef.0123456789abcdef")


def test_token_auth_file(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text('# comment\ntok1,alice,1,"a,b"\ntok2,bob,2\n')
    assert parse_token_file(f) == {"tok1": UserInfo("alice", ("a", "b"), "1"),
                                   "tok2": UserInfo("bob", (), "2")}
    f.write_text("tok1,alice\n")
    with pytest.raises(ValueError, match=r"t.csv:1: expected token,user,uid"):
        parse_token_file(f)


def test_renewal_between_70_and_90_percent() -> None:
    ca = pki.ClusterCA.create()
    start = pki.now()
    cert = ca.sign(pki.new_key().public_key(), "u", client=True,
                   lifetime=datetime.timedelta(seconds=1000), start=start)
    delays = [pki.renewal_delay(pki.cert_pem(cert), start, random.Random(i)) for i in range(50)]
    # valid from 100 s before start (a tenth of the lifetime): 70-90% of 1100 s from there
    assert all(670 - 1 <= d <= 890 + 1 for d in delays), (min(delays), max(delays))
    assert pki.renewal_delay(pki.cert_pem(cert), start + datetime.timedelta(days=1)) == 0


def test_config_round_trip_and_view(tmp_path: Path) -> None:
    ca = pki.ClusterCA.create()
    issued = ca.issue("admin", ["system:masters"], client=True)
    creds = Credentials(ca_pem=ca.pem, cert_pem=issued.cert_pem, key_pem=issued.key_pem)
    path = client_config.write_config(tmp_path / "c.conf", client_config.config_document(
        "10.0.0.5:6443", creds, supervisor="10.0.0.5:9345"))
    assert path.stat().st_mode & 0o777 == 0o600
    cfg = client_config.read_config_file(path)
    assert (cfg.server, cfg.supervisor, cfg.credentials) == ("10.0.0.5:6443", "10.0.0.5:9345",
                                                             creds)
    view = client_config.view(path)
    assert "PRIVATE KEY" not in view and "client-key-data: REDACTED" in view
    overridden = client_config.load("127.0.0.1:1", str(path))
    assert overridden.server == "127.0.0.1:1" and overridden.credentials == creds
    broken = tmp_path / "broken.conf"
    broken.write_text("server: a:1\nclient-certificate-data: " +
                      client_config.b64(issued.cert_pem) + "\n")
    with pytest.raises(client_config.ConfigError, match="needs its key"):
        client_config.read_config_file(broken)


def test_serving_names_and_advertised_host() -> None:
    from control.apiserver.certs import advertised_host, serving_names

    names = serving_names(["10.1.2.3"], ["extra.example.com"])
    assert {"10.1.2.3", "127.0.0.1", "localhost", "10.96.0.1", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local", "extra.example.com"} <= set(names)
    assert advertised_host("10.1.2.3") == "10.1.2.3"
    assert advertised_host("0.0.0.0") not in ("0.0.0.0", "")


@pytest.mark.parametrize(("status", "seconds", "condition", "duration"), [
    ({}, None, "Pending", "<none>"),
    ({"conditions": [{"type": "Approved", "status": "True"}]}, 3600, "Approved", "1h"),
    ({"conditions": [{"type": "Approved", "status": "True"}], "certificate": "eA=="}, 5400,
     "Approved,Issued", "1h30m"),
    ({"conditions": [{"type": "Denied", "status": "True"}]}, 600, "Denied", "10m"),
])
def test_csr_table_row(status: dict[str, Any], seconds: int | None, condition: str,
                       duration: str) -> None:
    from control.cli.columns import columns_for, header_for

    spec: dict[str, Any] = {"signerName": KUBELET_CLIENT_SIGNER, "username": "system:node:n1"}
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    obj = {"metadata": {"name": "c1"}, "spec": spec, "status": status}
    assert header_for("CertificateSigningRequest", False) == [
        "NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    row = columns_for("CertificateSigningRequest").row(obj, 0.0, False)
    assert row[0] == "c1" and row[2:] == [KUBELET_CLIENT_SIGNER, "system:node:n1", duration,
                                          condition]
