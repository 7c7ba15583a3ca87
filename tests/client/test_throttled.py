"""The client honours a server's retry-after: it waits, backs off, and never past its own
timeout (a fake stub method stands in for the server)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc
import pytest

from control.api import errors
from control.api.pb import api_pb2
from control.client.client import (
    MAX_THROTTLED_DELAY,
    MAX_THROTTLED_RETRIES,
    ApiClient,
    throttled_delay,
)


def _throttled(retry_after: int = 1) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(),
        grpc.aio.Metadata(("retry-after", str(retry_after))),
        details="TooManyRequests: too many requests, please try again later: retry after 1s")


class _Method:
    """Refuses the first ``refusals`` calls as a throttled server would, then answers."""

    def __init__(self, refusals: int, retry_after: int = 1) -> None:
        self.refusals = refusals
        self.retry_after = retry_after
        self.timeouts: list[float | None] = []
        self.times: list[float] = []

    def __call__(self, request: Any, timeout: float | None = None) -> Any:
        self.timeouts.append(timeout)
        self.times.append(asyncio.get_running_loop().time())
        return self._answer()

    async def _answer(self) -> Any:
        if len(self.timeouts) <= self.refusals:
            raise _throttled(self.retry_after)
        return api_pb2.DiscoveryReply()


def _client(timeout: float | None) -> ApiClient:
    client = ApiClient.__new__(ApiClient)
    client.target, client.timeout = "test", timeout
    client.on_warning = lambda _: None
    return client


def test_throttled_delay_grows_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 8):
        d = throttled_delay(1, attempt, rng)
        assert 0.5 * min(attempt, MAX_THROTTLED_DELAY) <= d <= 1.5 * min(attempt,
                                                                          MAX_THROTTLED_DELAY)
    assert throttled_delay(3600, 1, rng) <= 1.5 * MAX_THROTTLED_DELAY


async def test_waits_as_told_then_succeeds() -> None:
    method = _Method(refusals=2, retry_after=0)
    reply = await _client(30)._call(method, api_pb2.DiscoveryRequest())
    assert isinstance(reply, api_pb2.DiscoveryReply)
    assert len(method.timeouts) == 3
    gaps = [b - a for a, b in zip(method.times, method.times[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # retry-after 0 still waits 0.1 s x attempt
    # each attempt gets what is left of the one timeout, not a fresh 30 s
    assert method.timeouts[0] is not None and method.timeouts[0] <= 30
    assert method.timeouts[2] is not None and method.timeouts[2] < method.timeouts[0]


async def test_gives_up_after_the_retries() -> None:
    method = _Method(refusals=100, retry_after=0)
    with pytest.raises(errors.TooManyRequests) as ei:
        await _client(30)._call(method, api_pb2.DiscoveryRequest())
    assert ei.value.retry_after == 0
    assert len(method.timeouts) == MAX_THROTTLED_RETRIES + 1


async def test_never_waits_past_the_timeout() -> None:
    method = _Method(refusals=100, retry_after=5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(errors.TooManyRequests):
        await _client(1.0)._call(method, api_pb2.DiscoveryRequest())
    # a wait of 2.5-7.5 s would outlast the 1 s timeout: the refusal comes at once
    assert loop.time() - start < 0.5
    assert len(method.timeouts) == 1
