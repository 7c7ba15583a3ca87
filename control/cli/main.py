"""`flotilla`: the command-line entry point — global flags, verb dispatch, exit codes.

Owns what every verb shares:
- global flags (``--server``, ``--config``, ``-n/--namespace``, ``--log-level``, ``--debug``,
  ``--request-timeout``, ``--insecure-skip-tls-verify``, ``--as``, ``--as-group``,
  ``--token``) accepted before or after the verb (:func:`split_globals` takes them
  out of argv wherever they are, as kubectl's pflag does);
- :class:`Context`: the namespace in effect, stdout/stderr, and the lazily opened
  ``ApiClient`` (TLS with the config's credentials; one short connect deadline, so an
  unreachable server or a certificate problem is one clear line within seconds);
- object references (``TYPE NAME...``, ``TYPE/NAME...``) via :func:`parse_refs`;
- running the verb on an event loop (uvloop for the components, when installed) and
  turning every failure into ``error: ...`` on stderr with exit code 1 — a traceback only
  with ``--debug``.

The verbs themselves live in ``verbs_*.py``, one module per group; each has
``register(subparsers)``, and its handlers are ``(ctx, args) -> exit code``, as a coroutine
function or as a plain function that returns either the code or a coroutine for it.

A CLI call is a short process, so what it imports is most of what it costs. This module
imports neither grpc nor protobuf nor YAML: :data:`VERB_MODULES` says which module owns a
verb, and only that one is imported and registered (all of them for ``--help`` or an
unknown verb); the client, its config and the event loop are imported when first used; a
plain-function handler that needs no server (``version --client``) runs without asyncio.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from control.api import kinds
from control.cli.errors import CliError, UsageError, describe_exception

if TYPE_CHECKING:
    from control.api import errors as api_errors
    from control.client.client import ApiClient
    from control.client.config import ClientConfig

# How long the first call waits for a connection: a stopped server must fail fast, not hang.
CONNECT_TIMEOUT = 3.0
DEFAULT_REQUEST_TIMEOUT = 30.0

Handler = Callable[["Context", argparse.Namespace], Awaitable[int] | int]

# Global flags that take a value, and their destination in GlobalOptions.
_VALUE_FLAGS = {
    "--server": "server",
    "-s": "server",
    "--config": "config",
    "--kubeconfig": "config",
    "-n": "namespace",
    "--namespace": "namespace",
    "--log-level": "log_level",
    "--request-timeout": "request_timeout",
    "--as": "as_user",
    "--token": "token",
}
# Global flags that may be given more than once (each value appended).
_LIST_FLAGS = {"--as-group": "as_groups"}
_BOOL_FLAGS = {"--debug": "debug", "--insecure-skip-tls-verify": "insecure_skip_tls_verify"}


@dataclass
class GlobalOptions:
    server: str | None = None
    config: str | None = None
    namespace: str | None = None
    log_level: str | None = None
    debug: bool = False
    request_timeout: str | None = None
    insecure_skip_tls_verify: bool = False
    as_user: str | None = None  # impersonate this user (kubectl's --as)
    as_groups: list[str] = field(default_factory=list)  # and these groups (--as-group)
    token: str | None = None  # a bearer token instead of the config's credentials (--token)


def split_globals(argv: Sequence[str]) -> tuple[GlobalOptions, list[str]]:
    """Take the global flags out of ``argv`` wherever they stand; returns (globals, rest).

    Accepts ``--flag value``, ``--flag=value`` and ``-nVALUE``; stops at ``--``.
    """
    opts = GlobalOptions()
    rest: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        flag, eq, inline = arg.partition("=")
        if flag in _BOOL_FLAGS:
            value = inline.lower() not in ("false", "0", "no") if eq else True
            setattr(opts, _BOOL_FLAGS[flag], value)
            i += 1
            continue
        if flag in _VALUE_FLAGS or flag in _LIST_FLAGS:
            if eq:
                text, i = inline, i + 1
            elif i + 1 >= len(args):
                raise UsageError(f"flag needs an argument: {flag}")
            else:
                text, i = args[i + 1], i + 2
            if flag in _LIST_FLAGS:
                getattr(opts, _LIST_FLAGS[flag]).append(text)
            else:
                setattr(opts, _VALUE_FLAGS[flag], text)
            continue
        if arg.startswith("-n") and not arg.startswith("--") and len(arg) > 2:
            opts.namespace = arg[2:]  # "-nkube-system", pflag's short form
            i += 1
            continue
        rest.append(arg)
        i += 1
    return opts, rest


def parse_timeout(text: str, flag: str) -> float | None:
    """kubectl's timeouts: a Go duration ("30s", "5m") or bare seconds; 0 means no limit."""
    from control.api import timeutil

    text = text.strip()
    try:
        seconds = (
            float(text) if text.replace(".", "", 1).isdigit() else timeutil.parse_duration(text)
        )
    except ValueError as e:
        raise UsageError(f"invalid {flag} {text!r}: {e}") from None
    if seconds < 0:
        raise UsageError(f"invalid {flag} {text!r}: must not be negative")
    return seconds or None


