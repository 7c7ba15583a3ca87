"""From a Pod's container spec to the runtime's :class:`ContainerConfig`: argv, env, mounts,
resources and security, exactly as Kubernetes' kubelet resolves them.

- **argv**: ``command`` + ``args``; ``args`` alone are the argv (images with no entrypoint,
  which the process runtime always is); neither is :class:`ContainerConfigError`, which the
  pod shows as waiting ``CreateContainerConfigError`` instead of crashing anything.
- **env**: ``envFrom`` first (with ``prefix``; keys that are not valid variable names are
  skipped, as Kubernetes does), then ``env`` in order. A literal ``value`` is ``$(VAR)``-
  expanded against the variables defined before it; ``valueFrom`` reads a ConfigMap or
  Secret key (``optional`` honoured, a missing one is a ContainerConfigError), a pod field
  (``fieldRef``) or a resource (``resourceFieldRef``, unset limits default to the node's
  allocatable). The Services' variables (``service_env``) come last, where the container
  did not define the name, and ``$(VAR)`` in a value may refer to them. ``command`` and
  ``args`` are then expanded against the final env.
- **$(VAR)** (:func:`expand`): ``$$`` is an escaped ``$``; an unknown ``$(VAR)`` and an
  unclosed ``$(`` are left as written — Kubernetes' ``third_party/forked/golang/expansion``.

- **mounts**: each volumeMount on its volume's host path; ``subPath``/``subPathExpr``
  below it; read-only when the mount or the volume's source (a claim's ``readOnly``) says so.

The ConfigMaps and Secrets a container refers to are fetched by the caller (see
:func:`referenced_objects`) and handed in as mappings, so this module is pure; the one
file-system step, preparing a subPath directory, is a function the caller passes in.

Concurrency contract: pure functions, no I/O of their own, no shared state.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from agent.images.manifest import ImageConfig
from agent.runtime.interface import ContainerConfig, Mount, Resources, Security
from control.api import quantity
from control.api.pb import core_pb2

CONFIG_ERROR = "CreateContainerConfigError"
NO_COMMAND = "no command specified: the process runtime has no image entrypoint"
NO_IMAGE_COMMAND = "no command specified: the pod gives no command and the image no Entrypoint or Cmd"
IMAGE_ID_LABEL = "flotilla.io/image-id"  # registry/repo@sha256:... (containerStatuses)
IMAGE_LABEL = "flotilla.io/image"  # the image's id: what image GC must keep
# kubelet's regexp for envFrom keys (validation.IsEnvVarName, relaxed in 1.30 to any
# printable ASCII except '='; we keep the portable C identifier form plus '.' and '-').
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_LABEL_PATH = re.compile(r"metadata\.(labels|annotations)\[['\"]?(.*?)['\"]?\]")


class ContainerConfigError(Exception):
    """The container cannot be configured; shown as waiting ``CreateContainerConfigError``."""

    reason = CONFIG_ERROR


@dataclass(frozen=True)
class PodContext:
    """What env resolution may read besides the container spec."""

    pod: core_pb2.Pod
    node_name: str = ""
    host_ip: str = ""
    pod_ip: str = ""
    config_maps: Mapping[str, core_pb2.ConfigMap | None] = field(default_factory=dict)
    secrets: Mapping[str, core_pb2.Secret | None] = field(default_factory=dict)
    # the node's allocatable (cpu, memory, ephemeral-storage), for unset limits
    allocatable: Mapping[str, str] = field(default_factory=dict)
    # the Services' variables (``service_env``): defined unless the container defines them
    service_env: Sequence[tuple[str, str]] = ()


# -- $(VAR) expansion -----------------------------------------------------------------------


def expand(text: str, *envs: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of ``text`` against ``envs`` (first match wins)."""

    def lookup(name: str) -> str:
        for env in envs:
            if name in env:
                return env[name]
        return f"$({name})"

    return _expand(text, lookup)


def _expand(text: str, mapping: Callable[[str], str]) -> str:
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")  # escaped
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")  # unclosed: kept as written
                    advance = 1
                else:
                    out.append(mapping(text[cursor + 2:close]))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


# -- argv -----------------------------------------------------------------------------------


def resolve_argv(container: core_pb2.Container, env: Mapping[str, str],
                 image: ImageConfig | None = None) -> list[str]:
    """The argv to run; ContainerConfigError when there is nothing to run.

    Without an image: command + args. With one, Kubernetes' rules: ``command`` replaces
    the image's Entrypoint and drops its Cmd; ``args`` alone replace Cmd and keep
    Entrypoint; neither runs Entrypoint + Cmd. ``$(VAR)`` is expanded only in the pod's
    own fields, never in what the image says."""
    command = [expand(a, env) for a in container.command]
    args = [expand(a, env) for a in container.args]
    if image is None:
        if not command and not args:
            raise ContainerConfigError(NO_COMMAND)
        return [*command, *args]
    if command:
        argv = [*command, *args]
    elif args:
        argv = [*image.entrypoint, *args]
    else:
        argv = [*image.entrypoint, *image.cmd]
    if not argv:
        raise ContainerConfigError(NO_IMAGE_COMMAND)
    return argv


