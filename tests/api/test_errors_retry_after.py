"""The retry-after hint: sent as trailing metadata, read back into the rebuilt error."""

from __future__ import annotations

import grpc
import pytest

from control.api import errors


def test_retry_after_round_trip() -> None:
    err = errors.TooManyRequests("slow down", retry_after=3)
    md = errors.trailing_metadata(err)
    assert md == (("retry-after", "3"),)
    back = errors.from_grpc(err.code, errors.to_details(err), errors.retry_after_from(md))
    assert isinstance(back, errors.TooManyRequests) and back.retry_after == 3
    assert errors.trailing_metadata(errors.BadRequest("no")) == ()


@pytest.mark.parametrize(("metadata", "want"), [
    (None, None),
    ((), None),
    ((("other", "1"),), None),
    ((("retry-after", b"2"),), 2),
    ((("retry-after", "-1"),), None),
    ((("retry-after", "9" * 50),), None),
])
def test_retry_after_from(metadata: object, want: int | None) -> None:
    assert errors.retry_after_from(metadata) == want  # type: ignore[arg-type]


def test_from_grpc_without_hint() -> None:
    assert errors.from_grpc(grpc.StatusCode.DEADLINE_EXCEEDED, "Timeout: x").retry_after is None
