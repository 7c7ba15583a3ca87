"""`flotilla server --with-agent`: the in-process agent has a node identity without a token,
and its pods never see the server's data dir (keys, state, admin.conf)."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.api import convert
from control.api.pb import core_pb2
from control.cli.verbs_server import start_in_process_agent
from control.client import pki
from tests.conftest import running_cluster
from tests.support.agents import stop_agent_and_pods, wait_pod
from tests.support.runtimeclasses import HOST, ensure_host_runtime_class

pytestmark = pytest.mark.root(reason="masks need root (mount namespaces)")


async def test_pods_do_not_see_the_servers_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_cluster(data) as cluster:
        node = "masked"
        agent = await start_in_process_agent(cluster.plane, data, node)
        try:
            assert agent.credentials is not None and agent.credentials.cert_pem
            cn, groups = pki.subject_of(pki.load_cert(agent.credentials.cert_pem).subject)
            assert (cn, groups) == ("system:node:masked", ["system:nodes"])
            assert (data / "pki" / "ca.key").exists() and (data / "admin.conf").exists()
            script = (f"ls -A {data}; cat {data}/pki/ca.key {data}/admin.conf {data}/token "
                      f"2>/dev/null; echo end")
            # the host's sh, and the host's files the masks hide
            await ensure_host_runtime_class(cluster.client)
            await cluster.client.create(convert.from_dict({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "peek", "namespace": "default"},
                "spec": {"nodeName": node, "restartPolicy": "Never", "runtimeClassName": HOST,
                         "containers": [{"name": "main", "image": "busybox",
                                         "command": ["sh", "-c", script]}]},
            }, core_pb2.Pod()))
            await wait_pod(cluster, "peek", lambda p: p.status.phase == "Succeeded")
            out = b"".join([c async for c in cluster.client.logs("default", "peek")])
            assert out == b"end\n", out  # an empty directory, no file readable
        finally:
            await stop_agent_and_pods(cluster, agent, node)