def merge_image_env(image_env: Sequence[str],
                    env: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The image's ``Env`` (``K=V`` strings) under the pod's: a name the pod sets takes the
    pod's value; the image's own names keep their order first."""
    merged: dict[str, str] = {}
    for item in image_env:
        key, sep, value = item.partition("=")
        if sep and key:
            merged[key] = value
    merged.update(env)
    return list(merged.items())


# -- env ------------------------------------------------------------------------------------


def referenced_objects(container: core_pb2.Container) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) the container's env and envFrom read."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for src in container.env_from:
        if src.HasField("config_map_ref"):
            cms.add(src.config_map_ref.name)
        if src.HasField("secret_ref"):
            secrets.add(src.secret_ref.name)
    for var in container.env:
        vf = var.value_from
        if vf.HasField("config_map_key_ref"):
            cms.add(vf.config_map_key_ref.name)
        if vf.HasField("secret_key_ref"):
            secrets.add(vf.secret_key_ref.name)
    return cms, secrets


def _config_map_data(cm: core_pb2.ConfigMap) -> dict[str, str]:
    data = dict(cm.data)
    for k, v in cm.binary_data.items():
        data.setdefault(k, v.decode("utf-8", "replace"))
    return data


def _secret_data(secret: core_pb2.Secret) -> dict[str, str]:
    data = {k: v.decode("utf-8", "replace") for k, v in secret.data.items()}
    for k, s in secret.string_data.items():
        data.setdefault(k, s)
    return data


def resolve_env(container: core_pb2.Container, ctx: PodContext) -> list[tuple[str, str]]:
    """The container's environment, in definition order (a redefinition keeps its slot)."""
    ns = ctx.pod.metadata.namespace
    env: dict[str, str] = {}
    services = dict(ctx.service_env)
    for src in container.env_from:
        if src.HasField("config_map_ref"):
            ref = src.config_map_ref
            cm = ctx.config_maps.get(ref.name)
            if cm is None:
                if ref.optional:
                    continue
                raise ContainerConfigError(f'configmap "{ref.name}" not found')
            data = _config_map_data(cm)
        elif src.HasField("secret_ref"):
            sref = src.secret_ref
            secret = ctx.secrets.get(sref.name)
            if secret is None:
                if sref.optional:
                    continue
                raise ContainerConfigError(f'secret "{sref.name}" not found')
            data = _secret_data(secret)
        else:
            continue
        for key in sorted(data):
            name = src.prefix + key
            if _ENV_NAME.fullmatch(name):
                env[name] = data[key]
    for var in container.env:
        if var.HasField("value_from"):
            value = _value_from(var, container, ctx, ns)
            if value is None:
                continue  # optional reference that is missing: no variable at all
        else:
            value = expand(var.value, env, services)
        env[var.name] = value
    for name, value in ctx.service_env:
        env.setdefault(name, value)
    return list(env.items())


def _value_from(var: core_pb2.EnvVar, container: core_pb2.Container, ctx: PodContext,
                ns: str) -> str | None:
    vf = var.value_from
    if vf.HasField("config_map_key_ref"):
        ref = vf.config_map_key_ref
        cm = ctx.config_maps.get(ref.name)
        if cm is None:
            if ref.optional:
                return None
            raise ContainerConfigError(f'configmap "{ref.name}" not found')
        data = _config_map_data(cm)
        if ref.key not in data:
            if ref.optional:
                return None
            raise ContainerConfigError(f"couldn't find key {ref.key} in ConfigMap {ns}/{ref.name}")
        return data[ref.key]
    if vf.HasField("secret_key_ref"):
        sref = vf.secret_key_ref
        secret = ctx.secrets.get(sref.name)
        if secret is None:
            if sref.optional:
                return None
            raise ContainerConfigError(f'secret "{sref.name}" not found')
        sdata = _secret_data(secret)
        if sref.key not in sdata:
            if sref.optional:
                return None
            raise ContainerConfigError(f"couldn't find key {sref.key} in Secret {ns}/{sref.name}")
        return sdata[sref.key]
    if vf.HasField("field_ref"):
        return field_value(vf.field_ref.field_path, ctx)
    if vf.HasField("resource_field_ref"):
        return resource_value(vf.resource_field_ref, container, ctx)
    raise ContainerConfigError(f"env {var.name}: unsupported valueFrom")


def field_value(path: str, ctx: PodContext) -> str:
    """A downward-API ``fieldRef`` value; ContainerConfigError for an unsupported path."""
    pod = ctx.pod
    m = _LABEL_PATH.fullmatch(path)
    if m:
        table = pod.metadata.labels if m.group(1) == "labels" else pod.metadata.annotations
        return table.get(m.group(2), "")
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: pod.metadata.name,
        "metadata.namespace": lambda: pod.metadata.namespace,
        "metadata.uid": lambda: pod.metadata.uid,
        "metadata.labels": lambda: _format_map(pod.metadata.labels),
        "metadata.annotations": lambda: _format_map(pod.metadata.annotations),
        "spec.nodeName": lambda: pod.spec.node_name or ctx.node_name,
        "spec.serviceAccountName": lambda: pod.spec.service_account_name,
        "status.podIP": lambda: ctx.pod_ip or pod.status.pod_ip,
        "status.podIPs": lambda: ctx.pod_ip or pod.status.pod_ip,
        "status.hostIP": lambda: ctx.host_ip or pod.status.host_ip,
        "status.hostIPs": lambda: ctx.host_ip or pod.status.host_ip,
    }
    getter = simple.get(path)
    if getter is None:
        raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return getter()


