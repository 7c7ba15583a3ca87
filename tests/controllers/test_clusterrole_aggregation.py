"""ClusterRole aggregation: the pure union, and the controller following labels and rules
through the API (Kubernetes' documented monitoring example)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control.api.pb import rbac_pb2
from control.controllers.clusterrole_aggregation import (
    ClusterRoleAggregationController,
    aggregate,
)
from control.controllers.manager import ControllerManager
from tests.conftest import Cluster, running_cluster
from tests.support import eventually

AGG = "rbac.example.com/aggregate-to-monitoring"


def cluster_role(name: str, labels: dict[str, str] | None = None,
                 resources: list[str] | None = None) -> rbac_pb2.ClusterRole:
    r = rbac_pb2.ClusterRole()
    r.metadata.name = name
    r.metadata.labels.update(labels or {})
    if resources:
        r.rules.add(api_groups=[""], resources=resources, verbs=["get", "list", "watch"])
    return r


def monitoring() -> rbac_pb2.ClusterRole:
    r = cluster_role("monitoring")
    r.aggregation_rule.cluster_role_selectors.add().match_labels[AGG] = "true"
    return r


def test_aggregate_union_in_name_order_each_rule_once() -> None:
    role = monitoring()
    b = cluster_role("b-endpoints", {AGG: "true"}, ["services", "endpoints"])
    a = cluster_role("a-pods", {AGG: "true"}, ["pods"])
    dup = cluster_role("c-dup", {AGG: "true"}, ["pods"])
    other = cluster_role("other", {}, ["secrets"])
    rules = aggregate(role, [b, other, dup, a, role])
    assert [list(r.resources) for r in rules] == [["pods"], ["services", "endpoints"]]
    assert aggregate(role, [other]) == []


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "data", disable={"scheduler", "controllers"}) as c:
        manager = ControllerManager(c.client, controllers={
            "clusterrole-aggregation": ClusterRoleAggregationController})
        await manager.start()
        try:
            yield c
        finally:
            await manager.stop()


async def test_aggregation_follows_labels_and_rules(api: Cluster) -> None:
    c = api.client
    await c.create(monitoring())
    await c.create(cluster_role("monitoring-endpoints", {AGG: "true"},
                                ["services", "endpoints", "pods"]))

    async def resources() -> list[list[str]]:
        got = await c.get(rbac_pb2.ClusterRole, "monitoring")
        return [list(r.resources) for r in got.rules]

    async def has(expected: list[list[str]]) -> bool:
        return await resources() == expected

    await eventually(lambda: has([["services", "endpoints", "pods"]]),
                     "the labelled role's rules aggregated")
    await c.create(cluster_role("secrets", {}, ["secrets"]))
    extra = await c.get(rbac_pb2.ClusterRole, "secrets")
    extra.metadata.labels[AGG] = "true"
    await c.update(extra)
    await eventually(lambda: has([["services", "endpoints", "pods"],
                                               ["secrets"]]), "a newly labelled role added")
    extra = await c.get(rbac_pb2.ClusterRole, "secrets")
    del extra.metadata.labels[AGG]
    await c.update(extra)
    await eventually(lambda: has([["services", "endpoints", "pods"]]),
                     "an unlabelled role's rules removed")
    await c.delete(rbac_pb2.ClusterRole, "monitoring-endpoints")
    await eventually(lambda: has([]), "a deleted role's rules removed")
