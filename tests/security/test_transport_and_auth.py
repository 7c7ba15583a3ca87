"""TLS on the API, who may call it, and how refusals read: each refusal with its gRPC code
and a message that says what was wrong."""

from __future__ import annotations

import asyncio
import datetime
import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from control.api import errors
from control.api.pb import core_pb2
from control.cli.main import main as cli_main
from control.client import pki
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.tls import Credentials, diagnose
from tests.conftest import Cluster, running_cluster


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    token_file = tmp_path / "tokens.csv"
    token_file.write_text('s3cret-token,alice,1001,"devs,system:masters"\n'
                          'plain-token,bob,1002\n')
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"},
                               token_auth_file=token_file) as cl:
        yield cl


async def call(address: str, creds: Credentials) -> ApiClient:
    return ApiClient(open_channel(address, creds), address, timeout=3)


async def refused_at_handshake(address: str, creds: Credentials) -> None:
    client = await call(address, creds)
    try:
        with pytest.raises(errors.ServiceUnavailable):
            await client.list(core_pb2.Pod, "default")
    finally:
        await client.channel.close(None)


def other_ca_admin() -> Credentials:
    other = pki.ClusterCA.create("someone-else")
    issued = other.issue("admin", ["system:masters"], client=True)
    return Credentials(ca_pem=other.pem, cert_pem=issued.cert_pem, key_pem=issued.key_pem)


async def test_api_port_refuses_a_client_without_certificate(c: Cluster) -> None:
    creds = Credentials(ca_pem=c.credentials.ca_pem)
    await refused_at_handshake(c.address, creds)
    why = await asyncio.to_thread(diagnose, c.address, creds)
    assert why is not None and "requires a client certificate" in why and c.address in why


async def test_api_port_refuses_a_certificate_of_another_ca(c: Cluster) -> None:
    foreign = other_ca_admin()
    creds = Credentials(ca_pem=c.credentials.ca_pem, cert_pem=foreign.cert_pem,
                        key_pem=foreign.key_pem)
    await refused_at_handshake(c.address, creds)
    why = await asyncio.to_thread(diagnose, c.address, creds)
    assert why is not None and "not issued by this cluster's certificate authority" in why


async def test_a_server_of_another_ca_is_not_trusted(c: Cluster) -> None:
    creds = Credentials(ca_pem=other_ca_admin().ca_pem, cert_pem=c.credentials.cert_pem,
                        key_pem=c.credentials.key_pem)
    await refused_at_handshake(c.address, creds)
    why = await asyncio.to_thread(diagnose, c.address, creds)
    assert why is not None and "unknown certificate authority" in why


async def test_an_expired_client_certificate_is_refused(c: Cluster) -> None:
    assert c.plane.pki is not None
    ca = c.plane.pki.ca
    key = pki.new_key()
    past = pki.now() - datetime.timedelta(days=3)
    cert = ca.sign(key.public_key(), "admin", ["system:masters"], client=True,
                   lifetime=datetime.timedelta(days=1), start=past)
    creds = Credentials(ca_pem=ca.pem, cert_pem=pki.cert_pem(cert), key_pem=pki.key_pem(key))
    await refused_at_handshake(c.address, creds)
    why = await asyncio.to_thread(diagnose, c.address, creds)
    assert why is not None and "expired" in why


async def test_a_plaintext_client_is_refused(c: Cluster) -> None:
    channel = grpc.aio.insecure_channel(c.address)
    try:
        client = ApiClient(channel, c.address, timeout=3)
        with pytest.raises(errors.ServiceUnavailable):
            await client.list(core_pb2.Pod, "default")
    finally:
        await channel.close(None)


async def test_no_credentials_on_the_supervisor_port(c: Cluster) -> None:
    client = await call(c.plane.supervisor_address, Credentials(ca_pem=c.credentials.ca_pem))
    try:
        with pytest.raises(errors.Unauthorized, match="no credentials"):
            await client.list(core_pb2.Pod, "default")
        # the CA bundle is public (kubeadm's cluster-info)
        info = await client.get(core_pb2.ConfigMap, "cluster-info", "kube-public")
        assert info.data["ca.crt"].encode() == c.credentials.ca_pem
        assert info.data["server"].endswith(c.address.rpartition(":")[2])
        with pytest.raises(errors.Unauthorized):
            await client.get(core_pb2.ConfigMap, "other", "kube-public")
    finally:
        await client.channel.close(None)


async def test_static_tokens_and_unknown_tokens(c: Cluster) -> None:
    sup, ca = c.plane.supervisor_address, c.credentials.ca_pem
    alice = await call(sup, Credentials(ca_pem=ca, token="s3cret-token"))
    bob = await call(sup, Credentials(ca_pem=ca, token="plain-token"))
    nobody = await call(sup, Credentials(ca_pem=ca, token="wrong"))
    try:
        await alice.list(core_pb2.Pod, "default")  # in system:masters by the file
        with pytest.raises(errors.Forbidden) as denied:
            await bob.list(core_pb2.Pod, "default")
        assert denied.value.message == ('pods is forbidden: User "bob" cannot list resource '
                                        '"pods" in API group "" in the namespace "default"')
        with pytest.raises(errors.Unauthorized, match="invalid bearer token"):
            await nobody.list(core_pb2.Pod, "default")
    finally:
        for cl in (alice, bob, nobody):
            await cl.channel.close(None)


