"""Pod volumes on the node: set up, keep projected contents current, tear down.

Owns ``<pods_dir>/<pod uid>/volumes/`` and everything below it (kubelet's volume manager and
its in-tree plugins, reduced to the node-local kinds). :meth:`VolumeManager.setup` returns
``{volume name: host path}`` for the runtime to bind-mount at each ``mountPath``:

============  =================================================================================
emptyDir      ``volumes/empty-dir/<name>``, mode 0777 (any container user may write).
              ``medium: Memory`` is a tmpfs (``size`` = sizeLimit, capped by the pod's memory
              limits or the node's allocatable memory, as kubelet sizes memory-backed
              volumes) when the agent can mount; otherwise a plain directory and a warning.
              A disk sizeLimit is not enforced (kubelet enforces it by eviction, which
              Flotilla does not do yet).
hostPath      the path itself, after the ``type`` check (and creation for ``*OrCreate``).
configMap     ``volumes/configmap/<name>``; data and binaryData, ``items`` (key -> path, mode),
              ``defaultMode`` (0644), ``optional``.
secret        ``volumes/secret/<name>``; like configMap, values are bytes. On tmpfs when the
              agent can mount, so secret values never reach the node's disk (as kubelet).
downwardAPI   ``volumes/downward-api/<name>``; fieldRef metadata.name/namespace/uid/labels/
              annotations (and ``metadata.labels['k']``), resourceFieldRef (limits fall back
              to the node's allocatable). On tmpfs when possible.
projected     ``volumes/projected/<name>``: configMap, secret, downwardAPI and
              serviceAccountToken sources in one directory. On tmpfs when possible. A
              token comes from the TokenRequest API, bound to the pod, for the source's
              audience and expirationSeconds (:mod:`agent.kubelet.token_manager`, which
              renews it at 80% of its life).
persistentVolumeClaim  the bound PersistentVolume's path: a ``hostPath`` (type-checked as
              above) or ``local`` volume. A local-path provisioner's volume is created at
              first use (mode 0777), only when it is pinned to this node and inside
              ``--volume-dir``. A claim that is missing, being deleted or not yet
              Bound, or whose volume has another source, is a :class:`VolumeError` saying
              so (the kubelet retries).
ephemeral     the claim ``<pod>-<volume>`` made by the ephemeral volume controller from the
              volume's claim template, mounted like persistentVolumeClaim once it is Bound;
              a claim of that name the pod does not control is refused.
============  =================================================================================

Anything else (nfs, csi...) is refused by name with a :class:`VolumeError`; so is a missing non-optional configMap/secret or key. The kubelet shows
the error and keeps the container waiting, then calls ``setup`` again.

Projected kinds are written with :mod:`agent.kubelet.atomic_writer`, so an update is seen
whole or not at all. The kubelet calls :meth:`VolumeManager.refresh` every
:data:`REFRESH_PERIOD` seconds (kubelet's sync period, after which a configMap update
reaches the file in Kubernetes) and may call it sooner, e.g. on a watch event: a refresh
that fails leaves the previous content in place.

Teardown unmounts every mount below the pod's ``volumes/`` directory (found in
``/proc/self/mountinfo``, so it works after an agent restart with no memory of setup) and
removes the directory (:mod:`agent.kubelet.mounts` owns the mount calls). hostPath content is never touched: it is not below ``volumes/``, and
a mount that cannot be unmounted stops the removal of the directory holding it.

Concurrency contract: coroutines on the agent's event loop. Calls for one pod are serialised
by a per-pod ``asyncio.Lock`` (the pod worker already serialises setup/teardown, the lock
makes a periodic refresh racing them safe); different pods proceed in parallel and touch
disjoint directories. File-system work runs in worker threads (``asyncio.to_thread``) so a
large emptyDir removal never stalls the loop.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import stat
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import structlog

from agent.kubelet import mounts
from agent.kubelet.atomic_writer import AtomicWriter, FileProjection, PayloadError
from agent.kubelet.token_manager import DEFAULT_EXPIRATION_SECONDS, TokenKey, TokenManager
from control.api import errors, quantity, storageutil
from control.api.pb import authentication_pb2, core_pb2
from control.client.client import ApiClient
from control.runtime.clock import Clock

log = structlog.get_logger(__name__)

DEFAULT_MODE = 0o644  # Kubernetes' defaultMode, 420 decimal
EMPTY_DIR_MODE = 0o777
# a local-path volume's directory: any container user may write (local-path's mkdir -m 0777)
LOCAL_PATH_MODE = 0o777
# Kubernetes re-projects configMap/secret/downwardAPI contents on its sync period (~1 min).
REFRESH_PERIOD = 60.0

PLUGIN_DIRS = {
    "empty_dir": "empty-dir",
    "config_map": "configmap",
    "secret": "secret",
    "downward_api": "downward-api",
    "projected": "projected",
}
# Projected kinds kept off the disk when the agent can mount a tmpfs (kubelet wraps these
# in a memory-medium emptyDir; configMaps are not secret and live on disk).
_TMPFS_KINDS = frozenset({"secret", "downward_api", "projected"})
_PROJECTED_KINDS = ("config_map", "secret", "downward_api", "projected")
# PersistentVolumeSpec message fields that are not volume sources
_PV_NOT_SOURCES = frozenset({"claim_ref", "node_affinity"})


class VolumeError(Exception):
    """A volume that cannot be set up; the message is what the user sees."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}')
        self.volume = volume
        self.detail = message


