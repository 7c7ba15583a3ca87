"""The apiserver's own cost per write, without gRPC: what Flotilla's Python adds.

Starts ``ControlPlane`` in this process (apiserver alone: no controllers, scheduler or
cluster DNS) and calls the API's Create and Update method handlers as gRPC would, with
the request bytes and a stand-in servicer context presenting the admin's client
certificate: request decode, authentication, priority and fairness (the server's default
600 seats), authorization, admission, validation, the store's group commit (SQLite, WAL,
fsync), the watch cache and the reply's encoding are all run; gRPC's C core, TLS and the
socket are not. ``--concurrency`` tasks each send their next request when the previous
one is answered (ConfigMaps of ``api_bench``'s size: 8 keys x 120 chars); then each
object is updated once. Reported: process CPU per request (the building of each request
and the parsing of each reply are included: a few microseconds) and requests/s.

Use it to see a change to the write path's Python that ``api_bench`` cannot resolve on a
shared machine, and with ``--cprofile FILE`` to rank its functions (cProfile inflates
small functions; compare pieces with ``timeit`` on ``time.process_time``)::

    .venv/bin/python -m bench.write_inproc --count 3000 --concurrency 64 --uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import time
from typing import Any

import grpc

import bench
from bench.api_bench import configmap
from control.api.pb import api_pb2
from control.apiserver.apf import PriorityAndFairness
from control.apiserver.metrics import ApiServerMetrics
from control.apiserver.service import SERVICE_NAME, ApiService

NAMESPACE = "default"


class _Details:
    """What ``GenericRpcHandler.service`` is given for a call."""

    def __init__(self, method: str) -> None:
        self.method = f"/{SERVICE_NAME}/{method}"
        self.invocation_metadata = ()


class _Context:
    """The servicer context the handlers read: the admin's client certificate."""

    def __init__(self, cert_pem: bytes) -> None:
        self._auth = {"x509_pem_cert": [cert_pem]}

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> float:
        return 60.0

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, details: str, metadata: Any = ()) -> None:
        raise RuntimeError(f"{code.name}: {details}")


async def run(count: int, concurrency: int, profile: cProfile.Profile | None) -> None:
    from control.server import ControlPlane, ServerOptions

    with bench.temp_workdir("write-inproc-") as work:
        cp = ControlPlane(ServerOptions(data_dir=work / "data", listen="127.0.0.1:0",
                                        disable={"controllers", "scheduler", "dns"}))
        await cp.start()
        try:
            assert cp.registry is not None
            # the server's own service holds its metrics' names: a second set
            metrics = ApiServerMetrics()
            svc = ApiService(cp.registry, metrics=metrics,
                             admission=PriorityAndFairness(600, registry=metrics.registry))
            generic = svc.handler()
            create = generic.service(_Details("Create"))  # type: ignore[arg-type]
            update = generic.service(_Details("Update"))  # type: ignore[arg-type]
            assert create is not None and update is not None
            ctx = _Context(bench.admin_credentials(work / "data").cert_pem)
            versions: dict[int, str] = {}

            async def one(op: str, i: int) -> None:
                obj = configmap(NAMESPACE, f"cm-{i:06d}", i)
                if op == "create":
                    handler, req = create, api_pb2.CreateRequest(
                        resource="configmaps", namespace=NAMESPACE,
                        object=obj.SerializeToString())
                else:
                    obj.metadata.resource_version = versions[i]
                    obj.data["key-0"] = versions[i]
                    handler, req = update, api_pb2.UpdateRequest(
                        resource="configmaps", namespace=NAMESPACE,
                        object=obj.SerializeToString())
                request = handler.request_deserializer(req.SerializeToString())
                reply = handler.response_serializer(await handler.unary_unary(request, ctx))
                written = type(obj).FromString(api_pb2.ObjectReply.FromString(reply).object)
                versions[i] = written.metadata.resource_version

            for op in ("create", "update"):
                todo = iter(range(count))

                async def worker(op: str = op, todo: Any = todo) -> None:
                    for i in todo:
                        await one(op, i)

                cpu, wall = time.process_time(), time.perf_counter()
                if profile is not None:
                    profile.enable()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                if profile is not None:
                    profile.disable()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                print(f"{op:6s}  {count} requests at concurrency {concurrency}: "
                      f"{cpu / count * 1e6:6.1f} us CPU per request, {count / wall:,.0f} req/s")
        finally:
            await cp.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=3000, help="objects created, then updated")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--cprofile", metavar="FILE", help="write cProfile stats of the phases")
    args = ap.parse_args(argv)
    from control import logs

    logs.configure("warning", "json")
    print(f"machine: {bench.machine()}")
    print(f"command: {bench.command_line('bench.write_inproc')}")
    profile = cProfile.Profile() if args.cprofile else None
    bench.run(lambda: run(args.count, args.concurrency, profile), args.uvloop)
    if profile is not None:
        profile.dump_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
