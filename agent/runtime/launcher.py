"""The runtime's side of the monitors' fork server (``monitor.py serve``).

Every container's monitor is forked by one long-lived helper process per runtime instead of
being a freshly exec'd interpreter: the monitors then share the helper's interpreter pages
copy-on-write, which divides their memory by about ten. Nothing else changes: each monitor
is still one process per container, nobody's child once started, reporting on the sync
pipe and through the files of its container directory, so containers and their exit
codes and logs outlive the agent as before.

The server is started on first use with one end of a ``SOCK_SEQPACKET`` socket pair (one
message per request, the fds attached). Should it have died, the next start notices the
broken socket and starts a new one. Like a monitor, the server forks away from the process
the runtime started (which exits at once), so it is nobody's child; it exits by itself when
this end closes: on ``close``, when the runtime is collected, or when the agent dies (even
by SIGKILL), while the monitors it forked carry on.

Concurrency: one event loop. ``launch`` may be called from many tasks at once; a lock
serialises starting the server; each request is one ``sendmsg`` in a worker thread (a
full socket buffer must never block the loop).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import weakref
from collections.abc import Callable
from pathlib import Path

from agent.runtime.exec_session import popen_in_thread

_READY_TIMEOUT = 30.0  # an interpreter start on a loaded machine


class LaunchError(Exception):
    """The fork server could not be started or reached."""


class MonitorLauncher:
    """Hands container starts to the fork server; see the module docstring."""

    def __init__(self, argv: Callable[[int], list[str]], env: dict[str, str],
                 log_path: Path) -> None:
        # argv(fd): the server's command line, given the fd number of its socket end
        self._argv = argv
        self._env = env
        self._log_path = log_path
        self._lock = asyncio.Lock()
        self._sock: socket.socket | None = None
        self._finalizer: Callable[[], object] | None = None
        self.server_pid = 0  # the current server's (0: none started yet)

    async def launch(self, container_dir: str, sync_fd: int, log_fd: int) -> None:
        """Ask for a monitor of ``container_dir``; it reports on ``sync_fd`` and logs to
        ``log_fd`` (the caller keeps and closes its own copies)."""
        payload = os.fsencode(container_dir)
        for attempt in (1, 2):
            sock = await self._server()
            try:
                await asyncio.to_thread(socket.send_fds, sock, [payload], [sync_fd, log_fd])
                return
            except OSError as e:
                # The server died (EPIPE, ECONNRESET): start another one, once.
                async with self._lock:
                    if self._sock is sock:
                        self._drop()
                if attempt == 2:
                    raise LaunchError(f"the monitors' fork server is unreachable: {e}") from e

    async def _server(self) -> socket.socket:
        async with self._lock:
            if self._sock is not None:
                return self._sock
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                log = os.open(self._log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND |
                              os.O_CLOEXEC, 0o600)
                try:
                    proc = await popen_in_thread(
                        self._argv(theirs.fileno()), pass_fds=(theirs.fileno(),),
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                        start_new_session=True, cwd="/", env=self._env)
                finally:
                    os.close(log)
                # The process we started exits as soon as the server has forked away.
                await asyncio.to_thread(proc.wait)
                theirs.close()
                # The server's first message is its pid (EOF: it died starting).
                ours.settimeout(_READY_TIMEOUT)
                hello = await asyncio.to_thread(ours.recv, 64)
                ours.settimeout(None)
                if not hello.isdigit():
                    raise OSError(f"it exited at start (see {self._log_path})")
            except OSError as e:
                ours.close()
                raise LaunchError(f"starting the monitors' fork server: {e}") from e
            finally:
                theirs.close()
            self.server_pid = int(hello)
            self._sock = ours
            # A runtime dropped without close() still stops its server (no warning).
            self._finalizer = weakref.finalize(self, ours.close)
            return ours

    def _drop(self) -> None:
        """Forget the current server: closing our end stops it."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._sock = None

    async def close(self) -> None:
        """Stop the server (the monitors it forked live on)."""
        async with self._lock:
            self._drop()
