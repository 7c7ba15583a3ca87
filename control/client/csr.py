"""CertificateSigningRequest conditions, as the approver, the signer and the CLI read and
write them (Approved, Denied, Failed; at most one of each). Pure functions on messages."""

from __future__ import annotations

from typing import Any

from control.api import timeutil


def condition(csr: Any, type_: str) -> Any | None:
    return next((c for c in csr.status.conditions if c.type == type_), None)


def is_approved(csr: Any) -> bool:
    c = condition(csr, "Approved")
    return c is not None and c.status == "True"


def is_finished(csr: Any) -> bool:
    """Issued, denied or failed: nothing more will happen to it."""
    return bool(csr.status.certificate) or any(
        c.type in ("Denied", "Failed") and c.status == "True" for c in csr.status.conditions)


def set_condition(csr: Any, type_: str, reason: str, message: str,
                  drop: tuple[str, ...] = ()) -> None:
    """Add (or replace) the ``type_`` condition, True, stamped now; ``drop`` removes
    conditions it contradicts."""
    kept = [c for c in csr.status.conditions if c.type != type_ and c.type not in drop]
    del csr.status.conditions[:]
    csr.status.conditions.extend(kept)
    c = csr.status.conditions.add()
    c.type, c.status, c.reason, c.message = type_, "True", reason, message
    now = timeutil.now_timestamp()
    c.last_update_time.CopyFrom(now)
    c.last_transition_time.CopyFrom(now)


__all__ = ["condition", "is_approved", "is_finished", "set_condition"]
