"""What the suite may change on the machine it runs on: nothing that outlives it.

A snapshot of the host's network namespaces, links, IPv4 routes, nftables tables,
forwarding switch, mount points and Flotilla's cgroups, taken when the session starts and
compared when it ends. Anything created and left behind, or anything removed that the
suite did not create, is a leak of some test's clean-up (every test removes what it made,
even on failure). Read with plain files and the iproute2/nftables commands so the check
depends on nothing under test. Synchronous: runs only at session start and end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _lines(*argv: str) -> frozenset[str]:
    if shutil.which(argv[0]) is None:
        return frozenset()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(line.strip() for line in out.stdout.splitlines() if line.strip())


def _dir(path: Path) -> frozenset[str]:
    try:
        return frozenset(p.name for p in path.iterdir())
    except OSError:
        return frozenset()


def _cgroups() -> frozenset[str]:
    found: set[str] = set()
    for hierarchy in _dir(_CGROUP_ROOT):
        base = _CGROUP_ROOT / hierarchy / "flotilla"
        if base.is_dir():
            for dirpath, _dirnames, _files in os.walk(base):
                found.add(str(Path(dirpath).relative_to(_CGROUP_ROOT)))
    return frozenset(found)


def _mounts() -> frozenset[str]:
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(line.split()[4] for line in text.splitlines() if len(line.split()) > 4)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


@dataclass(frozen=True)
class HostState:
    things: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> HostState:
        return cls(
            {
                "network namespace": _dir(Path("/run/netns")),
                "link": _dir(Path("/sys/class/net")),
                "route": _lines("ip", "-o", "-4", "route", "show", "table", "all"),
                "nftables table": _lines("nft", "list", "tables"),
                "ipv4 forwarding": frozenset({_read("/proc/sys/net/ipv4/ip_forward")}),
                "mount": _mounts(),
                "cgroup": _cgroups(),
            }
        )


def leaks(before: HostState, after: HostState) -> list[str]:
    """One line per thing that differs: left behind (+) or removed (-)."""
    out: list[str] = []
    for kind, was in before.things.items():
        now = after.things.get(kind, frozenset())
        out += [f"+ {kind} {x}" for x in sorted(now - was)]
        out += [f"- {kind} {x}" for x in sorted(was - now)]
    return out
