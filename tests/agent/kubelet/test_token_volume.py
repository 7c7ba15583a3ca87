"""The kubelet's service-account tokens on a fake clock: asked for with the pod's binding,
the source's audience and lifetime; renewed at 80% of their life (not before), the cached
one kept while valid when the API is away; forgotten with the pod."""


from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from agent.kubelet.token_manager import needs_refresh
from agent.kubelet.volumes import VolumeError, VolumeManager
from control.api import errors
from control.api.pb import authentication_pb2, core_pb2, meta_pb2
from control.apiserver import jws
from control.client.client import ApiClient
from control.runtime.clock import FakeClock
from tests.agent.kubelet.conftest import Env


class FakeTokens:
    """The serviceaccounts/token subresource as an in-memory double."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.asked: list[tuple[str, str, authentication_pb2.TokenRequest]] = []
        self.down = False

    async def create_token(self, namespace: str, name: str,
                           tr: authentication_pb2.TokenRequest
                           ) -> authentication_pb2.TokenRequest:
        if self.down:
            raise errors.ServiceUnavailable("the API is away")
        self.asked.append((namespace, name, tr))
        out = authentication_pb2.TokenRequest()
        out.CopyFrom(tr)
        out.status.token = f"token-{len(self.asked)}"
        out.status.expiration_timestamp.seconds = int(self.clock.now()) + int(
            tr.spec.expiration_seconds)
        return out


def answered(issued: int, ttl: int) -> authentication_pb2.TokenRequest:
    tr = authentication_pb2.TokenRequest()
    tr.spec.expiration_seconds = ttl
    tr.status.expiration_timestamp.seconds = issued + ttl
    return tr


@pytest.mark.parametrize(("age", "ttl", "jitter", "refresh"), [
    (0, 3600, 0, False),
    (2879, 3600, 0, False),   # 79.97%
    (2881, 3600, 0, True),    # past 80%
    (2875, 3600, 10, True),   # the jitter brings it forward
    (479, 600, 0, False),
    (481, 600, 0, True),
    (24 * 3600 - 1, 10 * 24 * 3600, 0, False),
    (24 * 3600 + 1, 10 * 24 * 3600, 0, True),  # older than a day, whatever its lifetime
    (5000, 3600, 0, True),    # expired
])
def test_needs_refresh(age: int, ttl: int, jitter: float, refresh: bool) -> None:
    assert needs_refresh(answered(1000, ttl), 1000 + age, jitter) is refresh


def token_pod(audience: str = "", seconds: int | None = 3607) -> core_pb2.Pod:
    src = core_pb2.ServiceAccountTokenProjection(path="token", audience=audience)
    if seconds is not None:
        src.expiration_seconds = seconds
    vol = core_pb2.Volume(name="kube-api-access-abcde", projected=core_pb2.ProjectedVolumeSource(
        sources=[core_pb2.VolumeProjection(service_account_token=src)]))
    return core_pb2.Pod(
        metadata=meta_pb2.ObjectMeta(name="web", namespace="ns", uid="uid-1"),
        spec=core_pb2.PodSpec(service_account_name="robot", volumes=[vol],
                              containers=[core_pb2.Container(name="app")]))


async def test_the_token_is_written_then_renewed_at_80_percent(tmp_path: Path) -> None:
    clock = FakeClock()
    api = FakeTokens(clock)
    mgr = VolumeManager(cast(ApiClient, api), tmp_path, can_mount=False, clock=clock)
    mgr.tokens._jitter = lambda: 0.0  # type: ignore[union-attr]
    pod = token_pod(audience="vault")
    d = Path((await mgr.setup(pod))["kube-api-access-abcde"])
    token = d / "token"
    assert token.read_text() == "token-1"
    ns, name, asked = api.asked[0]
    assert (ns, name, list(asked.spec.audiences), asked.spec.expiration_seconds) == (
        "ns", "robot", ["vault"], 3607)
    ref = asked.spec.bound_object_ref
    assert (ref.kind, ref.api_version, ref.name, ref.uid) == ("Pod", "v1", "web", "uid-1")
    first_link = (d / "..data").readlink()

    clock.advance(0.79 * 3607)
    assert await mgr.refresh(pod) == {}
    assert token.read_text() == "token-1" and len(api.asked) == 1
    clock.advance(0.02 * 3607)
    assert await mgr.refresh(pod) == {}
    assert token.read_text() == "token-2" and len(api.asked) == 2
    assert (d / "..data").readlink() != first_link  # swapped atomically

    # the API is away: the cached token stays while it is valid, then refresh fails
    api.down = True
    clock.advance(0.9 * 3607)
    assert await mgr.refresh(pod) == {}
    assert token.read_text() == "token-2"
    clock.advance(0.2 * 3607)
    failed = await mgr.refresh(pod)
    assert "the API is away" in failed["kube-api-access-abcde"]
    assert token.read_text() == "token-2"  # the old content stays

    api.down = False
    await mgr.teardown("uid-1")
    assert mgr.tokens is not None and mgr.tokens.cached() == 0


async def test_defaults_and_failures(tmp_path: Path) -> None:
    clock = FakeClock()
    api = FakeTokens(clock)
    mgr = VolumeManager(cast(ApiClient, api), tmp_path, can_mount=False, clock=clock)
    await mgr.setup(token_pod(seconds=None))
    assert api.asked[0][2].spec.expiration_seconds == 3600
    assert list(api.asked[0][2].spec.audiences) == []  # the API's own
    api.down = True
    other = token_pod()
    other.metadata.uid = "uid-2"
    with pytest.raises(VolumeError, match='failed to fetch token for serviceaccount "robot"'):
        await mgr.setup(other)
    with pytest.raises(VolumeError, match="no API client"):
        await VolumeManager(None, tmp_path, can_mount=False).setup(token_pod())


async def test_the_kubelet_writes_and_renews_a_pods_token(env: Env) -> None:
    """A pod on the fake runtime with the token volume: the kubelet asks the real API for
    a token bound to the pod; its refresh pass renews it once 80% of its life has passed
    (on the volume manager's fake clock)."""
    clock = FakeClock(start=time.time())
    volumes = VolumeManager(env.client, env.tmp / "agent" / "pods", can_mount=False,
                            clock=clock)
    kubelet = await env.start(volumes=volumes)
    sa = core_pb2.ServiceAccount(metadata=meta_pb2.ObjectMeta(name="robot",
                                                              namespace="default"))
    await env.client.create(sa)
    pod = await env.create("web", serviceAccountName="robot", volumes=[{
        "name": "tok", "projected": {"sources": [{"serviceAccountToken": {
            "path": "token", "expirationSeconds": 600}}]}}])
    await env.wait("web", lambda p: p.status.phase == "Running")
    path = env.tmp / "agent" / "pods" / pod.metadata.uid / "volumes/projected/tok/token"
    first = path.read_text()
    claims = jws.header_and_claims(first)[1]
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": pod.metadata.uid}
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["exp"] - claims["iat"] == 600
    await kubelet.refresh_volumes()
    assert path.read_text() == first
    clock.advance(0.81 * 600)
    await kubelet.refresh_volumes()
    second = path.read_text()
    assert second != first
    assert jws.header_and_claims(second)[1]["kubernetes.io"]["pod"]["uid"] == pod.metadata.uid
