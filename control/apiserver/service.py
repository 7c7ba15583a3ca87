"""The gRPC face of the apiserver: ``flotilla.v1.Api`` handlers over the registry.

Each call is first authenticated (:mod:`control.apiserver.authn`: the identity is set in
``authn.current_user`` for the rest of the call and bound to every log line it writes),
then each handler decodes the request, resolves the kind, asks the authorizer chain
(:mod:`control.apiserver.authz`) whether this user may do this verb on this object, calls
the registry and encodes the reply; an :class:`ApiError` becomes the gRPC status with
Kubernetes' reason in the details. Without credentials only the CA bundle
(``kube-public/cluster-info``) can be read; the rest is UNAUTHENTICATED. Every successful
write is logged with its user.
The service is registered with hand-built method handlers (not the generated servicer) so
that Watch can send bytes already encoded by the watch cache: one encoding per event for
all watchers.

Concurrency: grpc.aio runs each call as a task on the server's event loop; handlers share
the registry and cache, which are event-loop-only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from control.api import errors, fields, kinds
from control.api.pb import api_pb2, authentication_pb2
from control.apiserver import (
    authn,
    codec,
    satoken,
    selfreview,
    subresources,
    token_request,
    warnings,
)
from control.apiserver.authz import Attributes, Chain, Decision, default_chain
from control.apiserver.flowcontrol import Admission, request_info
from control.apiserver.metrics import ApiServerMetrics
from control.apiserver.node_authz import NodeAuthorizer
from control.apiserver.node_graph import NodeGraph
from control.apiserver.rbac import EscalationGuard, RBACAuthorizer
from control.apiserver.registry import Registry
from control.apiserver.validation_pod import validate_pod_log_options
from control.store.interface import StoreFull

log = structlog.get_logger(component="apiserver")

SERVICE_NAME = "flotilla.v1.Api"
VERSION = "0.1.0"

# Objects one CreateMany call may carry (its reply must fit gRPC's default 4 MiB).
MAX_CREATE_MANY = 500

# Verbs every kind supports; status-less kinds have no updatestatus.
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def resolve(resource: str) -> kinds.KindInfo:
    try:
        return kinds.by_resource(resource)
    except KeyError:
        raise errors.NotFound(f'the server could not find the requested resource "{resource}"') from None


def decode_object(info: kinds.KindInfo, data: bytes) -> Any:
    msg = info.message()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise errors.BadRequest(f"cannot decode {info.kind}: {e}") from None
    return msg


class Undecodable:
    """What a request deserializer hands over for bytes that are not the request message:
    the handler answers INVALID_ARGUMENT instead of gRPC's UNKNOWN and traceback."""

    def __init__(self, method: str, error: str) -> None:
        self.method = method
        self.error = error

    def refusal(self) -> errors.BadRequest:
        _BAD_BYTES_LOG.warn(method=self.method, error=self.error)
        return errors.BadRequest(f"cannot decode the {self.method} request: {self.error}")


