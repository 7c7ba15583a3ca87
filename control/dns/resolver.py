"""The cluster DNS' answers: Kubernetes' DNS-based service discovery specification, as
CoreDNS' kubernetes plugin serves it, computed from a :class:`Catalog`.

Names under the cluster zone (``cluster.local`` by default)::

    <svc>.<ns>.svc.<zone>                A/AAAA: the ClusterIPs, or each ready endpoint of a
                                         headless Service; CNAME for an ExternalName Service
    _<port>._<proto>.<svc>.<ns>.svc.<zone>  SRV per named port (target: the Service, or each
                                         ready endpoint's name for a headless Service)
    <hostname>.<svc>.<ns>.svc.<zone>     A/AAAA of a headless Service's endpoint (a pod with
                                         hostname/subdomain; unnamed endpoints are a-b-c-d)
    <a-b-c-d>.<ns>.pod.<zone>            A of that address (CoreDNS' ``pods insecure``)
    dns-version.<zone>                   TXT "1.1.0"
    <zone>                               SOA, NS

Reverse names (``in-addr.arpa``, ``ip6.arpa``) of ClusterIPs and endpoints get PTRs; other
reverse names and every name outside the zone are not ours (:func:`resolve` returns None:
the server forwards them).

A name that exists without a record of the asked type is NODATA (NOERROR, SOA in
authority), one that does not exist NXDOMAIN (SOA in authority); names above existing ones
(``svc.<zone>``, ``<ns>.svc.<zone>``) exist. A headless Service with no ready endpoint is
NXDOMAIN, as CoreDNS answers. Every record has the plugin's default TTL, 5 s, which is also
the SOA's minimum (the negative-caching TTL).

Pure module: no I/O; answers are :class:`Record` values the server encodes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from control.dns.catalog import Catalog, Endpoint, ServiceInfo

DEFAULT_TTL = 5
DNS_SCHEMA_VERSION = "1.1.0"
# CoreDNS' SOA timers for the cluster zone: refresh 2 h, retry 30 min, expire 1 day
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400

NOERROR, NXDOMAIN = "NOERROR", "NXDOMAIN"


@dataclass(frozen=True)
class SRVData:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class SOAData:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True)
class Record:
    """One resource record; names are absolute (end with a dot)."""

    name: str
    rtype: str  # A, AAAA, CNAME, PTR, SRV, SOA, NS, TXT
    ttl: int
    data: str | SRVData | SOAData


@dataclass
class Answer:
    rcode: str = NOERROR
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class Zone:
    domain: str = "cluster.local"
    ttl: int = DEFAULT_TTL
    serial: int = 1

    @property
    def origin(self) -> str:
        return self.domain.strip(".").lower() + "."

    def soa(self) -> Record:
        o = self.origin
        return Record(o, "SOA", self.ttl, SOAData(f"ns.dns.{o}", f"hostmaster.{o}",
                                                  self.serial, SOA_REFRESH, SOA_RETRY,
                                                  SOA_EXPIRE, self.ttl))


def _labels(name: str) -> list[str]:
    return [label for label in name.lower().rstrip(".").split(".") if label]


def resolve(qname: str, qtype: str, zone: Zone, catalog: Catalog) -> Answer | None:
    """The answer to one question, or None when the name is not the cluster's."""
    labels = _labels(qname)
    zone_labels = _labels(zone.domain)
    if labels[len(labels) - len(zone_labels):] == zone_labels and \
            len(labels) >= len(zone_labels):
        return _in_zone(labels[:len(labels) - len(zone_labels)], qtype, zone, catalog)
    if labels[-2:] in (["in-addr", "arpa"], ["ip6", "arpa"]):
        return _reverse(labels, qtype, zone, catalog)
    return None


def _fqdn(*parts: str) -> str:
    return ".".join(parts) + "."


def _nodata(zone: Zone) -> Answer:
    return Answer(NOERROR, authority=[zone.soa()])


def _nxdomain(zone: Zone) -> Answer:
    return Answer(NXDOMAIN, authority=[zone.soa()])


def _address_records(name: str, ips: Sequence[str], qtype: str, ttl: int) -> list[Record]:
    want = 4 if qtype == "A" else 6
    return [Record(name, qtype, ttl, ip) for ip in ips
            if ipaddress.ip_address(ip).version == want]


