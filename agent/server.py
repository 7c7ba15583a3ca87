"""The agent's own gRPC server (``flotilla.v1.Agent``): logs and exec for the pods of its node.

Owns the node side of ``flotilla logs`` and ``flotilla exec``. Only the apiserver calls it
(control/apiserver/node_proxy.py), having already resolved the pod, its node and the
container name; clients never reach a node directly. The server binds the node's own
address (never every interface) on an *ephemeral* port (several agents share one host in
tests and the lab) which the agent advertises in its Node's
``status.daemonEndpoints.kubeletEndpoint.Port``, as the kubelet does.

Transport: TLS with the node's serving certificate (renewed in place: new handshakes get
the certificate given to :meth:`AgentServer.rotate`), and a client certificate of the
cluster CA is required; of those, only the apiserver's (CN
``kube-apiserver-kubelet-client``) may call, as the kubelet's ``--client-ca-file`` plus
its authorizer allow; anyone else is refused with PERMISSION_DENIED.

Finding a container is a :class:`ContainerLookup`: ``(namespace, pod, container,
previous, pod_uid) -> ContainerRef(container_id, log_path)`` or an ``ApiError``
(``BadRequest`` with kubelet's wording). The kubelet may pass its own; the default,
:class:`RuntimeLookup`, needs nobody's cooperation: it lists the runtime's containers and
matches the labels the kubelet sets on every container, as Kubernetes does
(``io.kubernetes.pod.namespace|name|uid``, ``io.kubernetes.container.name``), newest
``attempt`` first: the newest is the current container, the one before it the
``--previous``.

- Logs: :func:`agent.kubelet.logs.read_logs` over the container's CRI log files; ``-f``
  ends when the runtime says the container has exited (or the caller cancels).
- Exec: ``runtime.exec`` in a running container; the first request names the target,
  later ones carry stdin (a half-close of the request stream closes stdin), output goes
  back as it comes, the last message carries the exit code.

Errors travel like the Api service's: the gRPC code of the ``ApiError`` with
``Reason: message`` in the details, so the apiserver forwards them unchanged.

Concurrency contract: every call is a task of grpc.aio on the agent's event loop; calls
share only the runtime (whose methods tolerate concurrency) and the lookup. An exec call
owns one helper task (stdin pump), cancelled with the call; an exec whose caller goes away
is killed. ``start``/``stop`` are called from one task; ``stop`` is idempotent.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import grpc
import structlog

from agent.kubelet.container_spec import (
    CONTAINER_NAME_LABEL,
    POD_NAME_LABEL,
    POD_NAMESPACE_LABEL,
    POD_UID_LABEL,
)
from agent.kubelet.logs import DEFAULT_POLL_INTERVAL, LogOptions, read_logs
from agent.runtime.interface import (
    ContainerState,
    ContainerStatus,
    ExecSession,
    NotFoundError,
    Runtime,
    RuntimeError_,
)
from control.api import errors
from control.api.pb import agent_pb2, api_pb2
from control.client import pki
from control.client.channel import SERVER_OPTIONS, add_secure_port

log = structlog.get_logger(__name__)

SERVICE_NAME = "flotilla.v1.Agent"
APISERVER_CLIENT = "kube-apiserver-kubelet-client"

# The labels the kubelet puts on every container (Kubernetes' own names).
LABEL_POD_NAMESPACE = POD_NAMESPACE_LABEL
LABEL_POD_NAME = POD_NAME_LABEL
LABEL_POD_UID = POD_UID_LABEL
LABEL_CONTAINER_NAME = CONTAINER_NAME_LABEL


class ContainerRef(NamedTuple):
    container_id: str
    log_path: str


class ContainerLookup(Protocol):
    """Find the container a logs/exec request means; raise an ``ApiError`` if there is none."""

    async def __call__(self, namespace: str, pod_name: str, container: str, previous: bool,
                       pod_uid: str = "") -> ContainerRef: ...


def go_list(names: Sequence[str]) -> str:
    """A list as Go's ``%v`` prints it (Kubernetes' error messages use it): ``[a b]``."""
    return "[" + " ".join(names) + "]"


class RuntimeLookup:
    """The default :class:`ContainerLookup`: the runtime's containers, matched by labels.

    ``pods_dir``, when given, locates a log the runtime did not report
    (``<pods_dir>/<pod uid>/logs/<container>/<attempt>.log``).
    """

    def __init__(self, runtime: Runtime, pods_dir: str | os.PathLike[str] | None = None) -> None:
        self.runtime = runtime
        self.pods_dir = Path(pods_dir) if pods_dir is not None else None

    async def __call__(self, namespace: str, pod_name: str, container: str, previous: bool,
                       pod_uid: str = "") -> ContainerRef:
        mine = [
            c for c in await self.runtime.list_containers()
            if c.labels.get(LABEL_POD_NAMESPACE) == namespace
            and c.labels.get(LABEL_POD_NAME) == pod_name
            and (not pod_uid or c.labels.get(LABEL_POD_UID) == pod_uid)
        ]
        if not container:
            names = sorted({self._name(c) for c in mine})
            if len(names) > 1:
                raise errors.BadRequest(f"a container name must be specified for pod "
                                        f"{pod_name}, choose one of: {go_list(names)}")
            container = names[0] if names else ""
        attempts = sorted((c for c in mine if self._name(c) == container),
                          key=lambda c: (c.attempt, c.created_at), reverse=True)
        if previous:
            if len(attempts) < 2:
                raise errors.BadRequest(f'previous terminated container "{container}" in pod '
                                        f'"{pod_name}" not found')
            chosen = attempts[1]
        else:
            if not attempts:
                raise errors.BadRequest(f'container "{container}" in pod "{pod_name}" is '
                                        f"waiting to start: ContainerCreating")
            chosen = attempts[0]
        return ContainerRef(chosen.id, self._log_path(chosen, container))

    @staticmethod
    def _name(c: ContainerStatus) -> str:
        return c.labels.get(LABEL_CONTAINER_NAME) or c.name

    def _log_path(self, c: ContainerStatus, container: str) -> str:
        if c.log_path or self.pods_dir is None:
            return c.log_path
        uid = c.labels.get(LABEL_POD_UID, "")
        return str(self.pods_dir / uid / "logs" / container / f"{c.attempt}.log")


async def _abort(context: grpc.aio.ServicerContext, err: errors.ApiError) -> None:
    await context.abort(err.code, errors.bounded_details(err))


# Largest piece of a log sent in one message.
LOG_CHUNK_BYTES = 64 * 1024

# Linux's limits on a new program's arguments: one string at most MAX_ARG_STRLEN (32 pages),
# all of them with the environment at most ARG_MAX; room is kept for the exec helper's own
# arguments and environment.
MAX_ARG_STRLEN = 32 * 4096
_ARGV_RESERVE = 64 * 1024


def check_exec_argv(argv: Sequence[str], arg_max: int | None = None) -> None:
    """Refuse (BadRequest) a command line the kernel would refuse with E2BIG."""
    limit = (arg_max if arg_max is not None else os.sysconf("SC_ARG_MAX")) - _ARGV_RESERVE
    total = 0
    for i, arg in enumerate(argv):
        size = len(arg.encode(errors="surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise errors.BadRequest(
                f"command[{i}] is {size - 1} bytes: one argument may be at most "
                f"{MAX_ARG_STRLEN - 1} bytes")
        if "\0" in arg:
            raise errors.BadRequest(f"command[{i}] contains a NUL byte")
        total += size + 8  # the pointer to it
    if total > limit:
        raise errors.BadRequest(
            f"the command's {len(argv)} arguments take {total} bytes: more than the "
            f"{limit} bytes this node can pass to a new process (argument list too long)")


def _as_api_error(e: Exception) -> errors.ApiError:
    if isinstance(e, errors.ApiError):
        return e
    if isinstance(e, OSError) and e.errno == errno.E2BIG:
        return errors.BadRequest(f"the command cannot be started: {os.strerror(errno.E2BIG)}")
    if isinstance(e, NotFoundError):
        return errors.NotFound(f"container not found: {e}")
    if isinstance(e, RuntimeError_):
        return errors.ApiError(f"{e.reason}: {e}")
    return errors.ApiError(f"internal error: {type(e).__name__}: {e}")


def check_caller(context: grpc.aio.ServicerContext) -> None:
    """Only the apiserver's client certificate may use the agent (TLS already checked that
    the certificate is the cluster CA's)."""
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in context.auth_context().get("x509_common_name", ())]
    if names != [APISERVER_CLIENT]:
        who = names[0] if names else "a caller without a certificate"
        raise errors.Forbidden(f'User "{who}" cannot use the agent: only the apiserver '
                               f'({APISERVER_CLIENT}) may reach the logs and exec of pods')


