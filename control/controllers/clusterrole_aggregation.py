"""ClusterRole aggregation (Kubernetes' clusterrole-aggregation controller): a ClusterRole
with an ``aggregationRule`` gets as its rules the union of the rules of every ClusterRole
whose labels match one of its selectors, kept up to date as roles and labels change.

:func:`aggregate` is the pure part: the matching roles in name order (never the aggregated
role itself), each rule once, in first-seen order; the stored rules are replaced only when
they differ, so an unchanged role is never rewritten.

Keys are ClusterRole names; any ClusterRole change enqueues every aggregated role (a
changed label can add or remove a role from any of them: there are few such roles).

Concurrency contract: runs under ``control.runtime.Controller`` (one key never reconciled
by two workers at once); the write is a compare-and-swap update. Event handlers are
synchronous and only enqueue keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from control.api import errors, labels
from control.api.pb import rbac_pb2
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime.controller import Controller, Result

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

NAME = "clusterrole-aggregation"
ClusterRole = rbac_pb2.ClusterRole


def aggregate(role: ClusterRole, roles: Iterable[ClusterRole]) -> list[rbac_pb2.PolicyRule]:
    """The rules ``role``'s aggregationRule selects."""
    selectors = [labels.from_label_selector(s)
                 for s in role.aggregation_rule.cluster_role_selectors]
    out: list[rbac_pb2.PolicyRule] = []
    seen: set[bytes] = set()
    for other in sorted(roles, key=lambda r: r.metadata.name):
        if other.metadata.name == role.metadata.name:
            continue
        if not any(s.matches(other.metadata.labels) for s in selectors):
            continue
        for rule in other.rules:
            key = rule.SerializeToString(deterministic=True)
            if key not in seen:
                seen.add(key)
                out.append(rule)
    return out


class ClusterRoleAggregationController:
    name = NAME

    def __init__(self, ctx: ControllerContext) -> None:
        self._client: ApiClient = ctx.client
        self.controller = Controller(NAME, self.reconcile, workers=ctx.workers, clock=ctx.clock)
        self._roles = ctx.informers.informer(ClusterRole)
        self._roles.add_event_handler(on_add=self._changed,
                                      on_update=lambda _o, n: self._changed(n),
                                      on_delete=self._changed)

    def _changed(self, _role: ClusterRole) -> None:
        for r in self._roles.indexer.list():
            if r.aggregation_rule.cluster_role_selectors:
                self.controller.enqueue(r.metadata.name)

    async def reconcile(self, key: str) -> Result | None:
        role = self._roles.indexer.get(key)
        if role is None or not role.aggregation_rule.cluster_role_selectors:
            return None
        rules = aggregate(role, self._roles.indexer.list())
        if list(role.rules) == rules:
            return None

        def mutate(r: ClusterRole) -> bool:
            if list(r.rules) == rules:
                return False
            del r.rules[:]
            r.rules.extend(rules)
            return True

        try:
            await guaranteed_update(self._client, ClusterRole, "", key, mutate, current=role)
        except errors.NotFound:
            pass
        return None
