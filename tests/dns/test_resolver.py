"""The cluster DNS' answers, name by name, from Kubernetes' DNS specification."""

from __future__ import annotations

import pytest

from control.dns.catalog import Endpoint, MemoryCatalog, Port, ServiceInfo
from control.dns.resolver import (
    NOERROR,
    NXDOMAIN,
    Record,
    SRVData,
    Zone,
    resolve,
    reverse_ip,
)

ZONE = Zone("cluster.local", serial=7)
HTTP = Port("http", "TCP", 80)
DNS_UDP = Port("dns", "UDP", 53)


def catalog() -> MemoryCatalog:
    c = MemoryCatalog()
    c.add(ServiceInfo("default", "web", ("10.96.0.20",), ports=(HTTP, Port("", "TCP", 81))))
    c.add(ServiceInfo("default", "dual", ("10.96.0.21", "fd00::21")))
    c.add(ServiceInfo("kube-system", "kube-dns", ("10.96.0.10",),
                      ports=(DNS_UDP, Port("dns-tcp", "TCP", 53))))
    c.add(ServiceInfo("db", "pg", headless=True, ports=(Port("pg", "TCP", 5432),)), [
        Endpoint("10.244.1.5", "pg-0", ports=(Port("pg", "TCP", 5432),)),
        Endpoint("10.244.2.6", "pg-1", ports=(Port("pg", "TCP", 5432),)),
        Endpoint("10.244.2.7", "pg-2", ready=False, ports=(Port("pg", "TCP", 5432),)),
        Endpoint("10.244.3.8", ports=(Port("pg", "TCP", 5432),)),
    ])
    c.add(ServiceInfo("db", "empty", headless=True))
    c.add(ServiceInfo("default", "ext", external_name="db.example.com"))
    return c


def a(name: str, ip: str, rtype: str = "A") -> Record:
    return Record(name, rtype, 5, ip)


def srv(name: str, weight: int, port: int, target: str) -> Record:
    return Record(name, "SRV", 5, SRVData(0, weight, port, target))


CASES = [
    # ClusterIP Services
    ("web.default.svc.cluster.local", "A", NOERROR,
     [a("web.default.svc.cluster.local.", "10.96.0.20")]),
    ("WEB.Default.svc.cluster.local.", "A", NOERROR,
     [a("web.default.svc.cluster.local.", "10.96.0.20")]),
    ("web.default.svc.cluster.local", "AAAA", NOERROR, []),  # NODATA
    ("web.default.svc.cluster.local", "MX", NOERROR, []),
    ("dual.default.svc.cluster.local", "AAAA", NOERROR,
     [a("dual.default.svc.cluster.local.", "fd00::21", "AAAA")]),
    ("nope.default.svc.cluster.local", "A", NXDOMAIN, []),
    ("web.other.svc.cluster.local", "A", NXDOMAIN, []),
    # SRV for named ports only
    ("_http._tcp.web.default.svc.cluster.local", "SRV", NOERROR,
     [srv("_http._tcp.web.default.svc.cluster.local.", 100, 80,
          "web.default.svc.cluster.local.")]),
    ("_http._udp.web.default.svc.cluster.local", "SRV", NXDOMAIN, []),
    ("_http._tcp.web.default.svc.cluster.local", "A", NOERROR, []),
    ("_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV", NOERROR,
     [srv("_dns._udp.kube-dns.kube-system.svc.cluster.local.", 100, 53,
          "kube-dns.kube-system.svc.cluster.local.")]),
    ("web.default.svc.cluster.local", "SRV", NOERROR,
     [srv("web.default.svc.cluster.local.", 100, 80, "web.default.svc.cluster.local.")]),
    # headless: each ready endpoint
    ("pg.db.svc.cluster.local", "A", NOERROR,
     [a("pg.db.svc.cluster.local.", "10.244.1.5"), a("pg.db.svc.cluster.local.", "10.244.2.6"),
      a("pg.db.svc.cluster.local.", "10.244.3.8")]),
    ("_pg._tcp.pg.db.svc.cluster.local", "SRV", NOERROR,
     [srv("_pg._tcp.pg.db.svc.cluster.local.", 33, 5432, "pg-0.pg.db.svc.cluster.local."),
      srv("_pg._tcp.pg.db.svc.cluster.local.", 33, 5432, "pg-1.pg.db.svc.cluster.local."),
      srv("_pg._tcp.pg.db.svc.cluster.local.", 33, 5432,
          "10-244-3-8.pg.db.svc.cluster.local.")]),
    ("pg-0.pg.db.svc.cluster.local", "A", NOERROR,
     [a("pg-0.pg.db.svc.cluster.local.", "10.244.1.5")]),
    ("pg-0.pg.db.svc.cluster.local", "TXT", NOERROR, []),
    ("10-244-3-8.pg.db.svc.cluster.local", "A", NOERROR,
     [a("10-244-3-8.pg.db.svc.cluster.local.", "10.244.3.8")]),
    ("pg-2.pg.db.svc.cluster.local", "A", NXDOMAIN, []),  # not ready
    ("pg-9.pg.db.svc.cluster.local", "A", NXDOMAIN, []),
    ("empty.db.svc.cluster.local", "A", NXDOMAIN, []),  # headless, no endpoints
    ("x.web.default.svc.cluster.local", "A", NXDOMAIN, []),  # not headless
    # ExternalName
    ("ext.default.svc.cluster.local", "A", NOERROR,
     [Record("ext.default.svc.cluster.local.", "CNAME", 5, "db.example.com.")]),
    # names above existing ones exist
    ("default.svc.cluster.local", "A", NOERROR, []),
    ("svc.cluster.local", "A", NOERROR, []),
    ("nobody.svc.cluster.local", "A", NXDOMAIN, []),
    ("a.b.c.web.default.svc.cluster.local", "A", NXDOMAIN, []),
    ("foo.cluster.local", "A", NXDOMAIN, []),
    # pods (insecure)
    ("10-244-1-5.db.pod.cluster.local", "A", NOERROR,
     [a("10-244-1-5.db.pod.cluster.local.", "10.244.1.5")]),
    ("not-an-ip.db.pod.cluster.local", "A", NXDOMAIN, []),
    # zone apex and version
    ("dns-version.cluster.local", "TXT", NOERROR,
     [Record("dns-version.cluster.local.", "TXT", 5, "1.1.0")]),
    ("cluster.local", "A", NOERROR, []),
    # reverse
    ("20.0.96.10.in-addr.arpa", "PTR", NOERROR,
     [Record("20.0.96.10.in-addr.arpa.", "PTR", 5, "web.default.svc.cluster.local.")]),
    ("5.1.244.10.in-addr.arpa", "PTR", NOERROR,
     [Record("5.1.244.10.in-addr.arpa.", "PTR", 5, "pg-0.pg.db.svc.cluster.local.")]),
    ("8.3.244.10.in-addr.arpa", "PTR", NOERROR,
     [Record("8.3.244.10.in-addr.arpa.", "PTR", 5, "10-244-3-8.pg.db.svc.cluster.local.")]),
    ("20.0.96.10.in-addr.arpa", "A", NOERROR, []),
]


