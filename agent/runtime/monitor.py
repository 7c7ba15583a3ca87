"""The per-container monitor (Flotilla's conmon / containerd-shim) and the exec helper.

``python -m agent.runtime.monitor run <container-dir> <sync-fd>``
    Daemonizes (the process the runtime started exits at once; the monitor carries on,
    re-parented away from the agent, in its own session with no terminal), then has a
    short-lived *starter* child start the container and hand it over: the monitor is a
    child subreaper while the starter runs, so when the starter exits the container is
    re-parented to the monitor, which owns it until it exits: copies its stdout/stderr
    into the CRI log file with rotation, waits for it, and writes ``status.json``
    atomically. The starter does all the one-off work (reading the spec, namespaces, the
    fork, ``monitor.json`` with the monitor's pid and the container's and their start
    times, the report ``{"ok": true, "pid": N}`` on the sync fd, or ``{"ok": false,
    "error": "..."}`` and a StartError ``status.json`` when the container could not start),
    so the memory that work writes leaves with it. Nothing ties the monitor to the agent
    afterwards: the agent may die (even by SIGKILL) and a new runtime finds everything in
    the container directory.

    With isolation (root): the starter unshares a PID namespace before forking, so the
    container's process is PID 1 of its own namespace (``sh -c 'echo $$'`` prints 1, as in
    Docker without ``--init``); that child joins the container's cgroups, unshares mount
    and UTS namespaces (after joining the pod's network and IPC namespaces, pinned by the
    runtime, when the pod has them; a hostIPC pod stays in the host's), builds its overlay root (``rootfs.py``), sets the hostname,
    limits its capabilities, switches user and execs. Without isolation it only starts a
    new session (the container is a process group) and execs.

``python -m agent.runtime.monitor serve <root-dir> <socket-fd>``
    The monitors' fork server (one per runtime, started by ``launcher.py``): imports this
    module once, then for each request on the socket (a container directory, with the sync
    fd and the ``monitor.log`` fd attached) forks a child that becomes that container's
    monitor exactly as ``run`` does (its own session, stdio on /dev/null and the log, the
    same double fork away from its parent). A monitor forked so shares the server's
    interpreter pages copy-on-write with every other one (about 1.2 MB of PSS per
    container at 100, the server's share included, against 7 MB for a freshly exec'd
    interpreter), and owes it nothing
    afterwards: the server exits when the socket's other end closes (the agent stopped or
    died) and the monitors carry on. ``root-dir`` is only there to name the node in ``ps``;
    the server's process name is ``flotilla-mon-sv`` and each monitor's ``flotilla-mon``
    (they share the server's command line).

``python -m agent.runtime.monitor exec [--tty] <container-dir> -- ARGV...``
    Runs a command in a running container: joins its cgroups and its network, IPC, UTS, PID
    and mount namespaces (setns), forks so that the command is inside the PID namespace, takes
    the container's user, capabilities, environment and working directory, and exits with
    the command's exit code (128 + signal when it was killed). SIGUSR2 asks the helper to
    SIGKILL the command and reap it (the runtime's timeout and kill); should the helper
    itself die, the command follows it (parent-death signal). With ``--tty`` in a
    container with namespaces, the command gets a pty from the container's own devpts
    (so ``tty`` and ``ttyname`` work) and the helper relays between it and its stdio.

Files in the container directory (written by ``process.py`` unless noted):
``spec.json`` (what to run), ``monitor.json`` and ``status.json`` (by the monitor, each
written to a temporary file then renamed), ``monitor.log`` (the monitor's own stderr).

Concurrency: one monitor per container, single-threaded, blocking I/O on a selector (its
starter runs only until the container is running); the fork server is single-threaded
too and handles one request at a time; a monitor
shares no file with any other process except the log (it is the only writer) and the
state files above (atomic replace; readers see the old or the new content).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import json
import os
import selectors
import signal
import stat
import sys
import termios
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from agent.runtime import linux
from agent.runtime.cgroups import read_oom_kills
from agent.runtime.rootfs import RootfsPlan, host_path_of, setup_rootfs

LOG_MAX_LINE = 16 * 1024  # a longer line is split into P chunks, as the kubelet does
READ_SIZE = 64 * 1024
MESSAGE_MAX = 4096
START_ERROR_EXIT = 128  # containerd's exit code for a container that could not start


# ---- small helpers shared with process.py ------------------------------------------------

def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def rfc3339_nano(ns: int) -> str:
    """UTC with all nine fraction digits (fixed width keeps lines sortable; every
    RFC 3339 parser, Go's included, accepts it)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def exit_code_of(wait_status: int) -> tuple[int, int]:
    """(exit code as Kubernetes shows it, signal or 0)."""
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        return 128 + sig, sig
    return os.waitstatus_to_exitcode(wait_status), 0


# ---- the CRI log writer -----------------------------------------------------------------

class CriLogWriter:
    """Writes ``<time> <stream> <F|P> <text>\\n`` lines to ``path``; rotates to
    ``path.1`` ... ``path.<max_files>`` when the next write would pass ``max_bytes``.

    A chunk that ends without a newline is written at once as a ``P`` line (so a prompt
    or a progress bar is visible to ``logs -f``), and so is each 16 KiB piece of an
    over-long line; the line's last piece is ``F``. At end of stream nothing is pending."""

    def __init__(self, path: str, max_bytes: int = 10 * 1024 * 1024,
                 max_files: int = 4) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max_files
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                       0o640)

    def write(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        if not data:
            return
        prefix = rfc3339_nano(now_ns if now_ns is not None else time.time_ns())
        head_f = f"{prefix} {stream} F ".encode()
        head_p = f"{prefix} {stream} P ".encode()
        out: list[bytes] = []
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when data ended with a newline
        for line in lines:
            while len(line) > LOG_MAX_LINE:
                out.append(head_p + line[:LOG_MAX_LINE] + b"\n")
                line = line[LOG_MAX_LINE:]
            out.append(head_f + line + b"\n")
        while tail:
            out.append(head_p + tail[:LOG_MAX_LINE] + b"\n")
            tail = tail[LOG_MAX_LINE:]
        self._emit(out)

    def _emit(self, lines: list[bytes]) -> None:
        # One write per batch of lines that fits; rotate between lines, never inside one.
        batch: list[bytes] = []
        size = self._size
        for line in lines:
            if size > 0 and size + len(line) > self.max_bytes:
                self._write_all(b"".join(batch))
                batch = []
                self._rotate()
                size = 0
            batch.append(line)
            size += len(line)
        self._write_all(b"".join(batch))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        for i in range(self.max_files - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        if self.max_files > 0:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)


# ---- the container's own process ----------------------------------------------------------

def apply_credentials(spec: dict[str, Any]) -> None:
    """Capabilities (bounding set), groups, gid, uid: after the namespaces and mounts,
    which need the capabilities this drops."""
    caps = spec.get("capabilities")
    if caps is not None:
        linux.limit_bounding_set(caps)
    os.setgroups([int(g) for g in spec.get("groups") or []])
    gid = spec.get("gid")
    os.setgid(int(gid) if gid is not None else 0)
    uid = spec.get("uid")
    os.setuid(int(uid) if uid is not None else 0)


def _exec_program(spec: dict[str, Any], argv: Sequence[str]) -> NoReturn:
    env = {k: v for k, v in spec["env"]}
    os.chdir(spec.get("working_dir") or "/")
    os.execvpe(argv[0], list(argv), env)


# Signals a PID-1 init passes on to the program it started.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


def _run_as_init(spec: dict[str, Any], errpipe: int) -> NoReturn:
    """Stay as the container's PID 1 (docker's ``--init``): fork the program, pass it the
    signals we get, reap every orphan the namespace hands us, and exit as the program did
    (128 + signal when a signal ended it). The program, not PID 1, then gets the default
    action of SIGTERM (a bare ``sleep`` stops)."""
    child = os.fork()
    if child == 0:
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        _exec_program(spec, spec["argv"])
    # Keep only stdin/out/err: the program's copy of ``errpipe`` reports a failed exec, and
    # what exec would have closed (the monitor's sync pipe, spare pipe ends) must not stay
    # open in a PID 1 that never execs.
    del errpipe
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == child:
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.WEXITSTATUS(status))


