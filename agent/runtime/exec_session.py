"""Exec sessions of the process runtime: the helper processes (``monitor exec``) that run a
command inside a container, and the interactive session wrapped around one.

:func:`spawn_helper` starts a helper with ``subprocess.Popen`` from a worker thread (never
the event loop's own subprocess support: see its docstring), :class:`Helper` gives it the
part of ``asyncio.subprocess.Process`` the runtime uses, :class:`ProcessExecSession` is
the runtime's :class:`~agent.runtime.interface.ExecSession` (bounded output queue, pty or
pipes), :func:`kill_exec` ends a helper and its command without leaving a zombie;
:func:`popen_in_thread` and :meth:`Helper.reap_on_exit` make sure a helper given up on
by a cancelled caller is still killed and reaped.

Concurrency: everything runs on the agent's event loop; a session's reader tasks belong
to the session and end with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from typing import Any

from agent.runtime.interface import RuntimeError_

_POLL = 0.02


class ProcessExecSession:
    """An exec started by :meth:`ProcessRuntime.exec`. Output arrives through a bounded
    queue fed by reader tasks owned by the session (so a consumer that stops reading
    applies back-pressure to the command instead of growing memory); with a tty, all
    output is "stdout", as in Kubernetes."""

    def __init__(self, proc: Helper, master_fd: int | None) -> None:
        self._proc = proc
        self._master = master_fd
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=64)
        self._tasks: list[asyncio.Task[None]] = []
        if master_fd is not None:
            os.set_blocking(master_fd, False)
            self._tasks.append(asyncio.create_task(self._read_pty(), name="exec-pty"))
        else:
            for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                if stream is not None:
                    self._tasks.append(asyncio.create_task(
                        self._read_stream(name, stream), name=f"exec-{name}"))
        self._open = len(self._tasks)

    async def _read_stream(self, name: str, stream: asyncio.StreamReader) -> None:
        try:
            while chunk := await stream.read(65536):
                await self._queue.put((name, chunk))
        finally:
            await self._stream_done()

    async def _read_pty(self) -> None:
        assert self._master is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                readable = loop.create_future()
                loop.add_reader(self._master, readable.set_result, None)
                try:
                    await readable
                finally:
                    loop.remove_reader(self._master)
                try:
                    chunk = os.read(self._master, 65536)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: every slave end is closed
                    break
                if not chunk:
                    break
                await self._queue.put(("stdout", chunk))
        finally:
            await self._stream_done()

    async def _stream_done(self) -> None:
        self._open -= 1
        if self._open == 0:
            await self._queue.put(None)

    async def write_stdin(self, data: bytes) -> None:
        if self._master is not None:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self._master, view):]
                except BlockingIOError:
                    await asyncio.sleep(_POLL)
            return
        if self._proc.stdin is None:
            raise RuntimeError_("exec was started without stdin")
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self._master is not None:
            await self.write_stdin(b"\x04")  # the terminal's end-of-file character
        elif self._proc.stdin is not None:
            self._proc.stdin.close()

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def wait(self) -> int:
        code = await self._proc.wait()
        if self._tasks:
            # Output ends when the pipes close; do not hold the caller for a straggler.
            await asyncio.wait(self._tasks, timeout=2.0)
        if self._master is not None:
            for t in self._tasks:
                t.cancel()
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
        return code if code >= 0 else 128 - code

    async def kill(self) -> None:
        await kill_exec(self._proc)
        await self.wait()
        for t in self._tasks:
            t.cancel()
        self._proc.close_pipes()


class Helper:
    """A helper process (``monitor exec``) started by :func:`spawn_helper`, with the
    part of ``asyncio.subprocess.Process`` the runtime uses: pipes as asyncio streams,
    ``wait`` (on a pidfd: no thread, no child watcher), ``communicate``, ``send_signal``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._exited: asyncio.Future[None] | None = None
        self._transports: list[asyncio.BaseTransport] = []

    async def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        if self._popen.stdin is not None:
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, loop_pipe(loop, self._popen.stdin))
            self._transports.append(transport)
            self.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        for name in ("stdout", "stderr"):
            pipe = getattr(self._popen, name)
            if pipe is not None:
                reader = asyncio.StreamReader(limit=2 ** 20)
                read_transport, _ = await loop.connect_read_pipe(
                    functools.partial(asyncio.StreamReaderProtocol, reader),
                    loop_pipe(loop, pipe))
                self._transports.append(read_transport)
                setattr(self, name, reader)

    def close_pipes(self) -> None:
        """Close our ends of the helper's pipes now (they close by themselves at EOF; a
        caller giving up the output must not leave them to the garbage collector)."""
        for transport in self._transports:
            transport.close()
        for pipe in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
            if pipe is not None:
                pipe.close()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def reap_on_exit(self) -> asyncio.Future[None]:
        """A future done once the helper has exited and been reaped. The reap happens in
        the pidfd callback, not in a waiter, so a waiter cancelled meanwhile (the agent
        stopping mid-exec) leaves neither a zombie nor an unreaped ``Popen`` behind."""
        if self._exited is None:
            loop = asyncio.get_running_loop()
            self._exited = exited = loop.create_future()
            if self._popen.returncode is not None:
                exited.set_result(None)
                return exited
            pidfd = os.pidfd_open(self.pid)

            def on_exit() -> None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                self._popen.wait()  # exited: reaps at once
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(pidfd, on_exit)
        return self._exited

    async def wait(self) -> int:
        if self._popen.returncode is None:
            await asyncio.shield(self.reap_on_exit())
        return self._popen.wait()

    async def communicate(self) -> tuple[bytes, bytes]:
        async def read(stream: asyncio.StreamReader | None) -> bytes:
            return await stream.read() if stream is not None else b""

        out, err = await asyncio.gather(read(self.stdout), read(self.stderr))
        await self.wait()
        return out, err

    def send_signal(self, sig: int) -> None:
        if self._popen.returncode is None:
            os.kill(self.pid, sig)  # not reaped yet: the pid is still ours