class Context:
    """What a verb runs with: options, namespace, output streams and the API client."""

    def __init__(
        self,
        opts: GlobalOptions,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        stdin: TextIO | None = None,
    ) -> None:
        self.opts = opts
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.stdin = stdin or sys.stdin
        self._client: ApiClient | None = None
        self.request_timeout = (
            parse_timeout(opts.request_timeout, "--request-timeout")
            if opts.request_timeout is not None
            else DEFAULT_REQUEST_TIMEOUT
        )

    @property
    def namespace(self) -> str:
        return self.opts.namespace or "default"

    @property
    def explicit_namespace(self) -> bool:
        return bool(self.opts.namespace)

    def out(self, line: str) -> None:
        print(line, file=self.stdout)

    def error(self, message: str) -> None:
        """One ``error: ...`` line (or block) on stderr; the verb goes on with other objects."""
        print(f"error: {message}", file=self.stderr)

    def warn(self, message: str) -> None:
        print(f"Warning: {message}", file=self.stderr)

    async def client(self) -> ApiClient:
        """The API client, connected: fails within CONNECT_TIMEOUT naming the address."""
        if self._client is not None:
            return self._client
        import asyncio

        from control.client.channel import open_channel
        from control.client.client import ApiClient
        from control.client.tls import TlsError, diagnose, trust_whatever_is_presented

        cfg = self.client_config()
        if cfg.credentials.insecure_skip_verify:
            self.warn("--insecure-skip-tls-verify: the server's certificate is not checked; "
                      "anyone on the path can read and change this session")
        try:
            creds = await asyncio.to_thread(trust_whatever_is_presented, cfg.server,
                                            cfg.credentials)
        except TlsError as e:
            raise CliError(str(e)) from None
        channel = open_channel(cfg.server, creds)
        try:
            await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT)
        except TimeoutError:
            await channel.close(None)
            # a TLS failure looks like silence to gRPC: one handshake of our own says why
            why = await asyncio.to_thread(diagnose, cfg.server, cfg.credentials)
            if why is not None:
                raise CliError(f"certificate error: {why}") from None
            origin = "" if cfg.source in ("--server", "default") else f" (from {cfg.source})"
            raise CliError(
                f"cannot connect to the Flotilla server at {cfg.server}{origin}: no answer "
                f"within {CONNECT_TIMEOUT:g}s - is `flotilla server` running?"
            ) from None
        self._client = ApiClient(channel, cfg.server, timeout=self.request_timeout)
        self._client.on_warning = self.warn  # kubectl's "Warning: ..." lines
        return self._client

    def client_config(self) -> ClientConfig:
        from control.client import config as client_config

        try:
            cfg = client_config.load(
                self.opts.server, self.opts.config,
                insecure_skip_tls_verify=self.opts.insecure_skip_tls_verify)
        except client_config.ConfigError as e:
            raise CliError(str(e)) from None
        if self.opts.token is not None:
            cfg = with_token(cfg, self.opts.token, explicit_server=bool(self.opts.server))
        if self.opts.as_groups and not self.opts.as_user:
            raise UsageError("requesting groups (--as-group) without impersonating a user: "
                             "--as USER is required")
        if self.opts.as_user:
            cfg = replace(cfg, credentials=cfg.credentials.impersonating(
                self.opts.as_user, tuple(self.opts.as_groups)))
        return cfg

    async def close(self) -> None:
        if self._client is not None:
            await self._client.channel.close(None)
            self._client = None


def with_token(cfg: ClientConfig, token: str, *, explicit_server: bool) -> ClientConfig:
    """``--token``: the config's CA and this bearer token, no client certificate (it would
    authenticate first); dialled at the config's supervisor port, the one that takes
    tokens (the API port requires a certificate), unless ``--server`` names one."""
    if not token.strip():
        raise UsageError("--token may not be empty")
    creds = replace(cfg.credentials, cert_pem=None, key_pem=None, token=token.strip())
    server = cfg.server if explicit_server or not cfg.supervisor else cfg.supervisor
    return replace(cfg, server=server, credentials=creds)


