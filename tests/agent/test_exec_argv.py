"""check_exec_argv: command lines the kernel would refuse (E2BIG) are refused clearly."""

from __future__ import annotations

import errno

import pytest

from agent.server import MAX_ARG_STRLEN, _as_api_error, check_exec_argv
from control.api import errors

ARG_MAX = 2 * 1024 * 1024


@pytest.mark.parametrize(("argv", "error"), [
    (["true"], None),
    (["echo", "x" * (MAX_ARG_STRLEN - 1)], None),
    (["echo", "x" * MAX_ARG_STRLEN], "command\\[1\\] is 131072 bytes"),
    (["echo", "é" * (MAX_ARG_STRLEN // 2)], "command\\[1\\]"),
    (["echo"] + ["y" * 100_000] * 19, None),
    (["echo"] + ["y" * 100_000] * 21, "argument list too long"),
    (["a"] * 250_000, "argument list too long"),
    (["echo", "a\0b"], "NUL byte"),
])
def test_check_exec_argv(argv: list[str], error: str | None) -> None:
    if error is None:
        check_exec_argv(argv, ARG_MAX)
    else:
        with pytest.raises(errors.BadRequest, match=error):
            check_exec_argv(argv, ARG_MAX)


def test_e2big_from_the_os_is_a_bad_request() -> None:
    err = _as_api_error(OSError(errno.E2BIG, "Argument list too long"))
    assert isinstance(err, errors.BadRequest) and "Argument list too long" in str(err)
