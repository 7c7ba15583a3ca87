"""The agent's options (:class:`AgentOptions`) and the parsers of its list-valued flags.

Owns what ``flotilla agent`` is configured with, with Kubernetes' kubelet defaults (lease
duration 40 s renewed every quarter of it, node status every 10 s, 110 pods), and the pure
parsers for ``--labels k=v,...``, ``--register-with-taints key=value:Effect,...`` and
``--system-reserved cpu=100m,memory=256Mi``. Each parser raises ``ValueError`` with a
message naming the bad item, which the CLI turns into a usage error.

Pure module: no I/O apart from :func:`default_data_dir` reading the effective uid.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from control.api import names, nodelabels, quantity
from control.client.config import default_data_dir as control_data_dir
from control.client.pki import Issued
from control.client.tls import Credentials

DEFAULT_MAX_PODS = 110
DEFAULT_LEASE_DURATION_SECONDS = 40
# kubelet: renewInterval = 0.25 * leaseDuration (nodeLeaseRenewIntervalFraction).
LEASE_RENEW_FRACTION = 0.25
DEFAULT_NODE_STATUS_UPDATE_FREQUENCY = 10.0
# kubelet's --sync-frequency: every pod is resynced this often even without events.
DEFAULT_SYNC_FREQUENCY = 60.0
# PLEG's relist period (kubelet hard-codes 1 s; a flag here so tests and big nodes can
# tune it).
DEFAULT_RUNTIME_RELIST_PERIOD = 1.0
# crash-loop backoff: 10 s doubling to 300 s (kubelet's initial and MaxContainerBackOff)
DEFAULT_CRASH_LOOP_BACKOFF_INITIAL = 10.0
DEFAULT_CRASH_LOOP_BACKOFF_MAX = 300.0
# configMap/secret/downwardAPI/projected volumes are re-projected this often (kubelet:
# on its sync period, 1 m).
DEFAULT_VOLUME_REFRESH_PERIOD = 60.0
NODE_LEASE_NAMESPACE = "kube-node-lease"
# RuntimeClass handlers: "host" runs containers on the host's filesystem; the others run
# them in their image ("runc" so manifests written for containerd's default run here too).
# RUNTIME_HANDLERS are the choices of --default-runtime-handler. A pod naming no
# RuntimeClass runs in its image: the host's files are an explicit opt-in, never a fallback.
HOST_HANDLER = "host"
IMAGE_HANDLERS = ("image", "runc")
RUNTIME_HANDLERS = ("image", "host")
DEFAULT_RUNTIME_HANDLER = "image"
PROXY_MODES = ("auto", "nftables", "userspace", "none")

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# The resources --system-reserved may name (kubelet also knows "pid", which has no
# capacity entry here to subtract it from).
RESERVABLE = ("cpu", "memory", "ephemeral-storage")


POD_NETWORK_MODES = ("auto", "bridge", "host")
DEFAULT_CLUSTER_DNS = "10.96.0.10"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class TaintSpec:
    key: str
    value: str
    effect: str


@dataclass
class AgentOptions:
    """Everything one agent runs with; tests shorten the timings."""

    server: str
    node_name: str
    data_dir: Path
    node_ip: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[TaintSpec] = field(default_factory=list)
    max_pods: int = DEFAULT_MAX_PODS
    system_reserved: dict[str, str] = field(default_factory=dict)
    node_lease_duration_seconds: int = DEFAULT_LEASE_DURATION_SECONDS
    node_status_update_frequency: float = DEFAULT_NODE_STATUS_UPDATE_FREQUENCY
    # None: LEASE_RENEW_FRACTION * node_lease_duration_seconds, as kubelet computes it.
    lease_renew_interval: float | None = None
    # Per-request deadline: a hung server must not stall a heartbeat past the lease.
    request_timeout: float = 10.0
    # Retry pacing while the server is unreachable (kubelet's lease retries cap at 7 s).
    retry_initial: float = 0.2
    retry_max: float = 7.0
    # the agent's own gRPC port (logs, exec); 0 = pick a free one at start and advertise it
    daemon_port: int = 0
    # HOST:PORT serving the kubelet's Prometheus metrics at /metrics (None: not served)
    metrics_listen: str | None = None
    # the address the agent's port binds (None: the node's InternalIP; never 0.0.0.0)
    daemon_listen: str | None = None
    # the node's client identity (``flotilla server --with-agent`` and tests); None: the
    # one stored in <data-dir>/pki by an earlier join, else join with ``token``
    credentials: Credentials | None = None
    # a join token (K10<ca hash>::<id>.<secret>); ``server`` is then the supervisor port
    token: str | None = None
    # the agent port's certificate, when given (else a kubelet-serving CSR)
    serving: Issued | None = None
    # renew the given ``credentials`` and ``serving`` through CSRs before they expire, as a
    # joined agent renews its own (``flotilla server --with-agent``: its agent lives as long
    # as the server; tests' agents leave them alone)
    renew_credentials: bool = False
    # more host paths hidden from containers, besides the agent's data dir (the server's
    # data dir with ``--with-agent``)
    mask_paths: list[str] = field(default_factory=list)
    # how long a CertificateSigningRequest may wait for approval and signing
    csr_timeout: float = 60.0
    # --volume-dir: where local-path volumes of this node live (None: <data-dir>/storage)
    volume_dir: Path | None = None
    # the kubelet's timings (KubeletOptions), with kubelet's defaults
    sync_frequency: float = DEFAULT_SYNC_FREQUENCY
    runtime_relist_period: float = DEFAULT_RUNTIME_RELIST_PERIOD
    crash_loop_backoff_initial: float = DEFAULT_CRASH_LOOP_BACKOFF_INITIAL
    crash_loop_backoff_max: float = DEFAULT_CRASH_LOOP_BACKOFF_MAX
    volume_refresh_period: float = DEFAULT_VOLUME_REFRESH_PERIOD
    # fencing: stop every pod after this long without the API server (None: only the pods
    # annotated flotilla.io/stop-after-disconnect)
    stop_pods_after_disconnect: float | None = None
    # pod network: "bridge" (a namespace and an IP per pod; root), "host" (every pod on the
    # machine's network) or "auto" (bridge when root). Library default host: an agent built
    # in a test never touches the machine's network unless asked; the CLI defaults to auto.
    pod_network: str = "host"
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    # the service proxy: "nftables" (root), "none", or "auto": nftables when this agent runs
    # the pod network (pods then need Service routing and the cluster DNS' ClusterIP),
    # none when pods share the machine's network; its full resync period
    proxy_mode: str = "auto"
    proxy_sync_period: float = 30.0
    # pods' DNS: the cluster DNS' addresses (kube-dns' ClusterIP), the cluster domain and the
    # node's resolv.conf (kubelet's --cluster-dns, --cluster-domain, --resolv-conf)
    cluster_dns: list[str] = field(default_factory=lambda: [DEFAULT_CLUSTER_DNS])
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    resolv_conf: Path = Path("/etc/resolv.conf")
    # images: registries that stand in for others (domain -> hosts), hosts reached over
    # plain HTTP, the handler of pods naming no RuntimeClass, image GC's disk thresholds
    registry_mirrors: dict[str, list[str]] = field(default_factory=dict)
    insecure_registries: list[str] = field(default_factory=list)
    default_runtime_handler: str = DEFAULT_RUNTIME_HANDLER
    image_gc_high_threshold: int = 85
    image_gc_low_threshold: int = 80

    @property
    def local_volume_dir(self) -> Path:
        """The directory of this node's local-path volumes (absolute: it is advertised)."""
        return (self.volume_dir or self.data_dir / "storage").absolute()

    @property
    def renew_interval(self) -> float:
        if self.lease_renew_interval is not None:
            return self.lease_renew_interval
        return LEASE_RENEW_FRACTION * self.node_lease_duration_seconds

    def validate(self) -> None:
        """ValueError naming the first bad option."""
        if errs := names.is_dns1123_subdomain(self.node_name):
            raise ValueError(f"invalid node name {self.node_name!r}: {'; '.join(errs)}")
        if self.max_pods < 0:
            raise ValueError("max pods must not be negative")
        if self.node_lease_duration_seconds <= 0:
            raise ValueError("node lease duration must be positive")
        for flag, value in (
                ("--node-status-update-frequency", self.node_status_update_frequency),
                ("--node-lease-renew-interval", self.renew_interval),
                ("--sync-frequency", self.sync_frequency),
                ("--runtime-relist-period", self.runtime_relist_period),
                ("--crash-loop-backoff-initial", self.crash_loop_backoff_initial),
                ("--crash-loop-backoff-max", self.crash_loop_backoff_max),
                ("--volume-refresh-period", self.volume_refresh_period)):
            if not value > 0:
                raise ValueError(f"{flag} must be positive")
        if self.stop_pods_after_disconnect is not None and self.stop_pods_after_disconnect <= 0:
            raise ValueError("--stop-pods-after-disconnect must be positive")
        if self.renew_interval >= self.node_lease_duration_seconds:
            raise ValueError("--node-lease-renew-interval must be shorter than the lease "
                             "duration")
        if self.crash_loop_backoff_max < self.crash_loop_backoff_initial:
            raise ValueError("--crash-loop-backoff-max must not be below "
                             "--crash-loop-backoff-initial")
        if bad := nodelabels.forbidden_labels(self.labels):
            # as the kubelet: NodeRestriction would refuse the Node with them anyway
            allowed = ", ".join(sorted(nodelabels.KUBELET_LABELS))
            raise ValueError(
                f"--labels {', '.join(bad)}: a node may not set these on itself (in the "
                f"kubernetes.io and k8s.io domains only {allowed} and labels under "
                f"{' or '.join(nodelabels.KUBELET_LABEL_DOMAINS)}; never "
                f"{nodelabels.NODE_RESTRICTION_DOMAIN}/): an administrator sets them with "
                f"flotilla label node")
        if self.pod_network not in POD_NETWORK_MODES:
            raise ValueError(f"--pod-network {self.pod_network!r}: one of "
                             f"{', '.join(POD_NETWORK_MODES)}")
        if self.pod_network == "bridge" and os.geteuid() != 0:
            raise ValueError("--pod-network bridge needs root (network namespaces, links, "
                             "routes); without root use host or auto")
        for flag, cidr in (("--cluster-cidr", self.cluster_cidr),
                           ("--service-cidr", self.service_cidr)):
            try:
                ipaddress.IPv4Network(cidr)
            except ValueError as e:
                raise ValueError(f"{flag} {cidr!r}: {e}") from None
        for ip in self.cluster_dns:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"--cluster-dns {ip!r}: not an IP address") from None
        if errs := names.is_dns1123_subdomain(self.cluster_domain):
            raise ValueError(f"--cluster-domain {self.cluster_domain!r}: {'; '.join(errs)}")
        if self.proxy_mode == "userspace":
            raise ValueError("--proxy-mode userspace is not available yet: use nftables "
                             "(as root) or none")
        if self.proxy_mode not in PROXY_MODES:
            raise ValueError(f"--proxy-mode must be one of {', '.join(PROXY_MODES)}")
        if self.proxy_sync_period <= 0:
            raise ValueError("--proxy-sync-period must be positive")
        if self.default_runtime_handler not in RUNTIME_HANDLERS:
            raise ValueError(f"--default-runtime-handler must be one of "
                             f"{', '.join(RUNTIME_HANDLERS)}")
        if not 0 <= self.image_gc_low_threshold <= self.image_gc_high_threshold <= 100:
            raise ValueError("want 0 <= --image-gc-low-threshold <= "
                             "--image-gc-high-threshold <= 100")
        if not 0 <= self.daemon_port <= 65535:
            raise ValueError("--daemon-port must be 0 (any free port) to 65535")
        if self.metrics_listen is not None:
            port = self.metrics_listen.rpartition(":")[2]
            if not port.isdigit() or int(port) > 65535:
                raise ValueError(f"--metrics-listen {self.metrics_listen!r}: expected HOST:PORT")