class _RateLimitedLog:
    """One log line per ``interval`` seconds at most, with the count of those suppressed:
    a client sending garbage in a loop must not flood the server's log."""

    def __init__(self, event: str, interval: float = 10.0) -> None:
        self.event = event
        self.interval = interval
        self._last = float("-inf")
        self._suppressed = 0

    def warn(self, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        log.warning(self.event, suppressed=self._suppressed, **fields)
        self._last, self._suppressed = now, 0


_BAD_BYTES_LOG = _RateLimitedLog("refused undecodable request bytes")


def _deserializer(method: str, cls: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as e:
            return Undecodable(method, str(e))

    return parse


async def _abort(context: grpc.aio.ServicerContext, err: errors.ApiError) -> None:
    await context.abort(err.code, errors.bounded_details(err), errors.trailing_metadata(err))


def _authenticate(authenticator: authn.Authenticator,
                  context: grpc.aio.ServicerContext) -> authn.UserInfo | None:
    user = authenticator.authenticate(context)
    authn.current_user.set(user)
    if user is not None:
        structlog.contextvars.bind_contextvars(user=user.name)
    return user


def _unary(fn: Callable[[Any], Awaitable[Message]], authenticator: authn.Authenticator,
           metrics: ApiServerMetrics | None = None,
           admission: Admission | None = None) -> Callable[..., Awaitable[Message]]:
    method = fn.__name__

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Message:
        start = time.perf_counter()
        failure: BaseException | None = None
        sent = warnings.begin()
        release: Callable[[], None] | None = None
        try:
            user = _authenticate(authenticator, context)
            if admission is not None:
                release = await admission.enter(request_info(method, request, user),
                                                context.time_remaining())
            if isinstance(request, Undecodable):
                raise request.refusal()
            reply = await fn(request)
            if sent:
                context.set_trailing_metadata(
                    tuple((warnings.METADATA_KEY, w) for w in sent))
            return reply
        except errors.ApiError as e:
            failure = e
            await _abort(context, e)
        except StoreFull:
            # The store warned with the path and the free space; writes succeed again by
            # themselves once space returns, so the client is told to retry later.
            failure = errors.TooManyRequests(
                "the server's storage is full: the write was not made; retry later")
            await _abort(context, failure)
        except Exception as e:  # an unexpected bug must not kill the server
            log.exception("request failed", method=method)
            failure = errors.ApiError(f"internal error: {type(e).__name__}: {e}")
            await _abort(context, failure)
        finally:
            if release is not None:
                release()
            if metrics is not None:
                metrics.observe(method, request, time.perf_counter() - start, failure)
        raise AssertionError("unreachable")

    return handler


def _metadata_only_event(encoded: bytes) -> bytes:
    """An encoded WatchEvent with its object reduced to apiVersion, kind and metadata."""
    ev = api_pb2.WatchEvent.FromString(encoded)
    if not ev.object:
        return encoded  # a bookmark
    ev.object = codec.metadata_only(ev.object)
    return ev.SerializeToString()


class CachePolicySource:
    """The RBAC kinds as the watch cache holds them (rbac.PolicySource)."""

    RESOURCES = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")

    def __init__(self, registry: Registry) -> None:
        self.cache = registry.cache

    def version(self) -> object:
        return tuple(self.cache.generation(r) for r in self.RESOURCES)

    def _objs(self, resource: str) -> list[Any]:
        if resource not in self.cache.resources:
            return []
        return [co.obj for co in self.cache.scan(resource)]

    def roles(self) -> list[Any]:
        return self._objs("roles")

    def cluster_roles(self) -> list[Any]:
        return self._objs("clusterroles")

    def role_bindings(self) -> list[Any]:
        return self._objs("rolebindings")

    def cluster_role_bindings(self) -> list[Any]:
        return self._objs("clusterrolebindings")


def default_authorizer(registry: Registry) -> Chain:
    def lookup(resource: str, namespace: str, name: str) -> Any:
        try:
            return registry.lookup(kinds.by_resource(resource), namespace, name).obj
        except errors.NotFound:
            return None

    graph = NodeGraph(lambda: registry.cache.resources.get("pods"))
    graph.sync()  # the first scan of the pods now, at start, not in a node's first request
    return default_chain(NodeAuthorizer(graph, lookup),
                         [RBACAuthorizer(CachePolicySource(registry))])


def selected_name(field_selector: str) -> str:
    """The one object a list or watch asks for with ``metadata.name=<name>``, which
    Kubernetes authorizes as a request for that name (a node may watch one Secret of its
    pod); empty for any other selector, and for one that does not parse (the registry
    then refuses it with the reason)."""
    if "metadata.name" not in field_selector:
        return ""
    try:
        return fields.parse(field_selector).requires_exact("metadata.name") or ""
    except errors.BadRequest:
        return ""


def _write_log(verb: str, info: kinds.KindInfo, namespace: str, name: str,
               sub: str = "") -> None:
    user = authn.current_user.get()
    log.debug("write", verb=verb, resource=info.plural + (f"/{sub}" if sub else ""),
              namespace=namespace, name=name,
              user=user.name if user else "system:anonymous",
              groups=list(user.groups) if user else [])


class ApiService:
    def __init__(self, registry: Registry, logs: Any = None, exec_: Any = None, *,
                 metrics: ApiServerMetrics | None = None,
                 authenticator: authn.Authenticator | None = None,
                 authorizer: Chain | None = None,
                 admission: Admission | None = None,
                 token_issuer: satoken.TokenIssuer | None = None) -> None:
        self.reg = registry
        # signs serviceaccounts/token answers (None: the subresource is not served)
        self.token_issuer = token_issuer
        # priority and fairness (or the plain max-in-flight filter): None admits everything
        self.admission = admission
        self.metrics = metrics
        self.authenticator = authenticator or authn.Authenticator()
        self.authorizer = authorizer or default_authorizer(registry)
        rbac = next((z for z in self.authorizer.authorizers if isinstance(z, RBACAuthorizer)),
                    None)
        if rbac is not None:
            chain = self.authorizer
            registry.admission.rbac_guard = EscalationGuard(
                lambda a: chain.decide(a) is Decision.ALLOW, rbac, authn.MASTERS).check

        def may_impersonate(caller: authn.UserInfo, resource: str, namespace: str,
                            name: str) -> None:
            self.authorizer.check(Attributes(caller, "impersonate", resource, "", "",
                                             namespace, name))

        self.authenticator.may_impersonate = may_impersonate
        # the agent issue plugs log and exec streaming in here
        self.logs_backend = logs
        self.exec_backend = exec_

    def authorize(self, verb: str, info: kinds.KindInfo | None, namespace: str = "",
                  name: str = "", sub: str = "") -> None:
        self.authorizer.check(Attributes(
            user=authn.current_user.get(), verb=verb,
            resource=info.plural if info else "", group=info.group if info else "",
            subresource=sub, namespace=namespace if info is None or info.namespaced else "",
            name=name))

    # -- unary verbs -----------------------------------------------------------------------

    async def Create(self, req: api_pb2.CreateRequest) -> api_pb2.ObjectReply:
        info = resolve(req.resource)
        obj = decode_object(info, req.object)
        self.authorize("create", info, req.namespace or obj.metadata.namespace,
                       obj.metadata.name)
        reply = api_pb2.ObjectReply(object=await self.reg.create(info, req.namespace, obj,
                                                                 dry_run=req.dry_run))
        _write_log("create", info, req.namespace, obj.metadata.name)
        return reply

    async def CreateMany(self, req: api_pb2.CreateManyRequest) -> api_pb2.CreateManyReply:
        info = resolve(req.resource)
        if len(req.objects) > MAX_CREATE_MANY:
            raise errors.BadRequest(f"{len(req.objects)} objects in one CreateMany call: at "
                                    f"most {MAX_CREATE_MANY}")

        async def one(data: bytes) -> api_pb2.CreateResult:
            try:
                obj = decode_object(info, data)
                self.authorize("create", info, req.namespace or obj.metadata.namespace,
                               obj.metadata.name)
                raw = await self.reg.create(info, req.namespace, obj)
            except errors.ApiError as e:
                return api_pb2.CreateResult(reason=e.reason, message=e.message[:4096])
            _write_log("create", info, req.namespace, obj.metadata.name)
            return api_pb2.CreateResult(object=raw)

        # Concurrently, so that the creates reach the store's group commit together.
        return api_pb2.CreateManyReply(
            results=await asyncio.gather(*(one(data) for data in req.objects)))

    async def Get(self, req: api_pb2.GetRequest) -> api_pb2.ObjectReply:
        info = resolve(req.resource)
        self.authorize("get", info, req.namespace, req.name)
        co = await self.reg.get(info, req.namespace if info.namespaced else "", req.name,
                                req.resource_version)
        return api_pb2.ObjectReply(object=co.raw)

    async def List(self, req: api_pb2.ListRequest) -> api_pb2.ListReply:
        info = resolve(req.resource)
        self.authorize("list", info, req.namespace, selected_name(req.field_selector))
        page = await self.reg.list(info, req.namespace if info.namespaced else "",
                                   req.label_selector, req.field_selector, req.limit,
                                   getattr(req, "continue"), req.resource_version)
        items = ([codec.metadata_only(b) for b in page.items] if req.metadata_only
                 else page.items)
        reply = api_pb2.ListReply(items=items, resource_version=str(page.resource_version))
        setattr(reply, "continue", page.continue_)
        if page.remaining is not None:
            reply.remaining_item_count = page.remaining
        return reply

    async def Update(self, req: api_pb2.UpdateRequest) -> api_pb2.ObjectReply:
        info = resolve(req.resource)
        obj = decode_object(info, req.object)
        self.authorize("update", info, req.namespace or obj.metadata.namespace,
                       obj.metadata.name)
        reply = api_pb2.ObjectReply(object=await self.reg.update(
            info, req.namespace, obj, dry_run=req.dry_run))
        _write_log("update", info, req.namespace, obj.metadata.name)
        return reply

    async def UpdateStatus(self, req: api_pb2.UpdateRequest) -> api_pb2.ObjectReply:
        info = resolve(req.resource)
        obj = decode_object(info, req.object)
        self.authorize("update", info, req.namespace or obj.metadata.namespace,
                       obj.metadata.name, "status")
        reply = api_pb2.ObjectReply(object=await self.reg.update(
            info, req.namespace, obj, status=True, dry_run=req.dry_run))
        _write_log("update", info, req.namespace, obj.metadata.name, "status")
        return reply

    async def Patch(self, req: api_pb2.PatchRequest) -> api_pb2.ObjectReply:
        info = resolve(req.resource)
        sub = "status" if req.status else ""
        self.authorize("patch", info, req.namespace, req.name, sub)
        reply = api_pb2.ObjectReply(object=await self.reg.patch(
            info, req.namespace, req.name, req.patch_type or "merge", req.patch,
            status=req.status, dry_run=req.dry_run))
        _write_log("patch", info, req.namespace, req.name, sub)
        return reply

    async def Delete(self, req: api_pb2.DeleteRequest) -> api_pb2.DeleteReply:
        info = resolve(req.resource)
        self.authorize("delete", info, req.namespace, req.name)
        grace = req.grace_period_seconds if req.HasField("grace_period_seconds") else None
        raw, pending = await self.reg.delete(
            info, req.namespace, req.name, grace_period_seconds=grace,
            propagation_policy=req.propagation_policy, uid=req.preconditions.uid,
            resource_version=req.preconditions.resource_version, dry_run=req.dry_run)
        _write_log("delete", info, req.namespace, req.name)
        return api_pb2.DeleteReply(object=raw, pending=pending)

    async def Bind(self, req: api_pb2.BindRequest) -> api_pb2.ObjectReply:
        pods = kinds.by_resource("pods")
        self.authorize("create", pods, req.namespace, req.name, "binding")
        reply = api_pb2.ObjectReply(object=await subresources.bind(
            self.reg, req.namespace, req.name, req.node_name, req.pod_uid))
        _write_log("create", pods, req.namespace, req.name, "binding")
        return reply

    async def GetScale(self, req: api_pb2.ScaleRequest) -> api_pb2.ScaleReply:
        self.authorize("get", resolve(req.resource), req.namespace, req.name, "scale")
        spec, status, sel, rv = await subresources.get_scale(
            self.reg, req.resource, req.namespace, req.name)
        return api_pb2.ScaleReply(spec_replicas=spec, status_replicas=status, selector=sel,
                                  resource_version=rv)

    async def UpdateScale(self, req: api_pb2.ScaleRequest) -> api_pb2.ScaleReply:
        if not req.HasField("replicas"):
            raise errors.BadRequest("replicas is required")
        info = resolve(req.resource)
        self.authorize("update", info, req.namespace, req.name, "scale")
        _write_log("update", info, req.namespace, req.name, "scale")
        spec, status, sel, rv = await subresources.update_scale(
            self.reg, req.resource, req.namespace, req.name, req.replicas, req.resource_version)
        return api_pb2.ScaleReply(spec_replicas=spec, status_replicas=status, selector=sel,
                                  resource_version=rv)

    async def Evict(self, req: api_pb2.EvictRequest) -> api_pb2.EvictReply:
        pods = kinds.by_resource("pods")
        self.authorize("create", pods, req.namespace, req.name, "eviction")
        _write_log("create", pods, req.namespace, req.name, "eviction")
        grace = req.grace_period_seconds if req.HasField("grace_period_seconds") else None
        await subresources.evict(self.reg, req.namespace, req.name, grace)
        return api_pb2.EvictReply()

    async def CreateToken(self, req: api_pb2.TokenRequestCall) -> api_pb2.ObjectReply:
        sas = kinds.by_resource("serviceaccounts")
        self.authorize("create", sas, req.namespace, req.name, "token")
        if self.token_issuer is None:
            raise errors.ServiceUnavailable("this server has no service account signing key: "
                                            "tokens cannot be issued")
        tr = authentication_pb2.TokenRequest()
        try:
            tr.ParseFromString(req.object)
        except DecodeError as e:
            raise errors.BadRequest(f"cannot decode TokenRequest: {e}") from None
        out = await token_request.create_token(self.reg, self.token_issuer, req.namespace,
                                               req.name, tr, dry_run=req.dry_run)
        _write_log("create", sas, req.namespace, req.name, "token")
        return api_pb2.ObjectReply(object=out.SerializeToString())

    async def History(self, req: api_pb2.HistoryRequest) -> api_pb2.HistoryReply:
        info = resolve(req.resource)
        self.authorize("get", info, req.namespace, req.name, "history")
        entries = await self.reg.history(info, req.namespace if info.namespaced else "",
                                         req.name)
        return api_pb2.HistoryReply(entries=[
            api_pb2.HistoryEntry(type=t, revision=rev, object=raw) for t, rev, raw in entries])

    async def Discovery(self, req: api_pb2.DiscoveryRequest) -> api_pb2.DiscoveryReply:
        self.authorize("discovery", None)
        out = []
        for i in kinds.KINDS:
            verbs = list(_VERBS)
            out.append(api_pb2.ApiResource(
                name=i.plural, singular_name=i.singular, kind=i.kind, group=i.group,
                version=i.version, namespaced=i.namespaced, short_names=list(i.short_names),
                verbs=verbs))
        return api_pb2.DiscoveryReply(resources=out, server_version=VERSION)

    async def WhoAmI(self, req: api_pb2.WhoAmIRequest) -> api_pb2.WhoAmIReply:
        user = selfreview.caller(self.authorizer, authn.current_user.get(), selfreview.WHOAMI)
        return api_pb2.WhoAmIReply(username=user.name, uid=user.uid, groups=list(user.groups))

    async def AccessReview(self, req: api_pb2.AccessReviewRequest
                           ) -> api_pb2.AccessReviewReply:
        user = selfreview.caller(self.authorizer, authn.current_user.get(), selfreview.ACCESS)
        if not req.verb or bool(req.resource) == bool(req.path):
            raise errors.BadRequest("an access review needs a verb and either a resource or "
                                    "a non-resource path")
        allowed = selfreview.access_review(self.authorizer, Attributes(
            user, req.verb, req.resource, req.group, req.subresource, req.namespace,
            req.name, req.path))
        return api_pb2.AccessReviewReply(allowed=allowed)

    async def RulesReview(self, req: api_pb2.RulesReviewRequest) -> api_pb2.RulesReviewReply:
        user = selfreview.caller(self.authorizer, authn.current_user.get(), selfreview.RULES)
        rules, incomplete = selfreview.rules_review(self.authorizer, user, req.namespace)
        out = api_pb2.RulesReviewReply(incomplete=incomplete)
        for r in rules:
            if r.urls:
                out.non_resource_rules.add(verbs=sorted(r.verbs),
                                           non_resource_urls=list(r.urls))
            else:
                out.resource_rules.add(verbs=sorted(r.verbs), api_groups=sorted(r.groups),
                                       resources=sorted(r.resources),
                                       resource_names=sorted(r.names))
        return out

    # -- streams ---------------------------------------------------------------------------

    async def watch(self, req: api_pb2.WatchRequest,
                    context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        if isinstance(req, Undecodable):
            await _abort(context, req.refusal())
            return
        release: Callable[[], None] | None = None
        try:
            user = _authenticate(self.authenticator, context)
            if self.admission is not None:
                # a watch holds a seat while it starts, not for its lifetime
                release = await self.admission.enter(request_info("Watch", req, user),
                                                     context.time_remaining())
            info = resolve(req.resource)
            self.authorize("watch", info, req.namespace, selected_name(req.field_selector))
            if req.resource_version == "":
                await self.reg.cache.wait_fresh()
            elif req.resource_version != "0":
                # resuming: the history before a restart may still be loading from the log
                await self.reg.cache.wait_history()
                # from a revision not reached yet: a bounded wait, then "too large"
                await self.reg.fresh(req.resource_version)
            watcher = self.reg.watch(info, req.namespace, req.label_selector,
                                     req.field_selector, req.resource_version,
                                     req.allow_bookmarks)
        except errors.TooManyRequests as e:
            # a status with the retry-after in its trailing metadata, as for unary calls
            await _abort(context, e)
            return
        except errors.ApiError as e:
            # an error event (not a status) so the client can tell "too old" from a failure
            yield api_pb2.WatchEvent(type="ERROR", error_reason=e.code.name,
                                     error_message=errors.bounded_details(e)).SerializeToString()
            return
        finally:
            if release is not None:
                release()
        deadline = (asyncio.get_running_loop().time() + req.timeout_seconds
                    if req.timeout_seconds > 0 else None)
        if self.metrics is not None:
            self.metrics.watch_started(info)
        try:
            while True:
                if deadline is None:
                    item = await watcher.next()
                else:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        return
                    try:
                        item = await asyncio.wait_for(watcher.next(), remaining)
                    except TimeoutError:
                        return
                if item is None:
                    if watcher.too_slow:
                        log.info("closed a watcher that fell behind", resource=info.plural)
                    return
                yield _metadata_only_event(item) if req.metadata_only else item
        finally:
            self.reg.cache.unwatch(watcher)
            if self.metrics is not None:
                self.metrics.watch_ended(info)

    async def logs(self, req: api_pb2.LogsRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.LogChunk]:
        if isinstance(req, Undecodable):
            await _abort(context, req.refusal())
            return
        try:
            _authenticate(self.authenticator, context)
            self.authorize("get", kinds.by_resource("pods"), req.namespace, req.name, "log")
            bad = validate_pod_log_options(req)
            if bad:
                raise errors.Invalid(f'PodLogOptions "{errors.excerpt(req.name)}" is invalid',
                                     bad)
        except errors.ApiError as e:
            await _abort(context, e)
            return
        if self.logs_backend is None:
            await _abort(context, errors.ServiceUnavailable(
                "logs are served by the node's agent, and no agent is connected"))
            return
        async for chunk in self.logs_backend(req, context):
            yield chunk

    async def exec(self, requests: AsyncIterator[api_pb2.ExecRequest],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.ExecOutput]:
        try:
            _authenticate(self.authenticator, context)
            # the pod's name travels in the first request: the proxy checks it against
            # this identity's rights once it is known
            self.authorize("create", kinds.by_resource("pods"), "", "", "exec")
        except errors.ApiError as e:
            await _abort(context, e)
            return
        if self.exec_backend is None:
            await _abort(context, errors.ServiceUnavailable(
                "exec is served by the node's agent, and no agent is connected"))
            return
        async for out in self.exec_backend(_decoded(requests, context), context):
            yield out

    # -- registration ----------------------------------------------------------------------

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(name: str, req_cls: Any, rep_cls: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                _unary(getattr(self, name), self.authenticator, self.metrics, self.admission),
                request_deserializer=_deserializer(name, req_cls),
                response_serializer=rep_cls.SerializeToString)

        a = api_pb2
        methods = {
            "Create": unary("Create", a.CreateRequest, a.ObjectReply),
            "CreateMany": unary("CreateMany", a.CreateManyRequest, a.CreateManyReply),
            "Get": unary("Get", a.GetRequest, a.ObjectReply),
            "List": unary("List", a.ListRequest, a.ListReply),
            "Update": unary("Update", a.UpdateRequest, a.ObjectReply),
            "UpdateStatus": unary("UpdateStatus", a.UpdateRequest, a.ObjectReply),
            "Patch": unary("Patch", a.PatchRequest, a.ObjectReply),
            "Delete": unary("Delete", a.DeleteRequest, a.DeleteReply),
            "Bind": unary("Bind", a.BindRequest, a.ObjectReply),
            "GetScale": unary("GetScale", a.ScaleRequest, a.ScaleReply),
            "UpdateScale": unary("UpdateScale", a.ScaleRequest, a.ScaleReply),
            "Evict": unary("Evict", a.EvictRequest, a.EvictReply),
            "CreateToken": unary("CreateToken", a.TokenRequestCall, a.ObjectReply),
            "History": unary("History", a.HistoryRequest, a.HistoryReply),
            "Discovery": unary("Discovery", a.DiscoveryRequest, a.DiscoveryReply),
            "WhoAmI": unary("WhoAmI", a.WhoAmIRequest, a.WhoAmIReply),
            "AccessReview": unary("AccessReview", a.AccessReviewRequest, a.AccessReviewReply),
            "RulesReview": unary("RulesReview", a.RulesReviewRequest, a.RulesReviewReply),
            "Watch": grpc.unary_stream_rpc_method_handler(
                self.watch, request_deserializer=_deserializer("Watch", a.WatchRequest),
                response_serializer=_identity),
            "Logs": grpc.unary_stream_rpc_method_handler(
                self.logs, request_deserializer=_deserializer("Logs", a.LogsRequest),
                response_serializer=a.LogChunk.SerializeToString),
            "Exec": grpc.stream_stream_rpc_method_handler(
                self.exec, request_deserializer=_deserializer("Exec", a.ExecRequest),
                response_serializer=a.ExecOutput.SerializeToString),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)


async def _decoded(requests: AsyncIterator[Any],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.ExecRequest]:
    """The exec stream's requests; undecodable bytes end the call with INVALID_ARGUMENT."""
    async for r in requests:
        if isinstance(r, Undecodable):
            await _abort(context, r.refusal())
        yield r


def _identity(b: bytes) -> bytes:
    return b

