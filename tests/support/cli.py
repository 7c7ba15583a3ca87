"""Running the CLI in-process against a test cluster: exit code, stdout and stderr."""

from __future__ import annotations

import asyncio
import io

from control.cli.main import main
from tests.conftest import Cluster
from tests.support.deployments import NS

CLI_TIMEOUT = 30.0


async def flotilla(cluster: Cluster, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--server", cluster.address, "--config", str(cluster.data_dir / "admin.conf"),
            "-n", NS, *args]
    async with asyncio.timeout(CLI_TIMEOUT):
        code = await asyncio.to_thread(main, argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()
