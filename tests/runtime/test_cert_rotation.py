"""In-process components' certificates renewed before they expire: on a fake clock (when,
how often, what the holder gets), then a real control plane whose leaf certificates live
a few seconds keeps its controllers working past the first ones' expiry."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncIterator
from pathlib import Path

from control.api import convert
from control.api.pb import apps_pb2
from control.apiserver import authn
from control.client import pki
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.tls import Credentials
from control.runtime.cert_rotation import CertificateRotation, Issue
from control.runtime.clock import FakeClock
from tests.conftest import running_cluster
from tests.support import eventually

LIFETIME = datetime.timedelta(seconds=100)


def issuer(ca: pki.ClusterCA, clock: FakeClock) -> Issue:
    """Client certificates of LIFETIME from ``ca``, issued at the fake clock's time."""

    def issue(user: str, groups: list[str]) -> Credentials:
        start = datetime.datetime.fromtimestamp(clock.now(), datetime.UTC)
        got = ca.issue(user, groups, client=True, lifetime=LIFETIME, start=start)
        return Credentials(ca_pem=ca.pem, cert_pem=got.cert_pem, key_pem=got.key_pem)

    return issue


@contextlib.asynccontextmanager
async def running(rotation: CertificateRotation) -> AsyncIterator[None]:
    task = asyncio.create_task(rotation.run(), name="test/rotation")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await rotation.close()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_each_certificate_is_renewed_at_70_to_90_percent_of_its_life() -> None:
    clock = FakeClock(start=time.time())
    ca = pki.ClusterCA.create()
    issue = issuer(ca, clock)
    rotation = CertificateRotation(issue, clock=clock)
    got: list[Credentials] = []

    async def install(creds: Credentials) -> None:
        got.append(creds)

    first = issue("proxy", ["system:masters"])
    rotation.hold("node-proxy", "proxy", ["system:masters"], first, install)
    async with running(rotation):
        # valid from 10 s before its issue (backdated a tenth of its life, for skew):
        # renewed 70-90% into those 110 s, 67-89 s after its issue
        clock.advance(66)
        await settle()
        assert got == []
        clock.advance(24)
        await settle()
        assert len(got) == 1 and rotation.renewals == 1
        cert = pki.load_cert(got[0].cert_pem or b"")
        assert pki.subject_of(cert.subject) == ("proxy", ["system:masters"])
        assert got[0].cert_pem != first.cert_pem
        clock.advance(90)  # the new one's life counts from its issue
        await settle()
        assert len(got) == 2


async def test_a_client_moves_to_a_new_channel_and_the_replaced_one_is_closed() -> None:
    clock = FakeClock(start=time.time())
    ca = pki.ClusterCA.create()
    issue = issuer(ca, clock)
    creds = issue("sched", [])
    first = open_channel("127.0.0.1:9", creds)
    client = ApiClient(first, "127.0.0.1:9")
    rotation = CertificateRotation(issue, clock=clock)
    rotation.hold_client("scheduler", "sched", [], creds, client, "127.0.0.1:9")
    closed: list[object] = []
    real_close = first.close

    async def spy_close(grace: float | None = None) -> None:
        closed.append(first)
        await real_close(grace)

    first.close = spy_close  # type: ignore[method-assign]
    async with running(rotation):
        clock.advance(91)
        await settle()
        second = client.channel
        assert second is not first and closed == []  # kept until the next renewal
        clock.advance(91)
        await settle()
        assert client.channel is not second and closed == [first]
    await client.channel.close(None)


async def test_controllers_keep_working_past_their_first_certificates(tmp_path: Path) -> None:
    """Leaf certificates of 6 s: by the time the Deployment is created, the controller
    manager's first certificate has expired; the controllers still make its ReplicaSet."""
    async with running_cluster(tmp_path / "data", serving_cert_lifetime=6.0,
                               disable={"scheduler", "dns"}) as cluster:
        plane = cluster.plane
        assert plane.rotation is not None
        await eventually(lambda: plane.rotation.renewals >= 2, "renewals", timeout=15)
        await asyncio.sleep(max(0.0, 7.0 - plane.rotation.renewals))
        # the test's own admin certificate expired too: a fresh one
        admin = plane.credentials("admin", [authn.MASTERS])
        channel = open_channel(cluster.address, admin)
        try:
            c = ApiClient(channel, cluster.address, timeout=10)
            d: apps_pb2.Deployment = convert.from_dict({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "late", "namespace": "default"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "late"}},
                         "template": {"metadata": {"labels": {"app": "late"}},
                                      "spec": {"containers": [{"name": "c",
                                                               "image": "busybox"}]}}}},
                apps_pb2.Deployment())
            await c.create(d)

            async def replica_set() -> bool:
                return bool((await c.list(apps_pb2.ReplicaSet, "default")).items)

            await eventually(replica_set, "the Deployment's ReplicaSet", timeout=20)
        finally:
            await channel.close(None)


async def test_a_watch_on_a_closed_channel_ends_and_a_cancelled_one_raises(
        tmp_path: Path) -> None:
    """grpc cancels the streams of a closed channel: for the watcher that is the end of
    the stream (it watches again on the client's new channel), not its own cancellation."""
    async with running_cluster(tmp_path / "data",
                               disable={"scheduler", "dns", "controllers"}) as cluster:
        channel = open_channel(cluster.address, cluster.plane.admin_credentials)
        c = ApiClient(channel, cluster.address)

        async def watch() -> str:
            async for _ in c.watch("configmaps", "default"):
                pass
            return "ended"

        ended = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        await channel.close(None)
        assert await asyncio.wait_for(ended, 10) == "ended"

        channel = open_channel(cluster.address, cluster.plane.admin_credentials)
        c = ApiClient(channel, cluster.address)
        cancelled = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(cancelled, 10)
        assert cancelled.cancelled()
        await channel.close(None)
