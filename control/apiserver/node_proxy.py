"""The apiserver's side of ``logs`` and ``exec``: check the pod, find its node's agent,
forward the stream (Kubernetes' pod ``log``/``exec`` subresources and their node proxy).

Owns :class:`NodeProxy`, plugged into ``ApiService(logs=proxy.logs, exec_=proxy.exec)``:

1. the pod (``NotFound``); the container: named, or the pod's only one, or the one in
   the ``kubectl.kubernetes.io/default-container`` annotation, else ``BadRequest`` "a
   container name must be specified for pod p, choose one of: [a b]" (Kubernetes'
   words); a name the pod does not have is ``BadRequest`` too;
2. the pod's state, as kubelet's ``validateContainerLogStatus`` reads it: not scheduled,
   "is waiting to start: <reason>", 'previous terminated container "c" in pod "p" not
   found'; ``--previous`` while the container waits to restart means its last terminated
   attempt, which on the node is the newest one (kubelet shows the same), so it is sent as
   a request for the current attempt; exec into a finished pod is refused as kubectl does;
3. the node: ``spec.nodeName`` -> the Node's address (InternalIP first, then
   ExternalIP, then Hostname) and ``status.daemonEndpoints.kubeletEndpoint.Port``;
4. the agent: one TLS channel per call (:func:`control.client.channel.open_channel`) that
   verifies the agent's serving certificate and presents the apiserver's client
   certificate (CN ``kube-apiserver-kubelet-client``, the only one agents accept), ready
   within ``connect_timeout`` (3 s) or ``ServiceUnavailable`` naming the node, so a node
   that is gone or unreachable never hangs the CLI; errors the agent sends keep their
   reason; the stream is forwarded as it comes, in both directions for exec.

Concurrency contract: each call is a grpc.aio task of the apiserver; the proxy holds no
state between calls (reads come from the registry's watch cache). Cancelling the caller's
call cancels the forwarded call and closes its channel (``finally``); an exec's request
forwarder is a generator consumed by grpc, so it ends with the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog

from control.api import errors, kinds
from control.api.pb import agent_pb2, agent_pb2_grpc, api_pb2
from control.apiserver.registry import Registry
from control.client.channel import open_channel
from control.client.tls import Credentials

log = structlog.get_logger(component="node-proxy")

CONNECT_TIMEOUT = 3.0
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "Hostname")


def go_list(names: list[str]) -> str:
    return "[" + " ".join(names) + "]"


def choose_container(pod: Any, container: str) -> str:
    """The container a request means (kube-apiserver's ``validateContainer``)."""
    spec = pod.spec
    names = [c.name for c in spec.containers]
    init_names = [c.name for c in spec.init_containers]
    ephemeral = [c.name for c in spec.ephemeral_containers]
    name = pod.metadata.name
    if not container:
        if len(names) == 1:
            return names[0]
        default = pod.metadata.annotations.get(DEFAULT_CONTAINER_ANNOTATION, "")
        if default in names:
            return default
        msg = f"a container name must be specified for pod {name}, choose one of: {go_list(names)}"
        if init_names:
            msg += f" or one of the init containers: {go_list(init_names)}"
        raise errors.BadRequest(msg)
    if container not in (*names, *init_names, *ephemeral):
        raise errors.BadRequest(f"container {container} is not valid for pod {name}")
    return container


def container_status(pod: Any, container: str) -> Any | None:
    st = pod.status
    for statuses in (st.container_statuses, st.init_container_statuses,
                     st.ephemeral_container_statuses):
        for cs in statuses:
            if cs.name == container:
                return cs
    return None


def check_log_status(pod: Any, container: str, previous: bool) -> bool:
    """kubelet's ``validateContainerLogStatus`` on the pod's reported status; returns the
    ``previous`` to ask the node for. No status yet: the node decides."""
    cs = container_status(pod, container)
    name = pod.metadata.name
    if cs is None:
        return previous
    last_terminated = cs.last_state.HasField("terminated")
    if previous:
        if not last_terminated:
            raise errors.BadRequest(
                f'previous terminated container "{container}" in pod "{name}" not found')
        # waiting to restart: the last terminated attempt is the newest one on the node
        return not cs.state.HasField("waiting")
    if cs.state.HasField("waiting") and not last_terminated:
        reason = cs.state.waiting.reason or "ContainerCreating"
        msg = f'container "{container}" in pod "{name}" is waiting to start: {reason}'
        if cs.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
            msg = (f'container "{container}" in pod "{name}" is waiting to start: trying and '
                   f"failing to pull image")
        raise errors.BadRequest(msg)
    return False


def node_target(node: Any) -> str:
    """``host:port`` of the node's agent; ServiceUnavailable when it advertises none."""
    name = node.metadata.name
    port = node.status.daemon_endpoints.kubelet_endpoint.port
    by_type: dict[str, str] = {}
    for a in node.status.addresses:
        by_type.setdefault(a.type, a.address)
    host = next((by_type[t] for t in ADDRESS_PREFERENCE if by_type.get(t)), "")
    if not host or not port:
        raise errors.ServiceUnavailable(
            f'node "{name}" does not advertise its agent (status.addresses and '
            f"status.daemonEndpoints.kubeletEndpoint.Port): is its agent running?")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NodeProxy:
    """See the module docstring. ``dial`` opens a channel (tests may replace it)."""

    def __init__(self, registry: Registry, *, credentials: Credentials = Credentials(),
                 connect_timeout: float = CONNECT_TIMEOUT,
                 dial: Callable[[str], grpc.aio.Channel] | None = None) -> None:
        self.reg = registry
        self.connect_timeout = connect_timeout
        self.credentials = credentials
        self.dial = dial or self._dial

    def _dial(self, target: str) -> grpc.aio.Channel:
        # TLS to the agent, verified against the cluster CA (its serving certificate names
        # the node's addresses), presenting the apiserver's kubelet-client identity
        return open_channel(target, self.credentials)

    # -- lookups ----------------------------------------------------------------------------

    async def _pod(self, namespace: str, name: str) -> Any:
        return (await self.reg.get(kinds.by_resource("pods"), namespace, name)).obj

    async def _target(self, pod: Any) -> tuple[str, str]:
        """(node name, agent address) of a scheduled pod."""
        node_name = pod.spec.node_name
        if not node_name:
            raise errors.BadRequest(f'pod "{pod.metadata.name}" is not scheduled: it does '
                                    f"not have a host assigned yet")
        try:
            node = (await self.reg.get(kinds.by_resource("nodes"), "", node_name)).obj
        except errors.NotFound:
            raise errors.ServiceUnavailable(
                f'pod "{pod.metadata.name}" is on node "{node_name}", which no longer '
                f"exists: its agent cannot be reached") from None
        return node_name, node_target(node)

    async def _connect(self, node_name: str, target: str) -> grpc.aio.Channel:
        channel = self.dial(target)
        try:
            await asyncio.wait_for(channel.channel_ready(), self.connect_timeout)
        except TimeoutError:
            await channel.close(None)
            raise errors.ServiceUnavailable(
                f'cannot reach the agent of node "{node_name}" at {target}: no answer within '
                f"{self.connect_timeout:g}s (is the node down?)") from None
        except BaseException:
            await channel.close(None)
            raise
        return channel

    @staticmethod
    def _translate(e: grpc.aio.AioRpcError, node_name: str, target: str) -> errors.ApiError:
        details = e.details() or ""
        reason, sep, _ = details.partition(": ")
        if sep and reason and e.code() != grpc.StatusCode.UNAVAILABLE:
            return errors.from_grpc(e.code(), details)
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            if details.startswith("ServiceUnavailable: "):
                return errors.from_grpc(e.code(), details)
            return errors.ServiceUnavailable(
                f'lost the agent of node "{node_name}" at {target}: {details}')
        return errors.from_grpc(e.code(), f"agent of node {node_name}: {details}")

    # -- logs -------------------------------------------------------------------------------

    async def logs(self, req: api_pb2.LogsRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.LogChunk]:
        try:
            pod = await self._pod(req.namespace, req.name)
            container = choose_container(pod, req.container)
            previous = check_log_status(pod, container, req.previous)
            node_name, target = await self._target(pod)
            channel = await self._connect(node_name, target)
        except errors.ApiError as e:
            await context.abort(e.code, errors.bounded_details(e))
            return
        forwarded = api_pb2.LogsRequest()
        forwarded.CopyFrom(req)
        forwarded.container = container
        forwarded.previous = previous
        if req.previous and not previous:
            forwarded.follow = False  # a terminated attempt: nothing more will come
        call = agent_pb2_grpc.AgentStub(channel).Logs(agent_pb2.AgentLogsRequest(
            request=forwarded, pod_uid=pod.metadata.uid))
        async for chunk in self._relay(call, channel, node_name, target, context):
            yield chunk

    # -- exec -------------------------------------------------------------------------------

    async def exec(self, requests: AsyncIterator[api_pb2.ExecRequest],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.ExecOutput]:
        first = await anext(aiter(requests), None)
        if first is None:
            return
        try:
            if not first.command:
                raise errors.BadRequest("you must specify at least one command for the "
                                        "container")
            pod = await self._pod(first.namespace, first.name)
            container = choose_container(pod, first.container)
            if pod.status.phase in ("Succeeded", "Failed"):
                raise errors.BadRequest(f"cannot exec into a container in a completed pod; "
                                        f"current phase is {pod.status.phase}")
            node_name, target = await self._target(pod)
            channel = await self._connect(node_name, target)
        except errors.ApiError as e:
            await context.abort(e.code, errors.bounded_details(e))
            return
        head = api_pb2.ExecRequest()
        head.CopyFrom(first)
        head.container = container
        uid = pod.metadata.uid

        async def upstream() -> AsyncIterator[agent_pb2.AgentExecRequest]:
            yield agent_pb2.AgentExecRequest(request=head, pod_uid=uid)
            async for r in requests:
                yield agent_pb2.AgentExecRequest(request=r)

        call = agent_pb2_grpc.AgentStub(channel).Exec(upstream())
        async for out in self._relay(call, channel, node_name, target, context):
            yield out

    async def _relay(self, call: Any, channel: grpc.aio.Channel, node_name: str, target: str,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """Forward an agent stream to our caller; the agent's errors keep their reason, a
        cancelled caller cancels the agent call, and the channel is always closed."""
        failure: errors.ApiError | None = None
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                failure = self._translate(e, node_name, target)
        finally:
            call.cancel()
            await channel.close(None)
        if failure is not None:
            await context.abort(failure.code, errors.bounded_details(failure))


__all__ = ["CONNECT_TIMEOUT", "NodeProxy", "check_log_status", "choose_container",
           "node_target"]
