"""Containers in their image: the root is an overlay of the image's layers (whiteouts
honoured), a writable layer per container name kept across restarts and removed with the
sandbox, the image's user resolved in its /etc/passwd. Needs root."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.images.archive import import_archive
from agent.images.store import Store
from agent.runtime.interface import CreateContainerError, Security
from agent.runtime.process import ProcessRuntime
from tests.images import builder as b
from tests.support.process_runtime import (
    cleanup,
    log_entries,
    make_runtime,
    run,
    sandbox,
    wait_exited,
    wait_for_log,
)

pytestmark = pytest.mark.root(reason="overlay mounts need root")


@pytest.fixture
def layers(tmp_path: Path) -> list[str]:
    base = [
        *b.busybox_entries(),
        b.Entry("etc/motd", b"base\n"),
        b.Entry("srv", kind="dir", mode=0o755),
        b.Entry("srv/old", b"old\n"),
    ]
    top = [
        b.Entry("etc", kind="dir", mode=0o755),
        b.Entry("etc/.wh.motd"),
        b.Entry("srv", kind="dir", mode=0o755),
        b.Entry("srv/.wh..wh..opq"),
        b.Entry("srv/new", b"new\n"),
    ]
    image = b.build_image([b.layer_tar(base), b.layer_tar(top)], {})
    archive = tmp_path / "image.tar"
    b.docker_save(archive, [(image, ["t:1"])])
    store = Store(tmp_path / "images")
    [img] = import_archive(store, archive)
    return [str(store.layer_path(layer.diff_id)) for layer in img.layers]


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = make_runtime(tmp_path / "rt", isolate=True)
    try:
        yield rt
    finally:
        await cleanup(rt)


def stdout(tmp_path: Path, name: str = "c") -> list[str]:
    return [t for s, t in log_entries(tmp_path / "logs" / name / "0.log") if s == "stdout"]


async def test_root_is_the_image(
    runtime: ProcessRuntime, tmp_path: Path, layers: list[str]
) -> None:
    sid = await sandbox(runtime, tmp_path, hostname="img-0", hosts_file="127.0.0.1 localhost\n")
    cid = await run(
        runtime,
        sid,
        [
            "sh",
            "-c",
            "ls /; cat /etc/motd 2>&1; ls /srv; hostname; "
            "cat /etc/hosts; test -e /usr && echo host-usr; echo done",
        ],
        tmp_path,
        rootfs_layers=layers,
    )
    st = await wait_exited(runtime, cid)
    out = stdout(tmp_path)
    assert st.exit_code == 0, out
    listing = out[: out.index("cat: can't open '/etc/motd': No such file or directory")]
    assert set(listing) == {"bin", "dev", "etc", "home", "proc", "srv", "sys", "tmp"}
    rest = out[len(listing) + 1 :]
    assert rest == ["new", "img-0", "127.0.0.1 localhost", "done"]


async def test_writable_layer_kept_across_restarts(
    runtime: ProcessRuntime, tmp_path: Path, layers: list[str]
) -> None:
    sid = await sandbox(runtime, tmp_path)
    first = await run(
        runtime,
        sid,
        ["sh", "-c", "echo kept > /srv/state; rm /srv/new"],
        tmp_path,
        rootfs_layers=layers,
    )
    assert (await wait_exited(runtime, first)).exit_code == 0
    second = await run(
        runtime,
        sid,
        ["sh", "-c", "cat /srv/state; ls /srv"],
        tmp_path,
        name="c2",
        rootfs_layers=layers,
    )
    await wait_exited(runtime, second)
    assert stdout(tmp_path, "c2") == ["new"]  # another container: its own writable layer
    (tmp_path / "logs" / "c").rename(tmp_path / "logs" / "c-first")
    again = await run(
        runtime, sid, ["sh", "-c", "cat /srv/state; ls /srv"], tmp_path, rootfs_layers=layers
    )
    await wait_exited(runtime, again)
    assert stdout(tmp_path) == ["kept", "state"]
    assert os.listdir(Path(layers[1], "srv")) == ["new"]  # the image's layer untouched
    rw = runtime.root_dir / "sandboxes" / sid / "rootfs"
    assert sorted(os.listdir(rw)) == ["c", "c2"]
    await runtime.remove_pod_sandbox(sid)
    assert not rw.exists()


@pytest.mark.parametrize(
    ("user", "security", "want"),
    [
        ("", Security(), "0 0"),
        ("web", Security(), "1000 1001"),
        ("web:nogroup", Security(), "1000 65534"),
        ("1234", Security(), "1234 0"),
        ("1234:5", Security(), "1234 5"),
        ("web", Security(run_as_user=65534), "65534 65534"),
        ("web", Security(run_as_user=7, run_as_group=8), "7 8"),
    ],
)
async def test_image_user(
    runtime: ProcessRuntime,
    tmp_path: Path,
    layers: list[str],
    user: str,
    security: Security,
    want: str,
) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(
        runtime,
        sid,
        ["sh", "-c", "echo $(id -u) $(id -g)"],
        tmp_path,
        rootfs_layers=layers,
        image_user=user,
        security=security,
    )
    await wait_exited(runtime, cid)
    assert stdout(tmp_path) == [want]


async def test_unknown_user_and_read_only_root(
    runtime: ProcessRuntime, tmp_path: Path, layers: list[str]
) -> None:
    sid = await sandbox(runtime, tmp_path)
    with pytest.raises(
        CreateContainerError, match="'nobody-here' is not in the image's /etc/passwd"
    ):
        await run(runtime, sid, ["true"], tmp_path, rootfs_layers=layers, image_user="nobody-here")
    cid = await run(
        runtime,
        sid,
        ["sh", "-c", "touch /x 2>/dev/null && echo writable; echo ok"],
        tmp_path,
        rootfs_layers=layers,
        security=Security(read_only_root_filesystem=True),
    )
    await wait_exited(runtime, cid)
    assert stdout(tmp_path) == ["ok"]


async def test_exec_sees_the_image(
    runtime: ProcessRuntime, tmp_path: Path, layers: list[str]
) -> None:
    sid = await sandbox(runtime, tmp_path)
    cid = await run(runtime, sid, ["sleep", "30"], tmp_path, rootfs_layers=layers)
    result = await runtime.exec_sync(cid, ["sh", "-c", "ls /srv; test -e /usr || echo no-usr"], 10)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.decode().split() == ["new", "no-usr"]
    await runtime.stop_container(cid, 1)


@pytest.mark.parametrize("init", [False, True])
async def test_optional_init(runtime: ProcessRuntime, tmp_path: Path, layers: list[str],
                             init: bool) -> None:
    annotations = {"flotilla.io/init": "true"} if init else {}
    sid = await sandbox(runtime, tmp_path, annotations=annotations)
    cid = await run(runtime, sid, ["sh", "-c", "echo $$; exec sleep 30"], tmp_path,
                    rootfs_layers=layers)
    await wait_for_log(tmp_path / "logs" / "c" / "0.log", "1" if not init else "2")
    start = time.monotonic()
    await runtime.stop_container(cid, 3)
    took = time.monotonic() - start
    st = await runtime.container_status(cid)
    if init:
        # sleep is not PID 1: SIGTERM's default action stops it at once; init reports it
        assert stdout(tmp_path) == ["2"] and st.exit_code == 143 and took < 2
    else:
        # sleep as PID 1 ignores SIGTERM: killed after the grace period
        assert stdout(tmp_path) == ["1"] and st.exit_code == 137 and took >= 3


async def test_containers_in_their_image_share_the_pods_dev_shm(
    runtime: ProcessRuntime, tmp_path: Path, layers: list[str]
) -> None:
    sid = await sandbox(runtime, tmp_path)
    script = "echo from-{} > /dev/shm/{}; readlink /proc/self/ns/ipc; ls /dev/shm"
    for name in ("a", "b"):
        cid = await run(runtime, sid, ["sh", "-c", script.format(name, name)], tmp_path,
                        name=name, rootfs_layers=layers)
        assert (await wait_exited(runtime, cid)).exit_code == 0, stdout(tmp_path, name)
    first, second = stdout(tmp_path, "a"), stdout(tmp_path, "b")
    assert first[0] == second[0] != os.readlink("/proc/self/ns/ipc")
    assert second[1:] == ["a", "b"]
