"""Bad input gets INVALID_ARGUMENT with a clear message, never UNKNOWN, against a real server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest

from control.api import errors
from control.api.pb import api_pb2, core_pb2
from tests.conftest import Cluster, running_cluster
from tests.support.objects import cm


@pytest.fixture
def cluster(api_cluster: Cluster) -> Cluster:
    return api_cluster


async def _raw(cluster: Cluster, method: str, data: bytes) -> grpc.aio.AioRpcError:
    call = cluster.client.channel.unary_unary(f"/flotilla.v1.Api/{method}")
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call(data, timeout=10)
    return ei.value


@pytest.mark.parametrize("method", ["Get", "Create", "Patch", "Delete", "List", "Discovery"])
async def test_undecodable_bytes_are_invalid_argument(cluster: Cluster, method: str) -> None:
    e = await _raw(cluster, method, b"\xff\xff\xff\xff\x0f\x00garbage")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert f"cannot decode the {method} request" in (e.details() or "")


async def test_undecodable_stream_requests_are_invalid_argument(cluster: Cluster) -> None:
    for method in ("Watch", "Logs"):
        call = cluster.client.channel.unary_stream(f"/flotilla.v1.Api/{method}")
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            async for _ in call(b"\xff\xff\xff\xff\x0f", timeout=10):
                pass
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, ei.value)


async def test_undecodable_bytes_log_one_line_not_a_traceback_each(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            await _raw(cluster, "Get", b"\xff\xff\xff\xff\x0f")
    lines = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) <= 1
    assert not any(r.exc_info for r in caplog.records)
    # the server still serves
    assert (await cluster.client.create(cm("alive"))).metadata.uid


async def _patch_raw(cluster: Cluster, body: bytes, patch_type: str = "merge") -> None:
    await cluster.client._call(cluster.client._stub.Patch, api_pb2.PatchRequest(
        resource="configmaps", namespace="default", name="p", patch_type=patch_type,
        patch=body))


@pytest.mark.parametrize("patch_type", ["merge", "strategic"])
@pytest.mark.parametrize("depth", [150, 600, 100_000])
async def test_deeply_nested_patch_refused(cluster: Cluster, patch_type: str,
                                           depth: int) -> None:
    await cluster.client.create(cm("p", a="1"))
    body = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(errors.BadRequest, match="deeper than 100 levels"):
        await _patch_raw(cluster, body, patch_type)
    nested = {"metadata": {"annotations": {"x": "1"}}}
    assert (await cluster.client.patch(core_pb2.ConfigMap, "p", nested, "default",
                                       patch_type=patch_type)).metadata.annotations["x"] == "1"


async def test_patch_error_does_not_echo_a_large_input(cluster: Cluster) -> None:
    await cluster.client.create(cm("p"))
    with pytest.raises(errors.BadRequest) as ei:
        await _patch_raw(cluster, b'{"data": "' + b"x" * 100_000 + b'"')
    assert len(str(ei.value)) < 1000


@pytest.mark.parametrize(("field", "value", "error", "text"), [
    ("name", "other", errors.BadRequest, "does not match the name on the URL"),
    ("namespace", "kube-system", errors.BadRequest, "namespace of the provided object"),
    ("uid", "0f0f0f0f-0000-0000-0000-000000000000", errors.Invalid, "metadata.uid"),
])
async def test_patch_may_not_change_identity(cluster: Cluster, field: str, value: str,
                                             error: type[errors.ApiError], text: str) -> None:
    await cluster.client.create(cm("p", a="1"))
    with pytest.raises(error, match=text):
        await cluster.client.patch(core_pb2.ConfigMap, "p", {"metadata": {field: value}},
                                   "default", patch_type="strategic")
    got = await cluster.client.get(core_pb2.ConfigMap, "p", "default")
    assert got.metadata.name == "p" and got.metadata.namespace == "default"


async def test_patch_naming_the_same_identity_is_fine(cluster: Cluster) -> None:
    made = await cluster.client.create(cm("p", a="1"))
    patch = {"metadata": {"name": "p", "namespace": "default", "uid": made.metadata.uid},
             "data": {"a": "2"}}
    got = await cluster.client.patch(core_pb2.ConfigMap, "p", patch, "default")
    assert got.data["a"] == "2"


@pytest.mark.parametrize("patch", [
    {"data": {"$patch": "bogus"}},
    {"$patch": 7},
    {"metadata": {"labels": {"$patch": {"x": 1}}}},
])
async def test_bad_strategic_directives_refused(cluster: Cluster, patch: dict) -> None:
    await cluster.client.create(cm("p", a="1"))
    with pytest.raises(errors.BadRequest, match="invalid patch type"):
        await cluster.client.patch(core_pb2.ConfigMap, "p", patch, "default",
                                   patch_type="strategic")
    ok = {"data": {"$patch": "merge", "b": "2"}}
    got = await cluster.client.patch(core_pb2.ConfigMap, "p", ok, "default",
                                     patch_type="strategic")
    assert dict(got.data) == {"a": "1", "b": "2"}


@pytest.mark.parametrize("grace", [2**31, 2**63 - 1])
async def test_huge_grace_period_refused(cluster: Cluster, grace: int) -> None:
    await cluster.client.create(cm("g"))
    with pytest.raises(errors.BadRequest, match="gracePeriodSeconds"):
        await cluster.client.delete(core_pb2.ConfigMap, "g", "default",
                                    grace_period_seconds=grace)
    await cluster.client.delete(core_pb2.ConfigMap, "g", "default",
                                grace_period_seconds=2**31 - 1)



async def test_future_resource_version_is_too_large_after_a_bounded_wait(
        cluster: Cluster) -> None:
    c = cluster.client
    made = await c.create(cm("f"))
    future = str(int(made.metadata.resource_version) + 1000)
    loop = asyncio.get_running_loop()
    for read in (lambda: c.get(core_pb2.ConfigMap, "f", "default", resource_version=future),
                 lambda: c.list(core_pb2.ConfigMap, "default", resource_version=future)):
        start = loop.time()
        with pytest.raises(errors.Timeout, match="Too large resource version") as ei:
            await read()
        assert 2.5 < loop.time() - start < 6
        assert ei.value.retry_after == 1
    start = loop.time()
    with pytest.raises(errors.Timeout, match="Too large resource version"):
        async for _ in c.watch(core_pb2.ConfigMap, "default", resource_version=future):
            pass
    assert 2.5 < loop.time() - start < 6
    assert cluster.plane.registry is not None
    assert not cluster.plane.registry.cache._waiters


async def test_resource_version_reached_during_the_wait_is_served(cluster: Cluster) -> None:
    c = cluster.client
    made = await c.create(cm("f"))
    nxt = str(int(made.metadata.resource_version) + 1)
    read = asyncio.ensure_future(c.get(core_pb2.ConfigMap, "f", "default",
                                       resource_version=nxt))
    await asyncio.sleep(0.5)
    made.data["x"] = "1"
    await c.update(made)
    got = await asyncio.wait_for(read, 5)
    assert got.data["x"] == "1"


@pytest.mark.parametrize("rv", ["-1", "1e5", " 7", "9" * 30, "x" * 100_000])
async def test_malformed_resource_version_refused_without_echo(cluster: Cluster,
                                                               rv: str) -> None:
    with pytest.raises(errors.BadRequest, match="invalid resourceVersion") as ei:
        await cluster.client.list(core_pb2.ConfigMap, "default", resource_version=rv)
    assert len(str(ei.value)) < 1000


async def test_requests_over_3_mib_refused_before_decoding(cluster: Cluster) -> None:
    big = cm("big", a="x" * (4 * 1024 * 1024))
    with pytest.raises(errors.TooManyRequests) as ei:
        await cluster.client.create(big)
    assert "larger than max" in str(ei.value) and len(str(ei.value)) < 1000
    assert (await cluster.client.create(cm("small", a="x" * 1000))).metadata.uid


async def test_max_request_bytes_option(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", max_request_bytes=64 * 1024,
                               disable={"scheduler", "controllers", "dns"}) as c:
        with pytest.raises(errors.TooManyRequests, match="larger than max"):
            await c.client.create(cm("big", a="x" * 70_000))
        assert (await c.client.create(cm("fits", a="x" * 60_000))).metadata.uid


@pytest.mark.parametrize(("label_selector", "field_selector"), [
    ("a" * 100_000 + "!!", ""), ("a=" + "b" * 100_000, ""), ("a>" + "1" * 100_000, ""),
    ("", "x" * 100_000), ("", "spec.nodeName=" + "x" * 100_000 + ",y"),
])
async def test_selector_errors_do_not_echo_large_input(
        cluster: Cluster, label_selector: str, field_selector: str) -> None:
    with pytest.raises(errors.ApiError) as ei:
        await cluster.client.list(core_pb2.Pod, "default", label_selector=label_selector,
                                  field_selector=field_selector)
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(str(ei.value)) < 1000
