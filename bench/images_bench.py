"""Containers in their images vs containerd: cold pull + start, warm start, disk of 10 pods.

Both sides run the same busybox image from a docker-registry on loopback, the command
``true``, as root:

- containerd (Debian's 1.6 with runc), started here with its own root, state and socket
  in a temporary directory (CRI plugin off), driven by ``ctr`` in the namespace
  ``flotilla-bench`` (so runc's cgroups are ``/flotilla-bench/<id>``): cold =
  ``ctr images pull --plain-http`` + ``ctr run --rm``; warm = ``ctr run --rm``;
- Flotilla at the runtime level, as the kubelet drives it: cold = image service pull +
  sandbox + create + start + wait for exit + remove; warm = the same with the image
  present (its status looked up, as IfNotPresent does).

Every cold round uses an image never seen before (its layer carries a nonce), so nothing is
cached on either side; rounds alternate between the two systems. The disk figure starts 10
pods of one image (``sleep``) and counts the image store once plus each pod's writable
layer, against what 10 copies of the unpacked image would take.

    .venv/bin/python -m bench.images_bench --rounds 10

Everything is stopped and removed at the end: containers, containerd (by its pid), the
registry, mounts under the temporary directory, cgroups under ``flotilla-bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from agent.images.registry import RegistryClient, RegistryConfig
from agent.images.service import LocalImageService
from agent.images.store import Store
from agent.runtime.interface import ContainerConfig, ContainerState, SandboxConfig
from agent.runtime.process import ProcessRuntime
from bench import machine, table
from tests.images import builder as b
from tests.images import registry as reg

NAMESPACE = "flotilla-bench"


def image_with_nonce(nonce: str) -> b.BuiltImage:
    entries = [*b.busybox_entries(), b.Entry("etc/nonce", nonce.encode())]
    return b.build_image([b.layer_tar(entries)], {"Cmd": ["sh"]})


@contextlib.contextmanager
def containerd(tmp: Path) -> Iterator[list[str]]:
    tmp.mkdir(parents=True, exist_ok=True)
    root, state = tmp / "root", tmp / "state"
    sock = tmp / "containerd.sock"
    (tmp / "config.toml").write_text(
        "version = 2\n"
        f'root = "{root}"\nstate = "{state}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
        f'[debug]\n  address = ""\n')
    log = open(tmp / "containerd.log", "wb")
    proc = subprocess.Popen(["containerd", "--config", str(tmp / "config.toml")],
                            stdout=log, stderr=log, start_new_session=True)
    ctr = ["ctr", "--address", str(sock), "--namespace", NAMESPACE]
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("containerd did not start: " + (tmp / "containerd.log").read_text())
            time.sleep(0.1)
        yield ctr
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _unmount_below(tmp)
        _remove_cgroups(NAMESPACE)


def _unmount_below(path: Path) -> None:
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_cgroups(name: str) -> None:
    base = Path("/sys/fs/cgroup")
    for hierarchy in [base, *base.iterdir()] if base.is_dir() else []:
        d = hierarchy / name
        if d.is_dir():
            for child in sorted(d.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    child.rmdir()


def _run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


async def flotilla_start(rt: ProcessRuntime, svc: LocalImageService, ref: str, pull: bool,
                         tmp: Path) -> float:
    start = time.perf_counter()
    image = await svc.pull(ref) if pull else await svc.status(ref)
    assert image is not None
    uid = uuid.uuid4().hex[:12]
    sid = await rt.run_pod_sandbox(SandboxConfig(
        pod_uid=uid, namespace="bench", name=uid, hostname=uid, pod_dir=str(tmp / uid)))
    cid = await rt.create_container(sid, ContainerConfig(
        name="c", argv=["true"], log_path=str(tmp / uid / "c.log"),
        rootfs_layers=svc.layer_dirs(image), image=ref))
    await rt.start_container(cid)
    await wait_exited(rt, cid)
    await rt.remove_pod_sandbox(sid)
    return time.perf_counter() - start


async def wait_exited(rt: ProcessRuntime, cid: str) -> None:
    for _ in range(10_000):  # 20 s
        if (await rt.container_status(cid)).state is ContainerState.EXITED:
            return
        await asyncio.sleep(0.002)
    raise SystemExit(f"container {cid} did not exit")


def du(path: Path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


async def disk_of_ten(rt: ProcessRuntime, svc: LocalImageService, ref: str,
                      tmp: Path) -> tuple[int, int, int]:
    image = await svc.status(ref)
    assert image is not None
    sids = []
    try:
        for i in range(10):
            sid = await rt.run_pod_sandbox(SandboxConfig(
                pod_uid=f"disk-{i}", namespace="bench", name=f"d{i}", hostname=f"d{i}",
                pod_dir=str(tmp / f"disk-{i}")))
            sids.append(sid)
            cid = await rt.create_container(sid, ContainerConfig(
                name="c", argv=["sh", "-c", "echo $HOSTNAME > /tmp/me; sleep 60"],
                log_path=str(tmp / f"disk-{i}" / "c.log"),
                rootfs_layers=svc.layer_dirs(image), image=ref))
            await rt.start_container(cid)
        await asyncio.sleep(1.0)
        layers = sum(du(Path(d)) for d in svc.layer_dirs(image))
        writable = sum(du(rt.root_dir / "sandboxes" / s / "rootfs") for s in sids)
        blobs = sum(svc.store.blob_path(d).stat().st_size for d in
                    [image.id, image.manifest_digest, *(la.digest for la in image.layers)])
        return blobs + layers, writable, layers
    finally:
        for sid in sids:
            await rt.remove_pod_sandbox(sid)


async def main_async(rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="flotilla-images-bench-"))
    try:
        with reg.running_registry(tmp / "registry") as (registry, _), \
                containerd(tmp / "containerd") as ctr:
            pusher = b.Pusher(registry.url)
            refs = []
            for i in range(rounds + 1):
                repo = f"bench/busybox{i}"
                pusher.image(repo, "1", image_with_nonce(uuid.uuid4().hex))
                refs.append(f"{registry.host}/{repo}:1")
            pusher.close()
            store_root = tmp / "flotilla" / "images"
            svc = LocalImageService(Store(store_root), RegistryClient(
                RegistryConfig(insecure=frozenset({registry.host}))))
            rt = ProcessRuntime(tmp / "flotilla" / "runtime", cgroup_prefix="flotilla/bench-images",
                                isolate=True)
            cold_f, cold_c, warm_f, warm_c = [], [], [], []
            try:
                # warm-up of both (python imports, containerd's first run), not measured
                await flotilla_start(rt, svc, refs[-1], True, tmp / "pods")
                _run([*ctr, "images", "pull", "--plain-http", refs[-1]])
                _run([*ctr, "run", "--rm", refs[-1], "warmup", "true"])
                for i in range(rounds):
                    cold_f.append(await flotilla_start(rt, svc, refs[i], True, tmp / "pods"))
                    t = _run([*ctr, "images", "pull", "--plain-http", refs[i]])
                    cold_c.append(t + _run([*ctr, "run", "--rm", refs[i], f"c{i}", "true"]))
                for i in range(rounds):
                    warm_f.append(await flotilla_start(rt, svc, refs[0], False, tmp / "pods"))
                    warm_c.append(_run([*ctr, "run", "--rm", refs[0], f"w{i}", "true"]))
                store, writable, layers = await disk_of_ten(rt, svc, refs[0], tmp / "pods")
            finally:
                await svc.aclose()
                await rt.close()

        def ms(values: list[float]) -> str:
            return f"{1000 * statistics.median(values):.0f}"

        print(f"machine: {machine()}; {rounds} rounds, medians\n")
        print(table(["", "flotilla (ms)", "ctr (ms)", "ratio"], [
            ["cold pull + start", ms(cold_f), ms(cold_c),
             f"{statistics.median(cold_f) / statistics.median(cold_c):.2f}"],
            ["warm start", ms(warm_f), ms(warm_c),
             f"{statistics.median(warm_f) / statistics.median(warm_c):.2f}"],
        ]))
        mib = 1 << 20
        print()
        print(table(["10 pods of one image", "MiB"], [
            ["the image on the node (blobs + unpacked layers, once)", f"{store / mib:.1f}"],
            ["writable layers of the 10 pods", f"{writable / mib:.2f}"],
            ["10 unpacked copies (no sharing)", f"{10 * layers / mib:.1f}"],
        ]))
    finally:
        _unmount_below(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    if os.geteuid() != 0 or not shutil.which("ctr") or not reg.available():
        raise SystemExit("needs root, containerd (ctr) and docker-registry")
    asyncio.run(main_async(args.rounds))


if __name__ == "__main__":
    main()