def _container_child(spec: dict[str, Any], out_w: int, err_w: int, errpipe: int) -> NoReturn:
    """Runs in the forked child; never returns. Any failure goes to ``errpipe`` (closed
    on exec by O_CLOEXEC, so EOF without data means the program is running)."""
    step = "preparing"
    try:
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        step = "joining cgroups"
        for procs in spec.get("cgroup_procs") or []:
            with open(procs, "w") as f:
                f.write("0")  # "0" = the writing process, in v1 and v2
        os.setsid()
        for key, flag, what in (("netns", linux.CLONE_NEWNET, "network"),
                                ("ipcns", linux.CLONE_NEWIPC, "IPC")):
            if spec.get(key):
                step = f"joining the pod's {what} namespace"
                fd = os.open(spec[key], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    linux.setns(fd, flag)
                finally:
                    os.close(fd)
        if spec.get("isolate"):
            step = "creating namespaces"
            flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS
            if not spec.get("ipcns") and not spec.get("host_ipc"):
                flags |= linux.CLONE_NEWIPC  # a sandbox from before pods had their own
            linux.unshare(flags)
            step = "building the root filesystem"
            setup_rootfs(RootfsPlan.from_json(spec["rootfs"]))
            step = "setting the hostname"
            if spec.get("hostname"):
                linux.sethostname(spec["hostname"])
            if spec.get("working_dir"):
                # As runc does: a missing working directory is created (in the overlay,
                # never on the host), unless the root is read-only.
                try:
                    os.makedirs(spec["working_dir"], exist_ok=True)
                except OSError:
                    pass  # chdir below reports it
            step = "switching user and capabilities"
            apply_credentials(spec)
        step = f"changing to working directory {spec.get('working_dir') or '/'!r}"
        os.chdir(spec.get("working_dir") or "/")
        step = f"exec {spec['argv'][0]!r}"
        if spec.get("init"):
            _run_as_init(spec, errpipe)
        _exec_program(spec, spec["argv"])
    except BaseException as e:
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if isinstance(e, OSError) and e.errno == errno.ENOENT and step.startswith("exec"):
            detail = "executable file not found in $PATH (or no such file)"
        message = f"{step}: {detail}"
        try:
            os.write(errpipe, message.encode(errors="replace")[:MESSAGE_MAX])
        finally:
            os._exit(127)


# ---- the monitor ------------------------------------------------------------------------

def _read_until_eof(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _send_sync(sync_fd: int, payload: dict[str, Any]) -> None:
    try:
        os.write(sync_fd, json.dumps(payload).encode() + b"\n")
    except OSError:
        pass  # the agent went away: the state files tell the next one
    finally:
        os.close(sync_fd)


def _termination_message(spec: dict[str, Any]) -> str:
    path = spec.get("termination_message_path") or ""
    if not path:
        return ""
    host: str | None = path
    if spec.get("isolate") and spec.get("rootfs"):
        host = host_path_of(RootfsPlan.from_json(spec["rootfs"]), path)
    if host is None:
        return ""
    try:
        # O_NOFOLLOW: the container may have planted a symlink to a host file.
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, MESSAGE_MAX).decode(errors="replace")
    finally:
        os.close(fd)


def _oom_kills(spec: dict[str, Any]) -> int:
    path = spec.get("oom_file")
    return read_oom_kills(path) if path else 0


def _pump(log: _LogConfig, pid: int, out_r: int, err_r: int) -> int:
    """Copy output to the log until the container exits; returns its wait status."""
    writer = CriLogWriter(log.path, log.max_bytes, log.max_files)
    sel = selectors.DefaultSelector()
    streams = {out_r: "stdout", err_r: "stderr"}
    for fd in streams:
        sel.register(fd, selectors.EVENT_READ)
    pidfd = os.pidfd_open(pid)
    sel.register(pidfd, selectors.EVENT_READ)
    wait_status: int | None = None

    def read_one(fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        if data:
            writer.write(streams[fd], data)
        else:
            sel.unregister(fd)
            os.close(fd)
            del streams[fd]

    while wait_status is None:
        for key, _ in sel.select():
            fd = int(key.fd)
            if fd == pidfd:
                _, wait_status = os.waitpid(pid, 0)
                sel.unregister(pidfd)
                os.close(pidfd)
            elif fd in streams:
                read_one(fd)
    if not log.isolate:
        # The container is its process group: what it left behind goes with it (in a
        # PID namespace the kernel does this when PID 1 exits).
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    # Drain what is still in the pipes; a straggler that escaped the group may keep one
    # open, so stop after a short while rather than wait for EOF forever.
    deadline = time.monotonic() + 1.0
    while streams and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            if int(key.fd) in streams:
                read_one(int(key.fd))
    for fd in list(streams):
        os.close(fd)
    writer.close()
    return wait_status


class _LogConfig:
    """What the monitor needs to pump a container's output, as its starter reports it
    (one line of NUL-separated fields: no JSON parsing in the long-lived process)."""

    __slots__ = ("isolate", "max_bytes", "max_files", "path", "pid", "started_at")

    def __init__(self, pid: int, started_at: float, isolate: bool, path: str,
                 max_bytes: int, max_files: int) -> None:
        self.pid, self.started_at, self.isolate = pid, started_at, isolate
        self.path, self.max_bytes, self.max_files = path, max_bytes, max_files

    def encode(self) -> bytes:
        return "\0".join((str(self.pid), repr(self.started_at), "1" if self.isolate else "0",
                          str(self.max_bytes), str(self.max_files), self.path)).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _LogConfig | None:
        parts = raw.decode(errors="surrogateescape").split("\0")
        if len(parts) != 6:
            return None
        pid, started_at, isolate, max_bytes, max_files, path = parts
        return cls(int(pid), float(started_at), isolate == "1", path, int(max_bytes),
                   int(max_files))


def run_monitor(container_dir: str, sync_fd: int) -> None:
    """The monitor: daemonize, have a short-lived starter start the container (see
    ``_start``), adopt it, pump its output and record how it ended.

    The starter does all the work of starting (spec, namespaces, fork, state files, the
    sync report) and exits, handing the container over by re-parenting (the monitor is a
    child subreaper until then): what that work wrote in memory goes with the starter, so
    the long-lived monitor keeps only what its loop touches (about half the private memory
    of a monitor that starts the container itself, which counts with 100 containers)."""
    os.set_inheritable(sync_fd, False)
    if os.fork() != 0:
        os._exit(0)  # the runtime reaps this intermediate; the monitor is nobody's child
    monitor_pid = os.getpid()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    report_r, report_w = os.pipe()
    try:
        linux.set_child_subreaper(True)
        starter = os.fork()
    except OSError as e:
        _send_sync(sync_fd, {"ok": False, "error": f"starting the container: {e}"})
        return
    if starter == 0:
        code = 1
        try:
            for fd in (out_r, err_r, report_r):
                os.close(fd)
            _start(container_dir, sync_fd, monitor_pid, out_w, err_w, report_w)
            code = 0
        finally:
            os._exit(code)
    for fd in (sync_fd, out_w, err_w, report_w):
        os.close(fd)
    report = _read_until_eof(report_r)
    os.close(report_r)
    _wait_child(starter)
    # The container is ours now (or never started): later orphans go to init as before.
    linux.set_child_subreaper(False)
    log = _LogConfig.decode(report) if report else None
    if log is None:
        # Nothing started (the starter recorded why in status.json), or the starter died.
        os.close(out_r)
        os.close(err_r)
        return
    wait_status = _pump(log, log.pid, out_r, err_r)
    # What follows runs once, as the monitor exits: the spec is read again only now.
    spec = read_json(os.path.join(container_dir, "spec.json")) or {}
    exit_code, sig = exit_code_of(wait_status)
    oom = _oom_kills(spec) > 0
    reason = "OOMKilled" if oom else ("Completed" if exit_code == 0 else "Error")
    write_json_atomic(os.path.join(container_dir, "status.json"), {
        "exit_code": exit_code, "signal": sig, "oom_killed": oom, "reason": reason,
        "message": _termination_message(spec), "started_at": log.started_at,
        "finished_at": time.time(), "pid": log.pid})


def _wait_child(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def _start(container_dir: str, sync_fd: int, monitor_pid: int, out_w: int, err_w: int,
           report_w: int) -> None:
    """The starter (a child of the monitor): start the container, write ``monitor.json``,
    report to the runtime on ``sync_fd`` and to the monitor on ``report_w``, and return
    (the caller exits: the container is re-parented to the monitor). On failure, record
    the StartError in ``status.json`` and report nothing to the monitor."""
    spec = read_json(os.path.join(container_dir, "spec.json"))
    if spec is None:
        _send_sync(sync_fd, {"ok": False, "error": "spec.json missing or unreadable"})
        return
    spec["dir"] = container_dir
    status_path = os.path.join(container_dir, "status.json")
    errpipe_r, errpipe_w = os.pipe()
    try:
        if spec.get("isolate"):
            # Our next child is PID 1 of a new PID namespace; the monitor stays outside.
            linux.unshare(linux.CLONE_NEWPID)
        pid = os.fork()
    except OSError as e:
        _send_sync(sync_fd, {"ok": False, "error": f"starting the container: {e}"})
        return
    if pid == 0:
        os.close(errpipe_r)
        os.close(report_w)
        _container_child(spec, out_w, err_w, errpipe_w)
    for fd in (out_w, err_w, errpipe_w):
        os.close(fd)
    try:
        failure = _read_until_eof(errpipe_r).decode(errors="replace")
        os.close(errpipe_r)
        started_at = time.time()
        if not failure:
            write_json_atomic(os.path.join(container_dir, "monitor.json"), {
                "monitor_pid": monitor_pid, "monitor_start": linux.proc_start_time(monitor_pid),
                "pid": pid, "pid_start": linux.proc_start_time(pid),
                "started_at": started_at})
    except BaseException as e:
        # Never leave a container the monitor was not told about.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        failure = f"starting the container: {e}"
    if failure:
        _wait_child(pid)
        write_json_atomic(status_path, {
            "exit_code": START_ERROR_EXIT, "signal": 0, "oom_killed": False,
            "reason": "StartError", "message": failure, "started_at": 0.0,
            "finished_at": time.time(), "pid": pid})
        _send_sync(sync_fd, {"ok": False, "error": failure})
        return
    log = _LogConfig(pid, started_at, bool(spec.get("isolate")),
                     spec.get("log_path") or os.path.join(container_dir, "container.log"),
                     int(spec.get("log_max_bytes") or 10 * 1024 * 1024),
                     int(spec.get("log_max_files") or 4))
    # The monitor first, then the runtime: once the runtime hears "ok", the monitor must
    # already know what to pump.
    os.write(report_w, log.encode())
    os.close(report_w)
    _send_sync(sync_fd, {"ok": True, "pid": pid})


# ---- the fork server ----------------------------------------------------------------------

SERVE_MESSAGE_MAX = 4096  # a request: the container directory's path
SERVER_NAME = "flotilla-mon-sv"  # process names (comm, 15 bytes at most)
MONITOR_NAME = "flotilla-mon"


def serve(sock_fd: int) -> None:
    """Fork a monitor per request until the socket's other end closes (see the module
    docstring). A malformed request is dropped with its fds closed: the runtime waiting
    on that sync fd then reads EOF and reports the monitor's absence."""
    import socket  # only the server needs it; ``run`` and ``exec`` start faster without

    if os.fork() != 0:
        os._exit(0)  # the runtime reaps this intermediate; the server is nobody's child
    sock = socket.socket(fileno=sock_fd)
    linux.set_process_name(SERVER_NAME)
    sock.send(str(os.getpid()).encode())  # ready: the runtime learns who serves it
    # Everything imported so far is shared with the monitors: keep the cyclic collector
    # off those pages, so a monitor's collections never write to (and copy) them.
    gc.freeze()
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, SERVE_MESSAGE_MAX, 2)
        except InterruptedError:
            continue
        if not msg and not fds:
            return  # the runtime is gone; its monitors are not ours to keep
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        sync_fd, log_fd = fds
        try:
            pid = os.fork()
        except OSError as e:
            os.close(log_fd)
            _send_sync(sync_fd, {"ok": False, "error": f"starting the monitor: {e}"})
            continue
        if pid == 0:
            sock.close()
            _become_monitor(msg.decode(errors="replace"), sync_fd, log_fd)
        os.close(sync_fd)
        os.close(log_fd)
        # The child forks the monitor away and exits at once (as ``run`` does).
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break


def _become_monitor(container_dir: str, sync_fd: int, log_fd: int) -> NoReturn:
    """In a child of the fork server: take the stdio ``run`` would have had, then run."""
    code = 1
    try:
        # Its command line is the server's: the name tells the two apart in ps and top.
        linux.set_process_name(MONITOR_NAME)
        os.setsid()
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        run_monitor(container_dir, sync_fd)
        code = 0
    except BaseException as e:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"monitor: {type(e).__name__}: {e}\n")
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        # Never back into the server's loop: the intermediate and the monitor end here.
        os._exit(code)


# ---- exec -------------------------------------------------------------------------------

# net first: /proc of the container is still reachable before the mount namespace changes
_NAMESPACES = (("net", linux.CLONE_NEWNET), ("ipc", linux.CLONE_NEWIPC),
               ("uts", linux.CLONE_NEWUTS), ("pid", linux.CLONE_NEWPID),
               ("mnt", linux.CLONE_NEWNS))


def run_exec(container_dir: str, argv: Sequence[str], tty: bool) -> int:
    spec = read_json(os.path.join(container_dir, "spec.json"))
    mon = read_json(os.path.join(container_dir, "monitor.json"))
    if spec is None or mon is None or not argv:
        sys.stderr.write("exec: container not found or no command\n")
        return 126
    pid, start = int(mon["pid"]), mon.get("pid_start")
    if start is None or not linux.process_alive(pid, int(start)):
        sys.stderr.write("exec: container is not running\n")
        return 126
    isolate = bool(spec.get("isolate"))
    cgroup_fds: list[int] = []
    if isolate:
        fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag)
               for name, flag in _NAMESPACES]
        # The pid could have been reused between the check and the opens.
        if not linux.process_alive(pid, int(start)):
            sys.stderr.write("exec: container is not running\n")
            return 126
        # Opened now: the container's mount namespace has no cgroup filesystem.
        for procs in spec.get("cgroup_procs") or []:
            try:
                cgroup_fds.append(os.open(procs, os.O_WRONLY | os.O_CLOEXEC))
            except OSError:
                pass  # the cgroup is going away with the container
        for fd, flag in fds:
            linux.setns(fd, flag)
            os.close(fd)
    # With a terminal and a mount namespace, the pty must come from the container's own
    # devpts (so that ttyname() works inside); we relay between it and our stdio.
    relay = tty and isolate
    master = slave = -1
    if relay:
        master, slave = os.openpty()
        set_raw(0)
    child = os.fork()  # so the command is inside the PID namespace we just joined
    if child == 0:
        try:
            for fd in cgroup_fds:
                # Joined by the child, not the helper: the helper's own memory stays
                # charged where it was, so a probe cannot push a small container to OOM.
                with contextlib.suppress(OSError):
                    os.write(fd, b"0")
            if tty:
                os.setsid()
                if relay:
                    for target in (0, 1, 2):
                        os.dup2(slave, target)
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            if isolate:
                apply_credentials(spec)
            # Set after the uid change, which clears it: the command dies with us.
            linux.set_parent_death_signal(signal.SIGKILL)
            _exec_program(spec, argv)
        except OSError as e:
            sys.stderr.write(f"exec {argv[0]!r}: {e.strerror or e}\n")
            sys.stderr.flush()
            os._exit(127 if e.errno == errno.ENOENT else 126)

    def forward(signum: int, _frame: object) -> None:
        # SIGUSR2 is the runtime's "kill the command": we SIGKILL it and still reap it
        # (killed together with us, it would be re-parented to the container's PID 1,
        # which may never reap it: a zombie per timed-out probe).
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL if signum == signal.SIGUSR2 else signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2):
        signal.signal(s, forward)
    if relay:
        os.close(slave)
        return _relay_pty(child, master)
    _, wait_status = os.waitpid(child, 0)
    return exit_code_of(wait_status)[0]


