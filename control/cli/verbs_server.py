"""`flotilla server`: parse the control plane's flags, run it, stop it cleanly on a signal.

Owns the command line of the control plane (Kubernetes' flag names and Go-style durations
for the scheduler, controller-manager and admission settings of later issues) and the
process lifecycle: configure logging, ``ControlPlane.start()`` (which writes
``DIR/admin.conf``), wait until SIGINT/SIGTERM, ``stop()``. Options that ServerOptions does
not have yet are kept in ``extra`` and handed over when the fields appear.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control import logs
from control.api import names, timeutil
from control.cli.errors import CliError, UsageError
from control.client.config import DEFAULT_LISTEN, default_data_dir

if TYPE_CHECKING:
    from control.cli.main import Context

# flag -> (ServerOptions field, parser); durations become seconds, Kubernetes' defaults are
# the server's to choose (None here means "not given").
_DURATION_FLAGS = {
    "--node-monitor-grace-period": "node_monitor_grace_period",
    "--pod-eviction-timeout": "pod_eviction_timeout",
    "--event-ttl": "event_ttl_seconds",
}
_INT_FLAGS = {
    "--default-not-ready-toleration-seconds": "default_not_ready_toleration_seconds",
    "--default-unreachable-toleration-seconds": "default_unreachable_toleration_seconds",
}
_FLOAT_FLAGS = {
    "--node-eviction-rate": "node_eviction_rate",
    "--secondary-node-eviction-rate": "secondary_node_eviction_rate",
}
DISABLEABLE = ("scheduler", "controllers", "dns", "servicelb", "local-storage")


def byte_size(text: str) -> int:
    """argparse type for a positive size in bytes: a number or a quantity ("256Mi")."""
    from control.api import quantity

    try:
        n = quantity.value(text)
    except quantity.QuantityError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: {e}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
    return n


def duration(text: str) -> float:
    """argparse type for Go durations ("40s", "5m"); a bare number is seconds."""
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        return timeutil.parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _disable_list(text: str) -> set[str]:
    parts = {p.strip() for p in text.split(",") if p.strip()}
    unknown = parts - set(DISABLEABLE)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown component(s) {', '.join(sorted(unknown))} (known: {', '.join(DISABLEABLE)})"
        )
    return parts


def add_ipam_flags(p: argparse.ArgumentParser) -> None:
    """Node IPAM's flags (kube-controller-manager's names), on the server and the
    standalone controller manager."""
    p.add_argument("--cluster-cidr", default=None, metavar="CIDR",
                   help="pod range of the cluster, cut into one range per node "
                        "(default 10.244.0.0/16)")
    p.add_argument("--node-cidr-mask-size", type=int, default=None, metavar="BITS",
                   help="prefix length of each node's pod range (default 24)")


def ipam_options(args: argparse.Namespace) -> dict[str, Any]:
    """The IPAM flags given, checked (a bad range is a usage error before anything runs)."""
    from control.controllers.nodeipam import (
        DEFAULT_CLUSTER_CIDR,
        DEFAULT_NODE_CIDR_MASK_SIZE,
        IpamConfigError,
        parse_cluster_cidr,
    )

    out: dict[str, Any] = {}
    if args.cluster_cidr is not None:
        out["cluster_cidr"] = args.cluster_cidr
    if args.node_cidr_mask_size is not None:
        out["node_cidr_mask_size"] = args.node_cidr_mask_size
    try:
        parse_cluster_cidr(out.get("cluster_cidr", DEFAULT_CLUSTER_CIDR),
                           out.get("node_cidr_mask_size", DEFAULT_NODE_CIDR_MASK_SIZE))
    except IpamConfigError as e:
        raise UsageError(str(e)) from None
    return out


def register(sub: Any) -> None:
    p = sub.add_parser(
        "server",
        help="run the control plane (apiserver, store, scheduler, controllers)",
        description="Run the Flotilla control plane in this process.",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"state and admin.conf directory (default {default_data_dir()})",
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        help="HOST:PORT for the API (port 0 picks a free one; default %(default)s)",
    )
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    for flag, dest in _DURATION_FLAGS.items():
        p.add_argument(flag, dest=dest, type=duration, default=None, metavar="DURATION")
    for flag, dest in _INT_FLAGS.items():
        p.add_argument(flag, dest=dest, type=int, default=None, metavar="SECONDS")
    for flag, dest in _FLOAT_FLAGS.items():
        p.add_argument(flag, dest=dest, type=float, default=None, metavar="RATE")
    p.add_argument(
        "--disable",
        type=_disable_list,
        default=set(),
        help=f"comma list of components not to run ({', '.join(DISABLEABLE)})",
    )
    p.add_argument(
        "--with-agent",
        action="store_true",
        help="also run an agent in this process (a one-machine cluster)",
    )
    p.add_argument("--node-name", default=None, help="the in-process agent's node name")
    p.add_argument("--pod-network", choices=("auto", "bridge", "host"), default="host",
                   help="the in-process agent's pod network: host (default: pods share this "
                        "machine's network), bridge (a namespace and an IP per pod; root), "
                        "auto (bridge when root)")
    p.add_argument("--registry-mirror", action="append", default=[],
                   metavar="DOMAIN=HOST[,HOST]",
                   help="the in-process agent's registry mirrors (as flotilla agent's)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="a registry the in-process agent reaches over plain HTTP")
    p.add_argument("--default-runtime-handler", choices=("image", "host"), default="image",
                   help="how the in-process agent runs pods naming no RuntimeClass "
                        "(default %(default)s)")
    p.add_argument("--terminated-pod-gc-threshold", type=int, default=None, metavar="N",
                   help="finished pods kept before pod GC deletes the oldest (default 12500)")
    p.add_argument("--metrics-listen", default=None, metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics")
    p.add_argument("--watch-cache-size-bytes", type=byte_size, default=None, metavar="SIZE",
                   help="bytes of recent events the watch cache keeps for resuming watches, "
                        "all kinds together, a quarter of it at most per kind (e.g. 512Mi; "
                        "default 256Mi); a watch from before that window relists")
    p.add_argument("--max-request-bytes", type=byte_size, default=None, metavar="SIZE",
                   help="the largest request the server accepts, refused before it is "
                        "decoded (default 3Mi, as Kubernetes)")
    p.add_argument("--max-requests-inflight", type=int, default=None, metavar="N",
                   help="read-only requests served at once, beyond which the server answers "
                        "TooManyRequests with a retry-after; 0 for no limit (default 400)")
    p.add_argument("--max-mutating-requests-inflight", type=int, default=None, metavar="N",
                   help="mutating requests served at once (default 200; 0 for no limit)")
    p.add_argument("--max-connections", type=int, default=None, metavar="N",
                   help="connections the API port holds at once (default: as many as the "
                        "process's descriptors allow; 4096 with --max-connections-per-source)")
    p.add_argument("--max-connections-per-source", type=int, default=None, metavar="N",
                   help="connections to the API port from one address (loopback and the "
                        "Nodes' addresses excepted); a connection gate in front of gRPC then "
                        "owns the API's address (default: no per-address bound)")
    p.add_argument("--reserved-connections", type=int, default=None, metavar="N",
                   help="of --max-connections, those only loopback and the Nodes' addresses "
                        "may use, so a flood from elsewhere cannot lock out the nodes and the "
                        "control plane (default a tenth; needs --max-connections-per-source)")
    p.add_argument("--http2-max-streams-per-connection", type=int, default=None, metavar="N",
                   help="calls (watches included) one connection may have open at once; a "
                        "client beyond it waits on its side (default 1000, as Kubernetes; "
                        "0: unbounded)")
    p.add_argument("--enable-priority-and-fairness", type=_boolean, nargs="?", const=True,
                   default=None, metavar="true|false",
                   help="API Priority and Fairness: the two in-flight limits together are "
                        "seats shared by priority levels (nodes, leader election, controllers, "
                        "service accounts, everyone else), with fair queues per user; false: "
                        "each limit alone, refusing at once (default true)")
    p.add_argument("--encryption-provider-config", type=Path, default=None, metavar="FILE",
                   help="encrypt resources at rest as this EncryptionConfiguration says "
                        "(aescbc, aesgcm, identity; the first provider's first key writes, "
                        "all read; `flotilla secrets reencrypt` rewrites after a rotation)")
    p.add_argument("--encryption-provider-config-automatic-reload", action="store_true",
                   help="reload --encryption-provider-config when the file changes (checked "
                        "every minute), without a restart; a bad file changes nothing")
    p.add_argument("--recover-to-last-good", action="store_true",
                   help="start even though the store's log lost acknowledged history "
                        "(refused otherwise), accepting the loss; revisions continue "
                        "above every acknowledged one")
    p.add_argument("--tls-san", action="append", default=[], metavar="NAME",
                   help="another name or address for the serving certificate (repeatable)")
    p.add_argument("--supervisor-port", type=int, default=None, metavar="PORT",
                   help="the join port (bearer tokens, CA bundle; default 9345, or a free "
                        "one when --listen's port is 0)")
    p.add_argument("--token-auth-file", type=Path, default=None, metavar="FILE",
                   help="static bearer tokens, one per line: token,user,uid,\"group1,group2\"")
    p.add_argument("--service-account-signing-key-file", type=Path, default=None,
                   metavar="FILE", help="private key (PEM, RSA or P-256) that signs service "
                   "account tokens (default DATA_DIR/pki/service-account.key, made at first "
                   "start)")
    p.add_argument("--service-account-key-file", type=Path, action="append", default=[],
                   metavar="FILE", help="more public keys (PEM keys or certificates) whose "
                   "service account tokens are accepted, e.g. a previous signing key "
                   "(repeatable)")
    p.add_argument("--service-account-issuer", action="append", default=[], metavar="URL",
                   help="issuer (iss) of service account tokens; the first signs, all are "
                   "accepted (repeatable; default https://kubernetes.default.svc.cluster."
                   "local)")
    p.add_argument("--service-account-max-token-expiration", type=duration, default=None,
                   metavar="DURATION", help="longest service account token TokenRequest "
                   "issues; longer requests are cut to it (default: as asked)")
    p.add_argument("--api-audiences", default=None, metavar="AUD[,AUD...]",
                   help="audiences a token must name to authenticate to the API (default: "
                   "the first issuer)")
    p.add_argument("--cluster-signing-duration", type=duration, default=None,
                   metavar="DURATION",
                   help="longest certificate the CSR signer issues (default 8760h)")
    p.add_argument("--scheduler-config", default=None, metavar="FILE",
                   help="scheduler profiles and plugins (KubeSchedulerConfiguration-like YAML)")
    add_ipam_flags(p)
    p.add_argument("--service-cluster-ip-range", default=None, metavar="CIDR",
                   help="virtual IPs of Services (default 10.96.0.0/12)")
    p.add_argument("--service-node-port-range", default=None, metavar="FIRST-LAST",
                   help="node ports of NodePort/LoadBalancer Services (default 30000-32767)")
    p.add_argument("--advertise-address", default=None, metavar="IP",
                   help="the address pods reach the apiserver at, as the kubernetes "
                        "Service's endpoint (default: this machine's InternalIP; not loopback)")
    p.add_argument("--cluster-domain", default=None, metavar="DOMAIN",
                   help="the cluster DNS' zone, also the in-process agent's (default "
                        "cluster.local)")
    p.add_argument("--dns-listen", default=None, metavar="HOST:PORT",
                   help="where the cluster DNS listens (default: the advertised address, "
                        "port 53 as root, 10053 otherwise); the kube-dns Service points there")
    p.add_argument("--dns-resolv-conf", default=None, metavar="PATH",
                   help="the resolvers names outside the cluster are forwarded to, from "
                        "this file's nameserver lines (default /etc/resolv.conf; an empty "
                        "file: none, such names get SERVFAIL)")
    p.set_defaults(handler=run_server, configures_logging=True)


def _boolean(value: str) -> bool:
    """A flag's true/false, as Kubernetes' boolean flags take it."""
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def service_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Service and DNS flags; a bad range or advertise address is refused by the
    control plane at start (the CLI may not import the apiserver), saying why."""
    out: dict[str, Any] = {}
    try:
        if args.service_cluster_ip_range is not None:
            out["service_cluster_ip_range"] = args.service_cluster_ip_range.strip()
        if args.service_node_port_range is not None:
            out["service_node_port_range"] = args.service_node_port_range.strip()
        if args.advertise_address is not None:
            out["advertise_address"] = args.advertise_address.strip()
        if args.cluster_domain is not None:
            if errs := names.is_dns1123_subdomain(args.cluster_domain.strip(".")):
                raise ValueError(f"--cluster-domain {args.cluster_domain!r}: "
                                 f"{'; '.join(errs)}")
            out["cluster_domain"] = args.cluster_domain.strip(".")
        if args.dns_listen is not None:
            port = args.dns_listen.rpartition(":")[2]
            if not port.isdigit() or int(port) > 65535:
                raise ValueError(f"--dns-listen {args.dns_listen!r}: expected HOST:PORT")
            out["dns_listen"] = args.dns_listen
        if args.dns_resolv_conf is not None:
            out["dns_resolv_conf"] = Path(args.dns_resolv_conf)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return out


