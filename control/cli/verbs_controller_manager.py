"""`flotilla controller-manager`: run the controllers standalone, against any Flotilla server.

For running the controllers elsewhere than the control plane (``flotilla server --disable
controllers``), or several controller managers for availability: with ``--leader-elect``
(the default, as kube-controller-manager) they share the Lease
kube-system/flotilla-controller-manager and only its holder runs controllers.

Lifecycle: candidates wait for leadership (``control.runtime.leaderelection``); the leader
builds a fresh ``ControllerManager`` on its own channel, syncs its caches and starts the
controllers. Losing the lease cancels that work: the manager is stopped (controllers, then
informers) before the elector returns, and the process stands for election again with a
new manager, so nothing of the old term survives into the next. SIGINT/SIGTERM stop the
controllers, release the lease (a standby takes over at once) and exit 0. A manager that
fails to start (caches not synced in time) ends the process with exit code 1.

``--controllers`` has kube-controller-manager's syntax: ``*`` (every controller), ``NAME``
(enable), ``-NAME`` (disable). The node-lifecycle flags are `flotilla server`'s (parsed by
the same helpers) and become the manager's ``NodeLifecycleOptions``. The toleration-seconds flags are not here:
they are admission settings, which live in the API server.

Concurrency contract: one event loop; the election (or the unelected manager) is one task,
the signal handlers only set an event, and the handler cancels and awaits that task.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import socket
import uuid
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control import logs
from control.cli.errors import CliError, UsageError
from control.client import config as client_config

if TYPE_CHECKING:
    from control.cli.main import Context

DEFAULT_LEASE_NAME = "flotilla-controller-manager"
DEFAULT_LEASE_NAMESPACE = "kube-system"
# The node-lifecycle controller's flags among `flotilla server`'s.
NODE_LIFECYCLE_FLAGS = (
    "--node-monitor-grace-period",
    "--pod-eviction-timeout",
    "--node-eviction-rate",
    "--secondary-node-eviction-rate",
)


def _bool(text: str) -> bool:
    """Go's flag booleans: ``--leader-elect=false``."""
    value = text.strip().lower()
    if value in ("true", "t", "1", "yes"):
        return True
    if value in ("false", "f", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (true or false)")


def _node_flags() -> list[tuple[str, str, Callable[[str], Any], str]]:
    """(flag, dest, type, metavar) of the node-lifecycle flags, from verbs_server's tables."""
    from control.cli import verbs_server as server

    tables: list[tuple[dict[str, str], Callable[[str], Any], str]] = [
        (server._DURATION_FLAGS, server.duration, "DURATION"),
        (server._INT_FLAGS, int, "SECONDS"),
        (server._FLOAT_FLAGS, float, "RATE"),
    ]
    out = []
    for flag in NODE_LIFECYCLE_FLAGS:
        for table, kind, metavar in tables:
            if flag in table:
                out.append((flag, table[flag], kind, metavar))
    return out


def register(sub: Any) -> None:
    from control.cli.verbs_server import add_ipam_flags, duration

    p = sub.add_parser(
        "controller-manager",
        help="run the controllers standalone (against --server)",
        description="Run the Flotilla controllers in this process, as a client of the API "
                    "server named by --server (or the config file).")
    p.add_argument("--leader-elect", type=_bool, nargs="?", const=True, default=True,
                   metavar="BOOL",
                   help="elect one leader among several controller managers through a "
                        "Lease (default true)")
    p.add_argument("--leader-elect-lease-duration", type=duration, default=15.0,
                   metavar="DURATION")
    p.add_argument("--leader-elect-renew-deadline", type=duration, default=10.0,
                   metavar="DURATION")
    p.add_argument("--leader-elect-retry-period", type=duration, default=2.0,
                   metavar="DURATION")
    p.add_argument("--leader-elect-resource-name", default=DEFAULT_LEASE_NAME)
    p.add_argument("--leader-elect-resource-namespace", default=DEFAULT_LEASE_NAMESPACE)
    p.add_argument("--controllers", default="*", metavar="LIST",
                   help="controllers to run: '*' for all, 'NAME' to enable, '-NAME' to "
                        "disable (comma list; default '*')")
    for flag, dest, kind, metavar in _node_flags():
        p.add_argument(flag, dest=dest, type=kind, default=None, metavar=metavar)
    add_ipam_flags(p)
    p.add_argument("--cluster-signing-cert-file", type=Path, default=None, metavar="FILE",
                   help="the cluster CA's certificate, to sign approved "
                        "CertificateSigningRequests (the server's DATA_DIR/pki/ca.crt)")
    p.add_argument("--cluster-signing-key-file", type=Path, default=None, metavar="FILE",
                   help="the cluster CA's key (DATA_DIR/pki/ca.key)")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    p.set_defaults(handler=run_controller_manager, configures_logging=True)


def disabled_controllers(spec: str, known: Iterable[str]) -> set[str]:
    """The controllers *not* to run for a ``--controllers`` value (kube's syntax)."""
    names = set(known)
    enabled: set[str] = set()
    disabled: set[str] = set()
    star = False
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item == "*":
            star = True
            continue
        name = item[1:] if item.startswith("-") else item
        if name not in names:
            raise UsageError(f"--controllers: unknown controller {name!r} "
                             f"(known: {', '.join(sorted(names))})")
        (disabled if item.startswith("-") else enabled).add(name)
    if star:
        enabled |= names
    return names - (enabled - disabled)


def node_lifecycle_options(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The node-lifecycle controller's settings from the flags given (Kubernetes' defaults
    for the rest), and the flags NodeLifecycleOptions has no field for."""
    from control.controllers.node_lifecycle_util import NodeLifecycleOptions

    fields = {f.name for f in dataclasses.fields(NodeLifecycleOptions)}
    given = {(flag, dest): getattr(args, dest) for flag, dest, _, _ in _node_flags()
             if getattr(args, dest) is not None}
    options = NodeLifecycleOptions(**{d: v for (_, d), v in given.items() if d in fields})
    ignored = sorted(flag for (flag, dest) in given if dest not in fields)
    return options, ignored


async def run_controller_manager(ctx: Context, args: argparse.Namespace) -> int:
    from control.cli.verbs_server import ipam_options
    from control.controllers.manager import CONTROLLERS, ControllerManager
    from control.runtime.leaderelection import LeaderElector

    try:
        logs.configure(ctx.opts.log_level or "info", args.log_format)
    except ValueError as e:
        raise UsageError(str(e)) from None
    import structlog

    log = structlog.get_logger(component="controller-manager")
    disable = disabled_controllers(args.controllers, CONTROLLERS)
    node_lifecycle, ignored = node_lifecycle_options(args)
    ipam = ipam_options(args)
    signer = signing_ca(args.cluster_signing_cert_file, args.cluster_signing_key_file)
    if ignored:
        log.warning("controller manager options not supported yet, ignored", options=ignored)
    try:
        cfg = client_config.load(ctx.opts.server, ctx.opts.config,
                                 insecure_skip_tls_verify=ctx.opts.insecure_skip_tls_verify)
    except client_config.ConfigError as e:
        raise CliError(str(e)) from None

    async def run_controllers() -> None:
        """One term: a fresh manager, started, kept until cancelled, then stopped."""
        manager = ControllerManager.connect(cfg.server, cfg.credentials, disable=disable,
                                            node_lifecycle=node_lifecycle, signer=signer,
                                            **ipam)
        try:
            await manager.start()
            await asyncio.Event().wait()
        finally:
            await manager.stop()

    main: Callable[[], Coroutine[Any, Any, None]] = run_controllers
    if args.leader_elect:
        identity = f"{socket.gethostname()}_{uuid.uuid4()}"
        try:
            elector = LeaderElector(
                await ctx.client(), args.leader_elect_resource_namespace,
                args.leader_elect_resource_name, identity,
                lease_duration=args.leader_elect_lease_duration,
                renew_deadline=args.leader_elect_renew_deadline,
                retry_period=args.leader_elect_retry_period)
        except ValueError as e:
            raise UsageError(f"leader election: {e}") from None

        def stopped_leading() -> None:
            log.info("not leading; controllers stopped", identity=identity)

        async def campaign() -> None:
            log.info("standing for election", identity=identity,
                     lease=f"{elector.namespace}/{elector.name}")
            while True:  # run() returns when leadership is lost: stand again
                await elector.run(run_controllers, stopped_leading)

        main = campaign

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        runner = asyncio.create_task(main(), name="controller-manager")
        stopper = asyncio.create_task(stop.wait(), name="controller-manager-signal")
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        runner.cancel()  # stops the controllers, then releases the lease
        try:
            await runner
        except asyncio.CancelledError:
            pass
        except TimeoutError as e:
            raise CliError(str(e)) from None
        log.info("controller manager stopped")
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def signing_ca(cert_file: Path | None, key_file: Path | None) -> Any:
    """The CA that signs CSRs (kube-controller-manager's --cluster-signing-*-file); None
    when not given: requests are approved but left unsigned."""
    if cert_file is None and key_file is None:
        return None
    if cert_file is None or key_file is None:
        raise UsageError("--cluster-signing-cert-file and --cluster-signing-key-file go "
                         "together")
    from control.client import pki

    try:
        return pki.ClusterCA(pki.load_cert(cert_file.read_bytes()),
                             pki.load_key(key_file.read_bytes()))
    except OSError as e:
        raise CliError(f"cannot read the cluster signing files: {e}") from None
    except pki.PkiError as e:
        raise CliError(f"--cluster-signing-cert-file/--cluster-signing-key-file: {e}") from None
