"""Object semantics on top of the store: what create, update, delete and the subresources
mean for any kind, the way Kubernetes' generic registry does it.

- Server-set metadata: uid, creationTimestamp, resourceVersion (the store revision),
  generation (bumped when anything but metadata and status changes), generateName.
- Update is compare-and-swap on resourceVersion (Conflict when stale; an update without a
  resourceVersion is unconditional and retried internally); Update never changes status,
  UpdateStatus changes only status; a no-op update writes nothing (unless the object is
  stored with an encryption key that no longer writes: then it is rewritten, which is how
  a key rotation reaches every object).
- Deletion: preconditions, propagation policy recorded as the ``foregroundDeletion`` /
  ``orphan`` finalizers for the garbage collector, finalizers holding an object with
  ``deletionTimestamp`` set, graceful deletion of pods bound to a node (they stay until
  their agent deletes them with grace 0).
- Namespaces: objects may only be created in a namespace that exists and is not
  terminating; a namespace is removed once its spec.finalizers and metadata.finalizers are
  empty.

Reads come from the watch cache after it has caught up with the store (``wait_fresh``),
so every read reflects every acknowledged write. Concurrency: one event loop; every write
is a store compare-and-swap, so concurrent requests never lose an update.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control.api import convert, errors, kinds, labels
from control.api import fields as fieldsel
from control.api import merge as mergepatch
from control.api.timeutil import time_at
from control.apiserver import admission, codec
from control.apiserver.service_alloc import Claim, ServiceAllocator, held_ips, held_ports
from control.apiserver.validation_util import immutable
from control.apiserver.watchcache import CachedObject, WatchCache, Watcher, cached_object
from control.store.interface import (
    Compacted,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
    Store,
)
from control.store.transformed import TransformError

MAX_OBJECT_BYTES = 1_572_864  # 1.5 MiB, as etcd's default request limit
UPDATE_RETRIES = 16
# Longest grace period a delete may wait (about 68 years): beyond it the deletion time would
# leave the range a timestamp can hold. A request asking for more is refused; a pod whose
# spec asks for more waits this long.
MAX_GRACE_SECONDS = 2**31 - 1
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet


def object_key(info: kinds.KindInfo, namespace: str, name: str) -> str:
    if info.namespaced:
        return f"/registry/{info.plural}/{namespace}/{name}"
    return f"/registry/{info.plural}/{name}"


def resource_prefix(info: kinds.KindInfo, namespace: str = "") -> str:
    if info.namespaced and namespace:
        return f"/registry/{info.plural}/{namespace}/"
    return f"/registry/{info.plural}/"


def qualified(info: kinds.KindInfo) -> str:
    return info.plural if not info.group else f"{info.plural}.{info.group}"


def _not_found(info: kinds.KindInfo, name: str) -> errors.NotFound:
    return errors.NotFound(f'{qualified(info)} "{name}" not found')


def _conflict(info: kinds.KindInfo, name: str) -> errors.Conflict:
    return errors.Conflict(
        f'Operation cannot be fulfilled on {qualified(info)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again")


def _check_identity_kept(info: kinds.KindInfo, new: Any, current: Any) -> None:
    """A patch may not rename, move or re-identify an object (Kubernetes refuses; it is
    never silently ignored). Fields the patch leaves empty keep the current values."""
    m, c = new.metadata, current.metadata
    if m.name and m.name != c.name:
        raise errors.BadRequest(f"the name of the object ({errors.excerpt(m.name)}) does not match "
                                f"the name on the URL ({c.name})")
    if info.namespaced and m.namespace and m.namespace != c.namespace:
        raise errors.BadRequest("the namespace of the provided object does not match the "
                                "namespace sent on the request")
    if m.uid and m.uid != c.uid:
        raise errors.Invalid(f'{info.kind} "{c.name}" is invalid',
                             [immutable("metadata.uid", errors.excerpt(m.uid))])


def _untransformable(e: TransformError) -> errors.ApiError:
    """A stored value that does not decrypt: an internal error naming the key, as
    Kubernetes answers (the operator's encryption configuration lacks its key)."""
    return errors.ApiError(f"Internal error occurred: {e}")


def _parse_rv(value: str, what: str = "resourceVersion") -> int:
    # a revision is an unsigned 64-bit number, in decimal digits only
    if not (value.isascii() and value.isdigit()) or int(value[:21]) >= 2**64:
        raise errors.BadRequest(f"invalid {what}: {errors.excerpt(value)!r}")
    return int(value)




@dataclass(frozen=True)
class ListPage:
    items: list[bytes]
    resource_version: int
    continue_: str
    remaining: int | None


@dataclass(frozen=True)
class Filter:
    """A parsed label + field selector and what an index can use from it."""

    label: labels.Selector
    field: fieldsel.FieldSelector
    node_name: str | None

    def __call__(self, co: CachedObject) -> bool:
        if not self.label.matches(co.labels):
            return False
        return self.field.empty() or self.field.matches(co.fields)


def make_filter(info: kinds.KindInfo, label_selector: str, field_selector: str) -> Filter:
    """Parse both selectors (BadRequest on bad syntax or an unsupported field)."""
    lsel = labels.parse(label_selector)
    fsel = fieldsel.parse(field_selector)
    fieldsel.check_supported(fsel, info.kind)
    node = fsel.requires_exact("spec.nodeName") if info.plural == "pods" else None
    return Filter(lsel, fsel, node)


def _namespace_of(info: kinds.KindInfo, obj: Any, request_namespace: str) -> str:
    """The namespace a write goes to: the object's or the request's (they must agree),
    "default" when neither says; "" for cluster-scoped kinds."""
    if not info.namespaced:
        return ""
    own = obj.metadata.namespace
    if own and request_namespace and own != request_namespace:
        raise errors.BadRequest("the namespace of the provided object does not match the "
                                "namespace sent on the request")
    return str(own or request_namespace or "default")


def encode_continue(revision: int, start_key: str) -> str:
    raw = json.dumps({"rv": revision, "start": start_key}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.BadRequest(f"invalid continue token: {token!r}") from None


# message descriptor -> its fields that make up the "spec": (name, is a map field)
_SPEC_FIELDS: dict[Any, tuple[tuple[str, bool], ...]] = {}


def _spec_fields(descriptor: Any) -> tuple[tuple[str, bool], ...]:
    fields = _SPEC_FIELDS.get(descriptor)
    if fields is None:
        fields = _SPEC_FIELDS[descriptor] = tuple(
            (fd.name, fd.message_type is not None and fd.message_type.GetOptions().map_entry)
            for fd in descriptor.fields
            if fd.name not in ("api_version", "kind", "metadata", "status"))
    return fields


def _maps_differ(a: Any, b: Any) -> bool:
    """Two protobuf map fields differ. (Their ``==`` is collections.abc.Mapping's, which
    copies both into dicts through Python-level views: 3-4x slower for a ConfigMap's
    data.) ``in`` first: reading a missing key would add it, and ``b`` may be a cached
    object that is never mutated."""
    if len(a) != len(b):
        return True
    for k in a:
        if k not in b or a[k] != b[k]:
            return True
    return False


class Registry:
    def __init__(self, store: Store, cache: WatchCache,
                 now: Callable[[], float] = time.time,
                 stale: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.cache = cache
        self.now = now
        # whether a key's stored value should be rewritten even by an update that changes
        # nothing (encrypted with a key that no longer writes): how a rotation reaches it
        self.stale = stale
        self.admission = admission.Admission(self)
        # cluster IPs and node ports of Services (None: Services get none, as in tests of
        # the bare object semantics)
        self.services: ServiceAllocator | None = None

    # -- reads ---------------------------------------------------------------------------

    async def fresh(self, resource_version: str) -> None:
        """Honour a read's resourceVersion: "" = latest, "0" = any, N = not older than N."""
        if resource_version == "":
            await self.cache.wait_fresh()
        elif resource_version != "0":
            await self.cache.wait_for_requested(_parse_rv(resource_version))

    def lookup(self, info: kinds.KindInfo, namespace: str, name: str) -> CachedObject:
        co = self.cache.get(info.plural, object_key(info, namespace, name))
        if co is None:
            raise _not_found(info, name)
        return co

    async def get(self, info: kinds.KindInfo, namespace: str, name: str,
                  resource_version: str = "") -> CachedObject:
        await self.fresh(resource_version)
        return self.lookup(info, namespace, name)

    async def list(self, info: kinds.KindInfo, namespace: str, label_selector: str,
                   field_selector: str, limit: int, continue_: str,
                   resource_version: str) -> ListPage:
        flt = make_filter(info, label_selector, field_selector)
        if limit < 0:
            raise errors.BadRequest("limit must not be negative")
        if continue_:
            return await self._list_continue(info, namespace, flt, limit, continue_)
        await self.fresh(resource_version)
        revision = self.cache.revision
        matched = sorted((co for co in self.cache.scan(info.plural, namespace) if flt(co)),
                         key=lambda co: co.key)
        if limit and len(matched) > limit:
            page = matched[:limit]
            token = encode_continue(revision, page[-1].key + "\x00")
            return ListPage([co.raw for co in page], revision, token, len(matched) - limit)
        return ListPage([co.raw for co in matched], revision, "", None)

    async def _list_continue(self, info: kinds.KindInfo, namespace: str, flt: Filter,
                             limit: int, token: str) -> ListPage:
        revision, start = decode_continue(token)
        prefix = resource_prefix(info, namespace)
        if not start.startswith(prefix):
            raise errors.BadRequest("continue token does not match this list")
        items: list[tuple[str, bytes]] = []
        more = True
        while more and (not limit or len(items) < limit):
            try:
                chunk = await self.store.range(prefix, revision=revision,
                                               limit=max(limit, 100), start_key=start)
            except Compacted:
                raise errors.Gone(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.") from None
            except TransformError as e:
                raise _untransformable(e) from None
            for kv in chunk.kvs:
                co = cached_object(info, kv.key, kv.value, kv.mod_revision)
                if flt(co):
                    items.append((kv.key, co.raw))
                start = kv.key + "\x00"
            more = chunk.more
        next_token = ""
        if limit and len(items) > limit:
            items = items[:limit]
            next_token = encode_continue(revision, items[-1][0] + "\x00")
        elif more:
            next_token = encode_continue(revision, start)
        return ListPage([raw for _, raw in items], revision, next_token, None)

    def watch(self, info: kinds.KindInfo, namespace: str, label_selector: str,
              field_selector: str, resource_version: str, allow_bookmarks: bool) -> Watcher:
        flt = make_filter(info, label_selector, field_selector)
        rv = None if resource_version in ("", "0") else _parse_rv(resource_version)
        return self.cache.watch(info.plural, namespace if info.namespaced else "",
                                flt.node_name, flt, rv, allow_bookmarks)

    async def history(self, info: kinds.KindInfo, namespace: str,
                      name: str) -> builtins.list[tuple[str, int, bytes]]:
        try:
            events = await self.store.history(object_key(info, namespace, name))
        except TransformError as e:
            raise _untransformable(e) from None
        if not events:
            raise _not_found(info, name)
        out = []
        for ev in events:
            kind = "DELETED" if ev.type.value == "DELETE" else (
                "ADDED" if ev.kv.version == 1 else "MODIFIED")
            out.append((kind, ev.kv.mod_revision,
                        codec.with_revision(ev.kv.value, ev.kv.mod_revision)))
        return out

    # -- create --------------------------------------------------------------------------

    async def create(self, info: kinds.KindInfo, namespace: str, obj: Any,
                     dry_run: bool = False) -> bytes:
        meta = obj.metadata
        self._check_kind(info, obj)
        meta.namespace = _namespace_of(info, obj, namespace)
        generated = not meta.name and bool(meta.generate_name)
        await self.cache.wait_fresh()
        self.admission.check_namespace(info, meta.namespace)
        for attempt in range(8):
            if generated:
                meta.name = meta.generate_name + "".join(
                    secrets.choice(_NAME_CHARS) for _ in range(5))
            meta.uid = str(uuid.uuid4())
            meta.resource_version = ""
            meta.generation = 1
            meta.creation_timestamp.CopyFrom(time_at(self.now()))
            meta.ClearField("deletion_timestamp")
            meta.ClearField("deletion_grace_period_seconds")
            self.admission.prepare_for_create(info, obj)
            self.admission.admit(info, obj, None)
            data = self._validated_bytes(info, obj, None)
            key = object_key(info, meta.namespace, meta.name)
            if dry_run and self.cache.get(info.plural, key) is not None:
                raise self._exists(info, meta.name)
            claim = await self._allocate(info, obj, None, dry_run)
            if claim is not None:
                data = await self._revalidated(info, obj, None, claim)
            if dry_run:
                return data
            try:
                kv = await self.store.create(key, data, lease=await self.admission.lease_for(info))
            except KeyExists:
                await self._revert(claim)
                if generated and attempt < 7:
                    continue
                raise self._exists(info, meta.name) from None
            except BaseException:
                await self._revert(claim)
                raise
            return codec.with_revision(kv.value, kv.mod_revision)
        raise AssertionError("unreachable")

    async def _allocate(self, info: kinds.KindInfo, obj: Any, old: Any,
                        dry_run: bool) -> Claim | None:
        """Cluster IPs and node ports a Service write needs (filled into ``obj``)."""
        if info.plural != "services" or self.services is None:
            return None
        return await self.services.begin_update(obj, old, dry_run)

    async def _revalidated(self, info: kinds.KindInfo, obj: Any, old: Any,
                           claim: Claim) -> bytes:
        """The bytes of ``obj`` with what was allocated filled in (checked again)."""
        try:
            return self._validated_bytes(info, obj, old)
        except BaseException:
            await claim.revert()
            raise

    @staticmethod
    async def _revert(claim: Claim | None) -> None:
        if claim is not None:
            await claim.revert()

    async def _released(self, info: kinds.KindInfo, obj: Any) -> None:
        """A Service is gone from the store: what it held goes back."""
        if info.plural == "services" and self.services is not None:
            await self.services.release(held_ips(obj.spec), held_ports(obj.spec))

    @staticmethod
    def _exists(info: kinds.KindInfo, name: str) -> errors.AlreadyExists:
        return errors.AlreadyExists(f'{qualified(info)} "{name}" already exists')

    @staticmethod
    def _check_kind(info: kinds.KindInfo, obj: Any) -> None:
        if obj.kind and obj.kind != info.kind:
            raise errors.BadRequest(f"kind {obj.kind!r} sent to the {info.plural} resource")
        if obj.api_version and obj.api_version != info.api_version:
            raise errors.BadRequest(
                f"apiVersion {obj.api_version!r} is not served for {info.kind} "
                f"(use {info.api_version!r})")
        obj.kind = info.kind
        obj.api_version = info.api_version

    def _validated_bytes(self, info: kinds.KindInfo, obj: Any, old: Any) -> bytes:
        problems = self.admission.validate(info, obj, old)
        if problems:
            raise errors.Invalid(f'{info.kind} "{obj.metadata.name}" is invalid', problems)
        data = codec.encode_for_store(obj)
        if len(data) > MAX_OBJECT_BYTES:
            raise errors.Invalid(
                f'{info.kind} "{obj.metadata.name}" is invalid',
                [errors.FieldError("", f"object is {len(data)} bytes, the limit is "
                                       f"{MAX_OBJECT_BYTES} bytes")])
        return data

    # -- update --------------------------------------------------------------------------

    async def update(self, info: kinds.KindInfo, namespace: str, obj: Any, *,
                     status: bool = False, dry_run: bool = False) -> bytes:
        self._check_kind(info, obj)
        name = obj.metadata.name
        if not name:
            raise errors.BadRequest("metadata.name is required on update")
        ns = _namespace_of(info, obj, namespace)
        wanted_rv = obj.metadata.resource_version
        if wanted_rv:
            _parse_rv(wanted_rv)

        def mutate(current: Any) -> Any:
            if wanted_rv and wanted_rv != current.metadata.resource_version:
                raise _conflict(info, name)
            new = type(obj)()
            new.CopyFrom(obj)
            self.admission.prepare(info, new, current, status=status)
            return new

        return await self.guaranteed_update(info, ns, name, mutate, dry_run=dry_run,
                                            conditional=bool(wanted_rv))

    async def patch(self, info: kinds.KindInfo, namespace: str, name: str, patch_type: str,
                    patch: bytes, *, status: bool = False, dry_run: bool = False) -> bytes:
        try:
            doc = json.loads(patch or b"{}")
        except ValueError as e:
            raise errors.BadRequest(f"the patch is not valid JSON: {errors.excerpt(str(e))}") from None
        except RecursionError:
            raise errors.BadRequest(
                f"the patch nests objects and arrays deeper than {mergepatch.MAX_DEPTH} "
                "levels") from None
        if not isinstance(doc, dict):
            raise errors.BadRequest("the patch must be a JSON object")
        mergepatch.check_depth(doc)
        if patch_type not in ("merge", "strategic"):
            raise errors.BadRequest(f"unsupported patch type {patch_type!r} (merge, strategic)")
        ns = namespace if info.namespaced else ""

        def mutate(current: Any) -> Any:
            base = convert.to_dict(current)
            if patch_type == "merge":
                patched = mergepatch.json_merge_patch(base, doc)
            else:
                patched = mergepatch.apply_strategic_patch(base, doc)
            if not isinstance(patched, dict):
                raise errors.BadRequest("the patch must produce an object")
            new: Any = info.message()
            convert.from_dict(patched, new)
            self._check_kind(info, new)
            _check_identity_kept(info, new, current)
            if new.metadata.resource_version and (
                    new.metadata.resource_version != current.metadata.resource_version):
                raise _conflict(info, name)
            self.admission.prepare(info, new, current, status=status)
            return new

        return await self.guaranteed_update(info, ns, name, mutate, dry_run=dry_run,
                                            conditional=False)

    async def guaranteed_update(self, info: kinds.KindInfo, namespace: str, name: str,
                                mutate: Callable[[Any], Any], *, dry_run: bool = False,
                                conditional: bool = True) -> bytes:
        """Read the current object, apply ``mutate`` to a copy, write it with
        compare-and-swap; retried on a lost race unless ``conditional`` (the caller named a
        resourceVersion, so a race is the caller's Conflict)."""
        await self.cache.wait_fresh()
        for _ in range(UPDATE_RETRIES):
            current_co = self.lookup(info, namespace, name)
            current = current_co.obj
            new = mutate(current)
            self._carry_server_metadata(new, current)
            self.admission.admit(info, new, current)
            self._check_finalizer_rules(info, new, current)
            if self._spec_changed(new, current):
                new.metadata.generation = current.metadata.generation + 1
            new.metadata.resource_version = ""
            data = self._validated_bytes(info, new, current)
            stored = codec.encode_for_store(current)
            if data == stored and (dry_run or self.stale is None
                                   or not self.stale(current_co.key)):
                return current_co.raw  # no-op: nothing written, resourceVersion unchanged
            if self._ready_to_remove(info, new):
                if dry_run:
                    return data
                try:
                    kv = await self.store.delete(current_co.key, current_co.revision)
                except RevisionMismatch:
                    if conditional:
                        raise _conflict(info, name) from None
                    await self.cache.wait_fresh()
                    continue
                except KeyNotFound:
                    raise _not_found(info, name) from None
                await self._released(info, current)
                return codec.with_revision(data, kv.mod_revision)
            claim = await self._allocate(info, new, current, dry_run)
            if claim is not None:
                data = await self._revalidated(info, new, current, claim)
            if dry_run:
                return data
            try:
                kv = await self.store.update(current_co.key, data, current_co.revision,
                                             lease=await self.admission.lease_for(info))
            except RevisionMismatch:
                await self._revert(claim)
                if conditional:
                    raise _conflict(info, name) from None
                await self.cache.wait_fresh()
                continue
            except KeyNotFound:
                await self._revert(claim)
                raise _not_found(info, name) from None
            except BaseException:
                await self._revert(claim)
                raise
            if claim is not None:
                await claim.commit()
            return codec.with_revision(kv.value, kv.mod_revision)
        raise _conflict(info, name)

    @staticmethod
    def _carry_server_metadata(new: Any, current: Any) -> None:
        m, c = new.metadata, current.metadata
        m.name, m.namespace, m.uid = c.name, c.namespace, c.uid
        m.generate_name = c.generate_name
        m.generation = c.generation
        m.creation_timestamp.CopyFrom(c.creation_timestamp)
        if c.HasField("deletion_timestamp"):
            m.deletion_timestamp.CopyFrom(c.deletion_timestamp)
        else:
            m.ClearField("deletion_timestamp")
        if c.HasField("deletion_grace_period_seconds"):
            m.deletion_grace_period_seconds = c.deletion_grace_period_seconds
        else:
            m.ClearField("deletion_grace_period_seconds")

    @staticmethod
    def _check_finalizer_rules(info: kinds.KindInfo, new: Any, current: Any) -> None:
        if current.metadata.HasField("deletion_timestamp"):
            added = set(new.metadata.finalizers) - set(current.metadata.finalizers)
            if added:
                raise errors.Invalid(
                    f'{info.kind} "{new.metadata.name}" is invalid',
                    [errors.FieldError("metadata.finalizers",
                                       "Forbidden: no new finalizers can be added if the "
                                       f"object is being deleted, found new finalizers "
                                       f"{sorted(added)}")])

    @staticmethod
    def _spec_changed(new: Any, current: Any) -> bool:
        """Anything besides apiVersion, kind, metadata and status differs (a new
        generation)."""
        for name, is_map in _spec_fields(new.DESCRIPTOR):
            a, b = getattr(new, name), getattr(current, name)
            if (_maps_differ(a, b) if is_map else a != b):
                return True
        return False

    @staticmethod
    def _ready_to_remove(info: kinds.KindInfo, obj: Any) -> bool:
        """A deleted object goes once nothing holds it: no finalizers, no pending graceful
        termination, and (namespaces) no spec.finalizers."""
        m = obj.metadata
        if not m.HasField("deletion_timestamp") or m.finalizers:
            return False
        if m.HasField("deletion_grace_period_seconds") and m.deletion_grace_period_seconds > 0:
            return False
        return not (info.plural == "namespaces" and obj.spec.finalizers)

    # -- delete --------------------------------------------------------------------------

    async def delete(self, info: kinds.KindInfo, namespace: str, name: str, *,
                     grace_period_seconds: int | None = None, propagation_policy: str = "",
                     uid: str = "", resource_version: str = "",
                     dry_run: bool = False) -> tuple[bytes, bool]:
        if propagation_policy not in ("", "Foreground", "Background", "Orphan"):
            raise errors.BadRequest(
                f'Unsupported value: "{propagation_policy}": supported values: "Foreground", '
                '"Background", "Orphan"')
        if grace_period_seconds is not None and grace_period_seconds < 0:
            grace_period_seconds = 0
        if grace_period_seconds is not None and grace_period_seconds > MAX_GRACE_SECONDS:
            raise errors.BadRequest(
                f"gracePeriodSeconds: Invalid value: {grace_period_seconds}: must be at most "
                f"{MAX_GRACE_SECONDS}")
        ns = namespace if info.namespaced else ""
        await self.cache.wait_fresh()
        for _ in range(UPDATE_RETRIES):
            co = self.lookup(info, ns, name)
            current = co.obj
            self.admission.admit_delete(info, current)
            if uid and uid != current.metadata.uid:
                raise errors.Conflict(
                    f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                    f"{current.metadata.uid}")
            if resource_version and resource_version != current.metadata.resource_version:
                raise errors.Conflict(
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{resource_version}, ResourceVersion in object meta: "
                    f"{current.metadata.resource_version}")
            new = type(current)()
            new.CopyFrom(current)
            m = new.metadata
            finalizers = list(m.finalizers)
            if propagation_policy == "Foreground":
                finalizers = [f for f in finalizers if f != ORPHAN]
                if FOREGROUND not in finalizers:
                    finalizers.append(FOREGROUND)
            elif propagation_policy == "Orphan":
                finalizers = [f for f in finalizers if f != FOREGROUND]
                if ORPHAN not in finalizers:
                    finalizers.append(ORPHAN)
            elif propagation_policy == "Background":
                finalizers = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
            del m.finalizers[:]
            m.finalizers.extend(finalizers)
            grace = min(self.admission.grace_period(info, current, grace_period_seconds),
                        MAX_GRACE_SECONDS)
            now = self.now()
            if m.HasField("deletion_timestamp"):
                # already terminating: a delete may shorten the grace period, never extend it
                if (m.HasField("deletion_grace_period_seconds")
                        and grace < m.deletion_grace_period_seconds):
                    m.deletion_grace_period_seconds = grace
                    m.deletion_timestamp.CopyFrom(time_at(now + grace))
            else:
                m.deletion_timestamp.CopyFrom(time_at(now + grace))
                m.deletion_grace_period_seconds = grace
            self.admission.prepare_for_delete(info, new)
            if self._ready_to_remove(info, new):
                if dry_run:
                    return co.raw, False
                try:
                    kv = await self.store.delete(co.key, co.revision)
                except RevisionMismatch:
                    await self.cache.wait_fresh()
                    continue
                except KeyNotFound:
                    raise _not_found(info, name) from None
                await self._released(info, current)
                return codec.with_revision(kv.value, kv.mod_revision), False
            data = codec.encode_for_store(new)
            if data == codec.encode_for_store(current):
                return co.raw, True
            if dry_run:
                return data, True
            try:
                kv = await self.store.update(co.key, data, co.revision)
            except RevisionMismatch:
                await self.cache.wait_fresh()
                continue
            except KeyNotFound:
                raise _not_found(info, name) from None
            return codec.with_revision(kv.value, kv.mod_revision), True
        raise _conflict(info, name)