def default_node_name() -> str:
    """kubelet's default: the hostname, lower-cased."""
    return socket.gethostname().lower()


def default_data_dir(node_name: str) -> Path:
    """``/var/lib/flotilla/agent/<node>`` as root, else ``~/.local/share/flotilla/agent/<node>``:
    per node, so several agents share one host without sharing state."""
    return control_data_dir() / "agent" / node_name


def _items(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` -> dict; keys and values checked as Kubernetes label keys and values."""
    out: dict[str, str] = {}
    for item in _items(text):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"invalid label {item!r}: expected key=value")
        if errs := names.is_qualified_name(key):
            raise ValueError(f"invalid label key {key!r}: {'; '.join(errs)}")
        if errs := names.is_valid_label_value(value):
            raise ValueError(f"invalid label value {value!r} for {key!r}: {'; '.join(errs)}")
        out[key] = value
    return out


def parse_taints(text: str) -> list[TaintSpec]:
    """``key=value:Effect`` or ``key:Effect``, comma-separated (kubelet's flag syntax)."""
    out: list[TaintSpec] = []
    seen: set[tuple[str, str]] = set()
    for item in _items(text):
        head, sep, effect = item.rpartition(":")
        if not sep or not head:
            raise ValueError(f"invalid taint {item!r}: expected key=value:Effect or key:Effect")
        key, _, value = head.partition("=")
        if effect not in TAINT_EFFECTS:
            raise ValueError(
                f"invalid taint {item!r}: effect must be one of {', '.join(TAINT_EFFECTS)}"
            )
        if errs := names.is_qualified_name(key):
            raise ValueError(f"invalid taint key {key!r}: {'; '.join(errs)}")
        if value and (errs := names.is_valid_label_value(value)):
            raise ValueError(f"invalid taint value {value!r}: {'; '.join(errs)}")
        if (key, effect) in seen:
            # The apiserver refuses duplicates too; saying so here names the flag.
            raise ValueError(f"duplicate taint {key}:{effect}")
        seen.add((key, effect))
        out.append(TaintSpec(key, value, effect))
    return out


def parse_resource_list(text: str) -> dict[str, str]:
    """``cpu=100m,memory=256Mi`` -> dict of canonical quantities; only RESERVABLE names."""
    out: dict[str, str] = {}
    for item in _items(text):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"invalid resource {item!r}: expected name=quantity")
        if name not in RESERVABLE:
            raise ValueError(f"invalid resource {name!r}: one of {', '.join(RESERVABLE)}")
        try:
            amount = quantity.parse_quantity(value)
        except quantity.QuantityError as e:
            raise ValueError(f"invalid quantity {value!r} for {name}: {e}") from None
        if amount < 0:
            raise ValueError(f"invalid quantity {value!r} for {name}: must not be negative")
        out[name] = quantity.canonicalize(value)
    return out


def parse_registry_mirror(text: str) -> tuple[str, list[str]]:
    """``docker.io=127.0.0.1:5000[,host2]`` -> (domain, hosts)."""
    domain, sep, hosts = text.partition("=")
    listed = [h.strip() for h in hosts.split(",") if h.strip()]
    if not sep or not domain.strip() or not listed:
        raise ValueError(f"--registry-mirror {text!r}: want DOMAIN=HOST[,HOST...]")
    return domain.strip(), listed
