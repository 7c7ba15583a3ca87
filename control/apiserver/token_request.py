"""The ``serviceaccounts/token`` subresource (create): Kubernetes' TokenRequest.

A TokenRequest (authentication.k8s.io/v1) for ServiceAccount ``<ns>/<name>`` is answered
with a signed token (:class:`control.apiserver.satoken.TokenIssuer`) and its expiry, the
request's spec filled in as it was applied: ``audiences`` (default: the API's),
``expirationSeconds`` (default 3600; at least 600, below 2^32; cut to
``--service-account-max-token-expiration``), and ``boundObjectRef`` with
the bound object's uid. Only Pods can be bound (Kubernetes also binds Secrets and Nodes): the
pod must run as this account, and a uid given must be the pod's (a pod deleted and created
again under the same name is another pod). A dry run answers without a token.

NodeRestriction's part: a node (``system:node:<name>``) may only ask for tokens bound,
with a uid, to a pod scheduled on it.

Nothing is stored; reads come from the watch cache. Event-loop only.
"""

from __future__ import annotations

from typing import Any

from control.api import errors, kinds, timeutil
from control.api.pb import authentication_pb2
from control.apiserver import authn, satoken
from control.apiserver.registry import Registry

API_VERSION = "authentication.k8s.io/v1"
KIND = "TokenRequest"


def validate_spec(spec: authentication_pb2.TokenRequestSpec) -> list[errors.FieldError]:
    out = []
    if spec.HasField("expiration_seconds"):
        seconds = spec.expiration_seconds
        if seconds < satoken.MIN_EXPIRATION_SECONDS:
            out.append(errors.FieldError("spec.expirationSeconds", f"Invalid value: {seconds}: "
                                         "may not specify a duration less than 10 minutes"))
        elif seconds > satoken.MAX_EXPIRATION_SECONDS:
            out.append(errors.FieldError("spec.expirationSeconds", f"Invalid value: {seconds}: "
                                         "may not specify a duration larger than 2^32 seconds"))
    for i, aud in enumerate(spec.audiences):
        if not aud:
            out.append(errors.FieldError(f"spec.audiences[{i}]", "Invalid value: \"\": "
                                         "an audience may not be empty"))
    return out


def _bound_pod(reg: Registry, namespace: str, sa_name: str,
               ref: authentication_pb2.BoundObjectReference) -> Any:
    if ref.kind != "Pod" or ref.api_version not in ("", "v1"):
        gvk = f"{ref.api_version or '<none>'}, Kind={ref.kind or '<none>'}"
        raise errors.BadRequest(f"cannot bind token to object of type {gvk}: only Pods "
                                "(v1) can be bound")
    if not ref.name:
        raise errors.Invalid(f'TokenRequest "{sa_name}" is invalid', [errors.FieldError(
            "spec.boundObjectRef.name", "Required value")])
    try:
        pod = reg.lookup(kinds.by_resource("pods"), namespace, ref.name).obj
    except errors.NotFound:
        raise errors.NotFound(f'pods "{ref.name}" not found') from None
    pod_sa = pod.spec.service_account_name or "default"
    if pod_sa != sa_name:
        raise errors.BadRequest(f'cannot bind token for serviceaccount "{sa_name}" to pod '
                                f'running with different serviceaccount name "{pod_sa}".')
    if ref.uid and ref.uid != pod.metadata.uid:
        raise errors.Conflict(f"the UID in the bound object reference ({ref.uid}) does not "
                              f"match the UID in record ({pod.metadata.uid}). The object "
                              "might have been deleted and then recreated")
    return pod


def _node_restriction(user: authn.UserInfo | None, spec: authentication_pb2.TokenRequestSpec,
                      pod: Any) -> None:
    node = user.node_name() if user is not None else None
    if node is None:
        return
    if pod is None:
        raise errors.Forbidden(f'node "{node}" requested a token not bound to a pod')
    if not spec.bound_object_ref.uid:
        raise errors.Forbidden(f'node "{node}" requested a token with a pod binding without '
                               "a uid")
    if pod.spec.node_name != node:
        raise errors.Forbidden(f'node "{node}" requested a token bound to a pod scheduled on '
                               "a different node")


async def create_token(reg: Registry, issuer: satoken.TokenIssuer, namespace: str, name: str,
                       req: authentication_pb2.TokenRequest, *,
                       dry_run: bool = False) -> authentication_pb2.TokenRequest:
    if req.metadata.name and req.metadata.name != name:
        raise errors.BadRequest(f'the name of the TokenRequest ("{req.metadata.name}") does '
                                f'not match the service account ("{name}")')
    if req.metadata.namespace and req.metadata.namespace != namespace:
        raise errors.BadRequest(f'the namespace of the TokenRequest '
                                f'("{req.metadata.namespace}") does not match the request\'s '
                                f'("{namespace}")')
    bad = validate_spec(req.spec)
    if bad:
        raise errors.Invalid(f'TokenRequest "{name}" is invalid', bad)
    await reg.cache.wait_fresh()
    sa = reg.lookup(kinds.by_resource("serviceaccounts"), namespace, name).obj
    spec = req.spec
    pod = None
    if spec.HasField("bound_object_ref") and (spec.bound_object_ref.kind
                                              or spec.bound_object_ref.name):
        pod = _bound_pod(reg, namespace, name, spec.bound_object_ref)
    _node_restriction(authn.current_user.get(), spec, pod)

    out = authentication_pb2.TokenRequest(api_version=API_VERSION, kind=KIND)
    out.metadata.name, out.metadata.namespace = name, namespace
    out.metadata.creation_timestamp.CopyFrom(timeutil.now_timestamp())
    out.spec.CopyFrom(spec)
    if not out.spec.audiences:
        out.spec.audiences.extend(issuer.audiences)
    if not out.spec.HasField("expiration_seconds"):
        out.spec.expiration_seconds = satoken.DEFAULT_EXPIRATION_SECONDS
    longest = issuer.max_expiration_seconds
    if longest is not None and out.spec.expiration_seconds > longest:
        out.spec.expiration_seconds = longest
    bound = None
    if pod is not None:
        ref = out.spec.bound_object_ref
        ref.api_version, ref.uid = "v1", pod.metadata.uid
        bound = satoken.BoundPod(pod.metadata.name, pod.metadata.uid)
    else:
        out.spec.ClearField("bound_object_ref")
    if dry_run:
        return out
    token, expires = issuer.issue(namespace, name, sa.metadata.uid,
                                  audiences=out.spec.audiences, pod=bound,
                                  expiration_seconds=int(out.spec.expiration_seconds))
    out.status.token = token
    out.status.expiration_timestamp.seconds = expires
    return out


__all__ = ["API_VERSION", "KIND", "create_token", "validate_spec"]
