"""The serviceaccounts/token subresource against a real control plane: a token bound to a
pod authenticates as its ServiceAccount, reads pods only once a RoleBinding allows it, and
dies with its pod; the request's checks (expiry, binding, node restriction); `flotilla
create token`."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from control.api import errors
from control.api.pb import authentication_pb2, core_pb2, rbac_pb2
from control.apiserver import jws
from control.cli.main import main
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.config import config_document
from control.client.tls import Credentials
from control.server import ControlPlane, ServerOptions, StartRefused
from tests.conftest import Cluster, running_cluster
from tests.support.token_client import token_client

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as cl:
        yield cl


async def make_sa(c: Cluster, name: str) -> core_pb2.ServiceAccount:
    sa = core_pb2.ServiceAccount()
    sa.metadata.name, sa.metadata.namespace = name, "default"
    return await c.client.create(sa)


async def make_pod(c: Cluster, name: str, sa: str, node: str = "") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.service_account_name = sa
    pod.spec.node_name = node
    pod.spec.containers.add(name="c", image="busybox")
    return await c.client.create(pod)


def bound_to(pod: core_pb2.Pod, uid: str | None = None,
             seconds: int | None = None) -> authentication_pb2.TokenRequest:
    tr = authentication_pb2.TokenRequest()
    ref = tr.spec.bound_object_ref
    ref.kind, ref.api_version, ref.name = "Pod", "v1", pod.metadata.name
    ref.uid = pod.metadata.uid if uid is None else uid
    if seconds is not None:
        tr.spec.expiration_seconds = seconds
    return tr


async def test_a_bound_token_reads_what_its_role_allows_and_dies_with_its_pod(
        c: Cluster) -> None:
    await make_sa(c, "robot")
    pod = await make_pod(c, "worker", "robot")
    answer = await c.client.create_token("default", "robot", bound_to(pod, uid=""))
    assert answer.spec.expiration_seconds == 3600
    assert list(answer.spec.audiences) == ["https://kubernetes.default.svc.cluster.local"]
    assert answer.spec.bound_object_ref.uid == pod.metadata.uid
    assert 3590 < answer.status.expiration_timestamp.seconds - answer.metadata.\
        creation_timestamp.seconds <= 3600
    robot = token_client(c, answer.status.token)
    try:
        me = await robot.whoami()
        assert me.username == "system:serviceaccount:default:robot"
        assert list(me.groups) == ["system:serviceaccounts", "system:serviceaccounts:default",
                                   "system:authenticated"]
        with pytest.raises(errors.Forbidden, match='User "system:serviceaccount:default:'
                                                   'robot" cannot list resource "pods"'):
            await robot.list(core_pb2.Pod, "default")
        role = rbac_pb2.Role()
        role.metadata.name, role.metadata.namespace = "pod-reader", "default"
        role.rules.add(api_groups=[""], resources=["pods"], verbs=["get", "list"])
        await c.client.create(role)
        rb = rbac_pb2.RoleBinding()
        rb.metadata.name, rb.metadata.namespace = "robot-reads", "default"
        rb.subjects.add(kind="ServiceAccount", name="robot", namespace="default")
        rb.role_ref.kind, rb.role_ref.name, rb.role_ref.api_group = "Role", "pod-reader", RBAC
        await c.client.create(rb)
        listed = await robot.list(core_pb2.Pod, "default")
        assert [p.metadata.name for p in listed.items] == ["worker"]
        with pytest.raises(errors.Forbidden):
            await robot.list(core_pb2.Pod, "kube-system")
        # an unbound pod goes at once: its token with it
        await c.client.delete(core_pb2.Pod, "worker", "default")
        with pytest.raises(errors.Unauthorized, match="no longer exists"):
            await robot.list(core_pb2.Pod, "default")
        # a pod created again under the same name is another pod
        await make_pod(c, "worker", "robot")
        with pytest.raises(errors.Unauthorized, match="the token is bound to"):
            await robot.list(core_pb2.Pod, "default")
    finally:
        await robot.channel.close(None)


async def test_tokens_for_other_audiences_or_keys_are_refused(c: Cluster) -> None:
    await make_sa(c, "robot")
    pod = await make_pod(c, "worker", "robot")
    tr = bound_to(pod)
    tr.spec.audiences.append("vault")
    answer = await c.client.create_token("default", "robot", tr)
    assert list(answer.spec.audiences) == ["vault"]
    other = jws.sign(jws.header_and_claims(
        (await c.client.create_token("default", "robot", bound_to(pod))).status.token)[1],
        jws.new_signing_key())
    for token, why in ((answer.status.token, "audience"), (other, "invalid signature"),
                       ("eyJhbGciOiJub25lIn0.e30.", "unsupported signing algorithm")):
        client = token_client(c, token)
        try:
            with pytest.raises(errors.Unauthorized, match=why):
                await client.whoami()
        finally:
            await client.channel.close(None)


async def test_the_request_is_checked(c: Cluster) -> None:
    await make_sa(c, "robot")
    await make_sa(c, "other")
    pod = await make_pod(c, "worker", "robot")
    with pytest.raises(errors.Invalid, match="less than 10 minutes"):
        await c.client.create_token("default", "robot", bound_to(pod, seconds=599))
    with pytest.raises(errors.Invalid, match="larger than 2\\^32"):
        await c.client.create_token("default", "robot", bound_to(pod, seconds=2**32))
    with pytest.raises(errors.Conflict, match="does not match the UID in record"):
        await c.client.create_token("default", "robot", bound_to(pod, uid="nope"))
    with pytest.raises(errors.BadRequest, match="different serviceaccount name"):
        await c.client.create_token("default", "other", bound_to(pod))
    with pytest.raises(errors.NotFound, match='serviceaccounts "ghost" not found'):
        await c.client.create_token("default", "ghost")
    tr = bound_to(pod)
    tr.spec.bound_object_ref.kind = "Secret"
    with pytest.raises(errors.BadRequest, match="cannot bind token to object of type"):
        await c.client.create_token("default", "robot", tr)
    dry = await c.client.create_token("default", "robot", bound_to(pod), dry_run=True)
    assert dry.status.token == "" and dry.spec.bound_object_ref.uid == pod.metadata.uid
    # an unbound token is an API credential too
    unbound = await c.client.create_token("default", "robot")
    assert not unbound.spec.HasField("bound_object_ref")
    client = token_client(c, unbound.status.token)
    try:
        assert (await client.whoami()).username == "system:serviceaccount:default:robot"
    finally:
        await client.channel.close(None)


async def test_a_node_gets_tokens_only_for_its_own_pods(c: Cluster) -> None:
    await make_sa(c, "robot")
    mine = await make_pod(c, "mine", "robot", node="n1")
    theirs = await make_pod(c, "theirs", "robot", node="n2")
    unbound = await make_pod(c, "unbound", "robot")
    creds = c.plane.credentials("system:node:n1", ["system:nodes"])
    node = ApiClient(open_channel(c.address, creds), c.address, timeout=5)
    try:
        answer = await node.create_token("default", "robot", bound_to(mine))
        assert answer.status.token
        with pytest.raises(errors.Forbidden, match="scheduled on a different node"):
            await node.create_token("default", "robot", bound_to(theirs))
        with pytest.raises(errors.Forbidden, match="scheduled on a different node"):
            await node.create_token("default", "robot", bound_to(unbound))
        with pytest.raises(errors.Forbidden, match="without a uid"):
            await node.create_token("default", "robot", bound_to(mine, uid=""))
        with pytest.raises(errors.Forbidden, match="not bound to a pod"):
            await node.create_token("default", "robot")
        # an account none of its pods runs as: the authorizer refuses before anything
        await make_sa(c, "other")
        with pytest.raises(errors.Forbidden, match='cannot create resource '
                                                   '"serviceaccounts/token"'):
            await node.create_token("default", "other")
    finally:
        await node.channel.close(None)


async def cli(config: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.wait_for(asyncio.to_thread(
        main, ["--config", str(config), *argv], stdout=out, stderr=err), 30)
    return code, out.getvalue(), err.getvalue()


async def test_create_token_cli(c: Cluster, tmp_path: Path) -> None:
    await make_sa(c, "robot")
    pod = await make_pod(c, "worker", "robot")
    admin = c.data_dir / "admin.conf"
    code, out, err = await cli(admin, "create", "token", "robot", "--duration", "10m",
                               "--audience", "a1", "--audience", "a2",
                               "--bound-object-kind", "Pod", "--bound-object-name", "worker")
    assert (code, err) == (0, "")
    claims = jws.header_and_claims(out.strip())[1]
    assert claims["aud"] == ["a1", "a2"] and claims["exp"] - claims["iat"] == 600
    assert claims["kubernetes.io"]["pod"] == {"name": "worker", "uid": pod.metadata.uid}
    code, out, err = await cli(admin, "create", "token", "robot", "-o", "yaml")
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert doc["kind"] == "TokenRequest" and doc["apiVersion"] == "authentication.k8s.io/v1"
    assert doc["spec"]["expirationSeconds"] == 3600 and doc["status"]["token"]
    # the printed token is a credential: a config file with it reaches the API
    path = tmp_path / "robot.conf"
    path.write_text(yaml.safe_dump(config_document(
        c.plane.supervisor_address,
        Credentials(ca_pem=c.credentials.ca_pem, token=doc["status"]["token"]))))
    code, out, err = await cli(path, "auth", "whoami", "-o", "json")
    assert code == 0, err
    assert '"system:serviceaccount:default:robot"' in out
    # --token: the same, with the admin's config for the address and the CA
    code, out, err = await cli(admin, "--token", doc["status"]["token"], "auth", "whoami")
    assert code == 0, err
    assert "system:serviceaccount:default:robot" in out
    code, _, err = await cli(admin, "get", "pods", "--token", doc["status"]["token"])
    assert code == 1 and 'User "system:serviceaccount:default:robot" cannot list' in err
    code, _, err = await cli(admin, "--token", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "get", "pods")
    assert code == 1 and "invalid signature" in err
    code, _, err = await cli(admin, "create", "token", "robot", "--duration", "5m")
    assert code != 0 and "less than 10 minutes" in err
    code, _, err = await cli(admin, "create", "token", "robot", "--bound-object-name", "x")
    assert code != 0 and "--bound-object-kind" in err
    code, _, err = await cli(admin, "create", "token", "ghost")
    assert code != 0 and 'serviceaccounts "ghost" not found' in err


async def test_the_longest_token_and_the_issuer_are_the_servers(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"},
                               service_account_max_token_expiration=1800.0,
                               service_account_issuers=["https://flotilla.example",
                                                        "https://old.example"],
                               api_audiences=["flotilla"]) as c:
        await make_sa(c, "robot")
        tr = authentication_pb2.TokenRequest()
        tr.spec.expiration_seconds = 7200
        answer = await c.client.create_token("default", "robot", tr)
        assert answer.spec.expiration_seconds == 1800
        claims = jws.header_and_claims(answer.status.token)[1]
        assert claims["exp"] - claims["iat"] == 1800
        assert claims["iss"] == "https://flotilla.example" and claims["aud"] == ["flotilla"]
        client = token_client(c, answer.status.token)
        try:
            assert (await client.whoami()).username == "system:serviceaccount:default:robot"
        finally:
            await client.channel.close(None)


async def test_an_unreadable_signing_key_refuses_start(tmp_path: Path) -> None:
    bad = tmp_path / "sa.key"
    bad.write_text("not a key")
    plane = ControlPlane(ServerOptions(data_dir=tmp_path / "d", listen="127.0.0.1:0",
                                       disable={"scheduler", "controllers"},
                                       service_account_signing_key_file=bad))
    with pytest.raises(StartRefused, match=r"sa\.key: not a PEM private key"):
        await plane.start()
    await plane.stop()
