"""`flotilla agent`: parse the agent's flags (kubelet's names), run it, stop it on a signal.

Owns the agent's command line and process lifecycle: flags -> :class:`agent.config.
AgentOptions` (list flags parsed by ``agent.config``'s parsers, durations in Go syntax),
configure logging, :func:`agent.main.run_agent` until SIGINT/SIGTERM. The agent's
identity comes from ``--token`` (a join through ``--server``, the supervisor port; the
certificate is then kept in the data dir and reused), or from a config file's client
certificate (``--config``, ``$FLOTILLA_CONFIG``, admin.conf, as for every other verb). The agent package is imported inside the handler so the other verbs do
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
    from agent.config import AgentOptions
    from control.cli.main import Context
    from control.client.tls import Credentials


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
    # Durations in Go syntax ("10s", "1m30s"; a bare number is seconds). String defaults
    # go through ``type`` too, so --help shows them as a user would write them.
    p.add_argument("--node-lease-renew-interval", type=duration, default=None,
                   metavar="DURATION",
                   help="how often the node's Lease is renewed (default: a quarter of "
                        "--node-lease-duration-seconds, 10s)")
    p.add_argument("--node-status-update-frequency", type=duration, default="10s",
                   metavar="DURATION",
                   help="how often node status is posted (default %(default)s)")
    p.add_argument("--sync-frequency", type=duration, default="1m", metavar="DURATION",
                   help="every pod is resynced at least this often (default %(default)s)")
    p.add_argument("--runtime-relist-period", type=duration, default="1s",
                   metavar="DURATION",
                   help="how often the container runtime is relisted to notice container "
                        "exits (kubelet's PLEG period; default %(default)s)")
    p.add_argument("--crash-loop-backoff-initial", type=duration, default="10s",
                   metavar="DURATION",
                   help="first restart delay of a crash-looping container; doubles on each "
                        "crash (default %(default)s)")
    p.add_argument("--crash-loop-backoff-max", type=duration, default="5m",
                   metavar="DURATION",
                   help="longest restart delay of a crash-looping container "
                        "(default %(default)s)")
    p.add_argument("--volume-refresh-period", type=duration, default="1m",
                   metavar="DURATION",
                   help="how often configMap, secret, downwardAPI and projected volumes "
                        "are re-projected (default %(default)s)")
    p.add_argument("--stop-pods-after-disconnect", type=duration, default=None,
                   metavar="DURATION",
                   help="stop the containers of every pod of this node once the agent has "
                        "not reached the API server for this long, so a replacement "
                        "elsewhere never runs beside them (pods choose their own with the "
                        "annotation flotilla.io/stop-after-disconnect; default: only those)")
    p.add_argument("--volume-dir", type=Path, default=None, metavar="DIR",
                   help="where this node's local-path PersistentVolumes are kept, one "
                        "directory each (default: DATA_DIR/storage)")
    p.add_argument("--registry-mirror", action="append", default=[],
                   metavar="DOMAIN=HOST[,HOST]",
                   help="registries that stand in for DOMAIN's (tried in order; DOMAIN "
                        "itself is then never contacted); repeatable")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="a registry reached over plain HTTP; repeatable")
    p.add_argument("--default-runtime-handler", choices=agent_config.RUNTIME_HANDLERS,
                   default=agent_config.DEFAULT_RUNTIME_HANDLER,
                   help="how pods naming no RuntimeClass run: in their image, or on the "
                        "host's filesystem (default %(default)s)")
    p.add_argument("--image-gc-high-threshold", type=int, default=85, metavar="PERCENT",
                   help="disk usage at which unused images are removed (default %(default)s)")
    p.add_argument("--image-gc-low-threshold", type=int, default=80, metavar="PERCENT",
                   help="disk usage image GC brings usage back under (default %(default)s)")
    p.add_argument("--daemon-port", type=int, default=0, metavar="PORT",
                   help="the agent's own port for logs and exec, advertised in the Node's "
                        "status (default %(default)s: any free port)")
    p.add_argument("--pod-network", choices=agent_config.POD_NETWORK_MODES, default="auto",
                   help="bridge: a network namespace and an IP per pod (needs root); host: "
                        "every pod on this machine's network; auto: bridge when root "
                        "(default %(default)s)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", metavar="CIDR",
                   help="the cluster's pod range (never masqueraded; default %(default)s)")
    p.add_argument("--cluster-dns", action="append", default=None, metavar="IP",
                   help="the cluster DNS server pods with dnsPolicy ClusterFirst use; "
                        f"repeatable (default {agent_config.DEFAULT_CLUSTER_DNS})")
    p.add_argument("--cluster-domain", default=agent_config.DEFAULT_CLUSTER_DOMAIN,
                   metavar="DOMAIN",
                   help="the cluster's DNS domain, in pods' search paths (default "
                        "%(default)s)")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf", metavar="PATH",
                   help="the node's resolver configuration, for pods with dnsPolicy "
                        "Default and the search domains of the others (default %(default)s)")
    p.add_argument("--service-cidr", default="10.96.0.0/12", metavar="CIDR",
                   help="the Service range (default %(default)s)")
    p.add_argument("--proxy-mode", choices=agent_config.PROXY_MODES, default="auto",
                   help="the service proxy: nftables (root; the flotilla-proxy table), none, "
                        "or auto: nftables when pods have their own network (default "
                        "%(default)s)")
    p.add_argument("--proxy-sync-period", type=float, default=30.0, metavar="SECONDS",
                   help="full resync of the proxy's rules at least this often "
                        "(default %(default)s)")
    p.add_argument("--cleanup", action="store_true",
                   help="remove every network object this agent created (bridge, veths, "
                        "routes, nftables table, leases, pods' network and IPC namespaces "
                        "and /dev/shm mounts) and exit")
    p.add_argument("--metrics-listen", default=None, metavar="HOST:PORT",
                   help="serve the kubelet's Prometheus metrics at http://HOST:PORT/metrics")
    p.add_argument("--daemon-listen", default=None, metavar="ADDRESS",
                   help="the address the agent's port binds (default: the node's "
                        "InternalIP; never every interface)")
    p.add_argument("--token", default=None,
                   help="join token (K10<ca hash>::<id>.<secret>, from `flotilla token "
                        "create` or the server's DATA_DIR/token); --server is then the "
                        "server's supervisor port (HOST:9345)")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="read the join token from FILE")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    p.set_defaults(handler=run_agent_verb, configures_logging=True)


def options_from_args(args: argparse.Namespace, server: str,
                      credentials: Credentials | None = None,
                      token: str | None = None) -> AgentOptions:
    """The agent's options from its parsed flags (not validated yet)."""
    from agent import config as agent_config

    node_name = args.node_name or agent_config.default_node_name()
    options = agent_config.AgentOptions(
        server=server,
        node_name=node_name,
        data_dir=args.data_dir or agent_config.default_data_dir(node_name),
        node_ip=args.node_ip,
        labels=args.labels,
        taints=args.register_with_taints,
        max_pods=args.max_pods,
        system_reserved=args.system_reserved,
        node_lease_duration_seconds=args.node_lease_duration_seconds,
        node_status_update_frequency=args.node_status_update_frequency,
        lease_renew_interval=args.node_lease_renew_interval,
        sync_frequency=args.sync_frequency,
        runtime_relist_period=args.runtime_relist_period,
        crash_loop_backoff_initial=args.crash_loop_backoff_initial,
        crash_loop_backoff_max=args.crash_loop_backoff_max,
        volume_refresh_period=args.volume_refresh_period,
        stop_pods_after_disconnect=args.stop_pods_after_disconnect,
        volume_dir=args.volume_dir,
        daemon_port=args.daemon_port,
        pod_network=args.pod_network,
        cluster_cidr=args.cluster_cidr,
        service_cidr=args.service_cidr,
        proxy_mode=args.proxy_mode,
        proxy_sync_period=args.proxy_sync_period,
        cluster_dns=args.cluster_dns or [agent_config.DEFAULT_CLUSTER_DNS],
        cluster_domain=args.cluster_domain,
        resolv_conf=Path(args.resolv_conf),
        insecure_registries=list(args.insecure_registry),
        default_runtime_handler=args.default_runtime_handler,
        image_gc_high_threshold=args.image_gc_high_threshold,
        image_gc_low_threshold=args.image_gc_low_threshold,
        metrics_listen=args.metrics_listen,
        daemon_listen=args.daemon_listen,
        credentials=credentials,
        token=token,
    )
    for text in args.registry_mirror:
        try:
            domain, hosts = agent_config.parse_registry_mirror(text)
        except ValueError as e:
            raise UsageError(str(e)) from None
        options.registry_mirrors.setdefault(domain, []).extend(hosts)
    return options


