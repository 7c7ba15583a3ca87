"""Rate limiter arithmetic."""

from __future__ import annotations

import pytest

from control.runtime.clock import FakeClock
from control.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


def test_exponential_per_item() -> None:
    rl = ItemExponentialFailureRateLimiter[str](0.005, 1000.0)
    assert [rl.when("a") for _ in range(4)] == [0.005, 0.01, 0.02, 0.04]
    assert rl.num_requeues("a") == 4
    assert rl.when("b") == 0.005  # items are independent
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    assert rl.when("a") == 0.005


def test_exponential_caps_and_never_overflows() -> None:
    rl = ItemExponentialFailureRateLimiter[str](0.005, 1000.0)
    delays = [rl.when("x") for _ in range(2000)]
    assert max(delays) == 1000.0
    assert delays[-1] == 1000.0
    # 0.005 * 2**17 = 655.36 < 1000 < 0.005 * 2**18
    assert delays[17] == pytest.approx(655.36)
    assert delays[18] == 1000.0


def test_bucket_burst_then_qps() -> None:
    clock = FakeClock()
    rl = BucketRateLimiter[str](qps=10, burst=3, clock=clock)
    assert [rl.when("k") for _ in range(3)] == [0, 0, 0]
    assert rl.when("k") == pytest.approx(0.1)
    assert rl.when("k") == pytest.approx(0.2)
    clock.advance(1.0)  # refills 10 tokens, pays the 2 of debt, capped at burst
    assert [rl.when("k") for _ in range(3)] == [0, 0, 0]
    assert rl.when("k") == pytest.approx(0.1)
    rl.forget("k")
    assert rl.num_requeues("k") == 0


def test_max_of_takes_largest_and_forgets_everywhere() -> None:
    clock = FakeClock()
    exp = ItemExponentialFailureRateLimiter[str](1.0, 100.0)
    bucket = BucketRateLimiter[str](qps=1, burst=1, clock=clock)
    rl = MaxOfRateLimiter[str](exp, bucket)
    assert rl.when("a") == 1.0  # exp 1.0, bucket 0
    assert rl.when("a") == 2.0  # exp 2.0, bucket 1.0
    assert rl.when("b") == 2.0  # exp 1.0, bucket 2.0 in debt
    assert rl.num_requeues("a") == 2
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    with pytest.raises(ValueError):
        MaxOfRateLimiter[str]()


def test_default_controller_rate_limiter() -> None:
    clock = FakeClock()
    rl = default_controller_rate_limiter(clock)
    assert rl.when("a") == 0.005
    assert rl.when("a") == 0.01
    # 98 more distinct items drain the burst of 100; the 101st waits for a token.
    for i in range(98):
        rl.when(f"item-{i}")
    assert rl.when("z") == pytest.approx(0.1)


@pytest.mark.parametrize(("base", "max_delay"), [(0, 1), (2, 1), (-1, 5)])
def test_exponential_rejects_bad_config(base: float, max_delay: float) -> None:
    with pytest.raises(ValueError):
        ItemExponentialFailureRateLimiter[str](base, max_delay)
