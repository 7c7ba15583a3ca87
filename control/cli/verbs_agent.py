"""`flotilla agent`: parse the agent's flags (kubelet's names), run it, stop it on a signal.

Owns the agent's command line and process lifecycle: flags -> :class:`agent.config.
AgentOptions` (list flags parsed by ``agent.config``'s parsers, durations in Go syntax),
configure logging, :func:`agent.main.run_agent` until SIGINT/SIGTERM. The server address
comes from the global ``--server`` / ``--config`` / ``$FLOTILLA_CONFIG`` / admin.conf, as for
every other verb. The agent package is imported inside the handler so the other verbs do
not pay for it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control import logs
from control.cli.errors import CliError, UsageError
from control.cli.verbs_server import duration
from control.client import config as client_config

if TYPE_CHECKING:
    from control.cli.main import Context


def _flag_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from one of agent.config's parsers (ValueError -> usage error)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def register(sub: Any) -> None:
    from agent import config as agent_config

    p = sub.add_parser(
        "agent",
        help="run the node agent (registers this machine as a Node, heartbeats)",
        description="Run the Flotilla agent: join the cluster at --server as a Node.",
    )
    p.add_argument("--node-name", default=None,
                   help="the Node's name (default: this host's name, lower-cased)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="state directory (default: <flotilla data dir>/agent/<node name>)")
    p.add_argument("--node-ip", default=None,
                   help="InternalIP to advertise (default: the address that routes to the server)")
    p.add_argument("--labels", type=_flag_type(agent_config.parse_labels), default={},
                   metavar="K=V,...", help="labels to add to the Node")
    p.add_argument("--register-with-taints", type=_flag_type(agent_config.parse_taints),
                   default=[], metavar="KEY=VALUE:EFFECT,...",
                   help="taints the Node is registered with")
    p.add_argument("--max-pods", type=int, default=agent_config.DEFAULT_MAX_PODS,
                   help="pods this node can run (default %(default)s)")
    p.add_argument("--system-reserved", type=_flag_type(agent_config.parse_resource_list),
                   default={}, metavar="cpu=100m,memory=256Mi",
                   help="resources kept back from pods (allocatable = capacity - this)")
    p.add_argument("--node-lease-duration-seconds", type=int,
                   default=agent_config.DEFAULT_LEASE_DURATION_SECONDS,
                   help="the Lease's duration; renewed every quarter of it (default %(default)s)")
    p.add_argument("--node-status-update-frequency", type=duration,
                   default=agent_config.DEFAULT_NODE_STATUS_UPDATE_FREQUENCY,
                   metavar="DURATION", help="how often node status is posted (default 10s)")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    p.set_defaults(handler=run_agent_verb, configures_logging=True)


async def run_agent_verb(ctx: Context, args: argparse.Namespace) -> int:
    from agent import config as agent_config
    from agent.main import run_agent

    try:
        logs.configure(ctx.opts.log_level or "info", args.log_format)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        cfg = client_config.load(ctx.opts.server, ctx.opts.config)
    except client_config.ConfigError as e:
        raise CliError(str(e)) from None
    node_name = args.node_name or agent_config.default_node_name()
    options = agent_config.AgentOptions(
        server=cfg.server,
        node_name=node_name,
        data_dir=args.data_dir or agent_config.default_data_dir(node_name),
        node_ip=args.node_ip,
        labels=args.labels,
        taints=args.register_with_taints,
        max_pods=args.max_pods,
        system_reserved=args.system_reserved,
        node_lease_duration_seconds=args.node_lease_duration_seconds,
        node_status_update_frequency=args.node_status_update_frequency,
    )
    try:
        options.validate()
    except ValueError as e:
        raise UsageError(str(e)) from None
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        try:
            await run_agent(options, stop_requested)
        except OSError as e:  # the data dir cannot be created, for one
            raise CliError(str(e)) from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
