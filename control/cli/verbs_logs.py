"""`logs` and `exec`: a pod's container output, and commands run inside it (kubectl's habits).

Owns:
- ``logs POD [CONTAINER] [-c C] [-f] [--tail N] [--since D] [--timestamps] [-p]
  [--limit-bytes N]``: the container's log as the agent reads it, through the apiserver
  (which picks or refuses the container, e.g. "a container name must be specified for pod
  p, choose one of: [a b]"); bytes are written as they come, so ``-f`` streams until the
  container exits or the user interrupts;
- ``exec POD [-c C] [-i] [-t] [-q] -- CMD...``: like kubectl, the container defaults to the
  pod's ``kubectl.kubernetes.io/default-container`` or first one ("Defaulted container
  ..." on stderr); ``-i`` streams this process's stdin, ``-t`` asks for a terminal (and
  puts a local one in raw mode); the command's output goes to stdout/stderr and its exit
  code becomes ours ("command terminated with exit code N" on stderr, as kubectl).

Concurrency: each handler runs on the CLI's one event loop; ``-i`` reads stdin in a daemon
thread (a blocking read must neither stall the loop nor keep the process alive after the
command ends) that hands chunks to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from control.api import errors as api_errors
from control.api import kinds, labels, timeutil
from control.api.podutil import is_pod_ready
from control.cli.errors import CliError, UsageError

if TYPE_CHECKING:
    from control.cli.main import Context

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def register(sub: Any) -> None:
    p = sub.add_parser("logs", help="print the logs of a container in a pod")
    p.add_argument("pod", metavar="POD | pod/NAME")
    p.add_argument("container_arg", nargs="?", default="", metavar="CONTAINER")
    p.add_argument("-c", "--container", default="", help="the container (required when the "
                   "pod has several)")
    p.add_argument("-f", "--follow", action="store_true", help="stream the log as it grows")
    p.add_argument("--tail", type=int, default=-1, help="lines of recent log to show (-1 all)")
    p.add_argument("--since", default="", help='only newer lines, e.g. "10s", "5m", "1h"')
    p.add_argument("--timestamps", action="store_true", help="prefix each line with its time")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the previous (terminated) instance of the container")
    p.add_argument("--limit-bytes", type=int, default=0, help="stop after this many bytes")
    p.set_defaults(handler=run_logs)

    p = sub.add_parser("exec", help="run a command in a container of a pod")
    p.add_argument("pod", metavar="POD | pod/NAME")
    _exec_flags(p)
    # everything after POD: flags may still come before "--" (cobra's habit), see run_exec
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    p.set_defaults(handler=run_exec)


def _exec_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--container", default="", help="the container (default: the "
                   "pod's default-container annotation, else its first)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    p.add_argument("-t", "--tty", action="store_true", help="stdin is a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="only the command's output")


class _FlagParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\nSee 'flotilla exec --help' for usage.")


def split_exec_args(args: argparse.Namespace) -> list[str]:
    """The command of ``exec POD [FLAGS] -- CMD...``; flags between POD and ``--`` are
    merged into ``args``. Without ``--`` everything after POD is the command (kubectl's
    deprecated ``exec POD CMD`` form)."""
    rest = list(args.command)
    if "--" not in rest:
        return rest
    at = rest.index("--")
    flags, command = rest[:at], rest[at + 1:]
    if flags:
        parser = _FlagParser(prog="flotilla exec", add_help=False)
        _exec_flags(parser)
        extra = parser.parse_args(flags)
        for key in ("stdin", "tty", "quiet"):
            setattr(args, key, getattr(args, key) or getattr(extra, key))
        args.container = extra.container or args.container
    return command


# kinds whose pods `logs`/`exec` may pick from, as kubectl does for `logs deploy/web`
WORKLOADS = ("deployments", "replicasets", "replicationcontrollers", "statefulsets",
             "daemonsets", "jobs")


def parse_target(arg: str) -> tuple[kinds.KindInfo | None, str]:
    """``NAME`` / ``pod/NAME`` -> (None, pod name); ``deploy/web`` -> (its KindInfo, "web")."""
    kind, sep, name = arg.partition("/")
    if not sep:
        return None, arg
    try:
        info = kinds.resolve(kind)
    except KeyError:
        raise CliError(f'the server doesn\'t have a resource type "{kind}"') from None
    if not name or (info.plural != "pods" and info.plural not in WORKLOADS):
        raise UsageError(f"{arg}: name a pod (POD, pod/NAME) or a workload (deploy/NAME, ...)")
    return (None if info.plural == "pods" else info), name


def pod_rank(pod: Any) -> tuple[int, int, float]:
    """kubectl's choice among a workload's pods: running and ready first, then newest."""
    ready = is_pod_ready(pod)
    return (0 if pod.status.phase == "Running" else 1, 0 if ready else 1,
            -pod.metadata.creation_timestamp.seconds)


async def pod_name(ctx: Context, arg: str) -> str:
    """The pod that ``arg`` names: itself, or one of a workload's pods."""
    info, name = parse_target(arg)
    if info is None:
        return name
    client = await ctx.client()
    try:
        obj = await client.get(info, name, ctx.namespace)
    except api_errors.NotFound:
        raise CliError(f'{info.plural} "{name}" not found') from None
    if info.plural == "replicationcontrollers":
        selector = str(labels.from_map(dict(obj.spec.selector)))
    else:
        selector = str(labels.from_label_selector(obj.spec.selector))
    pods = (await client.list("pods", ctx.namespace, label_selector=selector)).items
    if not pods:
        raise CliError(f"no pods found for {info.singular}/{name}")
    chosen = min(pods, key=pod_rank)
    if len(pods) > 1:
        ctx.stderr.write(f"Found {len(pods)} pods, using pod/{chosen.metadata.name}\n")
    return str(chosen.metadata.name)