async def run_agent_verb(ctx: Context, args: argparse.Namespace) -> int:
    from agent.certs import JoinError
    from agent.main import cleanup_network, run_agent

    try:
        logs.configure(ctx.opts.log_level or "info", args.log_format)
    except ValueError as e:
        raise UsageError(str(e)) from None
    # `--token` is also the global bearer-token flag, which takes it out of argv wherever
    # it stands: for the agent it is the join token
    token = args.token or ctx.opts.token
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as e:
            raise CliError(f"--token-file {args.token_file}: {e.strerror or e}") from None
    if args.cleanup:  # cleaning up needs no cluster
        options = options_from_args(args, "")
    elif token:
        # joining: --server is the address to join through, nothing else is needed
        if not ctx.opts.server:
            raise UsageError("--token needs --server HOST:PORT (the server's supervisor "
                             "port, 9345 by default)")
        options = options_from_args(args, ctx.opts.server, token=token)
    else:
        # an identity from a config file (kubelet's --kubeconfig), or an earlier join
        try:
            cfg = client_config.load(ctx.opts.server, ctx.opts.config)
        except client_config.ConfigError as e:
            raise CliError(str(e)) from None
        creds = cfg.credentials if cfg.credentials.cert_pem else None
        options = options_from_args(args, cfg.server, credentials=creds)
    try:
        options.validate()
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.cleanup:
        await cleanup_network(options)
        return 0
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        try:
            await run_agent(options, stop_requested)
        except (OSError, JoinError) as e:  # a refused join; the data dir, for one
            raise CliError(str(e)) from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
