"""Errors of the command-line client and how they become one line on stderr plus an exit code.

Owns :class:`CliError` (what a verb raises for bad input or a refused request) and
:func:`describe_exception` (turns any exception a verb can hit — ``ApiError`` from the
client, ``Invalid`` from manifest checks, ``OSError`` — into kubectl-style text without a
traceback). ``main`` prints the traceback only under ``--debug``.
"""

from __future__ import annotations


class CliError(Exception):
    """A failure the user should read as ``error: <message>``; ``exit_code`` is 1 like kubectl."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(CliError):
    """Wrong flags or arguments (kubectl exits 1 for those too, not argparse's 2)."""


class PartialFailure(CliError):
    """Some objects failed (already reported one by one on stderr); exit 1 at the end."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} object(s) failed", exit_code=1)
        self.count = count


def describe_exception(exc: BaseException) -> str:
    """The one-line text after ``error: `` for an exception a verb let escape."""
    if isinstance(exc, CliError):
        return exc.message
    # Imported here: it imports grpc, which a CLI call that never reaches the server skips.
    from control.api import errors as api_errors

    if isinstance(exc, api_errors.Invalid):
        return exc.message
    if isinstance(exc, api_errors.ApiError):
        return exc.message or exc.reason
    if isinstance(exc, OSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


__all__ = ["CliError", "PartialFailure", "UsageError", "describe_exception"]