def _addresses(name: str, ips: Sequence[str], qtype: str, zone: Zone) -> Answer:
    """A/AAAA (or ANY) of a name that exists; NODATA for other types or families."""
    if qtype == "ANY":
        records = [*_address_records(name, ips, "A", zone.ttl),
                   *_address_records(name, ips, "AAAA", zone.ttl)]
    elif qtype in ("A", "AAAA"):
        records = _address_records(name, ips, qtype, zone.ttl)
    else:
        records = []
    return Answer(NOERROR, records) if records else _nodata(zone)


def endpoint_hostname(ep: Endpoint) -> str:
    """An endpoint's DNS label: its hostname, else its address with dashes (CoreDNS')."""
    if ep.hostname:
        return ep.hostname
    return ep.ip.replace(".", "-").replace(":", "-")


def _in_zone(rel: list[str], qtype: str, zone: Zone, catalog: Catalog) -> Answer:
    o = zone.origin
    if not rel:
        if qtype in ("SOA", "ANY"):
            return Answer(NOERROR, [zone.soa()])
        if qtype == "NS":
            return Answer(NOERROR, [Record(o, "NS", zone.ttl, f"ns.dns.{o}")])
        return _nodata(zone)
    if rel == ["dns-version"]:
        if qtype in ("TXT", "ANY"):
            return Answer(NOERROR, [Record(f"dns-version.{o}", "TXT", zone.ttl,
                                           DNS_SCHEMA_VERSION)])
        return _nodata(zone)
    if rel[-1] == "svc":
        return _service_names(rel[:-1], qtype, zone, catalog)
    if rel[-1] == "pod":
        return _pod_names(rel[:-1], qtype, zone, catalog)
    return _nxdomain(zone)


def _service_names(rel: list[str], qtype: str, zone: Zone, catalog: Catalog) -> Answer:
    if not rel:  # svc.<zone>: above every Service name
        return _nodata(zone)
    ns = rel[-1]
    if len(rel) == 1:
        return _nodata(zone) if catalog.has_namespace(ns) else _nxdomain(zone)
    svc = catalog.service(ns, rel[-2])
    if svc is None:
        return _nxdomain(zone)
    if len(rel) == 2:
        return _service(svc, qtype, zone, catalog)
    if len(rel) == 3:
        return _endpoint_name(svc, rel[0], qtype, zone, catalog)
    if len(rel) == 4 and rel[0].startswith("_") and rel[1].startswith("_"):
        return _srv(svc, rel[0][1:], rel[1][1:], qtype, zone, catalog)
    return _nxdomain(zone)


def _ready(svc: ServiceInfo, catalog: Catalog) -> list[Endpoint]:
    return [e for e in catalog.endpoints(svc.namespace, svc.name) if e.ready]


def _service(svc: ServiceInfo, qtype: str, zone: Zone, catalog: Catalog) -> Answer:
    name = _fqdn(svc.name, svc.namespace, "svc", zone.origin.rstrip("."))
    if svc.external_name:
        target = svc.external_name.rstrip(".") + "."
        return Answer(NOERROR, [Record(name, "CNAME", zone.ttl, target)])
    if qtype == "SRV":
        return _srv(svc, "", "", qtype, zone, catalog)
    if svc.headless:
        ready = _ready(svc, catalog)
        if not ready:
            return _nxdomain(zone)
        return _addresses(name, _unique([e.ip for e in ready]), qtype, zone)
    return _addresses(name, svc.cluster_ips, qtype, zone)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _endpoint_name(svc: ServiceInfo, label: str, qtype: str, zone: Zone,
                   catalog: Catalog) -> Answer:
    if not svc.headless:
        return _nxdomain(zone)
    ips = _unique([e.ip for e in _ready(svc, catalog) if endpoint_hostname(e) == label])
    if not ips:
        return _nxdomain(zone)
    name = _fqdn(label, svc.name, svc.namespace, "svc", zone.origin.rstrip("."))
    return _addresses(name, ips, qtype, zone)