class _SourceError(Exception):
    """A payload problem, wrapped into VolumeError with the volume's name by the caller."""


# -- pure helpers: payloads --------------------------------------------------------------


def _mode(explicit: bool, mode: int, default: int) -> int:
    return mode if explicit else default


def key_payload(kind: str, name: str, data: Mapping[str, bytes] | None,
                items: Iterable[core_pb2.KeyToPath], default_mode: int,
                optional: bool) -> dict[str, FileProjection]:
    """kubelet's ``MakePayload`` for a configMap or secret (``data`` None = not found).

    ``kind`` is ``configmap`` or ``secret``, used in messages as Kubernetes words them."""
    if data is None:
        if optional:
            return {}
        raise _SourceError(f'{kind} "{name}" not found')
    items = list(items)
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in data.items()}
    out: dict[str, FileProjection] = {}
    for item in items:
        if item.key not in data:
            if optional:
                continue
            noun = "config" if kind == "configmap" else "secret"
            raise _SourceError(f"{kind} references non-existent {noun} key: {item.key}")
        out[item.path] = FileProjection(data[item.key],
                                        _mode(item.HasField("mode"), item.mode, default_mode))
    return out


def configmap_data(cm: core_pb2.ConfigMap) -> dict[str, bytes]:
    out = {k: v.encode() for k, v in cm.data.items()}
    out.update(cm.binary_data)
    return out


def secret_data(secret: core_pb2.Secret) -> dict[str, bytes]:
    out = dict(secret.data)
    # The apiserver folds stringData into data; be tolerant of an object that was not.
    out.update({k: v.encode() for k, v in secret.string_data.items()})
    return out


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(s: str) -> str:
    """Go's ``%q`` of a string (what kubelet writes for label and annotation values)."""
    out = []
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def format_map(m: Mapping[str, str]) -> str:
    """kubelet's ``FormatMap``: ``key="value"`` lines sorted by key, no trailing newline."""
    return "\n".join(f"{k}={go_quote(m[k])}" for k in sorted(m))


def _subscript(path: str, prefix: str) -> str | None:
    """``metadata.labels['k']`` -> ``k`` for prefix ``metadata.labels``."""
    for quote in ("'", '"'):
        head = f"{prefix}[{quote}"
        if path.startswith(head) and path.endswith(f"{quote}]"):
            return path[len(head):-2]
    return None


