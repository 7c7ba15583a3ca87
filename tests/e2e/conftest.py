"""Fixtures of the end-to-end tests: ``agent``, one in-process agent on the ``cluster``
fixture's control plane (node :data:`tests.support.agents.NODE`), stopped with every pod
it ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.main import Agent
from tests.conftest import Cluster
from tests.support.agents import NODE, stop_agent_and_pods
from tests.support.cluster import start_agent
from tests.support.runtimeclasses import ensure_host_runtime_class


@pytest.fixture
async def agent(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Agent]:
    a = start_agent(cluster, NODE, tmp_path / "agent", kubelet={"minimum_grace": 2.0})
    await a.start()
    try:
        # pods that run this machine's commands name it (tests.support.agents.pod)
        await ensure_host_runtime_class(cluster.client)
        yield a
    finally:
        await stop_agent_and_pods(cluster, a, NODE)