@dataclass(frozen=True)
class ObjectRef:
    info: kinds.KindInfo
    name: str | None  # None: every object of the kind (``get pods``)


def resolve_kind(name: str) -> kinds.KindInfo:
    try:
        return kinds.resolve(name)
    except KeyError:
        raise CliError(f'the server doesn\'t have a resource type "{name}"') from None


# kubectl's "all" category (what `get all` lists), among the kinds Flotilla serves
CATEGORY_ALL = (
    "pods",
    "replicationcontrollers",
    "services",
    "daemonsets",
    "deployments",
    "replicasets",
    "statefulsets",
    "jobs",
    "cronjobs",
)


def parse_refs(
    args: Sequence[str], *, names_required: bool = True, allow_many_types: bool = False
) -> list[ObjectRef]:
    """kubectl's object arguments: ``TYPE NAME...`` or ``TYPE/NAME...`` (not mixed).

    With ``allow_many_types`` the TYPE may be a comma list (``get pods,svc``). Without
    names, one ref per type with ``name=None`` (allowed unless ``names_required``).
    """
    if not args:
        raise UsageError("you must specify the type of resource and a name, e.g. TYPE NAME")
    if "/" in args[0]:
        refs: list[ObjectRef] = []
        for arg in args:
            kind, sep, name = arg.partition("/")
            if not sep or not kind or not name:
                raise UsageError(
                    f"there is no need to specify a resource type as a separate argument when "
                    f"passing arguments in resource/name form (e.g. 'flotilla get "
                    f"resource/<resource_name>' instead of 'flotilla get resource "
                    f"resource/<resource_name>'): {arg!r}"
                )
            refs.append(ObjectRef(resolve_kind(kind), name))
        return refs
    types = args[0].split(",") if allow_many_types else [args[0]]
    if any(not t for t in types):
        raise UsageError(f"invalid resource type {args[0]!r}")
    infos: list[kinds.KindInfo] = []
    for t in types:
        if t == "all" and allow_many_types:
            infos.extend(kinds.by_resource(r) for r in CATEGORY_ALL)
        else:
            infos.append(resolve_kind(t))
    names = list(args[1:])
    for n in names:
        if "/" in n:
            raise UsageError(
                f"there is no need to specify a resource type as a separate argument when "
                f"passing arguments in resource/name form: {n!r}"
            )
    if not names:
        if names_required:
            raise UsageError(f"you must specify the name of the {infos[0].singular} (TYPE NAME)")
        return [ObjectRef(info, None) for info in infos]
    return [ObjectRef(info, n) for info in infos for n in names]


def ref_name(info: kinds.KindInfo, name: str) -> str:
    """``deployment.apps/web``, ``pod/x``: how kubectl names an object in results."""
    kind = info.kind.lower() + (f".{info.group}" if info.group else "")
    return f"{kind}/{name}"


def quoted_name(info: kinds.KindInfo, name: str) -> str:
    """``deployment.apps "web"``: kubectl's form in delete results and errors."""
    kind = info.kind.lower() + (f".{info.group}" if info.group else "")
    return f'{kind} "{name}"'


def namespace_for(ctx: Context, info: kinds.KindInfo) -> str:
    return ctx.namespace if info.namespaced else ""


def api_error_text(exc: api_errors.ApiError, info: kinds.KindInfo, name: str) -> str:
    """kubectl's wording of a refused request about one object."""
    from control.api import errors as api_errors

    if isinstance(exc, api_errors.NotFound):
        return f'{info.group_resource} "{name}" not found'
    return describe_exception(exc)