@pytest.mark.parametrize(("qname", "qtype", "rcode", "records"), CASES,
                         ids=[f"{q}-{t}" for q, t, _, _ in CASES])
def test_resolve(qname: str, qtype: str, rcode: str, records: list[Record]) -> None:
    got = resolve(qname, qtype, ZONE, catalog())
    assert got is not None
    assert got.rcode == rcode
    assert got.answer == records
    if not records:
        # NXDOMAIN and NODATA both carry the zone's SOA (negative caching for 5 s)
        assert [r.rtype for r in got.authority] == ["SOA"]
        assert got.authority[0].name == "cluster.local."


@pytest.mark.parametrize("qname", ["example.com", "www.google.com.", "1.0.0.127.in-addr.arpa",
                                   "local", "cluster.local.example.com"])
def test_names_outside_the_cluster_are_not_ours(qname: str) -> None:
    assert resolve(qname, "A", ZONE, catalog()) is None


def test_srv_carries_the_targets_addresses() -> None:
    got = resolve("_pg._tcp.pg.db.svc.cluster.local", "SRV", ZONE, catalog())
    assert got is not None
    assert a("pg-0.pg.db.svc.cluster.local.", "10.244.1.5") in got.additional
    assert len(got.additional) == 3


def test_other_zone_and_soa() -> None:
    zone = Zone("corp.internal", ttl=30, serial=42)
    got = resolve("web.default.svc.corp.internal", "A", zone, catalog())
    assert got is not None and got.answer == [Record("web.default.svc.corp.internal.", "A",
                                                     30, "10.96.0.20")]
    assert resolve("web.default.svc.cluster.local", "A", zone, catalog()) is None
    soa = resolve("corp.internal", "SOA", zone, catalog())
    assert soa is not None and soa.answer[0].data.serial == 42  # type: ignore[union-attr]


@pytest.mark.parametrize(("labels", "ip"), [
    ("4.3.2.1.in-addr.arpa", "1.2.3.4"),
    ("3.2.1.in-addr.arpa", None),
    ("300.3.2.1.in-addr.arpa", None),
    (".".join("1" + "0" * 31) + ".ip6.arpa", "::1"),
])
def test_reverse_ip(labels: str, ip: str | None) -> None:
    assert reverse_ip(labels.split(".")) == ip


def test_slice_endpoints() -> None:
    from control.api import convert
    from control.api.pb import discovery_pb2
    from control.dns.catalog import slice_endpoints

    es = convert.from_dict({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "pg-abc", "namespace": "db",
                     "labels": {"kubernetes.io/service-name": "pg"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "protocol": "TCP", "port": 5432}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "hostname": "pg-0", "conditions": {"ready": True}},
            {"addresses": ["10.244.2.7"], "conditions": {"ready": False}},
            {"addresses": ["10.244.3.8"]},  # ready unset: ready
        ]}, discovery_pb2.EndpointSlice())
    pg = (Port("pg", "TCP", 5432),)
    assert slice_endpoints(es) == [Endpoint("10.244.1.5", "pg-0", True, pg),
                                   Endpoint("10.244.2.7", "", False, pg),
                                   Endpoint("10.244.3.8", "", True, pg)]
    es.address_type = "FQDN"
    assert slice_endpoints(es) == []
