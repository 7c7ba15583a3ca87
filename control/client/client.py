"""Typed asyncio client of the Flotilla API (the gRPC ``flotilla.v1.Api`` service).

Objects go in and come out as the kinds' own protobuf messages (``core_pb2.Pod`` ...); the
``resource`` argument of the read verbs is a message class, a KindInfo, or a resource name
(``"pods"``). Server errors arrive as the :mod:`control.api.errors` classes (``NotFound``,
``Conflict``, ``Gone`` ...), never as raw ``grpc.aio.AioRpcError``; an unreachable server is
``ServiceUnavailable`` naming the address.

Concurrency: one ApiClient per channel, usable from many tasks of one event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import random
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import grpc
from google.protobuf.message import Message

from control.api import errors, kinds
from control.api.pb import api_pb2, api_pb2_grpc, meta_pb2

M = TypeVar("M", bound=Message)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Resource = type[Message] | kinds.KindInfo | str
# A resource named without its message class (a KindInfo or a resource name): the read verbs
# then return ``Any``; pass the class (``core_pb2.Pod``) to get the kind's own type.
Named = kinds.KindInfo | str


def kind_of(resource: Resource | Message) -> kinds.KindInfo:
    if isinstance(resource, kinds.KindInfo):
        return resource
    if isinstance(resource, str):
        return kinds.resolve(resource)
    return kinds.by_message(resource)


@dataclass(frozen=True)
class ListResult(Generic[T]):
    items: list[T]
    resource_version: str
    continue_: str
    remaining_item_count: int | None


@dataclass(frozen=True)
class WatchEvent(Generic[T_co]):
    """One watch event; ``object`` is None only for a BOOKMARK that carries no object."""

    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: T_co | None
    resource_version: str


@dataclass(frozen=True)
class Scale:
    spec_replicas: int
    status_replicas: int
    selector: str
    resource_version: str


# Times a call refused by the server's in-flight limit is tried again (client-go: 10).
MAX_THROTTLED_RETRIES = 4


# The longest wait between throttled attempts, whatever the server's retry-after says.
MAX_THROTTLED_DELAY = 10.0


def throttled_delay(retry_after: float, attempt: int, rng: random.Random | None = None) -> float:
    """How long to wait before throttled attempt ``attempt`` (1, 2, ...): the server's
    retry-after times the attempt, at most MAX_THROTTLED_DELAY, spread by 0.5-1.5x."""
    r = (rng or random).random()
    return min(max(retry_after, 0.1) * attempt, MAX_THROTTLED_DELAY) * (0.5 + r)


def _translate(e: grpc.aio.AioRpcError, target: str) -> errors.ApiError:
    if e.code() == grpc.StatusCode.UNAVAILABLE and not (e.details() or "").startswith(
        "ServiceUnavailable: "
    ):
        return errors.ServiceUnavailable(f"cannot reach the Flotilla server at {target}: {e.details()}")
    if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not (e.details() or "").startswith(
        "Timeout: "
    ):
        return errors.Timeout(f"the Flotilla server at {target} did not answer in time")
    return errors.from_grpc(e.code(), e.details(), errors.retry_after_from(e.trailing_metadata()))


def object_meta(obj: Message) -> meta_pb2.ObjectMeta:
    """An API object's metadata; TypeError for a message that is not a kind (no ObjectMeta)."""
    meta = getattr(obj, "metadata", None)
    if not isinstance(meta, meta_pb2.ObjectMeta):
        raise TypeError(f"{type(obj).__name__} is not an API object: it has no ObjectMeta")
    return meta


def _decode_as(cls: type[M], data: bytes) -> M:
    msg = cls()
    msg.ParseFromString(data)
    return msg


def _decode(info: kinds.KindInfo, data: bytes) -> Any:
    msg = info.message()
    msg.ParseFromString(data)
    return msg


def _log_warning(message: str) -> None:
    logging.getLogger("flotilla.client").warning("Warning: %s", message)


