"""Flotilla benchmarks: shared helpers (server subprocesses, statistics, profiling).

Not a benchmark itself. The benchmarks are ``python -m bench.api_bench`` (create/update
throughput and latency against a bare gRPC echo) and ``python -m bench.watch_bench`` (watch
delivery latency against a bare gRPC fan-out); see ``bench/README.md``.

Every benchmark measures Flotilla and the machine's limit (a bare ``grpc.aio`` server from
:mod:`bench._echo`) in the same run and reports the ratio, because absolute figures drift
from run to run. Servers run as subprocesses (:class:`ServerProcess`) so that server and
client use both cores, as in a real deployment; they are killed in ``finally`` blocks and
their temporary directories removed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from control.client.tls import Credentials

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
T = TypeVar("T")

# ~1 KB of ConfigMap data: 8 keys of 120 characters (what the API benchmarks write).
PAYLOAD_KEYS = 8
PAYLOAD_VALUE_CHARS = 120


def payload_data(seed: int = 0) -> dict[str, str]:
    """~1 KB of ConfigMap ``data``; ``seed`` varies the content so updates are not no-ops."""
    base = f"{seed:012d}"
    value = (base * (PAYLOAD_VALUE_CHARS // len(base) + 1))[:PAYLOAD_VALUE_CHARS]
    return {f"key-{i}": value for i in range(PAYLOAD_KEYS)}


# -- event loops ------------------------------------------------------------------------


def run(main: Callable[[], Awaitable[T]], use_uvloop: bool = False) -> T:
    """Run ``main()`` on a fresh event loop (uvloop's when asked and installed)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())  # type: ignore[arg-type]


# -- server subprocesses ----------------------------------------------------------------


def _flotilla_server_main() -> None:
    """Entry point of the Flotilla server subprocess (``python -c`` calls it).

    argv: data_dir addr_file use_uvloop(0/1) [disable: comma-separated parts of the server
    not to start, e.g. "controllers,scheduler"]. Writes the listen address to addr_file
    once serving; stops cleanly on SIGTERM/SIGINT.
    """
    data_dir, addr_file, use_uvloop = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    disable = {d for d in (sys.argv[4] if len(sys.argv) > 4 else "").split(",") if d}

    async def main() -> None:
        from control import logs
        from control.server import ControlPlane, ServerOptions

        logs.configure("warning", "json")
        cp = ControlPlane(ServerOptions(data_dir=Path(data_dir), listen="127.0.0.1:0",
                                        disable=disable))
        address = await cp.start()
        # as `flotilla server` does once started (control/cli/verbs_server.py): what is
        # loaded at start stays out of the collector's full passes
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        write_address(addr_file, address)
        try:
            await stop.wait()
        finally:
            await cp.stop()

    run(main, use_uvloop)


def write_address(addr_file: str, address: str) -> None:
    tmp = addr_file + ".tmp"
    Path(tmp).write_text(address)
    os.replace(tmp, addr_file)


class ServerProcess:
    """A server in a subprocess that announces its address through a file.

    ``stop()`` sends SIGTERM (clean shutdown) then SIGKILL after ``grace``; ``kill()``
    sends SIGKILL at once (a crash). Both are idempotent; use in ``try/finally``.
    """

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.addr_file = workdir / f"{name}.addr"
        self.log_path = workdir / f"{name}.log"
        with contextlib.suppress(FileNotFoundError):
            self.addr_file.unlink()
        self._log = open(self.log_path, "ab")  # closed in stop()/kill()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.address = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.addr_file.exists():
                self.address = self.addr_file.read_text().strip()
                return self.address
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.proc.returncode} "
                                   f"before serving:\n{self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} server not serving after {timeout} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        return process_cpu_seconds(self.pid)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        if not self._log.closed:
            self._log.close()


def start_cli_server(data_dir: Path, workdir: Path, name: str, listen: str,
                     *flags: str) -> tuple[ServerProcess, float]:
    """Start `flotilla server` (the real command line, scheduler and controllers off) on
    ``data_dir``; returns once it serves (its admin.conf is written), with that moment on
    the monotonic clock."""
    conf = data_dir / "admin.conf"
    with contextlib.suppress(FileNotFoundError):
        conf.unlink()
    sp = ServerProcess(
        name, [PYTHON, "-m", "control.cli.main", "server", "--data-dir", str(data_dir),
               "--listen", listen, "--supervisor-port", "0", "--disable",
               "scheduler,controllers", "--log-format", "json", *flags], workdir)
    deadline = time.monotonic() + 60
    while not conf.exists():
        if sp.proc.poll() is not None or time.monotonic() > deadline:
            sp.kill()
            raise RuntimeError(f"{name} did not start:\n{sp.log_tail()}")
        time.sleep(0.005)
    return sp, time.monotonic()


def start_flotilla(data_dir: Path, workdir: Path, use_uvloop: bool = False,
                   name: str = "flotilla", disable: str = "") -> ServerProcess:
    """Start ``ControlPlane`` on ``data_dir`` in a subprocess; returns once it serves.
    ``disable``: comma-separated ``ServerOptions.disable`` entries ("controllers", ...)."""
    code = "import bench; bench._flotilla_server_main()"
    sp = ServerProcess(name, [PYTHON, "-c", code, str(data_dir),
                              str(workdir / f"{name}.addr"), "1" if use_uvloop else "0",
                              disable], workdir)
    try:
        sp.wait_ready()
    except BaseException:
        sp.kill()
        raise
    _CREDENTIALS[sp.address] = admin_credentials(data_dir)
    return sp