def _srv(svc: ServiceInfo, port_name: str, proto: str, qtype: str, zone: Zone,
         catalog: Catalog) -> Answer:
    """SRV records of the named ports matching ``port_name``/``proto`` ("" matches any, as
    CoreDNS answers an SRV question for the Service name itself); only named ports have
    SRV records."""
    origin = zone.origin.rstrip(".")
    svc_name = _fqdn(svc.name, svc.namespace, "svc", origin)

    def matches(name: str, protocol: str) -> bool:
        return bool(name) and (not port_name or name.lower() == port_name) and \
            (not proto or protocol.lower() == proto)

    targets: list[tuple[str, int, str]] = []  # (record name, port, target)
    extra: list[Record] = []
    if svc.headless:
        for ep in _ready(svc, catalog):
            target = _fqdn(endpoint_hostname(ep), svc.name, svc.namespace, "svc", origin)
            ports = [p for p in ep.ports if matches(p.name, p.protocol)]
            for p in ports:
                targets.append((_srv_name(p.name, p.protocol, svc_name, port_name), p.port,
                                target))
            if ports:
                extra += _address_records(target, [ep.ip], "A", zone.ttl)
                extra += _address_records(target, [ep.ip], "AAAA", zone.ttl)
    elif not svc.external_name:
        for p in svc.ports:
            if matches(p.name, p.protocol):
                targets.append((_srv_name(p.name, p.protocol, svc_name, port_name), p.port,
                                svc_name))
        if targets:
            extra += _address_records(svc_name, svc.cluster_ips, "A", zone.ttl)
            extra += _address_records(svc_name, svc.cluster_ips, "AAAA", zone.ttl)
    if not targets:
        # the Service exists: no such port is NXDOMAIN for the port's name, NODATA for the
        # Service's own name
        return _nxdomain(zone) if port_name else _nodata(zone)
    if qtype not in ("SRV", "ANY"):
        return _nodata(zone)
    # equal weights summing to 100, as CoreDNS spreads them
    weight = max(1, 100 // len(targets))
    records = [Record(name, "SRV", zone.ttl, SRVData(0, weight, port, target))
               for name, port, target in targets]
    return Answer(NOERROR, records, additional=_dedupe(extra))


def _srv_name(port: str, protocol: str, svc_name: str, asked: str) -> str:
    # an SRV question for the Service name itself is answered under that name
    return f"_{port.lower()}._{protocol.lower()}.{svc_name}" if asked else svc_name


def _dedupe(records: list[Record]) -> list[Record]:
    return list(dict.fromkeys(records))


def _pod_names(rel: list[str], qtype: str, zone: Zone, catalog: Catalog) -> Answer:
    if len(rel) == 0:
        return _nodata(zone)
    if len(rel) == 1:
        return _nodata(zone) if catalog.has_namespace(rel[0]) else _nxdomain(zone)
    if len(rel) != 2:
        return _nxdomain(zone)
    ip = _dashed_ip(rel[0])
    if ip is None:
        return _nxdomain(zone)
    return _addresses(_fqdn(*rel, "pod", zone.origin.rstrip(".")), [ip], qtype, zone)


def _dashed_ip(label: str) -> str | None:
    for text in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            continue
    return None


def reverse_ip(labels: list[str]) -> str | None:
    """The address of an ``in-addr.arpa``/``ip6.arpa`` name (labels without the dot), or
    None for a partial or malformed one."""
    if labels[-2:] == ["in-addr", "arpa"]:
        octets = labels[:-2]
        if len(octets) != 4:
            return None
        text = ".".join(reversed(octets))
    elif labels[-2:] == ["ip6", "arpa"]:
        nibbles = labels[:-2]
        if len(nibbles) != 32:
            return None
        hexes = "".join(reversed(nibbles))
        text = ":".join(hexes[i:i + 4] for i in range(0, 32, 4))
    else:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _reverse(labels: list[str], qtype: str, zone: Zone, catalog: Catalog) -> Answer | None:
    ip = reverse_ip(labels)
    owners = catalog.owners(ip) if ip is not None else []
    if not owners:
        return None  # not a cluster address: the machine's resolvers know better
    origin = zone.origin.rstrip(".")
    if qtype not in ("PTR", "ANY"):
        return _nodata(zone)
    name = ".".join(labels) + "."
    targets = []
    for o in owners:
        if o.endpoint:
            host = o.hostname or endpoint_hostname(Endpoint(ip or ""))
            targets.append(_fqdn(host, o.service, o.namespace, "svc", origin))
        else:
            targets.append(_fqdn(o.service, o.namespace, "svc", origin))
    return Answer(NOERROR, [Record(name, "PTR", zone.ttl, t) for t in _unique(targets)])
