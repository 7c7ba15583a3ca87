"""The service proxy's nftables table ``flotilla-proxy`` (its own: the pod network's
``flotilla-net`` is not the proxy's), rendered from the Services' state as one ``nft -f``
script that replaces the whole table in one transaction.

What the table does (kube-proxy's nftables mode, simplified):

- ``services`` (from the nat prerouting and output hooks): ClusterIP:port of every
  Service port with ready endpoints, its load-balancer ingress IPs:port, and NodePort on
  the node's own addresses, jump to the Service port's chain (the last two through its
  ``-ext`` chain: externalTrafficPolicy Cluster marks the traffic for masquerade; Local
  keeps the client's address and picks among this node's endpoints only, dropping it
  when there is none, while this node's own traffic goes anywhere, masqueraded), which picks an endpoint with ``numgen random`` and DNATs to it.
- sessionAffinity ClientIP: each endpoint of such a Service port has a chain and a dynamic
  set of the clients it served (entries time out after ``timeoutSeconds``); a client in
  an endpoint's set goes back to it, others get a random endpoint whose chain adds them.
  :func:`render_update` changes the table while keeping these sets' members; a full
  :func:`render` (the first sync, or after a failed one) starts them empty.
- loadBalancerSourceRanges: ``firewall-ips`` maps a load-balancer address:port to a chain
  dropping new connections from other sources (filter, before DNAT), as kube-proxy does.
- A pod reaching itself through its Service (hairpin: after DNAT its source is its
  destination, a pair in the ``hairpin`` set of every endpoint address with itself) is
  masqueraded on the way out, so the reply comes back through this node; so is marked
  NodePort/LoadBalancer traffic. One set instead of a rule per Service port: ``nft -f``
  of 1,000 Services x 10 endpoints took a third less time.
- Anything still addressed to the service range after NAT (a Service port with no ready
  endpoint, or an address no Service holds) is rejected at once (TCP reset, ICMP
  port-unreachable for the rest) in filter chains right after DNAT in prerouting and
  output: a missing rule fails on this machine, never leaks to the default route.

``render`` is pure (table-tested); applying is :func:`agent.network.nft.apply` (``nft -f -``).
IPv4 only.

Concurrency contract: pure functions, no shared state.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

TABLE = "flotilla-proxy"
FAMILY = "ip"
MASQ_MARK = "0x4000"


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service, with its ready endpoints."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP or UDP
    cluster_ip: str
    port: int
    node_port: int = 0
    endpoints: Sequence[Endpoint] = ()
    # sessionAffinity ClientIP: seconds a client stays on its endpoint (0: no affinity)
    affinity_timeout: int = 0
    # status.loadBalancer.ingress IPs: the Service port is DNATed there too
    load_balancer_ips: Sequence[str] = ()
    # externalTrafficPolicy Local: this node's endpoints (a subset of ``endpoints``) for
    # NodePort/load-balancer traffic; None for Cluster
    local_endpoints: Sequence[Endpoint] | None = None
    # loadBalancerSourceRanges: new connections to a load-balancer address from any other
    # source are dropped (empty: no restriction)
    source_ranges: Sequence[str] = ()

    @property
    def chain(self) -> str:
        ident = f"{self.namespace}/{self.name}:{self.port_name}/{self.protocol}"
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        return f"svc-{digest}"


@dataclass(frozen=True)
class HealthCheck:
    """A LoadBalancer Service with externalTrafficPolicy Local: its healthCheckNodePort
    and this node's ready endpoints (the load balancer sends traffic only to nodes that
    have one)."""

    namespace: str
    name: str
    node_port: int
    local_endpoints: int


@dataclass(frozen=True)
class Ruleset:
    service_cidr: str
    ports: Sequence[ServicePort]
    # the pods' range: their traffic to a Local Service's external addresses is the
    # cluster's own and may use any endpoint ("" : unknown)
    cluster_cidr: str = ""
    # served by the proxy's health server, not by rules
    health_checks: Sequence[HealthCheck] = ()


def _elements(items: list[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _endpoint_chain(sp: ServicePort, e: Endpoint) -> str:
    # named by the endpoint, not its position, so a client's set survives other
    # endpoints coming and going in the same rendering
    digest = hashlib.sha256(f"{e.ip}:{e.port}".encode()).hexdigest()[:8]
    return f"{sp.chain}-ep-{digest}"


def _affinity_sets(sp: ServicePort, eps: Sequence[Endpoint]) -> list[str]:
    # one dynamic set per endpoint: the clients sent there lately; an entry expires
    # ``affinity_timeout`` seconds after that client's last new connection
    return [f"  set {_affinity_set(sp, e)} {{ type ipv4_addr; flags dynamic,timeout; "
            f"timeout {sp.affinity_timeout}s; }}" for e in eps]


def _affinity_set(sp: ServicePort, e: Endpoint) -> str:
    # the timeout is in the name: a set is never declared again with another timeout
    # (which nft refuses), a changed timeout makes a new set
    return f"{_endpoint_chain(sp, e)}-{sp.affinity_timeout}s"


def _pick(sp: ServicePort, eps: Sequence[Endpoint], proto: str) -> list[str]:
    """The rules choosing one of ``eps`` and DNATing to it. With ClientIP affinity
    (kube-proxy's nftables layout) a client remembered by an endpoint's set goes back
    there, anyone else gets a random endpoint whose chain remembers them and DNATs."""
    body: list[str] = []
    if sp.affinity_timeout:
        body += [f"    ip saddr @{_affinity_set(sp, e)} goto {_endpoint_chain(sp, e)}"
                 for e in eps]
        picks = _elements([f"{i} : goto {_endpoint_chain(sp, e)}"
                           for i, e in enumerate(eps)])
        body.append(f"    numgen random mod {len(eps)} vmap {picks}")
    elif len(eps) == 1:
        body.append(f"    meta l4proto {proto} dnat to {eps[0].ip}:{eps[0].port}")
    else:
        targets = _elements([f"{i} : {e.ip} . {e.port}" for i, e in enumerate(eps)])
        body.append(f"    meta l4proto {proto} dnat ip addr . port to numgen random mod "
                    f"{len(eps)} map {targets}")
    return body


def _endpoint_chains(sp: ServicePort, eps: Sequence[Endpoint], proto: str) -> list[str]:
    # with affinity: an endpoint's chain remembers the client, then DNATs
    out: list[str] = []
    for e in eps:
        out += [f"  chain {_endpoint_chain(sp, e)} {{",
                f"    update @{_affinity_set(sp, e)} {{ ip saddr }}",
                f"    meta l4proto {proto} dnat to {e.ip}:{e.port}",
                "  }"]
    return out


def _external(sp: ServicePort, proto: str, cluster_cidr: str) -> list[str]:
    """The chain NodePort and load-balancer traffic enters. externalTrafficPolicy Cluster:
    masquerade (the reply must come back through this node) and use any endpoint. Local:
    keep the client's address and use only this node's endpoints, dropping the traffic
    when there is none; this node's own traffic still goes anywhere, masqueraded, and
    pods' traffic anywhere as to the ClusterIP."""
    head = f"  chain {sp.chain}-ext {{"
    if sp.local_endpoints is None:
        return [head, f"    meta mark set meta mark | {MASQ_MARK}", f"    goto {sp.chain}",
                "  }"]
    body = [head, f"    fib saddr type local meta mark set meta mark | {MASQ_MARK} "
                  f"goto {sp.chain}"]
    if cluster_cidr:
        body.append(f"    ip saddr {cluster_cidr} goto {sp.chain}")
    local = sorted(sp.local_endpoints, key=lambda e: (e.ip, e.port))
    body += _pick(sp, local, proto) if local else ["    drop"]
    return [*body, "  }"]


def _add(elements: list[str], seen: set[str], key: str, verdict: str) -> None:
    # a map refuses a key twice, which would fail the whole transaction: two Services
    # claiming one load-balancer address and port (a stale status) -> the first one keeps it
    if key not in seen:
        seen.add(key)
        elements.append(f"{key} : {verdict}")


def render(rules: Ruleset) -> str:
    """The ``nft -f`` script that makes the table exactly ``rules`` (from any state)."""
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n" + _table(rules)


# the chains hooked into netfilter (declared with a type, hook and priority)
BASE_CHAINS = ("nat-prerouting", "nat-output", "nat-postrouting", "firewall-prerouting",
               "firewall-output", "reject-prerouting", "reject-output")

_MAPS = {"service-ips": "ipv4_addr . inet_proto . inet_service : verdict",
         "service-nodeports": "inet_proto . inet_service : verdict",
         "firewall-ips": "ipv4_addr . inet_proto . inet_service : verdict"}

_DECLARED = re.compile(r"^  (chain|set) (\S+) \{", re.MULTILINE)


def _declared(script: str) -> tuple[set[str], set[str]]:
    chains: set[str] = set()
    sets: set[str] = set()
    for kind, name in _DECLARED.findall(script):
        (chains if kind == "chain" else sets).add(name)
    return chains, sets


def render_update(rules: Ruleset, previous: str) -> str:
    """The ``nft -f`` script that turns the table ``previous`` (a script of
    :func:`render` or of this function, as applied) into ``rules`` in one transaction
    while keeping the members of the affinity sets both have: every chain and map is
    emptied and refilled, what ``rules`` no longer has is deleted, the rest declared again
    (a no-op for what exists)."""
    return _update(rules, *_declared(previous))


_LISTED = re.compile(r"^\s+(chain|set) (\S+) \{", re.MULTILINE)


def render_adopt(rules: Ruleset, listing: str) -> str:
    """Like :func:`render_update` for a table an earlier run left (``listing`` is ``nft
    list table`` of it): the first sync of a restarted proxy keeps the affinity sets'
    members, so clients stay on their endpoints across the restart, as kube-proxy's
    nftables mode does. The base chains are deleted and declared again (their hook or
    priority may differ in the earlier version), the rest as in an update."""
    chains: set[str] = set()
    sets: set[str] = set()
    for kind, name in _LISTED.findall(listing):
        (chains if kind == "chain" else sets).add(name)
    base = [f"add chain {FAMILY} {TABLE} {c}\ndelete chain {FAMILY} {TABLE} {c}"
            for c in BASE_CHAINS]
    return _update(rules, chains - set(BASE_CHAINS), sets, extra=base)


def _update(rules: Ruleset, old_chains: set[str], old_sets: set[str],
            extra: Sequence[str] = ()) -> str:
    table = _table(rules)
    new_chains, new_sets = _declared(table)
    lines = [f"add table {FAMILY} {TABLE}", f"flush table {FAMILY} {TABLE}", *extra]
    for name, kind in _MAPS.items():
        # declared first: a table written by an older version may lack one
        lines += [f"add map {FAMILY} {TABLE} {name} {{ type {kind}; }}",
                  f"flush map {FAMILY} {TABLE} {name}"]
    lines += [f"add set {FAMILY} {TABLE} hairpin {{ type ipv4_addr . ipv4_addr; }}",
              f"flush set {FAMILY} {TABLE} hairpin"]
    lines += [f"delete chain {FAMILY} {TABLE} {c}" for c in sorted(old_chains - new_chains)]
    lines += [f"delete set {FAMILY} {TABLE} {x}" for x in sorted(old_sets - new_sets)]
    return "\n".join(lines) + "\n" + table


def _table(rules: Ruleset) -> str:
    ports = sorted(rules.ports, key=lambda p: (p.namespace, p.name, p.port_name, p.protocol))
    ips: list[str] = []
    firewall: list[str] = []
    node_ports: list[str] = []
    chains: list[str] = []
    sets: list[str] = []
    seen: set[str] = set()
    hairpin: set[str] = set()
    for sp in ports:
        if not sp.endpoints:
            continue  # left to the reject rules
        hairpin.update(e.ip for e in sp.endpoints)
        proto = sp.protocol.lower()
        _add(ips, seen, f"{sp.cluster_ip} . {proto} . {sp.port}", f"goto {sp.chain}")
        for lb_ip in sp.load_balancer_ips:
            _add(ips, seen, f"{lb_ip} . {proto} . {sp.port}", f"goto {sp.chain}-ext")
            if sp.source_ranges:
                firewall.append(f"{lb_ip} . {proto} . {sp.port} : goto {sp.chain}-fw")
        if sp.load_balancer_ips and sp.source_ranges:
            chains += [f"  chain {sp.chain}-fw {{",
                       f"    ip saddr != {_elements(sorted(sp.source_ranges))} drop", "  }"]
        if sp.node_port:
            node_ports.append(f"{proto} . {sp.node_port} : goto {sp.chain}-ext")
        if sp.node_port or sp.load_balancer_ips:
            chains += _external(sp, proto, rules.cluster_cidr)
        eps = sorted(sp.endpoints, key=lambda e: (e.ip, e.port))
        chains += [f"  chain {sp.chain} {{", *_pick(sp, eps, proto), "  }"]
        if sp.affinity_timeout:
            sets += _affinity_sets(sp, eps)
            chains += _endpoint_chains(sp, eps, proto)
    lines = [
        f"table {FAMILY} {TABLE} {{",
        "  map service-ips {",
        "    type ipv4_addr . inet_proto . inet_service : verdict",
    ]
    if ips:
        lines.append(f"    elements = {_elements(ips)}")
    lines += [
        "  }",
        "  map service-nodeports {",
        "    type inet_proto . inet_service : verdict",
    ]
    if node_ports:
        lines.append(f"    elements = {_elements(node_ports)}")
    lines += ["  }", "  map firewall-ips {",
              "    type ipv4_addr . inet_proto . inet_service : verdict"]
    if firewall:
        lines.append(f"    elements = {_elements(firewall)}")
    lines += ["  }", "  set hairpin {", "    type ipv4_addr . ipv4_addr"]
    if hairpin:
        pairs = sorted(hairpin, key=lambda ip: tuple(int(x) for x in ip.split(".")))
        lines.append(f"    elements = {_elements([f'{ip} . {ip}' for ip in pairs])}")
    lines += ["  }", *sets, *chains,
              "  chain services {",
              "    ip daddr . meta l4proto . th dport vmap @service-ips",
              "    fib daddr type local meta l4proto . th dport vmap @service-nodeports",
              "  }",
              "  chain nat-prerouting {",
              "    type nat hook prerouting priority dstnat; policy accept;",
              "    jump services",
              "  }",
              "  chain nat-output {",
              "    type nat hook output priority -100; policy accept;",
              "    jump services",
              "  }",
              "  chain nat-postrouting {",
              "    type nat hook postrouting priority srcnat; policy accept;",
              f"    meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade",
              "    ct status dnat ip saddr . ip daddr @hairpin masquerade",
              "  }"]
    # loadBalancerSourceRanges, before DNAT (-100) while the destination is still the
    # load-balancer address; new connections only
    for hook in ("prerouting", "output"):
        lines += [f"  chain firewall-{hook} {{",
                  f"    type filter hook {hook} priority -110; policy accept;",
                  "    ct state new ip daddr . meta l4proto . th dport vmap @firewall-ips",
                  "  }"]
    # prerouting right after DNAT (-100): before the routing decision, which would answer
    # "no route" from the machine's unreachable route for the range instead of refusing
    for hook, priority in (("prerouting", "-90"), ("output", "-90")):
        lines += [f"  chain reject-{hook} {{",
                  f"    type filter hook {hook} priority {priority}; policy accept;",
                  # still addressed to the service range after DNAT: no endpoint, or no
                  # Service at that address: refuse at once, here
                  f"    ip daddr {rules.service_cidr} meta l4proto tcp reject with tcp reset",
                  f"    ip daddr {rules.service_cidr} reject",
                  "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def cleanup_script() -> str:
    """Remove the table if it exists (``flotilla agent --cleanup``)."""
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"


__all__ = ["TABLE", "Endpoint", "HealthCheck", "Ruleset", "ServicePort", "cleanup_script",
           "render", "render_adopt", "render_update"]