# address of a Flotilla server started here -> its admin credentials (TLS, system:masters)
_CREDENTIALS: dict[str, Credentials] = {}


def admin_credentials(data_dir: Path) -> Credentials:
    """The admin credentials a server on ``data_dir`` wrote into its admin.conf."""
    from control.client.config import read_config_file

    return read_config_file(data_dir / "admin.conf").credentials


def credentials_for(address: str) -> Credentials | None:
    """The credentials of a Flotilla server started by :func:`start_flotilla` (None for
    other servers: the bare gRPC baseline is plaintext on loopback on purpose)."""
    return _CREDENTIALS.get(address)


def start_echo(workdir: Path, use_uvloop: bool = False, name: str = "echo",
               tls: Path | None = None) -> ServerProcess:
    """Start the bare gRPC baseline (:mod:`bench._echo`) in a subprocess; ``tls``: a
    directory written by :func:`bench._echo.write_tls` (TLS with client certificates)."""
    argv = [PYTHON, "-m", "bench._echo", "--addr-file", str(workdir / f"{name}.addr")]
    if use_uvloop:
        argv.append("--uvloop")
    if tls is not None:
        argv += ["--tls", str(tls)]
    sp = ServerProcess(name, argv, workdir)
    try:
        sp.wait_ready()
    except BaseException:
        sp.kill()
        raise
    return sp


@contextlib.contextmanager
def temp_workdir(prefix: str) -> Any:
    """A temporary directory removed on exit (also on error)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc; 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def machine_busy_seconds() -> float:
    """CPU-seconds every core of the machine has spent busy (not idle/iowait), /proc/stat."""
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return 0.0
    v = [int(x) for x in line.split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / _CLK_TCK


class CpuMeter:
    """Cores used over an interval by a server process, by this process, and by the rest of
    the machine (other people's tests share it: the column says how quiet a phase was)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.t0 = time.monotonic()
        self.s0 = process_cpu_seconds(server_pid)
        self.c0 = self_cpu_seconds()
        self.m0 = machine_busy_seconds()

    def read(self) -> tuple[float, float, float, float]:
        """(seconds, server CPU-s, client CPU-s, other CPU-s) since construction."""
        dt = time.monotonic() - self.t0
        s = process_cpu_seconds(self.server_pid) - self.s0
        c = self_cpu_seconds() - self.c0
        m = machine_busy_seconds() - self.m0
        return dt, s, c, max(0.0, m - s - c)


# -- profiling --------------------------------------------------------------------------


class PySpy:
    """``py-spy record`` attached to a pid, writing collapsed stacks (``--format raw``)."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if not Path(exe).exists():
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.out = out
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.5)  # attached before the measured phase starts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def summarize_collapsed(path: Path, top: int = 20) -> str:
    """Self and inclusive sample shares per function from a py-spy raw (collapsed) file."""
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no profile at {path})"
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_short_frame(f) for f in stack.split(";")]
        # frames[0] is the thread; the leaf is last
        frames = [f for f in frames if f]
        if not frames:
            continue
        self_count[frames[-1]] += count
        for f in set(frames):
            incl_count[f] += count
    if not total:
        return "(empty profile)"
    out = [f"{total} samples", "", "self %  function"]
    out += [f"{100 * c / total:6.1f}  {f}" for f, c in self_count.most_common(top)]
    out += ["", "incl %  function"]
    out += [f"{100 * c / total:6.1f}  {f}" for f, c in incl_count.most_common(top)]
    return "\n".join(out)


def _short_frame(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"; keep package-relative paths short
    frame = frame.strip()
    if not frame.endswith(")") or "(" not in frame:
        return frame if not frame.startswith("process ") and not frame.startswith(
            "thread ") else ""
    name, _, where = frame[:-1].partition(" (")
    file = where.rsplit(":", 1)[0]
    for marker in ("/work/main/", "site-packages/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{name} ({file})"


# -- statistics and reporting -----------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100, nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


@dataclass
class Stats:
    count: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else math.nan


def stats(latencies_s: Sequence[float], seconds: float) -> Stats:
    s = sorted(latencies_s)
    return Stats(len(s), seconds, 1000 * percentile(s, 50), 1000 * percentile(s, 99),
                 1000 * (s[-1] if s else math.nan))


def fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (readable on a terminal too)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows]
    return "\n".join([line, sep, *body])


def command_line(module: str) -> str:
    """How this benchmark was invoked, as one would type it from the repository root."""
    import shlex

    return shlex.join([".venv/bin/python", "-m", module, *sys.argv[1:]])


def machine() -> str:
    import grpc

    try:
        import uvloop

        uv = f", uvloop {uvloop.__version__}"
    except ImportError:
        uv = ""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"nproc {len(os.sched_getaffinity(0))} ({model or platform.machine()}), "
            f"Python {platform.python_version()}, grpcio {grpc.__version__}{uv}, "
            f"{platform.system()} {platform.release()}")