def write_bytes(stream: TextIO, data: bytes) -> None:
    """Raw bytes to a text stream: through its binary buffer when it has one."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8", errors="replace"))
        stream.flush()


# -- logs ---------------------------------------------------------------------------------


async def run_logs(ctx: Context, args: argparse.Namespace) -> int:
    name = await pod_name(ctx, args.pod)
    if args.container and args.container_arg and args.container != args.container_arg:
        raise UsageError("only one of -c or an inline container name is allowed")
    options: dict[str, Any] = {
        "container": args.container or args.container_arg,
        "follow": args.follow,
        "timestamps": args.timestamps,
        "previous": args.previous,
    }
    if args.tail >= 0:
        options["tail_lines"] = args.tail
    if args.limit_bytes < 0:
        raise UsageError("--limit-bytes must be greater than 0")
    if args.limit_bytes:
        options["limit_bytes"] = args.limit_bytes
    if args.since:
        try:
            seconds = timeutil.parse_duration(args.since)
        except ValueError as e:
            raise UsageError(f"invalid --since {args.since!r}: {e}") from None
        if seconds <= 0:
            raise UsageError("--since must be greater than 0")
        options["since_seconds"] = math.ceil(seconds)
    client = await ctx.client()
    async for data in client.logs(ctx.namespace, name, **options):
        write_bytes(ctx.stdout, data)
    return 0


# -- exec ---------------------------------------------------------------------------------


async def default_container(ctx: Context, name: str, quiet: bool) -> str:
    """kubectl exec's choice when -c is absent (the apiserver would insist on a name)."""
    client = await ctx.client()
    try:
        pod = await client.get("pods", name, ctx.namespace)
    except api_errors.NotFound:
        raise CliError(f'pods "{name}" not found') from None
    names = [c.name for c in pod.spec.containers]
    if len(names) <= 1:
        return names[0] if names else ""
    chosen = pod.metadata.annotations.get(DEFAULT_CONTAINER_ANNOTATION, "")
    if chosen not in names:
        chosen = names[0]
    if not quiet:
        others = names + [f"{c.name} (init)" for c in pod.spec.init_containers]
        ctx.stderr.write(f'Defaulted container "{chosen}" out of: {", ".join(others)}\n')
    return chosen


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


async def stdin_chunks(stream: TextIO) -> AsyncIterator[bytes]:
    """The bytes of ``stream`` as they are read, without blocking the event loop."""
    fd = _fileno(stream)
    if fd is None:  # an in-memory stream (tests, embedding)
        data = stream.read()
        if data:
            yield data.encode()
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def reader() -> None:
        while True:
            try:
                chunk = os.read(fd, 64 * 1024)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except RuntimeError:  # the loop is gone: the command has ended
                return
            if not chunk:
                return

    threading.Thread(target=reader, name="exec-stdin", daemon=True).start()
    while chunk := await queue.get():
        yield chunk


@contextlib.contextmanager
def raw_terminal(fd: int | None) -> Iterator[None]:
    """The local terminal in raw mode (keys go to the remote one as typed), restored after."""
    if fd is None:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def run_exec(ctx: Context, args: argparse.Namespace) -> int:
    name = await pod_name(ctx, args.pod)
    command = split_exec_args(args)
    if not command:
        raise UsageError("you must specify at least one command for the container "
                         "(flotilla exec POD -- COMMAND [ARG...])")
    container = args.container or await default_container(ctx, name, args.quiet)
    fd = _fileno(ctx.stdin) if args.stdin else None
    use_tty = bool(args.tty and fd is not None and os.isatty(fd))
    if args.tty and not use_tty and not args.quiet:
        ctx.stderr.write("Unable to use a TTY - input is not a terminal or the right kind "
                         "of file\n")
    client = await ctx.client()
    stream = client.exec(ctx.namespace, name, command, container=container,
                         stdin=stdin_chunks(ctx.stdin) if args.stdin else None, tty=use_tty)
    with raw_terminal(fd if use_tty else None):
        async for which, data in stream:
            write_bytes(ctx.stdout if which == "stdout" else ctx.stderr, data)
    code = stream.exit_code or 0
    if code and not args.quiet:
        ctx.stderr.write(f"command terminated with exit code {code}\n")
    return code
