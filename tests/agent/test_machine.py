"""The machine readers, run on this machine: values must be present and plausible."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.kubelet import machine


def test_go_arch_names() -> None:
    assert machine.go_arch("x86_64") == "amd64"
    assert machine.go_arch("aarch64") == "arm64"
    assert machine.go_arch("armv7l") == "arm"
    assert machine.go_arch("riscv64") == "riscv64"
    assert machine.go_arch() in ("amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64")


def test_read_machine_is_plausible(tmp_path: Path) -> None:
    info = machine.read_machine(tmp_path)
    assert 1 <= info.cpus <= (os.cpu_count() or 1)
    assert 64 * 2**20 < info.memory_bytes < 2**50
    assert info.ephemeral_storage_bytes > 0
    assert info.operating_system == "linux"
    assert info.kernel_version == os.uname().release
    assert info.os_image
    assert info.hostname
    if Path("/proc/sys/kernel/random/boot_id").exists():
        assert len(info.boot_id) == 36
    if Path("/etc/machine-id").exists():
        assert info.machine_id == Path("/etc/machine-id").read_text().strip()


def test_read_pressure_is_plausible(tmp_path: Path) -> None:
    p = machine.read_pressure(tmp_path)
    assert p.memory_available_bytes is not None and p.memory_available_bytes > 0
    assert p.disk_total_bytes and p.disk_available_bytes is not None
    assert p.disk_available_bytes <= p.disk_total_bytes
    assert p.processes is not None and p.processes > 0
    assert p.pid_max is not None and p.pid_max >= p.processes


def test_meminfo_units() -> None:
    info = machine.meminfo()
    assert info["MemTotal"] % 1024 == 0  # kB in the file means KiB
    assert info["MemAvailable"] <= info["MemTotal"]


def test_disk_usage_of_missing_path_is_none(tmp_path: Path) -> None:
    assert machine.disk_usage(tmp_path / "nope") is None


@pytest.mark.parametrize(
    ("server", "expected"),
    [("127.0.0.1:6443", "127.0.0.1"), ("localhost:1", None), ("not a host:1", "127.0.0.1")],
)
def test_primary_ip(server: str, expected: str | None) -> None:
    ip = machine.primary_ip(server)
    if expected is None:
        assert ip in ("127.0.0.1", "::1")
    else:
        assert ip == expected


def test_primary_ip_towards_a_public_address_is_not_loopback() -> None:
    # Connecting a UDP socket sends nothing; it only asks the kernel for a route.
    ip = machine.primary_ip("192.0.2.1:6443")
    if ip == "127.0.0.1":
        pytest.skip("no route off this host")
    assert not ip.startswith("127.")