class _LoopOwnedFd:
    """A pipe's file descriptor that the event loop alone closes (see :func:`loop_pipe`)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        """libuv has closed the descriptor already: closing the number again could close
        whatever file got it since."""


def loop_pipe(loop: asyncio.AbstractEventLoop, pipe: Any) -> Any:
    """What to hand ``loop.connect_read_pipe``/``connect_write_pipe`` for ``pipe``.

    asyncio's transports close a pipe through its file object, once. uvloop's let libuv
    close the descriptor and then close the file object too: a second close of the same
    number, which, with helpers started from worker threads meanwhile, closed another
    helper's freshly opened pipe now and then (EBADF, or an exec cut short). Under uvloop
    the transport gets a duplicate that only libuv closes, and ``pipe`` is closed here."""
    if not type(loop).__module__.startswith("uvloop"):
        return pipe
    fd = os.dup(pipe.fileno())
    pipe.close()
    return _LoopOwnedFd(fd)


async def spawn_helper(argv: Sequence[str], *, stdin: int, stdout: int, stderr: int,
                       env: dict[str, str]) -> Helper:
    """Start a helper with ``subprocess.Popen`` (C fork_exec, vfork on Linux) in a worker
    thread, never with the event loop's own subprocess support: under uvloop, libuv's
    fork() in the agent's multithreaded process runs gRPC's fork handlers and
    Python-level after-fork code in the child, which crashed ~1 exec in 10 under gRPC
    load (SIGSEGV before the helper ran: exit 139 with no output)."""
    popen = await popen_in_thread(
        list(argv), stdin=stdin, stdout=stdout, stderr=stderr,
        start_new_session=True, cwd="/", env=env)
    helper = Helper(popen)
    try:
        await helper._attach()
    except BaseException:
        kill_group(popen.pid)
        helper.close_pipes()
        await asyncio.to_thread(popen.wait)
        raise
    return helper


async def kill_exec(proc: Helper) -> None:
    """Ask the exec helper to SIGKILL its command and reap it (SIGUSR2), so no zombie is
    left in the container; SIGKILL the helper's whole group if it does not exit soon."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGUSR2)
    try:
        await asyncio.wait_for(proc.wait(), 2.0)
    except TimeoutError:
        kill_group(proc.pid)


async def popen_in_thread(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **kwargs)`` in a worker thread. A caller cancelled while
    the thread starts the process does not lose it running and unreaped: the process,
    once started, has its group killed, its pipes closed, and is reaped when it exits."""

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, **kwargs)

    started = asyncio.ensure_future(asyncio.to_thread(popen))
    try:
        return await asyncio.shield(started)
    except asyncio.CancelledError:

        def stop(f: asyncio.Future[subprocess.Popen[bytes]]) -> None:
            if not f.cancelled() and f.exception() is None:
                popen = f.result()
                kill_group(popen.pid)
                for pipe in (popen.stdin, popen.stdout, popen.stderr):
                    if pipe is not None:
                        pipe.close()
                reap_when_exited(popen)

        started.add_done_callback(stop)
        raise


def reap_when_exited(popen: subprocess.Popen[bytes]) -> None:
    """Reap ``popen`` when it exits, from a pidfd callback on the running loop (no task,
    no blocking wait): for a process given up on while a caller was being cancelled."""
    if popen.returncode is not None or popen.poll() is not None:
        return
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(popen.pid)

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        popen.wait()

    loop.add_reader(pidfd, on_exit)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
