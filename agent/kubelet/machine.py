"""What the agent reads from the machine it runs on: capacity, identity, pressure signals.

Owns the readers of ``/proc``, ``/sys``, ``/etc`` and ``statvfs`` that feed the Node's
``status.capacity``, ``status.nodeInfo``, ``status.addresses`` and pressure conditions,
plus the mapping of Python's machine names to Go's ``GOARCH`` names (Kubernetes' labels and
nodeInfo use ``amd64``/``arm64``, never ``x86_64``/``aarch64``).

Every reader is a plain synchronous function that returns a fallback ("" or None) instead of
raising when a file is missing, so an unusual machine (a container without
``/etc/machine-id``) still registers. They are quick file reads; callers on the event loop
call them directly (each is a handful of small reads every status period).
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path

# Python's platform.machine() -> Go's GOARCH (what kubernetes.io/arch holds).
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True)
class MachineInfo:
    """The machine's fixed facts, read once at start (they change only on reboot/resize)."""

    cpus: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    hostname: str
    operating_system: str  # GOOS: "linux"
    architecture: str  # GOARCH: "amd64"
    kernel_version: str
    os_image: str
    machine_id: str
    system_uuid: str
    boot_id: str


@dataclass(frozen=True)
class Pressure:
    """The live signals behind MemoryPressure, DiskPressure and PIDPressure."""

    memory_available_bytes: int | None
    disk_available_bytes: int | None
    disk_total_bytes: int | None
    processes: int | None
    pid_max: int | None


def go_arch(machine: str | None = None) -> str:
    m = (machine if machine is not None else platform.machine()).lower()
    return _GOARCH.get(m, m)


def go_os() -> str:
    return platform.system().lower()  # "linux", "darwin": already GOOS spelling


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def cpu_count() -> int:
    """CPUs this process may use: the affinity mask, narrowed by a cgroup v2 ``cpu.max``
    quota when one is set (a container limited to 2 CPUs must not advertise 64)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, quota))
    return max(1, n)


def _cgroup_cpu_limit() -> int | None:
    # /proc/self/cgroup on v2 is one line "0::/path"; v1 hierarchies are left alone here.
    for line in _read("/proc/self/cgroup").splitlines():
        if line.startswith("0::"):
            text = _read(Path("/sys/fs/cgroup") / line[3:].lstrip("/") / "cpu.max")
            parts = text.split()
            if len(parts) == 2 and parts[0] != "max":
                try:
                    return -(-int(parts[0]) // int(parts[1]))  # ceil
                except (ValueError, ZeroDivisionError):
                    return None
    return None


def meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (the file says kB, meaning KiB)."""
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            factor = 1024 if len(fields) > 1 and fields[1] == "kB" else 1
            out[key.strip()] = int(fields[0]) * factor
    return out


def memory_total() -> int:
    return meminfo().get("MemTotal", 0)


def disk_usage(path: Path) -> tuple[int, int] | None:
    """(total, available-to-unprivileged) bytes of the filesystem holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def os_image() -> str:
    """``PRETTY_NAME`` of os-release, as kubelet reports it ("Ubuntu 24.04 LTS")."""
    for candidate in ("/etc/os-release", "/usr/lib/os-release"):
        for line in _read(candidate).splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip("\"'")
    return f"{platform.system()} {platform.release()}".strip()


def process_count() -> int | None:
    """Threads in the system (the 4th field of /proc/loadavg: running/total), which is
    what draws on pid_max."""
    fields = _read("/proc/loadavg").split()
    if len(fields) >= 4 and "/" in fields[3]:
        try:
            return int(fields[3].split("/")[1])
        except ValueError:
            return None
    return None


def pid_max() -> int | None:
    text = _read("/proc/sys/kernel/pid_max")
    return int(text) if text.isdigit() else None


def primary_ip(server: str) -> str:
    """The source address this host uses to reach ``server`` ("host:port"): a UDP socket
    "connected" to it picks the route without sending a packet. Loopback servers give
    127.0.0.1, which is right for a one-machine cluster."""
    host, _, port = server.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, int(port or 0), type=socket.SOCK_DGRAM)
    except (OSError, ValueError):
        infos = []
    for family, _, _, _, addr in infos:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(addr)
                return str(s.getsockname()[0])
        except OSError:
            continue
    return "127.0.0.1"


def read_machine(data_dir: Path) -> MachineInfo:
    disk = disk_usage(data_dir)
    uname = platform.uname()
    return MachineInfo(
        cpus=cpu_count(),
        memory_bytes=memory_total(),
        ephemeral_storage_bytes=disk[0] if disk else 0,
        hostname=socket.gethostname(),
        operating_system=go_os(),
        architecture=go_arch(uname.machine),
        kernel_version=uname.release,
        os_image=os_image(),
        machine_id=_read("/etc/machine-id"),
        # product_uuid is root-only on most machines; "" when unreadable, as kubelet leaves it.
        system_uuid=_read("/sys/class/dmi/id/product_uuid").lower(),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
    )


def read_pressure(data_dir: Path) -> Pressure:
    disk = disk_usage(data_dir)
    return Pressure(
        memory_available_bytes=meminfo().get("MemAvailable"),
        disk_available_bytes=disk[1] if disk else None,
        disk_total_bytes=disk[0] if disk else None,
        processes=process_count(),
        pid_max=pid_max(),
    )
