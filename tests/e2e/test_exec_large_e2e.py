"""exec with large output end to end: 100 MB of stdout from a real container, through the
apiserver's node proxy and the agent, arrives whole, in bounded chunks, with the exit
code, both to the client library and through `flotilla exec` into a pipe."""

from __future__ import annotations

import asyncio
import sys

from agent.main import Agent
from tests.conftest import Cluster
from tests.support.agents import pod, wait_pod

SIZE = 100 * 1024 * 1024
COMMAND = ["head", "-c", str(SIZE), "/dev/zero"]


async def test_exec_streams_100_mb(cluster: Cluster, agent: Agent) -> None:
    c = cluster.client
    await c.create(pod("big", ["sleep", "600"]))
    await wait_pod(cluster, "big", lambda p: p.status.phase == "Running" and any(
        cs.ready for cs in p.status.container_statuses))

    stream = c.exec("default", "big", COMMAND)
    total = biggest = 0
    async with asyncio.timeout(120):
        async for kind, chunk in stream:
            assert kind == "stdout"
            total += len(chunk)
            biggest = max(biggest, len(chunk))
    assert (total, stream.exit_code) == (SIZE, 0)
    assert biggest <= 1024 * 1024

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control.cli.main", "--server", cluster.address,
        "--config", str(cluster.data_dir / "admin.conf"), "exec", "big", "--", *COMMAND,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    total = 0
    try:
        async with asyncio.timeout(120):
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(1 << 20):
                total += len(chunk)
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (code, total) == (0, SIZE)
