"""Warnings a request's reply carries to the client (Kubernetes' ``Warning`` headers):
the apiserver's code adds them with :func:`add` while it handles a request; the gRPC
handler sends them as ``warning`` trailing metadata, and the client shows them (kubectl
prints ``Warning: ...``).

Concurrency: one list per request in a ContextVar, so concurrent requests on the event
loop never see each other's warnings.
"""

from __future__ import annotations

from contextvars import ContextVar

METADATA_KEY = "warning"
_current: ContextVar[list[str] | None] = ContextVar("request_warnings", default=None)


def begin() -> list[str]:
    """Start collecting for the request running in this context."""
    out: list[str] = []
    _current.set(out)
    return out


def add(message: str) -> None:
    """Warn the client of the request being handled (nothing outside a request)."""
    out = _current.get()
    if out is not None and message not in out:
        out.append(message)


__all__ = ["METADATA_KEY", "add", "begin"]
