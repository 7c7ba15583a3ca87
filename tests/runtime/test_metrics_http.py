"""The /metrics endpoint, alone and as `flotilla server --metrics-listen` serves it."""

from __future__ import annotations

from pathlib import Path

from control.runtime.metrics_http import MetricsServer
from tests.conftest import running_cluster
from tests.support.http import http_get


async def test_serves_what_its_sources_render() -> None:
    server = MetricsServer([lambda: "a_total 1\n", lambda: "b 2\n"])
    port = await server.start()
    try:
        status, body = await http_get(port, "/metrics")
        assert status == "HTTP/1.1 200 OK" and body == "a_total 1\nb 2\n"
        status, _ = await http_get(port, "/other")
        assert status.startswith("HTTP/1.1 404")
    finally:
        await server.stop()


async def test_server_exports_scheduler_metrics(tmp_path: Path) -> None:
    async with running_cluster(tmp_path / "data", metrics_listen="127.0.0.1:0") as c:
        status, body = await http_get(c.plane.metrics_port, "/metrics")
        assert status == "HTTP/1.1 200 OK"
        assert "scheduler_pending_pods" in body
        assert "# TYPE scheduler_schedule_attempts_total counter" in body
