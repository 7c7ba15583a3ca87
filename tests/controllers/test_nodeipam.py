"""Node IPAM: range arithmetic (tables), then the controller against a real apiserver:
distinct ranges, compare-and-swap, freed on delete, rebuilt from the Nodes on restart."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.controllers.manager import ControllerManager
from control.controllers.nodeipam import (
    IpamConfigError,
    next_free_range,
    parse_cluster_cidr,
    ranges_in_use,
)
from control.server import ControlPlane, ServerOptions
from tests.support import eventually

N = ipaddress.ip_network


@pytest.mark.parametrize(("cidr", "mask", "error"), [
    ("10.244.0.0/16", 24, None),
    ("10.244.0.0/16", 16, None),
    ("fd00::/64", 80, None),
    ("10.244.0.1/16", 24, "has host bits set"),
    ("nonsense", 24, "does not appear to be"),
    ("10.244.0.0/16", 8, "between the cluster CIDR's prefix length (16) and 32"),
    ("10.244.0.0/16", 33, "between"),
    ("10.0.0.0/8", 30, "more than 2^20"),
])
def test_parse_cluster_cidr(cidr: str, mask: int, error: str | None) -> None:
    if error is None:
        assert str(parse_cluster_cidr(cidr, mask)) == cidr
    else:
        with pytest.raises(IpamConfigError, match=error.replace("^", r"\^")
                           .replace("(", r"\(").replace(")", r"\)")):
            parse_cluster_cidr(cidr, mask)


@pytest.mark.parametrize(("cluster", "mask", "used", "after", "expected"), [
    ("10.244.0.0/16", 24, [], -1, ("10.244.0.0/24", 0)),
    ("10.244.0.0/16", 24, ["10.244.0.0/24"], -1, ("10.244.1.0/24", 1)),
    # round robin: after index 5 comes 6 even though 0 is free
    ("10.244.0.0/16", 24, ["10.244.5.0/24"], 5, ("10.244.6.0/24", 6)),
    # wraps round the end
    ("10.244.0.0/22", 24, ["10.244.3.0/24"], 3, ("10.244.0.0/24", 0)),
    # a bigger range in use covers several slots, a smaller one its whole slot
    ("10.244.0.0/22", 24, ["10.244.0.0/23", "10.244.2.128/25"], -1, ("10.244.3.0/24", 3)),
    # ranges outside the cluster CIDR, or of another family, take nothing
    ("10.244.0.0/23", 24, ["10.9.0.0/24", "fd00::/64"], -1, ("10.244.0.0/24", 0)),
    # exhausted
    ("10.244.0.0/23", 24, ["10.244.0.0/24", "10.244.1.0/24"], -1, None),
    ("10.244.0.0/16", 24, ["10.0.0.0/8"], -1, None),
    ("fd00::/64", 80, ["fd00::/80"], -1, ("fd00::1:0:0:0/80", 1)),
])
def test_next_free_range(cluster: str, mask: int, used: list[str], after: int,
                         expected: tuple[str, int] | None) -> None:
    got = next_free_range(N(cluster), mask, [N(u) for u in used], after)
    assert (None if got is None else (str(got[0]), got[1])) == expected


def node(name: str, cidr: str = "") -> core_pb2.Node:
    n: core_pb2.Node = convert.from_dict({"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": name}}, core_pb2.Node())
    if cidr:
        n.spec.pod_cidr = cidr
        n.spec.pod_cidrs.append(cidr)
    return n


def test_ranges_in_use() -> None:
    a, b, c = node("a", "10.244.0.0/24"), node("b", "10.244.0.0/24"), node("c")
    old = node("old")
    old.spec.pod_cidr = "10.244.9.0/24"  # podCIDR alone (written before podCIDRs existed)
    got = ranges_in_use([a, b, c, old], pending=["10.244.7.0/24"])
    assert got == {N("10.244.0.0/24"): ["a", "b"], N("10.244.9.0/24"): ["old"],
                   N("10.244.7.0/24"): []}


@asynccontextmanager
async def plane(data: Path) -> AsyncIterator[ApiClient]:
    cp = ControlPlane(ServerOptions(data_dir=data, listen="127.0.0.1:0",
                                    bookmark_interval=0.2, shutdown_grace=0.5,
                                    disable={"controllers", "scheduler"}))
    address = await cp.start()
    channel = open_channel(address, cp.admin_credentials)
    try:
        yield ApiClient(channel, address, timeout=10)
    finally:
        await channel.close(None)
        await cp.stop()


@asynccontextmanager
async def ipam(client: ApiClient, cidr: str) -> AsyncIterator[ControllerManager]:
    from control.controllers.nodeipam import NodeIpamController

    manager = ControllerManager(client, controllers={"nodeipam": NodeIpamController},
                                cluster_cidr=cidr, node_cidr_mask_size=24)
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


async def cidrs(c: ApiClient) -> dict[str, str]:
    return {n.metadata.name: n.spec.pod_cidr for n in (await c.list_all("nodes")).items}


async def test_ranges_distinct_freed_and_rebuilt_after_restart(tmp_path: Path) -> None:
    async with plane(tmp_path / "data") as c:
        async with ipam(c, "10.244.0.0/22"):
            for name in ("n1", "n2", "n3"):
                await c.create(node(name))

            async def all_have() -> bool:
                return all((await cidrs(c)).values())

            await eventually(all_have)
            got = await cidrs(c)
            assert sorted(got.values()) == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
            n1 = await c.get(core_pb2.Node, "n1")
            assert list(n1.spec.pod_cidrs) == [n1.spec.pod_cidr]
            # the apiserver refuses to move a range once given
            n1.spec.pod_cidr = "10.244.3.0/24"
            del n1.spec.pod_cidrs[:]
            with pytest.raises(errors.Invalid, match="may not change podCIDR"):
                await c.update(n1)

        # a new manager knows only what the Nodes say: the fourth node gets the last range
        async with ipam(c, "10.244.0.0/22"):
            await c.create(node("n4"))
            await c.create(node("n5"))  # nothing left for this one

            async def n4_has() -> bool:
                return bool((await cidrs(c))["n4"])

            await eventually(n4_has)
            got = await cidrs(c)
            assert got["n4"] == "10.244.3.0/24" and got["n5"] == ""
            assert len(set(got.values()) - {""}) == 4

            async def exhausted_event() -> bool:
                events = (await c.list_all("events", "")).items
                return any(e.reason == "CIDRNotAvailable" and e.involved_object.name == "n5"
                           for e in events)

            await eventually(exhausted_event)
            # deleting a node frees its range for the one waiting
            freed = got["n2"]
            await c.delete(core_pb2.Node, "n2")

            async def n5_has() -> bool:
                return (await cidrs(c)).get("n5") == freed

            await eventually(n5_has)


async def test_kept_range_and_duplicate_claim(tmp_path: Path) -> None:
    async with plane(tmp_path / "data") as c:
        # ranges given by hand before the controller starts: kept, and avoided
        await c.create(node("manual", "10.244.0.0/24"))
        await c.create(node("outside", "192.0.2.0/24"))
        await c.create(node("twin", "10.244.0.0/24"))
        async with ipam(c, "10.244.0.0/16"):
            await c.create(node("fresh"))

            async def fresh_has() -> bool:
                return bool((await cidrs(c))["fresh"])

            await eventually(fresh_has)
            got = await cidrs(c)
            assert got == {"manual": "10.244.0.0/24", "outside": "192.0.2.0/24",
                           "twin": "10.244.0.0/24", "fresh": "10.244.1.0/24"}

            async def duplicate_event() -> bool:
                events = (await c.list_all("events", "")).items
                return any(e.reason == "CIDRAssignmentFailed" for e in events)

            await eventually(duplicate_event)


@pytest.mark.e2e
def test_cli_refuses_bad_cluster_cidr(tmp_path: Path) -> None:
    import subprocess
    import sys

    for args, why in ((["--cluster-cidr", "10.244.0.1/16"], "host bits"),
                      (["--node-cidr-mask-size", "12"], "between")):
        r = subprocess.run([sys.executable, "-m", "control.cli.main", "server",
                            "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                            *args], capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode != 0 and why in r.stderr, r.stderr
        assert not (tmp_path / "d").exists()
