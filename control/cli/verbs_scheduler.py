"""`flotilla scheduler`: run the scheduler standalone, against any Flotilla server.

For running the scheduler elsewhere than the control plane (``flotilla server --disable
scheduler``), or several of them for availability with ``--leader-elect``: they share the
Lease kube-system/flotilla-scheduler and only its holder schedules. Losing the lease ends
the process with exit code 1 (as kube-scheduler does), to be restarted by its supervisor.

Owns only the command line and the process lifecycle (logging, signals, clean stop).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import uuid
from typing import TYPE_CHECKING, Any

from control import logs
from control.cli.errors import CliError, UsageError
from control.client import config as client_config

if TYPE_CHECKING:
    from control.cli.main import Context


def register(sub: Any) -> None:
    from control.cli.verbs_server import duration

    p = sub.add_parser(
        "scheduler",
        help="run the scheduler standalone (against --server)",
        description="Run the Flotilla scheduler in this process, as a client of the API "
                    "server named by --server (or the config file).")
    p.add_argument("--scheduler-config", metavar="FILE", default=None,
                   help="a KubeSchedulerConfiguration YAML file (profiles, plugins, weights)")
    p.add_argument("--metrics-listen", default=None, metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics")
    p.add_argument("--leader-elect", action="store_true",
                   help="elect one leader among several schedulers through a Lease")
    p.add_argument("--leader-elect-lease-duration", type=duration, default=15.0,
                   metavar="DURATION")
    p.add_argument("--leader-elect-renew-deadline", type=duration, default=10.0,
                   metavar="DURATION")
    p.add_argument("--leader-elect-retry-period", type=duration, default=2.0, metavar="DURATION")
    p.add_argument("--leader-elect-resource-name", default="flotilla-scheduler")
    p.add_argument("--leader-elect-resource-namespace", default="kube-system")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    p.set_defaults(handler=run_scheduler, configures_logging=True)


async def run_scheduler(ctx: Context, args: argparse.Namespace) -> int:
    from control.runtime.leaderelection import LeaderElector
    from control.runtime.metrics_http import MetricsServer
    from control.scheduler import config as configmod
    from control.scheduler.registry import ConfigError
    from control.scheduler.scheduler import Scheduler, load_config

    try:
        logs.configure(ctx.opts.log_level or "info", args.log_format)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        cfg: configmod.SchedulerConfig = load_config(args.scheduler_config)
    except ConfigError as e:
        raise CliError(str(e)) from None
    try:
        client_cfg = client_config.load(
            ctx.opts.server, ctx.opts.config,
            insecure_skip_tls_verify=ctx.opts.insecure_skip_tls_verify)
    except client_config.ConfigError as e:
        raise CliError(str(e)) from None
    if args.metrics_listen and not args.metrics_listen.rpartition(":")[2].isdigit():
        raise UsageError(f"--metrics-listen {args.metrics_listen!r}: expected HOST:PORT")
    identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def schedule_until_stopped() -> None:
        sched = Scheduler.connect(client_cfg.server, client_cfg.credentials, cfg,
                                  identity=identity)
        metrics = MetricsServer([sched.metrics.render])
        try:
            await sched.start()
            if args.metrics_listen:
                host, _, port = args.metrics_listen.rpartition(":")
                await metrics.start(host or "127.0.0.1", int(port))
            await stop.wait()
        finally:
            await metrics.stop()
            await sched.stop()

    try:
        if not args.leader_elect:
            await schedule_until_stopped()
            return 0
        client = await ctx.client()
        elector = LeaderElector(
            client, args.leader_elect_resource_namespace, args.leader_elect_resource_name,
            identity, lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period)
        lost = False

        def stopped_leading() -> None:
            nonlocal lost
            lost = not stop.is_set()

        runner = asyncio.ensure_future(elector.run(schedule_until_stopped, stopped_leading))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not runner.done():
            stop.set()  # leader: the scheduler stops and the lease is released
            if not elector.is_leader():
                runner.cancel()  # still waiting to be elected
        stopper.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            pass
        if lost:
            # as kube-scheduler: a scheduler that lost its lease exits rather than race
            # the new leader; its supervisor restarts it as a candidate
            raise CliError("leader election lost")
        return 0
    except TimeoutError as e:
        raise CliError(str(e)) from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
