"""API errors: one exception type per Kubernetes reason, mapped to gRPC status codes.

Hierarchy (every class is an ``ApiError``; ``reason`` is Kubernetes' StatusReason)::

    ApiError                      UNKNOWN              InternalError
    +-- NotFound                  NOT_FOUND            NotFound
    +-- AlreadyExists             ALREADY_EXISTS       AlreadyExists
    +-- Conflict                  ABORTED              Conflict
    +-- Invalid                   INVALID_ARGUMENT     Invalid   (carries every failing field)
    +-- BadRequest                INVALID_ARGUMENT     BadRequest
    +-- Forbidden                 PERMISSION_DENIED    Forbidden
    +-- Unauthorized              UNAUTHENTICATED      Unauthorized
    +-- Gone                      OUT_OF_RANGE         Expired / Gone ("too old", expired continue)
    +-- TooManyRequests           RESOURCE_EXHAUSTED   TooManyRequests
    +-- MethodNotAllowed          UNIMPLEMENTED        MethodNotAllowed
    +-- Timeout                   DEADLINE_EXCEEDED    Timeout
    +-- ServiceUnavailable        UNAVAILABLE          ServiceUnavailable

On the wire the reason travels in the status details as ``reason: message`` so that a client
turns a ``grpc.aio.AioRpcError`` back into the same class with :func:`from_grpc`.
Pure module: no I/O, safe to import anywhere (agent and CLI included).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class FieldError:
    """One failing field: ``path`` like ``spec.containers[0].name``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ApiError(Exception):
    """``retry_after``: seconds the client should wait before trying again (Kubernetes'
    details.retryAfterSeconds); travels as the ``retry-after`` trailing metadata."""

    reason = "InternalError"
    code = grpc.StatusCode.UNKNOWN
    retry_after: int | None = None

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class NotFound(ApiError):
    reason = "NotFound"
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ApiError):
    reason = "AlreadyExists"
    code = grpc.StatusCode.ALREADY_EXISTS


class Conflict(ApiError):
    reason = "Conflict"
    code = grpc.StatusCode.ABORTED


class Invalid(ApiError):
    """Validation failed; ``errors`` lists every failing field, not only the first."""

    reason = "Invalid"
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        self.errors = list(errors or [])
        if self.errors:
            message = f"{message}: " + "; ".join(str(e) for e in self.errors)
        super().__init__(message)


class BadRequest(ApiError):
    reason = "BadRequest"
    code = grpc.StatusCode.INVALID_ARGUMENT


class Forbidden(ApiError):
    reason = "Forbidden"
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthorized(ApiError):
    reason = "Unauthorized"
    code = grpc.StatusCode.UNAUTHENTICATED


class Gone(ApiError):
    """The requested resourceVersion (or continue token) is older than the kept history."""

    reason = "Expired"
    code = grpc.StatusCode.OUT_OF_RANGE


class TooManyRequests(ApiError):
    reason = "TooManyRequests"
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class MethodNotAllowed(ApiError):
    reason = "MethodNotAllowed"
    code = grpc.StatusCode.UNIMPLEMENTED


class Timeout(ApiError):
    reason = "Timeout"
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ServiceUnavailable(ApiError):
    reason = "ServiceUnavailable"
    code = grpc.StatusCode.UNAVAILABLE


_BY_REASON: dict[str, type[ApiError]] = {
    cls.reason: cls
    for cls in (
        ApiError,
        NotFound,
        AlreadyExists,
        Conflict,
        Invalid,
        BadRequest,
        Forbidden,
        Unauthorized,
        Gone,
        TooManyRequests,
        MethodNotAllowed,
        Timeout,
        ServiceUnavailable,
    )
}
_BY_CODE: dict[grpc.StatusCode, type[ApiError]] = {}
for _cls in reversed(list(_BY_REASON.values())):
    _BY_CODE.setdefault(_cls.code, _cls)
_BY_CODE[grpc.StatusCode.INVALID_ARGUMENT] = Invalid


def to_details(err: ApiError) -> str:
    """The status details string sent on the wire: ``Reason: message``."""
    return f"{err.reason}: {err.message}"


# Longest status message sent: gRPC clients refuse trailers over 8 KiB by default, and an
# error must never carry a large input back.
MAX_DETAILS = 4096


def excerpt(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was: for quoting input."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def bounded_details(err: ApiError) -> str:
    """``to_details`` cut to ``MAX_DETAILS`` characters."""
    text = to_details(err)
    return text if len(text) <= MAX_DETAILS else excerpt(text, MAX_DETAILS - 40)


RETRY_AFTER_KEY = "retry-after"


def trailing_metadata(err: ApiError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata sent with ``err``'s status (the retry-after hint, if any)."""
    if err.retry_after is None:
        return ()
    return ((RETRY_AFTER_KEY, str(err.retry_after)),)


def retry_after_from(metadata: Iterable[Any] | None) -> int | None:
    """The retry-after hint in received trailing metadata (pairs of key and value)."""
    for key, value in metadata or ():
        if key == RETRY_AFTER_KEY:
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text.isdigit() and len(text) < 10:
                return int(text)
    return None


def from_reason(reason: str, message: str) -> ApiError:
    """Rebuild the ApiError of Kubernetes reason ``reason`` (a batched call's per-object
    result; an unknown reason is an ApiError)."""
    cls = _BY_REASON.get(reason, ApiError)
    return from_grpc(cls.code, f"{cls.reason}: {message}")


def from_grpc(code: grpc.StatusCode, details: str | None,
              retry_after: int | None = None) -> ApiError:
    """Rebuild the ApiError a server raised from a gRPC status code and details."""
    details = details or ""
    reason, sep, message = details.partition(": ")
    cls = _BY_REASON.get(reason) if sep else None
    if cls is None or (cls.code != code and cls is not ApiError):
        cls = _BY_CODE.get(code, ApiError)
        message = details
    err = cls.__new__(cls)
    ApiError.__init__(err, message, retry_after=retry_after)
    if isinstance(err, Invalid):
        err.errors = []
    return err
