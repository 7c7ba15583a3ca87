"""Agents join by token: the CA is checked against the token before the token is sent, the
node certificate comes from an auto-approved CSR, is kept and reused, and renewed before it
expires; the agent's own port is TLS, bound to the node's address, and only the apiserver
may call it."""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.certs import JoinError, parse_token
from agent.config import AgentOptions
from agent.main import Agent
from agent.runtime.fake import FakeRuntime
from control.api import errors
from control.api.pb import agent_pb2, agent_pb2_grpc, api_pb2, core_pb2
from control.client import pki, tokens
from control.client.channel import open_channel
from control.client.tls import Credentials
from tests.conftest import Cluster, running_cluster
from tests.support import eventually

WAIT = 30.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler"}) as cl:
        yield cl


async def until(what: str, check: Callable[[], Awaitable[Any]], limit: float = WAIT) -> Any:
    return await eventually(check, what, timeout=limit, interval=0.1,
                            retry_on=(errors.ApiError,))


def agent_options(c: Cluster, tmp: Path, name: str, token: str | None) -> AgentOptions:
    return AgentOptions(server=c.plane.supervisor_address, node_name=name,
                        data_dir=tmp / name, node_ip="127.0.0.1", token=token,
                        node_status_update_frequency=0.5, lease_renew_interval=0.5,
                        csr_timeout=20)


async def ready(c: Cluster, name: str) -> bool:
    node = await c.client.get(core_pb2.Node, name)
    return any(x.type == "Ready" and x.status == "True" for x in node.status.conditions) \
        and node.status.daemon_endpoints.kubelet_endpoint.port > 0


async def new_token(c: Cluster, ttl: float = 0) -> str:
    token_id, secret = tokens.generate()
    await c.client.create(tokens.token_secret(token_id, secret, ttl_seconds=ttl))
    assert c.credentials.ca_pem is not None
    return tokens.secure_format(c.credentials.ca_pem, token_id, secret)


async def start(c: Cluster, tmp: Path, name: str, token: str | None) -> Agent:
    a = Agent(agent_options(c, tmp, name, token), runtime=FakeRuntime())
    await a.start()
    return a


async def test_two_agents_join_by_token_and_a_restart_reuses_the_certificate(
        c: Cluster, tmp_path: Path) -> None:
    token = (c.data_dir / "token").read_text().strip()  # the server's first-start token
    agents = [await start(c, tmp_path, n, token) for n in ("j1", "j2")]
    try:
        for n in ("j1", "j2"):
            await until(f"{n} Ready", lambda n=n: ready(c, n))  # type: ignore[misc]
        crt = tmp_path / "j1" / "pki" / "client.crt"
        cert = pki.load_cert(crt.read_bytes())
        assert pki.subject_of(cert.subject) == ("system:node:j1", ["system:nodes"])
        assert (tmp_path / "j1" / "pki" / "client.key").stat().st_mode & 0o777 == 0o600
        csrs = (await c.client.list("certificatesigningrequests")).items
        assert {x.spec.username for x in csrs} >= {"system:node:j1", "system:node:j2"}
        assert any(x.spec.username.startswith("system:bootstrap:") for x in csrs)
        before = crt.read_bytes()
        await agents[0].stop()
        # restarted without a token: the kept certificate is enough
        agents[0] = await start(c, tmp_path, "j1", None)
        await until("j1 Ready again", lambda: ready(c, "j1"))
        assert crt.read_bytes() == before
        after = (await c.client.list("certificatesigningrequests")).items
        assert len(after) == len(csrs)  # no new request
    finally:
        for a in agents:
            await a.stop()


async def test_bad_tokens_are_refused_with_one_clear_line(c: Cluster, tmp_path: Path) -> None:
    async def refused(token: str, match: str) -> None:
        with pytest.raises(JoinError, match=match):
            await start(c, tmp_path, "bad", token)

    await refused("not-a-token", "malformed join token")
    good = await new_token(c)
    other_ca = tokens.secure_format(pki.ClusterCA.create().pem, "abcdef", "0123456789abcdef")
    await refused(other_ca, "is not the one the token pins")
    deleted = await new_token(c)
    await c.client.delete("secrets", tokens.PREFIX + parse_token(deleted).token_id,
                          "kube-system")
    await refused(deleted, "does not exist")
    expired = await new_token(c, ttl=1)
    await asyncio.sleep(1.5)
    await refused(expired, "expired")
    wrong_secret = good[:-16] + "0" * 16
    await refused(wrong_secret, "invalid bootstrap token")

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control.cli.main", "--server", c.plane.supervisor_address,
        "agent", "--node-name", "bad", "--data-dir", str(tmp_path / "cli"),
        "--token", deleted, "--log-format", "json", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(WAIT):
        _, err = await proc.communicate()
    assert proc.returncode == 1
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("error: ") and "does not exist" in last, err.decode()


