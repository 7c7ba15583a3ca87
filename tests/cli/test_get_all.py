"""`get all`: kubectl's "all" category, among the kinds Flotilla serves."""

from __future__ import annotations

from control.cli.main import parse_refs


def test_all_expands_to_the_workload_kinds_and_services() -> None:
    refs = parse_refs(["all"], names_required=False, allow_many_types=True)
    plurals = [r.info.plural for r in refs]
    assert plurals[0] == "pods" and {"services", "deployments", "replicasets"} <= set(plurals)
    assert all(r.name is None for r in refs)
    # combined with other types, as kubectl allows
    more = parse_refs(["all,configmaps"], names_required=False, allow_many_types=True)
    assert more[-1].info.plural == "configmaps"
