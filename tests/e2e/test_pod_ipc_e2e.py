"""A pod's IPC for real (agent as root, host RuntimeClass): the two containers of a pod
share /dev/shm and the IPC namespace, another pod has its own, and the pod's pin and tmpfs
are gone once the pods are deleted through an agent restarted meanwhile; an emptyDir of
medium Memory mounted at /dev/shm replaces the pod's (a bigger /dev/shm)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from control.api import convert, errors
from control.api.pb import core_pb2
from tests.conftest import Cluster
from tests.support.agents import NODE, stop_agent_and_pods, wait_pod
from tests.support.cluster import start_agent
from tests.support.process_runtime import mounts_under
from tests.support.runtimeclasses import HOST, ensure_host_runtime_class

pytestmark = pytest.mark.root(reason="the pod's IPC namespace and /dev/shm need root")


def two_container_pod(name: str) -> core_pb2.Pod:
    return convert.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "runtimeClassName": HOST,
                 "terminationGracePeriodSeconds": 1,
                 "containers": [
                     {"name": "writer", "image": "busybox", "command": [
                         "sh", "-c", f"echo from-{name} > /dev/shm/x; exec sleep 60"]},
                     {"name": "reader", "image": "busybox", "command": ["sleep", "60"]}]}},
        core_pb2.Pod())


async def run_in(cluster: Cluster, pod: str, container: str, script: str) -> str:
    code, out, err = await cluster.client.exec("default", pod, ["sh", "-c", script],
                                               container=container).wait()
    assert code == 0, err
    return bytes(out).decode()


async def test_pod_shares_ipc_between_its_containers_and_cleans_up_after_restart(
        cluster: Cluster, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    agent = start_agent(cluster, NODE, data, kubelet={"minimum_grace": 1.0})
    await agent.start()
    try:
        await ensure_host_runtime_class(cluster.client)
        for name in ("one", "two"):
            await cluster.client.create(two_container_pod(name))
        for name in ("one", "two"):
            await wait_pod(cluster, name, lambda p: p.status.phase == "Running" and all(
                cs.ready for cs in p.status.container_statuses))
        script = "until [ -f /dev/shm/x ]; do sleep 0.1; done; cat /dev/shm/x; " \
                 "readlink /proc/self/ns/ipc"
        one_reader = (await run_in(cluster, "one", "reader", script)).split()
        one_writer = (await run_in(cluster, "one", "writer", script)).split()
        two_reader = (await run_in(cluster, "two", "reader", script)).split()
        assert one_reader == one_writer
        assert one_reader[0] == "from-one" and two_reader[0] == "from-two"
        assert two_reader[1] not in (one_reader[1], os.readlink("/proc/self/ns/ipc"))
        runtime = data / "runtime"
        assert len(mounts_under(runtime)) == 4  # per pod: the pin and the tmpfs

        # The agent restarts (its containers live on), then the pods are deleted.
        await agent.stop()
        agent = start_agent(cluster, NODE, data, kubelet={"minimum_grace": 1.0})
        await agent.start()
        for name in ("one", "two"):
            await cluster.client.delete(core_pb2.Pod, name, "default")
        async with asyncio.timeout(30):
            for name in ("one", "two"):
                while True:
                    try:
                        await cluster.client.get(core_pb2.Pod, name, "default")
                    except errors.NotFound:
                        break
                    await asyncio.sleep(0.2)
        assert mounts_under(runtime) == []
        assert os.listdir(runtime / "ipcns") == []
    finally:
        await stop_agent_and_pods(cluster, agent, NODE)


async def test_an_empty_dir_in_memory_enlarges_dev_shm(cluster: Cluster, tmp_path: Path) -> None:
    # The Kubernetes idiom: an emptyDir of medium Memory mounted at /dev/shm, bigger than
    # the default 64 MiB, shared by the containers that mount it.
    agent = start_agent(cluster, NODE, tmp_path / "agent", kubelet={"minimum_grace": 1.0})
    await agent.start()
    try:
        await ensure_host_runtime_class(cluster.client)
        p = two_container_pod("big")
        p.spec.volumes.add(name="dshm").empty_dir.medium = "Memory"
        p.spec.volumes[0].empty_dir.size_limit.string = "128Mi"
        for c in p.spec.containers:
            c.volume_mounts.add(name="dshm", mount_path="/dev/shm")
        await cluster.client.create(p)
        await wait_pod(cluster, "big", lambda p: p.status.phase == "Running" and all(
            cs.ready for cs in p.status.container_statuses))
        out = await run_in(cluster, "big", "reader", "until [ -f /dev/shm/x ]; do sleep 0.1; "
                           "done; cat /dev/shm/x; df -k /dev/shm | tail -1")
        lines = out.splitlines()
        assert lines[0] == "from-big"
        assert lines[1].split()[1] == str(128 * 1024), lines
    finally:
        await stop_agent_and_pods(cluster, agent, NODE)
