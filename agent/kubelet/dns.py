"""A pod's /etc/resolv.conf from its ``dnsPolicy`` and ``dnsConfig``, as kubelet writes it.

- ``ClusterFirst``: the cluster DNS (``--cluster-dns``), search ``<ns>.svc.<domain>
  svc.<domain> <domain>`` followed by the host's search domains, ``options ndots:5``. A
  host-network pod with ClusterFirst gets the host's resolvers instead (only
  ``ClusterFirstWithHostNet`` gives it the cluster DNS).
- ``Default``: the node's resolv.conf (nameservers, search, options).
- ``None``: nothing but the pod's ``dnsConfig``.
- ``dnsConfig`` is appended to any of them: nameservers and searches added without
  duplicates, options merged by name (the pod's value wins).
- Limits: at most 3 nameservers, 32 search domains and 2048 characters of search list;
  what is dropped is reported as a warning (kubelet's DNSConfigForming Event).
- No cluster DNS configured: ClusterFirst falls back to the host's resolvers, with a
  warning (kubelet's MissingClusterDNS).

Pure module: the caller reads the host's resolv.conf and writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from control.api.pb import core_pb2

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
CLUSTER_OPTIONS = ("ndots:5",)


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {n}" for n in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    """nameserver, search/domain and options lines of a resolv.conf (the last ``search``
    or ``domain`` line wins, as in glibc); comments and unknown lines ignored."""
    conf = ResolvConf()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        fields = line.split()
        if not fields:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            conf.nameservers.append(values[0])
        elif key in ("search", "domain"):
            # a lone "." means "no search domain" to resolvers; keep it out of pods'
            conf.searches = [s.rstrip(".") for s in values if s.rstrip(".")]
        elif key == "options":
            conf.options = merge_options(conf.options, values)
    return conf


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def merge_options(base: list[str], overrides: list[str]) -> list[str]:
    """Options by name (``ndots:5`` is named ``ndots``): an override replaces the base's
    value in place; new names are appended in order."""
    merged: dict[str, str] = {}
    for opt in (*base, *overrides):
        name = opt.split(":", 1)[0]
        merged[name] = opt
    return list(merged.values())


def dns_type(policy: str, host_network: bool) -> str:
    """"cluster", "host" or "none" for a pod's dnsPolicy (empty means ClusterFirst)."""
    if policy == "ClusterFirstWithHostNet":
        return "cluster"
    if policy in ("", "ClusterFirst"):
        return "host" if host_network else "cluster"
    if policy == "None":
        return "none"
    return "host"


def pod_resolv_conf(pod: core_pb2.Pod, host: ResolvConf, cluster_dns: list[str] | None,
                    cluster_domain: str) -> tuple[ResolvConf, list[tuple[str, str]]]:
    """The pod's resolv.conf and the warnings to report about it (Event reason, message).

    ``cluster_dns`` None: the node has no cluster DNS on purpose (its pods share the host's
    network, where the cluster DNS' Service address is not routed), so cluster pods get the
    host's resolvers without a warning; [] is a missing ``--cluster-dns`` and is reported.
    """
    warnings: list[tuple[str, str]] = []
    kind = dns_type(pod.spec.dns_policy, pod.spec.host_network)
    if kind == "cluster" and cluster_dns is None:
        kind = "host"
    elif kind == "cluster" and not cluster_dns:
        warnings.append(("MissingClusterDNS",
                         "kubelet does not have ClusterDNS IP configured and cannot create "
                         f"Pod using \"{pod.spec.dns_policy or 'ClusterFirst'}\" policy. "
                         "Falling back to \"Default\" policy."))
        kind = "host"
    if kind == "cluster" and cluster_dns:
        ns_domain = f"{pod.metadata.namespace}.svc.{cluster_domain}"
        conf = ResolvConf(
            nameservers=list(cluster_dns),
            searches=_unique([ns_domain, f"svc.{cluster_domain}", cluster_domain,
                              *host.searches]),
            options=list(CLUSTER_OPTIONS))
    elif kind == "host":
        conf = ResolvConf(list(host.nameservers), list(host.searches), list(host.options))
    else:
        conf = ResolvConf()
    if pod.spec.HasField("dns_config"):
        dc = pod.spec.dns_config
        conf.nameservers = _unique([*conf.nameservers, *dc.nameservers])
        conf.searches = _unique([*conf.searches, *dc.searches])
        conf.options = merge_options(
            conf.options,
            [f"{o.name}:{o.value}" if o.HasField("value") else o.name for o in dc.options])
    warnings += _fit_limits(conf)
    return conf, warnings


def _fit_limits(conf: ResolvConf) -> list[tuple[str, str]]:
    warnings = []
    if len(conf.nameservers) > MAX_NAMESERVERS:
        conf.nameservers = conf.nameservers[:MAX_NAMESERVERS]
        warnings.append(("DNSConfigForming", "Nameserver limits were exceeded, some nameservers "
                        "have been omitted, the applied nameserver line is: "
                         + " ".join(conf.nameservers)))
    trimmed = False
    if len(conf.searches) > MAX_SEARCH_PATHS:
        conf.searches = conf.searches[:MAX_SEARCH_PATHS]
        trimmed = True
    while conf.searches and len(" ".join(conf.searches)) > MAX_SEARCH_CHARS:
        conf.searches.pop()
        trimmed = True
    if trimmed:
        warnings.append(("DNSConfigForming", "Search Line limits were exceeded, some search "
                        "paths have been omitted, the applied search line is: "
                         + " ".join(conf.searches)))
    return warnings
