"""ControllerExpectations: counts down to satisfied, or expires after the TTL."""

from __future__ import annotations

from control.runtime.clock import FakeClock
from control.runtime.expectations import EXPECTATIONS_TTL, ControllerExpectations


def test_no_record_is_satisfied() -> None:
    assert ControllerExpectations(FakeClock()).satisfied("ns/rs")


def test_creations_count_down() -> None:
    exp = ControllerExpectations(FakeClock())
    exp.expect_creations("ns/rs", 2)
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")  # more than expected is still satisfied
    assert exp.satisfied("ns/rs")


def test_deletions_count_down_and_raise() -> None:
    exp = ControllerExpectations(FakeClock())
    exp.expect_deletions("ns/rs", 1)
    exp.raise_expectations("ns/rs", 1, 1)
    record = exp.get("ns/rs")
    assert record is not None and (record.add, record.delete) == (1, 2)
    exp.deletion_observed("ns/rs")
    exp.deletion_observed("ns/rs")
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")


def test_expect_replaces_the_record() -> None:
    exp = ControllerExpectations(FakeClock())
    exp.expect_creations("k", 3)
    exp.expect_deletions("k", 1)  # as in client-go: a fresh record, adds reset to 0
    exp.deletion_observed("k")
    assert exp.satisfied("k")


def test_ttl_expiry_uses_the_clock() -> None:
    clock = FakeClock()
    exp = ControllerExpectations(clock)
    exp.expect_creations("k", 5)
    clock.advance(EXPECTATIONS_TTL)
    assert not exp.satisfied("k")  # exactly at the TTL: not yet
    assert not exp.is_expired("k")
    clock.advance(0.001)
    assert exp.satisfied("k")
    assert exp.is_expired("k")
    exp.expect_creations("k", 1)  # a new record restarts the TTL
    assert not exp.satisfied("k")


def test_observing_unknown_keys_and_delete() -> None:
    exp = ControllerExpectations(FakeClock(), ttl=10)
    exp.creation_observed("missing")
    assert "missing" not in exp
    exp.expect_creations("k", 1)
    assert "k" in exp
    exp.delete("k")
    assert exp.satisfied("k")
    assert exp.get("k") is None