async def test_a_node_writes_only_its_own_objects(c: Cluster) -> None:
    admin = c.client
    for name in ("n1", "n2"):
        node = core_pb2.Node()
        node.metadata.name = name
        await admin.create(node)
    creds, _ = c.plane.node_identity("n1", ["127.0.0.1"])
    n1 = await call(c.address, creds)
    try:
        mine = await n1.get(core_pb2.Node, "n1")
        mine.metadata.labels["x"] = "y"
        await n1.update(mine)
        other = await n1.get(core_pb2.Node, "n2")  # reading is allowed
        other.metadata.labels["x"] = "y"
        with pytest.raises(errors.Forbidden) as denied:
            await n1.update(other)
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert 'User "system:node:n1" cannot update resource "nodes"' in denied.value.message
        with pytest.raises(errors.Forbidden):
            await n1.list(core_pb2.Secret, "kube-system")
        ns = core_pb2.Namespace()
        ns.metadata.name = "nope"
        with pytest.raises(errors.Forbidden, match='cannot create resource "namespaces"'):
            await n1.create(ns)
    finally:
        await n1.channel.close(None)


async def test_the_identity_is_stamped_on_a_csr(c: Cluster) -> None:
    from control.api.pb import certificates_pb2

    creds, _ = c.plane.node_identity("n1", ["127.0.0.1"])
    n1 = await call(c.address, creds)
    try:
        csr = certificates_pb2.CertificateSigningRequest()
        csr.metadata.name = "mine"
        csr.spec.request = pki.make_csr(pki.new_key(), "system:node:n1", ["system:nodes"])
        csr.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet"
        csr.spec.usages.append("client auth")
        csr.spec.username = "admin"  # a lie: the server stamps the truth
        created = await n1.create(csr)
        assert created.spec.username == "system:node:n1"
        assert "system:nodes" in created.spec.groups
    finally:
        await n1.channel.close(None)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def test_cli_certificate_errors_are_one_line(c: Cluster, tmp_path: Path) -> None:
    from control.client.config import config_document, write_config

    foreign = other_ca_admin()
    conf = write_config(tmp_path / "foreign.conf", config_document(c.address, foreign))
    code, out, err = await asyncio.to_thread(run_cli, "--config", str(conf), "get", "pods")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and c.address in err
    assert "unknown certificate authority" in err
    # skipping verification works, and says it is unsafe
    code, out, err = await asyncio.to_thread(
        run_cli, "--config", str(c.data_dir / "admin.conf"), "--insecure-skip-tls-verify",
        "get", "pods")
    assert code == 0, err
    assert "insecure-skip-tls-verify" in err


async def test_config_view_hides_keys(c: Cluster) -> None:
    code, out, _ = await asyncio.to_thread(
        run_cli, "--config", str(c.data_dir / "admin.conf"), "config", "view")
    assert code == 0
    assert "client-key-data: REDACTED" in out and "PRIVATE" not in out
    assert f"server: {c.address}" in out


async def test_admin_conf_and_keys_are_private(c: Cluster) -> None:
    for path in (c.data_dir / "admin.conf", c.data_dir / "pki" / "ca.key",
                 c.data_dir / "pki" / "apiserver.key", c.data_dir / "token"):
        assert path.stat().st_mode & 0o777 == 0o600, path


async def test_a_wildcard_listen_writes_a_real_address(tmp_path: Path) -> None:
    from control.client.config import read_config_file
    from control.server import ControlPlane, ServerOptions

    plane = ControlPlane(ServerOptions(data_dir=tmp_path / "data", listen="0.0.0.0:0",
                                       disable={"scheduler", "controllers"},
                                       shutdown_grace=0.2))
    try:
        await plane.start()
        cfg = read_config_file(tmp_path / "data" / "admin.conf")
        host = cfg.server.rpartition(":")[0]
        assert host not in ("0.0.0.0", "", "::")
        assert plane.pki is not None
        dns, ips = pki.sans_of(pki.load_cert(plane.pki.serving.cert_pem))
        assert host in ips and "127.0.0.1" in ips and "kubernetes.default.svc" in dns
        # (only loopback is dialled: the advertised address is for other machines)
        client = await call(plane.address, plane.admin_credentials)
        try:
            await client.list(core_pb2.Namespace)
        finally:
            await client.channel.close(None)
    finally:
        await plane.stop()


async def test_the_serving_certificate_is_renewed_without_a_restart(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"},
                               serving_cert_lifetime=6.0) as cl:
        first = (cl.data_dir / "pki" / "apiserver.crt").read_bytes()
        # past the first certificate's end: a new handshake sees the renewed one
        await asyncio.sleep(7.0)
        assert (cl.data_dir / "pki" / "apiserver.crt").read_bytes() != first
        client = await call(cl.address, cl.plane.credentials("admin", ["system:masters"]))
        public = await call(cl.plane.supervisor_address,
                            Credentials(ca_pem=cl.credentials.ca_pem))
        try:
            await client.list(core_pb2.Namespace)
            await public.get(core_pb2.ConfigMap, "cluster-info", "kube-public")
        finally:
            await client.channel.close(None)
            await public.channel.close(None)
