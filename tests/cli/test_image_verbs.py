"""`flotilla image import|ls|rm` on a node's store (docker save archives built here),
removal refused while a container of the node's runtime uses the image; `flotilla images
--node` from Node.status.images."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from agent.images.store import Store
from agent.kubelet.container_spec import IMAGE_LABEL
from agent.runtime.interface import ContainerConfig, SandboxConfig
from agent.runtime.process import ProcessRuntime
from control.api.pb import core_pb2
from control.cli.main import main
from control.client.retry import guaranteed_update
from tests.conftest import Cluster
from tests.images import builder as b

pytestmark = pytest.mark.root(reason="image layers need mknod")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_import_ls_rm(tmp_path: Path) -> None:
    data = tmp_path / "node"
    one = b.build_image([b.busybox_layer()], {"Cmd": ["sh"]}, flavour="docker")
    two = b.build_image([b.layer_tar([b.Entry("x", b"x")])], {}, flavour="docker")
    archive = tmp_path / "save.tar"
    b.docker_save(archive, [(one, ["busybox:test"]), (two, ["example.com/two:1"])])

    code, out, err = run("image", "import", "--data-dir", str(data), str(archive))
    assert code == 0, err
    assert f"imported docker.io/library/busybox:test ({one.id})" in out
    code, out, _ = run("image", "ls", "--data-dir", str(data))
    lines = out.splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert any(
        line.split()[:3] == ["docker.io/library/busybox", "test", one.id[7:20]] for line in lines
    )

    # a container (even one never started) keeps its image
    try:
        asyncio.run(_container_using(data, one.id))
        code, out, err = run(
            "image", "rm", "--data-dir", str(data), "busybox:test", "example.com/two:1"
        )
    finally:
        # the sandbox has mounts (the pod's /dev/shm, its IPC namespace's pin)
        asyncio.run(_remove_sandboxes(data))
    assert code == 1
    assert "is used by a container" in err
    assert f"Deleted: example.com/two:1 ({two.id})" in out
    assert [i.id for i in Store(data / "images").images()] == [one.id]

    code, _, err = run("image", "import", "--data-dir", str(data), str(tmp_path / "nope.tar"))
    assert code == 1 and "no such file" in err
    code, _, err = run("image", "rm", "--data-dir", str(data), "missing:1")
    assert code == 1 and 'no image "missing:1"' in err


async def _container_using(data: Path, image_id: str) -> None:
    rt = ProcessRuntime(data / "runtime")
    try:
        sid = await rt.run_pod_sandbox(
            SandboxConfig(
                pod_uid="u1",
                namespace="default",
                name="p",
                hostname="p",
                pod_dir=str(data / "pods" / "u1"),
            )
        )
        await rt.create_container(
            sid, ContainerConfig(name="c", argv=["sh"], labels={IMAGE_LABEL: image_id})
        )
    finally:
        await rt.close()


async def _remove_sandboxes(data: Path) -> None:
    rt = ProcessRuntime(data / "runtime")
    try:
        for sb in await rt.list_pod_sandboxes():
            await rt.remove_pod_sandbox(sb.id)
    finally:
        await rt.close()


async def test_images_of_a_node(cluster: Cluster) -> None:
    node = core_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = "n1"
    await cluster.client.create(node)
    digest = "sha256:" + "a" * 64

    def post_images(n: core_pb2.Node) -> bool:
        del n.status.images[:]
        n.status.images.add(
            names=[f"docker.io/library/web@{digest}", "docker.io/library/web:1"],
            size_bytes=2_500_000,
        )
        return True

    # the node IPAM controller writes a new Node too: post as the kubelet does, with retries
    await guaranteed_update(cluster.client, core_pb2.Node, "", "n1", post_images, status=True)
    code, out, err = await asyncio.to_thread(
        run, "--server", cluster.address, "--config", str(cluster.data_dir / "admin.conf"),
        "images", "--node", "n1"
    )
    assert code == 0, err
    assert out.splitlines()[1].split() == ["docker.io/library/web:1", digest[:19], "2.5MB"]
    code, _, err = await asyncio.to_thread(
        run, "--server", cluster.address, "--config", str(cluster.data_dir / "admin.conf"),
        "images", "--node", "absent"
    )
    assert code == 1 and 'nodes "absent" not found' in err