class ApiClient:
    def __init__(self, channel: grpc.aio.Channel, target: str = "", timeout: float | None = 30.0):
        self._stub = api_pb2_grpc.ApiStub(channel)
        self.channel = channel
        self.target = target
        self.timeout = timeout
        # what the server warned about in a reply (kubectl's "Warning: ..." lines)
        self.on_warning: Callable[[str], None] = _log_warning

    def use_channel(self, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        """Send later calls on ``channel`` (new credentials); returns the old channel,
        which the caller closes once its streams may end."""
        old, self.channel = self.channel, channel
        self._stub = api_pb2_grpc.ApiStub(channel)
        return old

    async def _call(self, method: Callable[..., Any], request: Message) -> Any:
        # TooManyRequests with a retry-after hint means the server did not start the
        # request (its priority level's queue was full, or the wait timed out): wait as
        # told, longer each time, with jitter so throttled clients spread out, a few times.
        # The client's timeout bounds the whole call, waits included: a retry that could
        # not finish before it is not made, and the caller gets the refusal itself.
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        attempt = 0
        while True:
            remaining = None if deadline is None else max(deadline - loop.time(), 0.001)
            try:
                call = method(request, timeout=remaining)
                reply = await call
                break
            except grpc.aio.AioRpcError as e:
                err = _translate(e, self.target)
            if (not isinstance(err, errors.TooManyRequests) or err.retry_after is None
                    or attempt >= MAX_THROTTLED_RETRIES):
                raise err
            attempt += 1
            delay = throttled_delay(err.retry_after, attempt)
            if deadline is not None and loop.time() + delay >= deadline:
                raise err
            await asyncio.sleep(delay)
        trailing = await call.trailing_metadata() if hasattr(call, "trailing_metadata") else ()
        for key, value in trailing or ():
            if key == "warning":
                self.on_warning(str(value))
        return reply

    # -- CRUD ---------------------------------------------------------------------------

    async def create(self, obj: M, *, dry_run: bool = False) -> M:
        info = kind_of(obj)
        req = api_pb2.CreateRequest(
            resource=info.plural,
            namespace=object_meta(obj).namespace,
            object=obj.SerializeToString(),
            dry_run=dry_run,
        )
        reply = await self._call(self._stub.Create, req)
        return _decode_as(type(obj), reply.object)

    async def create_many(self, objs: Sequence[M]) -> builtins.list[M | errors.ApiError]:
        """Create objects of one kind in one namespace with one call (``CreateMany``): one
        result per object, in order, the created object or why it was not created. A
        failure of the whole call (unreachable, throttled) raises as ``create`` does."""
        if not objs:
            return []
        info = kind_of(objs[0])
        namespace = object_meta(objs[0]).namespace
        if any(kind_of(o) is not info or object_meta(o).namespace != namespace
               for o in objs):
            raise ValueError("create_many takes objects of one kind in one namespace")
        req = api_pb2.CreateManyRequest(resource=info.plural, namespace=namespace,
                                        objects=[o.SerializeToString() for o in objs])
        reply = await self._call(self._stub.CreateMany, req)
        cls = type(objs[0])
        return [errors.from_reason(r.reason, r.message) if r.reason
                else _decode_as(cls, r.object) for r in reply.results]

    @overload
    async def get(self, resource: type[M], name: str, namespace: str = "", *,
                  resource_version: str = "") -> M: ...
    @overload
    async def get(self, resource: Named, name: str, namespace: str = "", *,
                  resource_version: str = "") -> Any: ...

    async def get(self, resource: Resource, name: str, namespace: str = "", *,
                  resource_version: str = "") -> Any:
        info = kind_of(resource)
        req = api_pb2.GetRequest(resource=info.plural, namespace=namespace, name=name,
                                 resource_version=resource_version)
        reply = await self._call(self._stub.Get, req)
        return _decode(info, reply.object)

    @overload
    async def list(
        self, resource: type[M], namespace: str = "", *, label_selector: str = "",
        field_selector: str = "", limit: int = 0, continue_: str = "",
        resource_version: str = "", metadata_only: bool = False,
    ) -> ListResult[M]: ...
    @overload
    async def list(
        self, resource: Named, namespace: str = "", *, label_selector: str = "",
        field_selector: str = "", limit: int = 0, continue_: str = "",
        resource_version: str = "", metadata_only: bool = False,
    ) -> ListResult[Any]: ...

    async def list(
        self,
        resource: Resource,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_: str = "",
        resource_version: str = "",
        metadata_only: bool = False,
    ) -> ListResult[Any]:
        """``metadata_only``: items carry only apiVersion, kind and metadata (spec and
        status empty), as Kubernetes' PartialObjectMetadata."""
        info = kind_of(resource)
        req = api_pb2.ListRequest(
            resource=info.plural, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector, limit=limit, resource_version=resource_version,
            metadata_only=metadata_only,
        )
        setattr(req, "continue", continue_)
        reply = await self._call(self._stub.List, req)
        return ListResult(
            items=[_decode(info, b) for b in reply.items],
            resource_version=reply.resource_version,
            continue_=getattr(reply, "continue"),
            remaining_item_count=reply.remaining_item_count
            if reply.HasField("remaining_item_count") else None,
        )

    @overload
    async def list_all(self, resource: type[M], namespace: str = "",
                       **kw: Any) -> ListResult[M]: ...
    @overload
    async def list_all(self, resource: Named, namespace: str = "",
                       **kw: Any) -> ListResult[Any]: ...

    async def list_all(self, resource: Resource, namespace: str = "",
                       **kw: Any) -> ListResult[Any]:
        """Every page of a list, read at the first page's revision."""
        info = kind_of(resource)
        first = await self.list(info, namespace, **kw)
        items, token = list(first.items), first.continue_
        while token:
            page = await self.list(info, namespace, **{**kw, "continue_": token})
            items.extend(page.items)
            token = page.continue_
        return ListResult(items, first.resource_version, "", None)

    async def update(self, obj: M, *, dry_run: bool = False) -> M:
        info = kind_of(obj)
        req = api_pb2.UpdateRequest(resource=info.plural,
                                    namespace=object_meta(obj).namespace,
                                    object=obj.SerializeToString(), dry_run=dry_run)
        reply = await self._call(self._stub.Update, req)
        return _decode_as(type(obj), reply.object)

    async def update_status(self, obj: M) -> M:
        info = kind_of(obj)
        req = api_pb2.UpdateRequest(resource=info.plural,
                                    namespace=object_meta(obj).namespace,
                                    object=obj.SerializeToString())
        reply = await self._call(self._stub.UpdateStatus, req)
        return _decode_as(type(obj), reply.object)

    @overload
    async def patch(self, resource: type[M], name: str, patch: Mapping[str, Any],
                    namespace: str = "", *, patch_type: str = "merge", status: bool = False,
                    dry_run: bool = False) -> M: ...
    @overload
    async def patch(self, resource: Named, name: str, patch: Mapping[str, Any],
                    namespace: str = "", *, patch_type: str = "merge", status: bool = False,
                    dry_run: bool = False) -> Any: ...

    async def patch(self, resource: Resource, name: str, patch: Mapping[str, Any],
                    namespace: str = "", *, patch_type: str = "merge", status: bool = False,
                    dry_run: bool = False) -> Any:
        info = kind_of(resource)
        req = api_pb2.PatchRequest(resource=info.plural, namespace=namespace, name=name,
                                   patch_type=patch_type, patch=json.dumps(patch).encode(),
                                   status=status, dry_run=dry_run)
        reply = await self._call(self._stub.Patch, req)
        return _decode(info, reply.object)

    @overload
    async def delete(
        self, resource: type[M], name: str, namespace: str = "", *,
        grace_period_seconds: int | None = None, propagation_policy: str = "", uid: str = "",
        resource_version: str = "", dry_run: bool = False,
    ) -> tuple[M, bool]: ...
    @overload
    async def delete(
        self, resource: Named, name: str, namespace: str = "", *,
        grace_period_seconds: int | None = None, propagation_policy: str = "", uid: str = "",
        resource_version: str = "", dry_run: bool = False,
    ) -> tuple[Any, bool]: ...

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str = "",
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str = "",
        uid: str = "",
        resource_version: str = "",
        dry_run: bool = False,
    ) -> tuple[Any, bool]:
        """Delete; returns (object, pending) — pending when finalizers or a graceful pod
        termination keep it for now."""
        info = kind_of(resource)
        req = api_pb2.DeleteRequest(
            resource=info.plural, namespace=namespace, name=name,
            propagation_policy=propagation_policy, dry_run=dry_run,
            preconditions=api_pb2.Preconditions(uid=uid, resource_version=resource_version),
        )
        if grace_period_seconds is not None:
            req.grace_period_seconds = grace_period_seconds
        reply = await self._call(self._stub.Delete, req)
        return _decode(info, reply.object), reply.pending

    # -- watch --------------------------------------------------------------------------

    @overload
    def watch(
        self, resource: type[M], namespace: str = "", *, label_selector: str = "",
        field_selector: str = "", resource_version: str = "", allow_bookmarks: bool = True,
        timeout_seconds: int = 0, wait_for_ready: bool = False,
        metadata_only: bool = False,
    ) -> AsyncIterator[WatchEvent[M]]: ...
    @overload
    def watch(
        self, resource: Named, namespace: str = "", *, label_selector: str = "",
        field_selector: str = "", resource_version: str = "", allow_bookmarks: bool = True,
        timeout_seconds: int = 0, wait_for_ready: bool = False,
        metadata_only: bool = False,
    ) -> AsyncIterator[WatchEvent[Any]]: ...

    async def watch(
        self,
        resource: Resource,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        allow_bookmarks: bool = True,
        timeout_seconds: int = 0,
        wait_for_ready: bool = False,
        metadata_only: bool = False,
    ) -> AsyncIterator[WatchEvent[Any]]:
        """Events until the server ends the stream; ``Gone`` when resource_version is too old.
        ``wait_for_ready``: while the server is unreachable, wait for it to come back (an
        informer resuming after a server restart) instead of failing at once.
        ``metadata_only``: objects carry only apiVersion, kind and metadata."""
        info = kind_of(resource)
        req = api_pb2.WatchRequest(
            resource=info.plural, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector, resource_version=resource_version,
            allow_bookmarks=allow_bookmarks, timeout_seconds=timeout_seconds,
            metadata_only=metadata_only,
        )
        call = self._stub.Watch(req, wait_for_ready=wait_for_ready)
        try:
            async for ev in call:
                if ev.type == "ERROR":
                    raise errors.from_grpc(
                        getattr(grpc.StatusCode, ev.error_reason, grpc.StatusCode.UNKNOWN),
                        ev.error_message,
                    )
                obj = _decode(info, ev.object) if ev.object else None
                rv = ev.resource_version or (obj.metadata.resource_version if obj else "")
                yield WatchEvent(ev.type, obj, rv)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise _translate(e, self.target) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled
            # grpc cancels the streams of a channel that is closed (the old one, after a
            # certificate renewal moved this client to a new channel): the stream ended,
            # and the caller watches again, on the current channel
            return
        finally:
            call.cancel()

    # -- subresources -------------------------------------------------------------------

    async def bind(self, namespace: str, name: str, node_name: str, pod_uid: str = "") -> Any:
        req = api_pb2.BindRequest(namespace=namespace, name=name, node_name=node_name,
                                  pod_uid=pod_uid)
        reply = await self._call(self._stub.Bind, req)
        return _decode(kinds.by_resource("pods"), reply.object)

    async def get_scale(self, resource: Resource, name: str, namespace: str = "") -> Scale:
        info = kind_of(resource)
        r = await self._call(self._stub.GetScale, api_pb2.ScaleRequest(
            resource=info.plural, namespace=namespace, name=name))
        return Scale(r.spec_replicas, r.status_replicas, r.selector, r.resource_version)

    async def update_scale(self, resource: Resource, name: str, replicas: int,
                           namespace: str = "", resource_version: str = "") -> Scale:
        info = kind_of(resource)
        r = await self._call(self._stub.UpdateScale, api_pb2.ScaleRequest(
            resource=info.plural, namespace=namespace, name=name, replicas=replicas,
            resource_version=resource_version))
        return Scale(r.spec_replicas, r.status_replicas, r.selector, r.resource_version)

    async def evict(self, namespace: str, name: str,
                    grace_period_seconds: int | None = None) -> None:
        req = api_pb2.EvictRequest(namespace=namespace, name=name)
        if grace_period_seconds is not None:
            req.grace_period_seconds = grace_period_seconds
        await self._call(self._stub.Evict, req)

    async def create_token(self, namespace: str, name: str, request: Any = None, *,
                           dry_run: bool = False) -> Any:
        """``serviceaccounts/token``: a TokenRequest (authentication.k8s.io/v1) for
        ServiceAccount ``namespace/name``, answered with ``status.token`` filled in."""
        from control.api.pb import authentication_pb2

        req = request if request is not None else authentication_pb2.TokenRequest()
        reply = await self._call(self._stub.CreateToken, api_pb2.TokenRequestCall(
            namespace=namespace, name=name, object=req.SerializeToString(), dry_run=dry_run))
        return authentication_pb2.TokenRequest.FromString(reply.object)

    async def history(self, resource: Resource, name: str,
                      namespace: str = "") -> builtins.list[tuple[str, int, Any]]:
        """Every revision of one object still in the store's log: (type, revision, object)."""
        info = kind_of(resource)
        reply = await self._call(self._stub.History, api_pb2.HistoryRequest(
            resource=info.plural, namespace=namespace, name=name))
        return [(e.type, e.revision, _decode(info, e.object)) for e in reply.entries]

    async def discovery(self) -> api_pb2.DiscoveryReply:
        return await self._call(self._stub.Discovery, api_pb2.DiscoveryRequest())  # type: ignore[no-any-return]

    async def whoami(self) -> api_pb2.WhoAmIReply:
        """The caller's identity as the server sees it (impersonation included)."""
        return await self._call(self._stub.WhoAmI, api_pb2.WhoAmIRequest())  # type: ignore[no-any-return]

    async def access_review(self, verb: str, resource: str = "", *, group: str = "",
                            subresource: str = "", namespace: str = "", name: str = "",
                            path: str = "") -> bool:
        """Whether the server would allow the caller this request."""
        reply = await self._call(self._stub.AccessReview, api_pb2.AccessReviewRequest(
            verb=verb, resource=resource, group=group, subresource=subresource,
            namespace=namespace, name=name, path=path))
        return bool(reply.allowed)

    async def rules_review(self, namespace: str) -> api_pb2.RulesReviewReply:
        """The rules that apply to the caller in ``namespace``."""
        return await self._call(self._stub.RulesReview,  # type: ignore[no-any-return]
                                api_pb2.RulesReviewRequest(namespace=namespace))

    async def logs(self, namespace: str, name: str, **options: Any) -> AsyncIterator[bytes]:
        call = self._stub.Logs(api_pb2.LogsRequest(namespace=namespace, name=name, **options))
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise _translate(e, self.target) from None
        finally:
            call.cancel()

    def exec(self, namespace: str, name: str, command: Sequence[str], *, container: str = "",
             stdin: AsyncIterable[bytes] | None = None, tty: bool = False) -> ExecStream:
        """Run ``command`` in a container of a running pod (``kubectl exec``).

        Iterate the returned :class:`ExecStream` for ``("stdout"|"stderr", bytes)`` chunks
        as they come; afterwards its ``exit_code`` is the command's. ``stdin`` (for ``-i``)
        is sent chunk by chunk and closed when it ends. Errors arrive as ``ApiError``.
        """
        first = api_pb2.ExecRequest(namespace=namespace, name=name, container=container,
                                    command=list(command), stdin=stdin is not None, tty=tty)
        return ExecStream(self, first, stdin)


