"""An in-memory :class:`~agent.network.interface.PodNetwork` for tests: addresses from one
range, no kernel objects. Records every call so tests can assert on them.

Concurrency: single event loop; no awaits inside a call, so calls never interleave.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from agent.network.interface import Attachment, AttachRequest, NetworkError, NetworkNotReady


class FakeNetwork:
    def __init__(self, cidr: str | None = "10.244.0.0/24") -> None:
        self.cidr = ipaddress.ip_network(cidr) if cidr else None
        self.attached: dict[str, tuple[AttachRequest, Attachment]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_add: str | None = None  # message to fail the next add with

    async def add(self, req: AttachRequest) -> Attachment:
        self.calls.append(("add", req.container_id))
        if self.fail_add:
            message, self.fail_add = self.fail_add, None
            raise NetworkError(message)
        if self.cidr is None:
            raise NetworkNotReady("the node has no pod range yet")
        if req.container_id in self.attached:
            return self.attached[req.container_id][1]
        used = {a.ips[0] for _, a in self.attached.values()}
        hosts = list(self.cidr.hosts())
        gateway = str(hosts[0])
        for h in hosts[1:]:
            if str(h) not in used:
                att = Attachment((str(h),), self.cidr.prefixlen, gateway, req.if_name)
                self.attached[req.container_id] = (req, att)
                return att
        raise NetworkError(f"no address left in {self.cidr}")

    async def delete(self, req: AttachRequest) -> None:
        self.calls.append(("delete", req.container_id))
        self.attached.pop(req.container_id, None)

    async def check(self, req: AttachRequest) -> None:
        self.calls.append(("check", req.container_id))
        if req.container_id not in self.attached:
            raise NetworkError(f"{req.container_id} is not attached")

    async def gc(self, keep: Collection[str]) -> list[str]:
        gone = [cid for cid in self.attached if cid not in keep]
        for cid in gone:
            del self.attached[cid]
        return gone