def field_value(pod: core_pb2.Pod, path: str) -> str:
    """The downward API value of a volume ``fieldRef``."""
    meta = pod.metadata
    simple = {"metadata.name": meta.name, "metadata.namespace": meta.namespace,
              "metadata.uid": meta.uid}
    if path in simple:
        return simple[path]
    if path == "metadata.labels":
        return format_map(dict(meta.labels))
    if path == "metadata.annotations":
        return format_map(dict(meta.annotations))
    for prefix, source in (("metadata.labels", meta.labels),
                           ("metadata.annotations", meta.annotations)):
        key = _subscript(path, prefix)
        if key is not None:
            return source.get(key, "")
    raise _SourceError(f'unsupported fieldRef "{path}" in a downwardAPI volume')


def _qty(value: Any) -> str:
    return value.string if hasattr(value, "string") else str(value)


def node_fallback(resource: str, pods_dir: Path | None = None) -> str:
    """This machine's capacity of ``resource`` when no allocatable is known."""
    if resource == "cpu":
        return str(os.cpu_count() or 1)
    if resource == "memory":
        return str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    if resource == "ephemeral-storage":
        return str(shutil.disk_usage(pods_dir or "/").total)
    raise _SourceError(f"unsupported resource {resource}")


def resource_value(pod: core_pb2.Pod, container_name: str, resource: str, divisor: str,
                   node_allocatable: Mapping[str, Any] | None,
                   pods_dir: Path | None = None) -> str:
    """kubelet's ``ExtractResourceValueByContainerNameAndNodeAllocatable``: a container's
    limit (the node's allocatable when unset) or request, divided by ``divisor`` and
    rounded up; cpu in the divisor's units via millicores, as kubelet does."""
    containers = [*pod.spec.containers, *pod.spec.init_containers]
    spec = next((c for c in containers if c.name == container_name), None)
    if spec is None:
        raise _SourceError(f"container {container_name!r} not found in pod")
    which, _, name = resource.partition(".")
    if which not in ("limits", "requests") or name not in ("cpu", "memory",
                                                           "ephemeral-storage"):
        raise _SourceError(f"unsupported container resource: {resource}")
    limits, requests = spec.resources.limits, spec.resources.requests
    raw: str
    if which == "limits":
        if name in limits:
            raw = limits[name].string
        elif node_allocatable is not None and name in node_allocatable:
            raw = _qty(node_allocatable[name])
        else:
            raw = node_fallback(name, pods_dir)
    else:
        # Kubernetes defaults an unset request to the limit; with neither it is 0.
        raw = requests[name].string if name in requests else (
            limits[name].string if name in limits else "0")
    divisor = divisor or "1"
    try:
        if quantity.parse_quantity(divisor) <= 0:
            raise _SourceError(f"invalid divisor {divisor!r} for {resource}")
        # kubelet: cpu compares millicores, the others whole units, each rounded up first.
        to_int = quantity.milli_value if name == "cpu" else quantity.value
        amount, div = Fraction(to_int(raw)), Fraction(to_int(divisor))
    except quantity.QuantityError as e:
        raise _SourceError(f"invalid quantity for {resource}: {e}") from None
    return str(math.ceil(amount / div))


def downward_payload(pod: core_pb2.Pod, items: Iterable[core_pb2.DownwardAPIVolumeFile],
                     default_mode: int, node_allocatable: Mapping[str, Any] | None,
                     pods_dir: Path | None = None) -> dict[str, FileProjection]:
    out: dict[str, FileProjection] = {}
    for item in items:
        if item.HasField("field_ref"):
            text = field_value(pod, item.field_ref.field_path)
        elif item.HasField("resource_field_ref"):
            ref = item.resource_field_ref
            text = resource_value(pod, ref.container_name, ref.resource, ref.divisor.string,
                                  node_allocatable, pods_dir)
        else:
            raise _SourceError(f"downwardAPI item {item.path!r} has neither fieldRef nor "
                               "resourceFieldRef")
        out[item.path] = FileProjection(text.encode(),
                                        _mode(item.HasField("mode"), item.mode, default_mode))
    return out