def server_options(args: argparse.Namespace, data_dir: Path) -> tuple[Any, dict[str, Any]]:
    """ServerOptions from the flags, plus the flags ServerOptions has no field for yet."""
    from control.server import ServerOptions

    wanted: dict[str, Any] = {
        "data_dir": data_dir,
        "listen": args.listen,
        "disable": set(args.disable),
    }
    if args.scheduler_config:
        wanted["scheduler_config"] = args.scheduler_config
    if args.recover_to_last_good:
        wanted["recover_to_last_good"] = True
    if args.encryption_provider_config is not None:
        wanted["encryption_provider_config"] = args.encryption_provider_config
    if args.encryption_provider_config_automatic_reload:
        if args.encryption_provider_config is None:
            raise UsageError("--encryption-provider-config-automatic-reload needs "
                             "--encryption-provider-config")
        wanted["encryption_provider_config_automatic_reload"] = True
    if args.watch_cache_size_bytes is not None:
        wanted["watch_cache_size_bytes"] = args.watch_cache_size_bytes
    for flag in ("max_requests_inflight", "max_mutating_requests_inflight"):
        value = getattr(args, flag)
        if value is not None:
            if value < 0:
                raise UsageError(f"--{flag.replace('_', '-')} must be 0 or more")
            wanted[flag] = value
    for flag in ("max_connections", "max_connections_per_source", "reserved_connections",
                 "http2_max_streams_per_connection"):
        value = getattr(args, flag)
        if value is not None:
            least = 1 if flag in ("max_connections", "max_connections_per_source") else 0
            if value < least:
                raise UsageError(f"--{flag.replace('_', '-')} must be {least} or more")
            wanted[flag] = value
    if args.reserved_connections is not None and args.max_connections_per_source is None:
        raise UsageError("--reserved-connections needs --max-connections-per-source")
    if args.enable_priority_and_fairness is not None:
        wanted["enable_priority_and_fairness"] = args.enable_priority_and_fairness
    if args.max_request_bytes is not None:
        if args.max_request_bytes > 2**31 - 1:
            raise UsageError("--max-request-bytes must be below 2Gi (gRPC's limit)")
        wanted["max_request_bytes"] = args.max_request_bytes
    if args.tls_san:
        wanted["tls_sans"] = [s.strip() for arg in args.tls_san for s in arg.split(",")
                              if s.strip()]
    if args.supervisor_port is not None:
        if not 0 <= args.supervisor_port <= 65535:
            raise UsageError("--supervisor-port must be 0 to 65535")
        wanted["supervisor_port"] = args.supervisor_port
    if args.token_auth_file is not None:
        wanted["token_auth_file"] = args.token_auth_file
    if args.service_account_signing_key_file is not None:
        wanted["service_account_signing_key_file"] = args.service_account_signing_key_file
    if args.service_account_key_file:
        wanted["service_account_key_files"] = list(args.service_account_key_file)
    if args.service_account_issuer:
        if any(not i.strip() for i in args.service_account_issuer):
            raise UsageError("--service-account-issuer may not be empty")
        wanted["service_account_issuers"] = [i.strip() for i in args.service_account_issuer]
    if args.service_account_max_token_expiration is not None:
        if args.service_account_max_token_expiration < 600:
            raise UsageError("--service-account-max-token-expiration must be at least 10m")
        wanted["service_account_max_token_expiration"] = (
            args.service_account_max_token_expiration)
    if args.api_audiences is not None:
        auds = [a.strip() for a in args.api_audiences.split(",") if a.strip()]
        if not auds:
            raise UsageError("--api-audiences needs at least one audience")
        wanted["api_audiences"] = auds
    if args.cluster_signing_duration is not None:
        if args.cluster_signing_duration < 600:
            raise UsageError("--cluster-signing-duration must be at least 10m")
        wanted["cluster_signing_duration"] = args.cluster_signing_duration
    if args.metrics_listen:
        if not args.metrics_listen.rpartition(":")[2].isdigit():
            raise UsageError(f"--metrics-listen {args.metrics_listen!r}: expected HOST:PORT")
        wanted["metrics_listen"] = args.metrics_listen
    if args.terminated_pod_gc_threshold is not None:
        if args.terminated_pod_gc_threshold < 0:
            raise UsageError("--terminated-pod-gc-threshold must not be negative")
        wanted["terminated_pod_gc_threshold"] = args.terminated_pod_gc_threshold
    wanted.update(ipam_options(args))
    wanted.update(service_options(args))
    for dest in (*_DURATION_FLAGS.values(), *_INT_FLAGS.values(), *_FLOAT_FLAGS.values()):
        value = getattr(args, dest)
        if value is not None:
            wanted[dest] = int(value) if dest == "event_ttl_seconds" else value
    fields = {f.name for f in dataclasses.fields(ServerOptions)}
    known = {k: v for k, v in wanted.items() if k in fields}
    extra = {k: v for k, v in wanted.items() if k not in fields}
    return ServerOptions(**known), extra


