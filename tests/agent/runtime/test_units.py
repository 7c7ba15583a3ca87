"""Pure pieces of the process runtime: the CRI log writer and its rotation, the timestamp
format, symlink-safe path joining, termination-message path mapping, capability sets and
cgroup value conversions. No processes, no root."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agent.runtime import linux
from agent.runtime.cgroups import Hierarchies, read_oom_kills, shares_to_weight
from agent.runtime.monitor import CriLogWriter, exit_code_of, rfc3339_nano
from agent.runtime.rootfs import BindMount, RootfsPlan, host_path_of, secure_join

LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] .*$")


def test_rfc3339_nano_fixed_width() -> None:
    assert rfc3339_nano(1_700_000_000_000_000_007) == "2023-11-14T22:13:20.000000007Z"
    assert rfc3339_nano(0) == "1970-01-01T00:00:00.000000000Z"


def test_log_writer_full_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "0.log"
    w = CriLogWriter(str(path))
    w.write("stdout", b"one\ntwo\nthr", now_ns=0)
    w.write("stderr", b"oops\n", now_ns=0)
    w.write("stdout", b"ee\n", now_ns=0)
    w.close()
    lines = path.read_bytes().splitlines()
    assert all(LINE.match(line) for line in lines)
    assert [line.split(b" ", 1)[1] for line in lines] == [
        b"stdout F one", b"stdout F two", b"stdout P thr", b"stderr F oops", b"stdout F ee"]


def test_log_writer_splits_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    w = CriLogWriter(str(path))
    w.write("stdout", b"x" * 40000 + b"\n")
    w.close()
    tags = [line.split(b" ")[2] for line in path.read_bytes().splitlines()]
    assert tags == [b"P", b"P", b"F"]


def test_log_writer_rotates_and_keeps_max_files(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    w = CriLogWriter(str(path), max_bytes=500, max_files=2)
    for i in range(100):
        w.write("stdout", f"line {i:03d}\n".encode())
    w.close()
    assert path.exists() and (tmp_path / "0.log.1").exists() and (tmp_path / "0.log.2").exists()
    assert not (tmp_path / "0.log.3").exists()
    for f in (path, tmp_path / "0.log.1", tmp_path / "0.log.2"):
        assert f.stat().st_size <= 500
    # reading .2, .1, then the live file gives the newest lines in order
    text = b"".join((tmp_path / n).read_bytes() for n in ("0.log.2", "0.log.1", "0.log"))
    numbers = [int(line.rsplit(b" ", 1)[1]) for line in text.splitlines()]
    assert numbers == list(range(numbers[0], 100))


def test_exit_code_of() -> None:
    assert exit_code_of(3 << 8) == (3, 0)
    assert exit_code_of(9) == (137, 9)


def test_secure_join_keeps_symlinks_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    os.symlink("/run", root / "var" / "run")
    os.symlink("../../..", root / "up")
    assert secure_join(str(root), "/var/run/x") == str(root / "run" / "x")
    assert secure_join(str(root), "/up/etc") == str(root / "etc")
    assert secure_join(str(root), "../../etc/passwd") == str(root / "etc" / "passwd")
    os.symlink("loop", root / "loop")
    with pytest.raises(OSError):
        secure_join(str(root), "/loop")


def test_host_path_of_prefers_the_longest_volume(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "dev").mkdir(parents=True)
    (upper / "dev" / "termination-log").write_text("bye")
    plan = RootfsPlan(merged="", upper=str(upper), work="", mounts=[
        BindMount("/h/a", "/data"), BindMount("/h/b", "/data/sub")])
    assert host_path_of(plan, "/data/sub/msg") == "/h/b/msg"
    assert host_path_of(plan, "/data/msg") == "/h/a/msg"
    assert host_path_of(plan, "/dev/termination-log") == str(upper / "dev" / "termination-log")
    assert host_path_of(plan, "/nowhere") is None


def test_effective_capabilities_follow_containerd() -> None:
    assert linux.effective_capabilities([], [], False) == linux.DEFAULT_CAPABILITIES
    assert linux.effective_capabilities(["NET_BIND_SERVICE"], ["ALL"], False) == {
        "NET_BIND_SERVICE"}
    assert "SYS_ADMIN" in linux.effective_capabilities(["cap_sys_admin"], [], False)
    assert "KILL" not in linux.effective_capabilities([], ["KILL"], False)
    assert linux.effective_capabilities([], ["ALL"], True) == set(linux.CAPABILITIES)
    with pytest.raises(ValueError, match="BOGUS"):
        linux.effective_capabilities(["BOGUS"], [], False)


def test_proc_start_time_of_self_and_missing() -> None:
    start = linux.proc_start_time(os.getpid())
    assert start is not None and linux.process_alive(os.getpid(), start)
    assert not linux.process_alive(os.getpid(), start + 1)
    assert linux.proc_start_time(2**22 + 12345) is None


def test_cgroup_helpers(tmp_path: Path) -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    assert read_oom_kills(str(events)) == 1
    assert read_oom_kills(str(tmp_path / "missing")) == 0
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    h = Hierarchies.from_mountinfo(str(mountinfo))
    assert h.v1 == {"memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct",
                    "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}
    assert h.v2 == "/sys/fs/cgroup/unified"