def memory_volume_size(size_limit: str, pod: core_pb2.Pod,
                       node_allocatable: Mapping[str, Any] | None) -> int | None:
    """Bytes for a memory-backed emptyDir, as kubelet sizes it: the pod's memory (the sum of
    its containers' limits when all have one, else the node's allocatable memory), capped
    by ``sizeLimit``. None: no bound known (tmpfs then takes its own default)."""
    limits = [c.resources.limits["memory"].string for c in pod.spec.containers
              if "memory" in c.resources.limits]
    pod_memory: int | None
    if pod.spec.containers and len(limits) == len(pod.spec.containers):
        pod_memory = sum(quantity.value(q) for q in limits)
    elif node_allocatable is not None and "memory" in node_allocatable:
        pod_memory = quantity.value(_qty(node_allocatable["memory"]))
    else:
        pod_memory = None
    if size_limit:
        cap = quantity.value(size_limit)
        if cap > 0:
            return cap if pod_memory is None else min(cap, pod_memory)
    return pod_memory


# -- pure-ish helpers: host paths and mounts -------------------------------------------


def check_host_path(path: str, type_: str) -> None:
    """kubelet's hostPath type check, creating the path for the ``*OrCreate`` types."""
    p = Path(path)
    if type_ == "":
        return
    try:
        st: os.stat_result | None = os.stat(p)
    except FileNotFoundError:
        st = None
    if type_ == "DirectoryOrCreate":
        if st is None:
            p.mkdir(mode=0o755, parents=True, exist_ok=True)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise _SourceError(f"hostPath type check failed: {path} is not a directory")
        return
    if type_ == "FileOrCreate":
        if st is None:
            # Kubernetes does not create the parent directory of a FileOrCreate path.
            if not p.parent.is_dir():
                raise _SourceError(f"hostPath type check failed: parent directory of "
                                   f"{path} does not exist")
            fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
            return
        if not stat.S_ISREG(st.st_mode):
            raise _SourceError(f"hostPath type check failed: {path} is not a file")
        return
    checks = {
        "Directory": (stat.S_ISDIR, "a directory"),
        "File": (stat.S_ISREG, "a file"),
        "Socket": (stat.S_ISSOCK, "a socket file"),
        "CharDevice": (stat.S_ISCHR, "a character device"),
        "BlockDevice": (stat.S_ISBLK, "a block device"),
    }
    if type_ not in checks:
        raise _SourceError(f"invalid hostPath type {type_!r}")
    test, what = checks[type_]
    if st is None or not test(st.st_mode):
        raise _SourceError(f"hostPath type check failed: {path} is not {what}")


# -- the manager -------------------------------------------------------------------------