async def test_a_bootstrap_token_only_asks_for_certificates(c: Cluster) -> None:
    token = parse_token(await new_token(c))
    creds = Credentials(ca_pem=c.credentials.ca_pem, token=token.bearer)
    channel = open_channel(c.plane.supervisor_address, creds)
    try:
        from control.client.client import ApiClient
        client = ApiClient(channel, c.plane.supervisor_address, timeout=5)
        with pytest.raises(errors.Forbidden,
                           match=f'User "system:bootstrap:{token.token_id}" cannot list'):
            await client.list(core_pb2.Pod, "default")
        await client.list("certificatesigningrequests")
    finally:
        await channel.close(None)


async def test_the_agent_port_is_closed_to_strangers(c: Cluster, tmp_path: Path) -> None:
    a = await start(c, tmp_path, "p1", await new_token(c))
    try:
        await until("p1 Ready", lambda: ready(c, "p1"))
        assert a.agent_server is not None
        port = a.agent_server.port
        assert a.agent_server.address == f"127.0.0.1:{port}"
        assert listeners(port) == ["127.0.0.1"]  # not 0.0.0.0
        serving = pki.load_cert((tmp_path / "p1" / "pki" / "serving.crt").read_bytes())
        assert pki.sans_of(serving) == (["p1"], ["127.0.0.1"])
        req = agent_pb2.AgentLogsRequest(request=api_pb2.LogsRequest(
            namespace="default", name="x"))
        # a certificate of the cluster, but not the apiserver's: refused by name
        channel = open_channel(f"127.0.0.1:{port}", c.credentials)
        try:
            call = agent_pb2_grpc.AgentStub(channel).Logs(req, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                async for _ in call:
                    pass
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "only the apiserver" in (denied.value.details() or "")
        finally:
            await channel.close(None)
        # no certificate: the handshake fails
        channel = open_channel(f"127.0.0.1:{port}", Credentials(ca_pem=c.credentials.ca_pem))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in agent_pb2_grpc.AgentStub(channel).Logs(req, timeout=3):
                    pass
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await channel.close(None)
    finally:
        await a.stop()


def listeners(port: int) -> list[str]:
    """The local addresses listening on ``port`` (/proc/net/tcp and tcp6; gRPC may bind
    an IPv4 address on an IPv6 socket, as ::ffff:a.b.c.d)."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, _, p = local.partition(":")
            if state != "0A" or int(p, 16) != port:
                continue
            raw = b"".join(bytes.fromhex(host[i:i + 8])[::-1] for i in range(0, len(host), 8))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            out.append(str(ip))
    return out


async def test_certificates_are_renewed_before_expiry(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable={"scheduler"},
                               cluster_signing_duration=8.0) as c:
        a = await start(c, tmp_path, "r1", await new_token(c))
        try:
            await until("r1 Ready", lambda: ready(c, "r1"))
            first = (tmp_path / "r1" / "pki" / "client.crt").read_bytes()

            async def renewed() -> bool:
                return all(r.rotations >= 2 for r in a.rotators.values())

            await until("client and serving certificates renewed twice", renewed, limit=40)
            assert set(a.rotators) == {"client", "serving"}
            assert (tmp_path / "r1" / "pki" / "client.crt").read_bytes() != first
            # the first certificate has expired by now; the agent still heartbeats
            lease = await c.client.get("leases", "r1", "kube-node-lease")
            seen = lease.spec.renew_time.seconds

            async def heartbeat() -> bool:
                fresh = await c.client.get("leases", "r1", "kube-node-lease")
                return bool(fresh.spec.renew_time.seconds > seen)

            await until("a heartbeat after the renewals", heartbeat)
        finally:
            await a.stop()


async def test_a_request_left_for_a_human_is_signed_once_approved(c: Cluster) -> None:
    from control.api.pb import certificates_pb2
    from control.cli.main import main as cli_main

    csr = certificates_pb2.CertificateSigningRequest()
    csr.metadata.name = "alice"
    csr.spec.request = pki.make_csr(pki.new_key(), "alice", ["devs"])
    csr.spec.signer_name = "kubernetes.io/kube-apiserver-client"
    csr.spec.usages.append("client auth")
    await c.client.create(csr)
    await asyncio.sleep(1.0)
    pending = await c.client.get("certificatesigningrequests", "alice")
    assert not pending.status.conditions and not pending.status.certificate

    def approve() -> int:
        import io
        return cli_main(["--config", str(c.data_dir / "admin.conf"), "certificate", "approve",
                         "alice"], stdout=io.StringIO(), stderr=io.StringIO())

    assert await asyncio.to_thread(approve) == 0

    async def signed() -> bytes:
        got = await c.client.get("certificatesigningrequests", "alice")
        return bytes(got.status.certificate)

    cert = pki.load_cert(await until("signed", signed))
    assert pki.subject_of(cert.subject) == ("alice", ["devs"])