async def run_server(ctx: Context, args: argparse.Namespace) -> int:
    try:
        logs.configure(ctx.opts.log_level or "info", args.log_format)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if ":" not in args.listen:
        raise UsageError(f"--listen {args.listen!r}: expected HOST:PORT")
    data_dir: Path = args.data_dir or default_data_dir()
    options, extra = server_options(args, data_dir)
    import structlog

    log = structlog.get_logger(component="cli")
    if extra:
        # Accepted now so scripts keep working; ServerOptions grows these fields later.
        log.warning("server options not supported yet, ignored", options=sorted(extra))
    from control.scheduler.registry import ConfigError
    from control.scheduler.scheduler import load_config
    from control.server import ControlPlane, StartRefused

    try:
        load_config(options.scheduler_config)  # a bad file fails here, before anything runs
    except ConfigError as e:
        msg = str(e)
        if options.scheduler_config and options.scheduler_config not in msg:
            msg = f"--scheduler-config {options.scheduler_config}: {msg}"
        raise CliError(msg) from None
    cp = ControlPlane(options)
    agent: Any = None
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        try:
            await cp.start()
        except BaseException as e:
            # whatever stopped the start, what it opened (the store's thread above all)
            # must not keep the process alive
            try:
                await cp.stop()
            except Exception:
                log.exception("stopping after a failed start failed")
            if isinstance(e, (OSError, ValueError, StartRefused)):
                raise CliError(str(e)) from None
            raise
        if cp.first_token:
            print(f"Join another machine with:\n  flotilla agent --server "
                  f"{cp.supervisor_address} --token {cp.first_token}\n(the token is kept in "
                  f"{data_dir / 'token'}; `flotilla token create` makes more)", flush=True)
        if args.with_agent:
            agent = await start_in_process_agent(
                cp, data_dir, args.node_name, args.pod_network, options.cluster_cidr,
                cluster_domain=options.cluster_domain,
                **({"cluster_dns": [cp.dns_cluster_ip]} if cp.dns_cluster_ip else {}),
                **_image_options(args))
        # Everything loaded so far (the watch cache, modules) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise stall the event loop
        # for tens of milliseconds as the cache grows.
        gc.collect()
        gc.freeze()
        waiter = asyncio.create_task(cp.wait(), name="server-wait")
        stopper = asyncio.create_task(stop_requested.wait(), name="server-signal")
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for t in (waiter, stopper):
            t.cancel()
        if agent is not None:
            await agent.stop()
        await cp.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def _image_options(args: argparse.Namespace) -> dict[str, Any]:
    """The in-process agent's image flags as AgentOptions fields."""
    from agent.config import parse_registry_mirror

    mirrors: dict[str, list[str]] = {}
    for text in args.registry_mirror:
        try:
            domain, hosts = parse_registry_mirror(text)
        except ValueError as e:
            raise UsageError(str(e)) from None
        mirrors.setdefault(domain, []).extend(hosts)
    return {"registry_mirrors": mirrors, "insecure_registries": list(args.insecure_registry),
            "default_runtime_handler": args.default_runtime_handler}


async def start_in_process_agent(cp: Any, data_dir: Path, node_name: str | None,
                                 pod_network: str = "host",
                                 cluster_cidr: str = "10.244.0.0/16",
                                 **agent_options: Any) -> Any:
    """`--with-agent`: an agent in this process, a client of the API like any other (the
    one place where both sides are wired together), with a node identity the server
    issues directly (no token). Its pods never see the server's data dir (keys, state)."""
    from agent.config import AgentOptions, default_node_name
    from agent.main import Agent

    name = node_name or default_node_name()
    node_ip = cp.advertised  # the listen address, or the machine's for a wildcard
    credentials, serving = cp.node_identity(name, [node_ip])
    agent = Agent(AgentOptions(server=cp.address, node_name=name, node_ip=node_ip,
                               data_dir=data_dir / "agent" / name, pod_network=pod_network,
                               cluster_cidr=cluster_cidr, credentials=credentials,
                               serving=serving, renew_credentials=True,
                               mask_paths=[str(data_dir)], **agent_options))
    await agent.start()
    return agent
