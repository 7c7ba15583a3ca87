"""Fixtures of the end-to-end tests: ``agent``, one in-process agent on the ``cluster``
fixture's control plane (node :data:`tests.support.agents.NODE`), stopped with every pod
it ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import AgentOptions
from agent.kubelet.kubelet import KubeletOptions
from agent.main import Agent
from tests.conftest import Cluster
from tests.support.agents import LOOPBACK_MIRRORS, NODE, stop_agent_and_pods
from tests.support.runtimeclasses import ensure_host_runtime_class


@pytest.fixture
async def agent(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Agent]:
    data = tmp_path / "agent"
    a = Agent(
        AgentOptions(
            server=cluster.address,
            node_name=NODE,
            data_dir=data,
            node_status_update_frequency=0.5,
            lease_renew_interval=0.5,
            registry_mirrors=LOOPBACK_MIRRORS,
            **cluster.agent_identity(NODE),
        ),
        kubelet_options=KubeletOptions(
            data_dir=data,
            sync_period=2.0,
            relist_period=0.2,
            backoff_initial=0.2,
            backoff_max=1.0,
            retry_period=0.5,
            volume_refresh_period=0.5,
        ),
    )
    await a.start()
    try:
        # pods that run this machine's commands name it (tests.support.agents.pod)
        await ensure_host_runtime_class(cluster.client)
        yield a
    finally:
        await stop_agent_and_pods(cluster, a, NODE)