def _format_map(m: Mapping[str, str]) -> str:
    # the downward API's file format: key="value" lines, sorted
    return "\n".join(f'{k}="{m[k]}"' for k in sorted(m))


def resource_value(ref: core_pb2.ResourceFieldSelector, container: core_pb2.Container,
                   ctx: PodContext) -> str:
    """A ``resourceFieldRef`` value: ceil(quantity / divisor), as Kubernetes computes it."""
    target = container
    if ref.container_name and ref.container_name != container.name:
        found = [c for c in (*ctx.pod.spec.init_containers, *ctx.pod.spec.containers)
                 if c.name == ref.container_name]
        if not found:
            raise ContainerConfigError(f"resourceFieldRef: no container {ref.container_name!r}")
        target = found[0]
    kind, _, res = ref.resource.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise ContainerConfigError(f"unsupported resourceFieldRef resource {ref.resource!r}")
    table = target.resources.limits if kind == "limits" else target.resources.requests
    raw = table[res].string if res in table else ""
    if not raw and kind == "limits":
        raw = ctx.allocatable.get(res, "")
    amount = quantity.parse_quantity(raw) if raw else Fraction(0)
    divisor_raw = ref.divisor.string if ref.HasField("divisor") and ref.divisor.string else "1"
    divisor = quantity.parse_quantity(divisor_raw)
    if divisor <= 0:
        raise ContainerConfigError(f"resourceFieldRef divisor {divisor_raw!r} must be positive")
    if res == "cpu":
        # kubelet: ceil(MilliValue / divisor.MilliValue)
        return str(_ceil(Fraction(quantity.milli_value(amount)),
                         Fraction(quantity.milli_value(divisor))))
    return str(_ceil(Fraction(quantity.value(amount)), Fraction(quantity.value(divisor))))