class VolumeManager:
    def __init__(self, client: ApiClient | None, pods_dir: Path,
                 node_allocatable: dict[str, Any] | None = None, *,
                 can_mount: bool | None = None, clock: Clock | None = None,
                 node_name: str = "", volume_dir: Path | None = None) -> None:
        self._client = client
        self.tokens = TokenManager(self._request_token, clock) if client is not None else None
        self.pods_dir = Path(pods_dir)
        self.node_name = node_name
        # where the local-path provisioner's volumes of this node live (--volume-dir)
        self.volume_dir = volume_dir
        self.node_allocatable = node_allocatable
        self._can_mount = mounts.can_mount() if can_mount is None else can_mount
        self._locks: dict[str, asyncio.Lock] = {}

    def volumes_dir(self, pod_uid: str) -> Path:
        return self.pods_dir / pod_uid / "volumes"

    def volume_path(self, pod_uid: str, kind: str, name: str) -> Path:
        return self.volumes_dir(pod_uid) / PLUGIN_DIRS[kind] / name

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    # -- public API ----------------------------------------------------------------------

    async def setup(self, pod: core_pb2.Pod) -> dict[str, str]:
        """Make every volume of ``pod`` ready; ``{name: host path}``. Idempotent."""
        uid = pod.metadata.uid
        paths: dict[str, str] = {}
        async with self._lock(uid):
            for vol in pod.spec.volumes:
                try:
                    paths[vol.name] = await self._setup_one(pod, vol)
                    await self._apply_fs_group(pod, vol, paths[vol.name])
                except _SourceError as e:
                    raise VolumeError(vol.name, str(e)) from None
                except PayloadError as e:
                    raise VolumeError(vol.name, str(e)) from None
                except OSError as e:
                    raise VolumeError(vol.name, f"{e.strerror or e}") from e
        return paths

    async def refresh(self, pod: core_pb2.Pod) -> dict[str, str]:
        """Re-project configMap/secret/downwardAPI/projected volumes already set up.

        Returns ``{volume: error}`` for those that failed (their old content stays)."""
        uid = pod.metadata.uid
        failed: dict[str, str] = {}
        async with self._lock(uid):
            for vol in pod.spec.volumes:
                kind = _source_kind(vol)
                if kind not in _PROJECTED_KINDS:
                    continue
                target = self.volume_path(uid, kind, vol.name)
                if not (target / "..data").is_symlink():
                    continue  # not set up (yet, or any more): setup's job
                try:
                    payload = await self._payload(pod, vol, kind)
                    await asyncio.to_thread(AtomicWriter(target).write, payload)
                    await self._apply_fs_group(pod, vol, str(target))
                except (_SourceError, PayloadError, OSError) as e:
                    failed[vol.name] = str(e)
                    log.warning("volume refresh failed", pod_uid=uid, volume=vol.name,
                                error=str(e))
        return failed

    async def teardown(self, pod_uid: str) -> None:
        """Unmount and remove everything this manager made for the pod."""
        async with self._lock(pod_uid):
            root = self.volumes_dir(pod_uid)
            if root.exists():
                await asyncio.to_thread(mounts.remove_tree, root)
        self._locks.pop(pod_uid, None)
        if self.tokens is not None:
            self.tokens.forget_pod(pod_uid)

    async def _apply_fs_group(self, pod: core_pb2.Pod, vol: core_pb2.Volume, path: str) -> None:
        """securityContext.fsGroup: the volumes the kubelet makes belong to that group
        (Kubernetes' SetVolumeOwnership); a hostPath is the host's and is left alone."""
        psc = pod.spec.security_context
        if not psc.HasField("fs_group") or _source_kind(vol) == "host_path":
            return
        if os.geteuid() != 0:
            return  # only root can give files away; the container runs as us anyway
        writable = _source_kind(vol) in ("empty_dir", "persistent_volume_claim", "ephemeral")
        await asyncio.to_thread(set_volume_ownership, path, int(psc.fs_group), writable)

    # -- setup per kind ------------------------------------------------------------------

    async def _setup_one(self, pod: core_pb2.Pod, vol: core_pb2.Volume) -> str:
        kind = _source_kind(vol)
        uid = pod.metadata.uid
        if kind == "host_path":
            await asyncio.to_thread(check_host_path, vol.host_path.path, vol.host_path.type)
            return vol.host_path.path
        if kind == "empty_dir":
            return await asyncio.to_thread(self._empty_dir, pod, vol)
        if kind == "persistent_volume_claim":
            return await self._claim_path(pod, vol.persistent_volume_claim.claim_name)
        if kind == "ephemeral":
            return await self._claim_path(
                pod, storageutil.ephemeral_claim_name(pod.metadata.name, vol.name),
                ephemeral=True)
        if kind in _PROJECTED_KINDS:
            target = self.volume_path(uid, kind, vol.name)
            payload = await self._payload(pod, vol, kind)
            await asyncio.to_thread(self._prepare_dir, target, kind in _TMPFS_KINDS, None)
            await asyncio.to_thread(AtomicWriter(target).write, payload)
            return str(target)
        raise _SourceError(f"{_json_name(kind)} volumes are not supported by this agent")

    def _prepare_dir(self, target: Path, memory: bool, size: int | None,
                     mode: int = 0o755) -> None:
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, mode)
        if not memory or not self._can_mount:
            return
        if os.path.realpath(target) in mounts.read_mount_points():
            return  # already set up (setup is idempotent)
        try:
            mounts.mount_tmpfs(str(target), size, mode)
        except OSError as e:
            # Root without CAP_SYS_ADMIN (an unprivileged container): fall back to disk.
            log.warning("tmpfs mount failed; using a directory on disk", path=str(target),
                        error=str(e))

    def _empty_dir(self, pod: core_pb2.Pod, vol: core_pb2.Volume) -> str:
        src = vol.empty_dir
        target = self.volume_path(pod.metadata.uid, "empty_dir", vol.name)
        if src.medium not in ("", "Memory"):
            raise _SourceError(f"emptyDir medium {src.medium!r} is not supported")
        memory = src.medium == "Memory"
        if memory and not self._can_mount:
            log.warning("emptyDir medium Memory needs root to mount a tmpfs; using a plain "
                        "directory on disk", pod=pod.metadata.name, volume=vol.name)
        size = memory_volume_size(src.size_limit.string, pod, self.node_allocatable) \
            if memory else None
        self._prepare_dir(target, memory, size, EMPTY_DIR_MODE)
        return str(target)

    # -- payloads ------------------------------------------------------------------------

    async def _payload(self, pod: core_pb2.Pod, vol: core_pb2.Volume,
                       kind: str) -> dict[str, FileProjection]:
        ns = pod.metadata.namespace
        if kind == "config_map":
            src = vol.config_map
            mode = _mode(src.HasField("default_mode"), src.default_mode, DEFAULT_MODE)
            cm = await self._get_configmap(ns, src.name)
            return key_payload("configmap", src.name, cm, src.items, mode, src.optional)
        if kind == "secret":
            s = vol.secret
            mode = _mode(s.HasField("default_mode"), s.default_mode, DEFAULT_MODE)
            data = await self._get_secret(ns, s.secret_name)
            return key_payload("secret", s.secret_name, data, s.items, mode, s.optional)
        if kind == "downward_api":
            d = vol.downward_api
            mode = _mode(d.HasField("default_mode"), d.default_mode, DEFAULT_MODE)
            return downward_payload(pod, d.items, mode, self.node_allocatable, self.pods_dir)
        return await self._projected_payload(pod, vol.projected)

    async def _projected_payload(self, pod: core_pb2.Pod,
                                 proj: core_pb2.ProjectedVolumeSource) -> dict[str, FileProjection]:
        ns = pod.metadata.namespace
        mode = _mode(proj.HasField("default_mode"), proj.default_mode, DEFAULT_MODE)
        out: dict[str, FileProjection] = {}
        for src in proj.sources:
            if src.HasField("config_map"):
                c = src.config_map
                cm = await self._get_configmap(ns, c.name)
                out.update(key_payload("configmap", c.name, cm, c.items, mode, c.optional))
            elif src.HasField("secret"):
                s = src.secret
                data = await self._get_secret(ns, s.name)
                out.update(key_payload("secret", s.name, data, s.items, mode, s.optional))
            elif src.HasField("downward_api"):
                out.update(downward_payload(pod, src.downward_api.items, mode,
                                            self.node_allocatable, self.pods_dir))
            elif src.HasField("service_account_token"):
                sat = src.service_account_token
                token = await self._service_account_token(pod, sat)
                out[sat.path] = FileProjection(token, mode)
            else:
                raise _SourceError("projected volume source is not supported by this agent")
        return out

    async def _claim_path(self, pod: core_pb2.Pod, name: str, *, ephemeral: bool = False
                          ) -> str:
        """The host path of the volume bound to claim ``name`` of the pod's namespace (an
        ephemeral volume's claim must be the pod's own, as kubelet checks)."""
        ns = pod.metadata.namespace
        client = self._require_client(f'persistentvolumeclaim "{name}"')
        try:
            claim = await client.get(core_pb2.PersistentVolumeClaim, name, ns)
        except errors.NotFound:
            if ephemeral:
                raise _SourceError(f'persistentvolumeclaim "{name}" not found: waiting for '
                                   "the ephemeral volume controller to create it") from None
            raise _SourceError(f'persistentvolumeclaim "{name}" not found') from None
        except errors.ApiError as e:
            raise _SourceError(f'cannot read persistentvolumeclaim "{name}": {e}') from None
        if ephemeral and not any(r.controller and r.uid == pod.metadata.uid
                                 for r in claim.metadata.owner_references):
            raise _SourceError(f'PVC {ns}/{name} was not created for pod {ns}/'
                               f"{pod.metadata.name} (pod is not owner)")
        if claim.metadata.HasField("deletion_timestamp"):
            raise _SourceError(f'persistentvolumeclaim "{name}" is being deleted')
        if claim.status.phase != "Bound" or not claim.spec.volume_name:
            raise _SourceError(f'persistentvolumeclaim "{name}" is not bound yet '
                               f"(phase {claim.status.phase or 'Pending'}): waiting for a "
                               "volume")
        try:
            pv = await client.get(core_pb2.PersistentVolume, claim.spec.volume_name)
        except errors.NotFound:
            raise _SourceError(f'persistentvolume "{claim.spec.volume_name}" of claim '
                               f'"{name}" not found') from None
        except errors.ApiError as e:
            raise _SourceError(f'cannot read persistentvolume "{claim.spec.volume_name}": '
                               f"{e}") from None
        spec = pv.spec
        if pv.metadata.annotations.get(storageutil.PROVISIONED_BY) == storageutil.PROVISIONER \
                and storageutil.volume_path(pv):
            path = storageutil.volume_path(pv)
            await asyncio.to_thread(self._local_path_dir, pv, path)
            return path
        if spec.HasField("host_path"):
            await asyncio.to_thread(check_host_path, spec.host_path.path, spec.host_path.type)
            return str(spec.host_path.path)
        if spec.HasField("local"):
            await asyncio.to_thread(check_host_path, spec.local.path, "Directory")
            return str(spec.local.path)
        source = next((f.json_name for f in core_pb2.PersistentVolumeSpec.DESCRIPTOR.fields
                       if f.message_type is not None and f.name not in _PV_NOT_SOURCES
                       and not f.message_type.GetOptions().map_entry
                       and spec.HasField(f.name)), "unknown")
        raise _SourceError(f'persistentvolume "{pv.metadata.name}": {source} volumes are not '
                           "supported by this agent (hostPath and local are)")

    def _local_path_dir(self, pv: core_pb2.PersistentVolume, path: str) -> None:
        """A local-path volume's directory, created at first use with mode 0777 (as
        local-path's helper does), only on its own node and inside --volume-dir."""
        node = storageutil.pinned_node(pv)
        if node != self.node_name:
            raise _SourceError(f'persistentvolume "{pv.metadata.name}" is on node '
                               f'"{node}", not on this node "{self.node_name}"')
        if self.volume_dir is None or not storageutil.within(path, str(self.volume_dir)):
            raise _SourceError(f'persistentvolume "{pv.metadata.name}": {path} is not inside '
                               f"this node's volume directory {self.volume_dir}")
        p = Path(path)
        if p.is_symlink():
            raise _SourceError(f'persistentvolume "{pv.metadata.name}": {path} is a '
                               "symbolic link")
        if p.is_dir():
            return
        self.volume_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        p.mkdir(mode=LOCAL_PATH_MODE)
        os.chmod(p, LOCAL_PATH_MODE)  # past the umask

    def _require_client(self, what: str) -> ApiClient:
        if self._client is None:
            raise _SourceError(f"cannot read {what}: the agent has no API client")
        return self._client

    async def _get_configmap(self, ns: str, name: str) -> dict[str, bytes] | None:
        client = self._require_client(f'configmap "{name}"')
        try:
            cm = await client.get(core_pb2.ConfigMap, name, ns)
        except errors.NotFound:
            return None
        except errors.ApiError as e:
            raise _SourceError(f'cannot read configmap "{name}": {e}') from None
        return configmap_data(cm)

    async def _get_secret(self, ns: str, name: str) -> dict[str, bytes] | None:
        client = self._require_client(f'secret "{name}"')
        try:
            secret = await client.get(core_pb2.Secret, name, ns)
        except errors.NotFound:
            return None
        except errors.ApiError as e:
            raise _SourceError(f'cannot read secret "{name}": {e}') from None
        return secret_data(secret)

    async def _request_token(self, namespace: str, name: str,
                             tr: authentication_pb2.TokenRequest
                             ) -> authentication_pb2.TokenRequest:
        client = self._require_client(f'a token of serviceaccount "{name}"')
        answer: authentication_pb2.TokenRequest = await client.create_token(namespace, name, tr)
        return answer

    async def _service_account_token(self, pod: core_pb2.Pod,
                                     src: core_pb2.ServiceAccountTokenProjection) -> bytes:
        """A token of the pod's ServiceAccount bound to the pod (TokenRequest), cached and
        renewed by the token manager."""
        sa = pod.spec.service_account_name or pod.spec.service_account or "default"
        if self.tokens is None:
            raise _SourceError(f'cannot request a token of serviceaccount "{sa}": the agent '
                               "has no API client")
        seconds = (src.expiration_seconds if src.HasField("expiration_seconds")
                   else DEFAULT_EXPIRATION_SECONDS)
        key = TokenKey(pod.metadata.namespace, sa, src.audience, int(seconds),
                       pod.metadata.name, pod.metadata.uid)
        try:
            return await self.tokens.token(key)
        except errors.ApiError as e:
            raise _SourceError(f'failed to fetch token for serviceaccount "{sa}": {e}'
                               ) from None