class AgentServer:
    """Serves ``flotilla.v1.Agent`` for one node; see the module docstring.

    ``lookup`` is a :class:`ContainerLookup`, or the kubelet's pods directory (a path) for
    the default :class:`RuntimeLookup`, or None for the same without a pods directory.
    """

    def __init__(
        self,
        runtime: Runtime,
        lookup: ContainerLookup | str | os.PathLike[str] | None = None,
        node_name: str = "",
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        if lookup is None or isinstance(lookup, str | os.PathLike):
            lookup = RuntimeLookup(runtime, lookup)
        self.lookup: ContainerLookup = lookup
        self.node_name = node_name
        self.poll_interval = poll_interval
        self.now = now
        self.port = 0
        self.address = ""
        self._server: grpc.aio.Server | None = None
        self._client_ca = b""
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._log = log.bind(component="agent-server", node=node_name)

    # -- lifecycle ---------------------------------------------------------------------------

    def _certificate(self, serving: pki.Issued) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(serving.key_pem, serving.cert_pem)], root_certificates=self._client_ca)

    def _fetch_certificate(self) -> grpc.ServerCertificateConfiguration | None:
        # called by gRPC before each handshake; None keeps the current certificate
        pending, self._pending = self._pending, None
        return pending

    def rotate(self, serving: pki.Issued) -> None:
        """Serve ``serving`` from the next connection on (no restart)."""
        self._pending = self._certificate(serving)

    async def start(self, host: str, port: int = 0, *, serving: pki.Issued,
                    client_ca: bytes) -> int:
        """Serve TLS on ``host`` (port 0: an ephemeral one); returns the bound port.
        ``client_ca`` verifies callers' certificates (the cluster CA)."""
        if self._server is not None:
            raise RuntimeError("the agent server is already serving")
        if host in ("", "0.0.0.0", "::"):
            raise OSError("the agent server binds the node's own address, not every "
                          "interface (give --daemon-listen or --node-ip)")
        self._client_ca = client_ca
        credentials = grpc.dynamic_ssl_server_credentials(
            self._certificate(serving), self._fetch_certificate,  # type: ignore[arg-type]
            require_client_authentication=True)
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers((self.handler(),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        bound = add_secure_port(server, address, credentials, "the agent server")
        await server.start()
        self._server, self.port = server, bound
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        self._log.info("agent server serving", address=address, port=bound)
        return bound

    async def stop(self, grace: float = 1.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
            self._log.info("agent server stopped")

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "Logs": grpc.unary_stream_rpc_method_handler(
                self.logs, request_deserializer=agent_pb2.AgentLogsRequest.FromString,
                response_serializer=api_pb2.LogChunk.SerializeToString),
            "Exec": grpc.stream_stream_rpc_method_handler(
                self.exec, request_deserializer=agent_pb2.AgentExecRequest.FromString,
                response_serializer=api_pb2.ExecOutput.SerializeToString),
        })

    # -- logs -------------------------------------------------------------------------------

    async def _alive(self, container_id: str) -> bool:
        try:
            status = await self.runtime.container_status(container_id)
        except NotFoundError:
            return False  # removed: nothing more will be written
        return status.state in (ContainerState.CREATED, ContainerState.RUNNING)

    async def logs(self, request: Any,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.LogChunk]:
        req = request.request
        try:
            check_caller(context)
            ref = await self.lookup(req.namespace, req.name, req.container, req.previous,
                                    request.pod_uid)
        except Exception as e:
            await _abort(context, _as_api_error(e))
            return
        options = LogOptions(
            tail_lines=req.tail_lines if req.HasField("tail_lines") else None,
            since_time=self.now() - req.since_seconds if req.HasField("since_seconds")
            else None,
            timestamps=req.timestamps,
            limit_bytes=req.limit_bytes if req.HasField("limit_bytes") else None,
            # --previous names an exited container: nothing to follow
            follow=req.follow and not req.previous,
        )

        async def alive() -> bool:
            return await self._alive(ref.container_id)

        chunks = read_logs(ref.log_path, options, alive=alive, poll_interval=self.poll_interval)
        try:
            async for data in chunks:
                # bounded messages: each waits for the stream's flow control, so a reader
                # that is slow (or a log of gigabytes) holds the reading back
                for at in range(0, len(data), LOG_CHUNK_BYTES):
                    yield api_pb2.LogChunk(data=data[at:at + LOG_CHUNK_BYTES])
        finally:
            await chunks.aclose()

    # -- exec -------------------------------------------------------------------------------

    async def exec(self, requests: AsyncIterator[Any],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.ExecOutput]:
        first = await anext(aiter(requests), None)
        if first is None:
            return
        req = first.request
        session: ExecSession | None = None
        try:
            check_caller(context)
            if not req.command:
                raise errors.BadRequest("you must specify at least one command for the "
                                        "container")
            check_exec_argv(req.command)
            ref = await self.lookup(req.namespace, req.name, req.container, False,
                                    first.pod_uid)
            status = await self.runtime.container_status(ref.container_id)
            if status.state != ContainerState.RUNNING:
                raise errors.BadRequest(f'container "{req.container}" in pod "{req.name}" '
                                        f"is not running: cannot exec into it")
            session = await self.runtime.exec(ref.container_id, list(req.command),
                                              stdin=req.stdin, tty=req.tty)
        except Exception as e:
            await _abort(context, _as_api_error(e))
            return
        self._log.debug("exec", pod=f"{req.namespace}/{req.name}", container=req.container,
                        command=list(req.command))
        pump = asyncio.create_task(self._pump_stdin(session, req, requests),
                                   name=f"exec-stdin:{req.namespace}/{req.name}")
        finished = False
        try:
            async for stream, chunk in session.output():
                if stream == "stderr":
                    yield api_pb2.ExecOutput(stderr=chunk)
                else:
                    yield api_pb2.ExecOutput(stdout=chunk)
            code = await session.wait()
            finished = True
            yield api_pb2.ExecOutput(exit_code=code)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            if not finished:
                # the caller went away (or the output failed): leave nothing running
                try:
                    await session.kill()
                except Exception:
                    self._log.exception("could not kill an abandoned exec")

    async def _pump_stdin(self, session: ExecSession, first: Any,
                          requests: AsyncIterator[Any]) -> None:
        """Caller's stdin -> the process; a half-close of the stream closes its stdin."""
        try:
            if first.stdin and first.stdin_data:
                await session.write_stdin(first.stdin_data)
            if first.stdin and first.stdin_close:
                await session.close_stdin()
                return
            async for item in requests:
                r = item.request
                if not first.stdin:
                    continue
                if r.stdin_data:
                    await session.write_stdin(r.stdin_data)
                if r.stdin_close:
                    break
            if first.stdin:
                await session.close_stdin()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the process closed its stdin, or exited: not our failure
            self._log.debug("exec stdin ended", error=f"{type(e).__name__}: {e}")


__all__ = [
    "LABEL_CONTAINER_NAME",
    "LABEL_POD_NAME",
    "LABEL_POD_NAMESPACE",
    "LABEL_POD_UID",
    "SERVICE_NAME",
    "AgentServer",
    "ContainerLookup",
    "ContainerRef",
    "RuntimeLookup",
]