def _ceil(a: Fraction, b: Fraction) -> int:
    if b == 0:
        return 0
    return -((-a) // b)


# -- resources, security, mounts ------------------------------------------------------------


def map_resources(req: core_pb2.ResourceRequirements) -> Resources:
    """limits.cpu -> CFS quota (millicores), requests.cpu -> shares, limits.memory -> bytes."""
    quota = shares = mem = None
    if "cpu" in req.limits and req.limits["cpu"].string:
        quota = quantity.milli_value(req.limits["cpu"].string)
    if "cpu" in req.requests and req.requests["cpu"].string:
        # kubelet's MilliCPUToShares: 1024 per core, at least 2
        shares = max(2, quantity.milli_value(req.requests["cpu"].string) * 1024 // 1000)
    if "memory" in req.limits and req.limits["memory"].string:
        mem = quantity.value(req.limits["memory"].string)
    return Resources(cpu_quota_millis=quota, cpu_shares=shares, memory_limit_bytes=mem)


def map_security(pod: core_pb2.Pod, container: core_pb2.Container) -> Security:
    """The container's securityContext over the pod's (container fields win)."""
    psc = pod.spec.security_context
    csc = container.security_context
    user = csc.run_as_user if csc.HasField("run_as_user") else (
        psc.run_as_user if psc.HasField("run_as_user") else None)
    group = csc.run_as_group if csc.HasField("run_as_group") else (
        psc.run_as_group if psc.HasField("run_as_group") else None)
    groups = list(psc.supplemental_groups)
    if psc.HasField("fs_group") and psc.fs_group not in groups:
        groups.append(psc.fs_group)
    return Security(
        run_as_user=user, run_as_group=group, supplemental_groups=tuple(groups),
        read_only_root_filesystem=bool(csc.read_only_root_filesystem),
        privileged=bool(csc.privileged),
        capabilities_add=tuple(csc.capabilities.add),
        capabilities_drop=tuple(csc.capabilities.drop))


def read_only_volumes(pod: core_pb2.Pod) -> frozenset[str]:
    """Volumes whose source says readOnly: every mount of them is read-only."""
    return frozenset(v.name for v in pod.spec.volumes
                     if v.HasField("persistent_volume_claim") and v.persistent_volume_claim.read_only)


def map_mounts(container: core_pb2.Container, volume_paths: Mapping[str, str],
               env: Mapping[str, str], *, read_only: frozenset[str] = frozenset(),
               subpath: Callable[[str, str], str] | None = None) -> list[Mount]:
    """volumeMounts -> Mounts on the host paths of the pod's volumes (subPath and
    subPathExpr honoured; ``subpath(volume root, sub)`` prepares the directory, else it is
    only joined). A mount of a volume in ``read_only`` is read-only whatever it says."""
    mounts: list[Mount] = []
    for vm in container.volume_mounts:
        host = volume_paths.get(vm.name)
        if host is None:
            raise ContainerConfigError(f"volume {vm.name!r} is not available for mount "
                                       f"{vm.mount_path}")
        sub = vm.sub_path or (expand(vm.sub_path_expr, env) if vm.sub_path_expr else "")
        if sub:
            if os.path.isabs(sub) or ".." in sub.split("/"):
                raise ContainerConfigError(f"invalid subPath {sub!r}")
            if subpath is None:
                host = os.path.join(host, sub)
            else:
                try:
                    host = subpath(host, sub)
                except (OSError, ValueError) as e:
                    raise ContainerConfigError(
                        f"failed to prepare subPath {sub!r} for volume {vm.name!r}: {e}"
                    ) from None
        mounts.append(Mount(host_path=host, container_path=vm.mount_path,
                            read_only=vm.read_only or vm.name in read_only))
    return mounts


# -- everything -----------------------------------------------------------------------------


# Kubernetes' own container labels: the agent's log/exec server finds containers by them
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
POD_UID_LABEL = "io.kubernetes.pod.uid"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_NAME_LABEL = "io.kubernetes.pod.name"


@dataclass(frozen=True)
class ImageFacts:
    """What the container's image brings: its config, unpacked layers (bottom first) and
    the reference containerStatuses[].imageID shows."""

    config: ImageConfig
    layers: Sequence[str]
    image_id: str
    id: str = ""


def build_config(container: core_pb2.Container, ctx: PodContext, *,
                 volume_paths: Mapping[str, str], log_path: str,
                 image: ImageFacts | None = None,
                 subpath: Callable[[str, str], str] | None = None) -> ContainerConfig:
    """The runtime's ContainerConfig; ContainerConfigError names what is wrong. Without
    ``image`` the container runs on the host's filesystem (the ``host`` handler)."""
    env = resolve_env(container, ctx)
    env_map = dict(env)
    argv = resolve_argv(container, env_map, image.config if image is not None else None)
    labels = {CONTAINER_NAME_LABEL: container.name, POD_UID_LABEL: ctx.pod.metadata.uid,
              POD_NAMESPACE_LABEL: ctx.pod.metadata.namespace,
              POD_NAME_LABEL: ctx.pod.metadata.name}
    working_dir = container.working_dir
    if image is not None:
        env = merge_image_env(image.config.env, env)
        working_dir = working_dir or image.config.working_dir
        labels[IMAGE_ID_LABEL] = image.image_id
        labels[IMAGE_LABEL] = image.id
    return ContainerConfig(
        name=container.name,
        argv=argv,
        env=env,
        working_dir=working_dir,
        mounts=map_mounts(container, volume_paths, env_map,
                          read_only=read_only_volumes(ctx.pod), subpath=subpath),
        log_path=log_path,
        resources=map_resources(container.resources),
        security=map_security(ctx.pod, container),
        stdin=container.stdin,
        stdin_once=container.stdin_once,
        tty=container.tty,
        image=container.image,
        labels=labels,
        termination_message_path=container.termination_message_path or "/dev/termination-log",
        rootfs_layers=tuple(image.layers) if image is not None else (),
        image_user=image.config.user if image is not None else "",
    )


def all_containers(pod: core_pb2.Pod) -> Sequence[core_pb2.Container]:
    return [*pod.spec.init_containers, *pod.spec.containers]