def _source_kind(vol: core_pb2.Volume) -> str:
    for f in core_pb2.Volume.DESCRIPTOR.fields:
        if f.name != "name" and vol.HasField(f.name):
            return f.name
    return "empty_dir"  # Kubernetes: a volume with no source is an emptyDir


def _json_name(kind: str) -> str:
    f = core_pb2.Volume.DESCRIPTOR.fields_by_name.get(kind)
    return f.json_name if f is not None else kind


def safe_subpath(root: str, sub: str) -> str:
    """The host path of ``sub`` below the volume at ``root``, created when missing (with the
    volume's own mode, as kubelet does), resolved, and refused (ValueError) when a symlink
    takes it outside the volume. The resolved path is what gets mounted, so a link swapped
    in later is not followed at mount time."""
    base = os.path.realpath(root)
    target = os.path.join(base, sub)
    resolved = os.path.realpath(target)
    if resolved != base and not storageutil.within(resolved, base):
        raise ValueError(f"subPath {sub!r} leads outside the volume (to {resolved})")
    if not os.path.lexists(resolved):
        mode = stat.S_IMODE(os.stat(base).st_mode)
        os.makedirs(resolved, exist_ok=True)
        os.chmod(resolved, mode)
        resolved = os.path.realpath(target)
        if resolved != base and not storageutil.within(resolved, base):
            raise ValueError(f"subPath {sub!r} leads outside the volume (to {resolved})")
    return resolved


def set_volume_ownership(root: str, gid: int, writable: bool) -> None:
    """Group ``gid`` on everything under ``root``, group-readable (and writable for
    ``writable`` volumes), directories setgid so new files inherit the group."""
    def fix(path: str, is_dir: bool) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return  # the atomic writer's links: their targets are fixed in place
        os.chown(path, -1, gid, follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode) | stat.S_IRGRP
        if writable:
            mode |= stat.S_IWGRP
        if is_dir:
            mode |= stat.S_IXGRP | stat.S_ISGID
        os.chmod(path, mode)

    fix(root, True)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            fix(os.path.join(dirpath, d), True)
        for f in filenames:
            fix(os.path.join(dirpath, f), False)
