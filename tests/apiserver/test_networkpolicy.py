"""NetworkPolicy is stored but not enforced, and says so: a Warning in the reply of every
create and update, and the condition Enforced=False on its status; validation as
Kubernetes'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from control.api import convert, errors
from control.api.pb import networking_pb2
from control.apiserver.networkpolicy import CONDITION, REASON
from tests.conftest import Cluster
from tests.support.cli import flotilla
from tests.support.objects import cm


def netpol(name: str = "deny", **spec: Any) -> networking_pb2.NetworkPolicy:
    spec.setdefault("podSelector", {"matchLabels": {"app": "db"}})
    return convert.from_dict({"metadata": {"name": name, "namespace": "default"},
                              "spec": spec}, networking_pb2.NetworkPolicy())


async def test_not_enforced_warning_and_condition(api_cluster: Cluster) -> None:
    c = api_cluster.client
    seen: list[str] = []
    c.on_warning = seen.append
    made = await c.create(netpol(ingress=[{"from": [{"ipBlock": {
        "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": 5432}]}]))
    assert len(seen) == 1 and "does not enforce NetworkPolicy" in seen[0]
    assert '"deny"' in seen[0]
    [cond] = [x for x in made.status.conditions if x.type == CONDITION]
    assert (cond.status, cond.reason) == ("False", REASON)
    assert list(made.spec.policy_types) == ["Ingress"]
    assert made.spec.ingress[0].ports[0].protocol == "TCP"
    # an update warns again; a status write cannot drop the condition
    made.spec.pod_selector.match_labels["tier"] = "x"
    updated = await c.update(made)
    assert len(seen) == 2
    del updated.status.conditions[:]
    kept = await c.update_status(updated)
    assert [x.type for x in kept.status.conditions] == [CONDITION]
    # other kinds carry no warning
    seen.clear()
    await c.create(cm("plain"))
    assert seen == []


@pytest.mark.parametrize(("spec", "message"), [
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]},
     "must be a strict subset of `cidr`"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"},
                             "podSelector": {}}]}]}, "more than 1 peer type"),
    ({"egress": [{"ports": [{"port": "http", "endPort": 90}]}]}, "endPort"),
    ({"egress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "greater than or equal"),
    ({"policyTypes": ["Sideways"]}, 'Unsupported value: "Sideways"'),
    ({"ingress": [{"ports": [{"protocol": "ICMP", "port": 1}]}]}, 'Unsupported value: "ICMP"'),
])
async def test_validation(api_cluster: Cluster, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.Invalid) as ei:
        await api_cluster.client.create(netpol(**spec))
    assert message in str(ei.value)


async def test_egress_rules_default_policy_types(api_cluster: Cluster) -> None:
    made = await api_cluster.client.create(netpol(egress=[{"to": [{"namespaceSelector": {}}]}]))
    assert list(made.spec.policy_types) == ["Ingress", "Egress"]


async def test_cli_apply_prints_the_warning(api_cluster: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "np.yaml"
    manifest.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                        "metadata: {name: web}\nspec: {podSelector: {}}\n")
    code, _out, err = await flotilla(api_cluster, "apply", "-f", str(manifest))
    assert code == 0, err
    assert "Warning:" in err and "does not enforce NetworkPolicy" in err