def _terminal_width() -> int:
    """shutil.get_terminal_size()'s columns without importing shutil (and with it bz2,
    lzma and zlib: a tenth of ``version --client``): $COLUMNS, the terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help as argparse formats it (descriptions kept as written), sized without shutil."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_width() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 1, "error: ...") instead of exiting with 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\nSee '{self.prog} --help' for usage.")


GLOBAL_HELP = """global flags (before or after the verb):
  --server HOST:PORT      the API server (default: from the config)
  --config FILE           client config file (default: $FLOTILLA_CONFIG, then the data
                          dir's admin.conf)
  -n, --namespace NS      namespace for the request (default "default")
  --request-timeout D     per-request timeout ("30s", "0" for none)
  --log-level LEVEL       debug|info|warning|error
  --debug                 show tracebacks
  --insecure-skip-tls-verify
                          do not check the server's certificate (debugging only)
  --as USER               act as USER (impersonation: needs the impersonate verb)
  --as-group GROUP        act as a member of GROUP too (repeatable; needs --as)
  --token TOKEN           authenticate with this bearer token (e.g. from `create token`)
                          instead of the config's certificate; sent to the config's
                          supervisor port, the one that takes tokens, unless --server
"""


# Which module registers each verb, in the order ``--help`` lists them.
VERB_MODULES: dict[str, str] = {
    "server": "verbs_server",
    "scheduler": "verbs_scheduler",
    "controller-manager": "verbs_controller_manager",
    "agent": "verbs_agent",
    "apply": "verbs_apply",
    "create": "verbs_apply",
    "diff": "verbs_apply",
    "get": "verbs_get",
    "describe": "verbs_get",
    "delete": "verbs_delete",
    "label": "verbs_meta",
    "annotate": "verbs_meta",
    "patch": "verbs_meta",
    "scale": "verbs_meta",
    "cordon": "verbs_meta",
    "uncordon": "verbs_meta",
    "drain": "verbs_drain",
    "wait": "verbs_wait",
    "logs": "verbs_logs",
    "exec": "verbs_logs",
    "rollout": "verbs_rollout",
    "api-resources": "verbs_misc",
    "version": "verbs_misc",
    "history": "verbs_history",
    "image": "verbs_image",
    "images": "verbs_image",
    "token": "verbs_token",
    "certificate": "verbs_token",
    "config": "verbs_token",
    "auth": "verbs_auth",
    "secrets": "verbs_secrets",
}


# The components: they run on uvloop when it is installed. A one-shot client call does not,
# as importing uvloop costs it more than the faster loop saves.
LONG_RUNNING = frozenset({"server", "scheduler", "controller-manager", "agent"})


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``verb`` alone when it is a known verb (only its module is imported),
    else for every verb."""
    if verb in VERB_MODULES:
        names = [VERB_MODULES[verb]]
    else:
        names = list(dict.fromkeys(VERB_MODULES.values()))
    parser = _Parser(
        prog="flotilla",
        description="Flotilla: a Kubernetes-style cluster manager.",
        epilog=GLOBAL_HELP,
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in names:
        # Imported here: the verb modules import helpers from this one.
        importlib.import_module(f"control.cli.{name}").register(sub)
    return parser


def _run(handler: Handler, ctx: Context, args: argparse.Namespace) -> int:
    result = handler(ctx, args)
    if isinstance(result, int):
        return result
    import asyncio

    async def go(pending: Awaitable[int]) -> int:
        try:
            return await pending
        finally:
            await ctx.close()

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.verb in LONG_RUNNING:
        try:
            import uvloop  # optional: 10-15 % faster gRPC

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(go(result))


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run one command; returns the exit code (0 ok, 1 error, 130 interrupted)."""
    err = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        opts, rest = split_globals(argv)
        debug = opts.debug
        args = build_parser(rest[0] if rest else None).parse_args(rest)
        handler: Handler = args.handler
        if getattr(args, "configures_logging", False) is False:
            _configure_logging(opts.log_level, debug)
        ctx = Context(opts, stdout=stdout, stderr=stderr, stdin=stdin)
        return _run(handler, ctx, args)
    except CliError as e:
        print(f"error: {e.message}", file=err)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `flotilla get pods | head`: the reader left; not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as e:
        import traceback

        from control.api import errors as api_errors

        if debug:
            traceback.print_exc(file=err)
        if isinstance(e, api_errors.ApiError):
            print(f"error: {describe_exception(e)}", file=err)
        elif not debug:
            print(f"error: {describe_exception(e)} (run with --debug for details)", file=err)
        return 1


def _configure_logging(level: str | None, debug: bool) -> None:
    """Logging for a client verb: warnings and errors on stderr, more when asked.

    structlog is set up only when asked for more than warnings or when the verb's modules
    use it already; otherwise the standard library's last-resort handler prints warnings
    and errors to stderr, as the full set-up would, without importing structlog.
    """
    level = level or ("debug" if debug else "warning")
    if level.lower() == "warning" and "structlog" not in sys.modules:
        return
    from control import logs

    try:
        logs.configure(level, "auto")
    except ValueError as e:
        raise UsageError(str(e)) from None


if __name__ == "__main__":
    sys.exit(main())