class ExecStream:
    """One exec call: an async iterator of ``(stream, chunk)``, then ``exit_code``.

    The request side (first message, then stdin chunks, then ``stdin_close``) is a
    generator grpc consumes while the output is read; leaving the iteration early cancels
    the call (and the server kills the command).
    """

    def __init__(self, client: ApiClient, first: api_pb2.ExecRequest,
                 stdin: AsyncIterable[bytes] | None) -> None:
        self._client = client
        self._first = first
        self._stdin = stdin
        self.exit_code: int | None = None

    async def _requests(self) -> AsyncIterator[api_pb2.ExecRequest]:
        yield self._first
        if self._stdin is None:
            return
        async for data in self._stdin:
            if data:
                yield api_pb2.ExecRequest(stdin_data=data)
        yield api_pb2.ExecRequest(stdin_close=True)

    async def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        call = self._client._stub.Exec(self._requests())
        try:
            async for out in call:
                if out.stdout:
                    yield "stdout", out.stdout
                if out.stderr:
                    yield "stderr", out.stderr
                if out.HasField("exit_code"):
                    self.exit_code = out.exit_code
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise _translate(e, self._client.target) from None
            return
        finally:
            call.cancel()
        if self.exit_code is None:
            raise errors.ApiError("the exec stream ended without the command's exit code")

    async def wait(self) -> tuple[int, bytes, bytes]:
        """Run to the end, collecting the output: (exit code, stdout, stderr)."""
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        async for stream, data in self:
            out[stream].append(data)
        assert self.exit_code is not None
        return self.exit_code, b"".join(out["stdout"]), b"".join(out["stderr"])
