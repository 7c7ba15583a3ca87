"""Fair shares under a flood, end to end: while one user floods a real server with creates
and watches, 20 simulated agents (own node identities, own connections, in a process of
their own) renew their Leases every 3 s; every renewal lands within its interval, no node
goes NotReady, and the flooder is refused (counted by it and by the server).

The benchmark bench/apf_flood.py runs the same scenario at full scale (100 agents, 2,000
creates, 5,000 watches); here it is scaled down for a 2-core CI, with the server's seats
scaled down too (30: 3 for global-default), so the flood still overflows its level."""

from __future__ import annotations

from pathlib import Path

from bench.apf_flood import Plan, run_scenario
from tests.conftest import running_cluster


async def test_leases_land_while_a_client_floods(tmp_path: Path) -> None:
    plan = Plan(nodes=20, interval=3.0, creates=300, watches=500, duration=15.0,
                create_channels=4, watch_channels=5)
    async with running_cluster(tmp_path / "data", disable={"scheduler", "dns"},
                               max_requests_inflight=20, max_mutating_requests_inflight=10,
                               node_monitor_grace_period=4 * plan.interval) as c:
        report = await run_scenario(c.address, tmp_path / "data" / "pki", c.client, plan,
                                    tmp_path)
        metrics = c.plane.apiserver_metrics.registry

        def rejected(level: str) -> float:
            return sum(metrics.value("apiserver_flowcontrol_rejected_requests_total",
                                     {"priority_level": level, "flow_schema": schema,
                                      "reason": reason})
                       for schema in ("global-default", "system-node-high")
                       for reason in ("queue-full", "time-out"))

        node_high = metrics.value("apiserver_flowcontrol_dispatched_requests_total",
                                  {"priority_level": "node-high",
                                   "flow_schema": "system-node-high"})
        flood_refused = rejected("global-default")
        lease_refused = rejected("node-high")
    a, f = report.agents, report.flood
    summary = (f"renewals {a.renewals} late {a.late} errors {a.errors} "
               f"max {max(a.latencies, default=0):.2f}s; not ready {report.not_ready}; "
               f"flood created {f.created} refused {f.create_rejected}+{f.watch_rejected} "
               f"errors {f.create_errors} {f.watch_errors}; server refused flood "
               f"{flood_refused}, leases {lease_refused}")
    # every agent renewed about every interval, each renewal within its interval
    assert a.renewals >= plan.nodes * (plan.duration / plan.interval - 1), summary
    assert a.late == 0 and a.failures == 0, summary
    assert node_high >= a.renewals, summary
    assert lease_refused == 0, summary
    assert report.not_ready == [], summary
    # the flooder was throttled, and still served within its share
    assert f.create_rejected > 0 and flood_refused >= f.create_rejected, summary
    assert f.created > 0, summary
    assert not f.create_errors, summary