def set_raw(fd: int) -> None:
    """Our side of the outer terminal passes bytes through untouched: the container's
    pty does the echo and line editing (otherwise every key would be echoed twice)."""
    with contextlib.suppress(termios.error):
        attrs = termios.tcgetattr(fd)
        attrs[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP |
                      termios.IXON)
        attrs[1] &= ~termios.OPOST
        attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _relay_pty(child: int, master: int) -> int:
    """Copy stdin -> the container's pty and the pty -> stdout until the command has
    exited and its output is drained (EIO once no slave is open, or 0.2 s of quiet: a
    background process may keep the slave open)."""
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(master, selectors.EVENT_READ)
    pidfd = os.pidfd_open(child)
    sel.register(pidfd, selectors.EVENT_READ)
    wait_status: int | None = None
    master_open = True
    while master_open:
        events = sel.select(timeout=0.2 if wait_status is not None else None)
        if not events and wait_status is not None:
            break
        for key, _ in events:
            fd = int(key.fd)
            if fd == pidfd:
                _, wait_status = os.waitpid(child, 0)
                sel.unregister(pidfd)
                continue
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:  # EIO on the master: no slave left open
                data = b""
            if not data:
                sel.unregister(fd)
                master_open = master_open and fd != master
                continue
            view = memoryview(data)
            target = master if fd == 0 else 1
            while view:
                view = view[os.write(target, view):]
    if wait_status is None:
        _, wait_status = os.waitpid(child, 0)
    return exit_code_of(wait_status)[0]


def main(argv: Sequence[str]) -> int:
    if len(argv) >= 3 and argv[0] == "run":
        run_monitor(argv[1], int(argv[2]))
        return 0
    if len(argv) >= 3 and argv[0] == "serve":
        serve(int(argv[2]))
        return 0
    if len(argv) >= 3 and argv[0] == "exec":
        rest = list(argv[1:])
        tty = False
        if rest and rest[0] == "--tty":
            tty = True
            rest = rest[1:]
        if len(rest) >= 2 and rest[1] == "--":
            return run_exec(rest[0], rest[2:], tty)
    sys.stderr.write("usage: python -m agent.runtime.monitor run DIR SYNC_FD | "
                     "serve ROOT SOCKET_FD | exec [--tty] DIR -- ARGV...\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
