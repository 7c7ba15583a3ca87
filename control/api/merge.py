"""JSON merge patch (RFC 7386) and Kubernetes' strategic merge patch, on plain JSON dicts.

Owns what ``kubectl apply`` and ``kubectl patch`` need:

- ``json_merge_patch(target, patch)``: RFC 7386 (``null`` deletes, a non-object replaces);
  ``create_json_merge_patch(original, modified)`` is its inverse (a two-way diff);
- ``create_three_way_merge_patch(original, modified, current)``: ``kubectl apply``'s patch.
  ``original`` is the last-applied configuration, ``modified`` the new manifest, ``current``
  the live object. Fields in ``original`` but not in ``modified`` are deleted; fields in
  ``modified`` are set where they differ from ``current``; fields only in ``current`` (set by
  the cluster or by someone else: clusterIP, nodePort, status, defaults, labels added by
  hand) are left alone. The last-applied annotation itself is never deleted. A removed
  object goes as a whole, except ``metadata.labels``/``annotations`` whose keys are removed
  one by one (keys someone else added stay);
- ``apply_strategic_patch(current, patch)``: applies such a patch (the server side of
  ``kubectl apply`` and ``kubectl patch --type strategic``).

Lists. Kubernetes merges some lists of objects item by item, matching items on a *patch merge
key* (its Go struct tags ``patchStrategy:"merge" patchMergeKey:"name"``); every other list is
replaced as a whole. Plain dicts carry no Go types, so the merge keys are a table keyed by
the list's field name, optionally qualified by the name of the field that holds it (its
*parent*: the enclosing object's own field name, list indices skipped). The qualified entry
wins: ``containers.ports`` (a container's ports) merge on ``containerPort`` while
``spec.ports`` (a Service's ports) merge on ``port``. ``None`` marks a list that is replaced
even though a bare-name entry would merge it. See ``MERGE_KEYS``; pass another table as
``schema`` for other types.

Patch directives (as Kubernetes): ``{"<key>": v, "$patch": "delete"}`` in a merge-keyed list
deletes that item; ``{"$patch": "replace"}`` in a list replaces the whole list;
``"$setElementOrder/<field>": [{"<key>": v}, ...]`` gives the order of a merged list;
``null`` deletes a field; ``{"$patch": "merge"}`` is the default and changes nothing. Any
other ``$patch`` value is refused, as Kubernetes does. ``$retainKeys`` and ``$deleteFromPrimitiveList`` are not supported
(no list of primitives merges here).

``check_depth(doc)`` refuses documents nested deeper than ``MAX_DEPTH`` (the functions here
recurse, and no Kubernetes object nests anywhere near that deep); callers run it on
untrusted input first.

Pure functions: inputs are never mutated, results share no structure with them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from control.api.errors import BadRequest

__all__ = [
    "LAST_APPLIED_ANNOTATION",
    "MAX_DEPTH",
    "MERGE_KEYS",
    "Schema",
    "apply_strategic_patch",
    "check_depth",
    "create_json_merge_patch",
    "create_three_way_merge_patch",
    "json_merge_patch",
    "merge_key",
]

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# Deepest nesting of objects and arrays accepted in a patch (well within Python's recursion
# limit for the recursive merge and conversion code).
MAX_DEPTH = 100

_PATCH_DIRECTIVES = frozenset({"replace", "delete", "merge"})

# field name, or "parent.field" -> patch merge key (None: replace the list as a whole).
Schema = Mapping[str, str | None]

MERGE_KEYS: dict[str, str | None] = {
    # PodSpec (wherever it is: Pod spec, a template's spec, a CronJob's job template)
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
    # Container
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "containers.ports": "containerPort",
    "initContainers.ports": "containerPort",
    "ephemeralContainers.ports": "containerPort",
    # Service
    "spec.ports": "port",
    # metadata
    "ownerReferences": "uid",
    # status
    "conditions": "type",
    "status.addresses": "type",  # Node addresses (Endpoints' subsets.addresses replace)
    "podIPs": "ip",
    "hostIPs": "ip",
    # Replaced as a whole, as in Kubernetes (listed for the record): envFrom, tolerations,
    # finalizers, args, command, taints, subsets, rules, subjects.
}

_MISSING: Any = object()
_SET_ORDER = "$setElementOrder/"


def merge_key(parent: str, field: str, schema: Schema = MERGE_KEYS) -> str | None:
    """The patch merge key of list ``field`` held by ``parent``, or None (replace)."""
    qualified = f"{parent}.{field}"
    if qualified in schema:
        return schema[qualified]
    return schema.get(field)


# ------------------------------------------------------------------------ JSON merge patch


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: merge ``patch`` into ``target``; ``null`` deletes, non-objects replace."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    _merge_into(result, patch)
    return result


def _merge_into(result: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        elif isinstance(v, Mapping):
            cur = result.get(k)
            if not isinstance(cur, dict):
                cur = result[k] = {}
            _merge_into(cur, v)
        else:
            result[k] = copy.deepcopy(v)


def create_json_merge_patch(original: Mapping[str, Any], modified: Mapping[str, Any]) -> dict:
    """The RFC 7386 patch that turns ``original`` into ``modified``."""
    patch: dict[str, Any] = {}
    for k in original:
        if k not in modified:
            patch[k] = None
    for k, mv in modified.items():
        ov = original.get(k, _MISSING)
        if isinstance(mv, Mapping) and isinstance(ov, Mapping):
            sub = create_json_merge_patch(ov, mv)
            if sub:
                patch[k] = sub
        elif ov is _MISSING or ov != mv:
            patch[k] = copy.deepcopy(mv)
    return patch


# ------------------------------------------------------------------ three-way merge patch


def create_three_way_merge_patch(
    original: Mapping[str, Any] | None,
    modified: Mapping[str, Any],
    current: Mapping[str, Any],
    schema: Schema = MERGE_KEYS,
) -> dict[str, Any]:
    """``kubectl apply``'s strategic merge patch from last-applied, new manifest and live."""
    original = _without_last_applied(original or {})
    return _three_way_map(original, modified, current, "", schema)


def _without_last_applied(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    # The last-applied annotation records the other fields: it must never be a deletion.
    meta = doc.get("metadata")
    if not isinstance(meta, Mapping):
        return doc
    ann = meta.get("annotations")
    if not isinstance(ann, Mapping) or LAST_APPLIED_ANNOTATION not in ann:
        return doc
    ann = {k: v for k, v in ann.items() if k != LAST_APPLIED_ANNOTATION}
    return {**doc, "metadata": {**meta, "annotations": ann}}


def _three_way_map(
    original: Mapping[str, Any],
    modified: Mapping[str, Any],
    current: Mapping[str, Any],
    parent: str,
    schema: Schema,
) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for k in original:
        # Removed from the manifest since the last apply: delete, if the server still has it.
        if k not in modified and k in current:
            ov, cv = original[k], current[k]
            if parent == "metadata" and isinstance(ov, Mapping) and isinstance(cv, Mapping):
                # labels/annotations: delete only the keys we applied; others' keys (and the
                # last-applied annotation) stay. Elsewhere a removed object goes as a whole
                # (a probe must not survive as its server-side defaults).
                sub = _three_way_map(ov, {}, cv, k, schema)
                if sub:
                    patch[k] = sub
                continue
            patch[k] = None
    for k, mv in modified.items():
        cv = current.get(k, _MISSING)
        if mv is None:
            if cv is not _MISSING:
                patch[k] = None
            continue
        ov = original.get(k, _MISSING)
        if isinstance(mv, Mapping) and isinstance(cv, Mapping):
            sub = _three_way_map(ov if isinstance(ov, Mapping) else {}, mv, cv, k, schema)
            if sub:
                patch[k] = sub
            continue
        if isinstance(mv, list) and isinstance(cv, list):
            key = merge_key(parent, k, schema)
            if key is not None and _keyed(mv, key) and _keyed(cv, key):
                orig_list = ov if isinstance(ov, list) and _keyed(ov, key) else []
                items, changed_order = _three_way_list(orig_list, mv, cv, key, k, schema)
                if items or changed_order:
                    patch[k] = items
                    patch[_SET_ORDER + k] = [{key: item[key]} for item in mv]
                continue
        if cv is _MISSING or cv != mv:
            patch[k] = copy.deepcopy(mv)
    return patch


def _keyed(items: list[Any], key: str) -> bool:
    return all(isinstance(i, Mapping) and key in i for i in items)


def _three_way_list(
    original: list[Any],
    modified: list[Any],
    current: list[Any],
    key: str,
    field: str,
    schema: Schema,
) -> tuple[list[Any], bool]:
    """(item patches, whether the order of the modified items differs from current's)."""
    cur_by = {item[key]: item for item in current}
    orig_by = {item[key]: item for item in original}
    mod_keys = {item[key] for item in modified}
    out: list[Any] = []
    for item in modified:
        kv = item[key]
        c = cur_by.get(kv)
        if c is None:
            out.append(copy.deepcopy(item))
            continue
        o = orig_by.get(kv, {})
        sub = _three_way_map(o, item, c, field, schema)
        if sub:
            out.append({key: kv, **sub})
    for item in original:
        kv = item[key]
        if kv not in mod_keys and kv in cur_by:
            out.append({key: kv, "$patch": "delete"})
    cur_order = [item[key] for item in current if item[key] in mod_keys]
    mod_order = [item[key] for item in modified]
    return out, cur_order != mod_order


# ---------------------------------------------------------------- applying a strategic patch


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse ``doc`` when objects and arrays nest deeper than ``limit`` (iterative: a
    hostile document cannot exhaust the stack here)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise BadRequest(f"the patch nests objects and arrays deeper than {limit} levels")
        stack.extend((c, depth + 1) for c in children)


def _check_directives(patch: Any, path: str) -> None:
    stack: list[tuple[Any, str]] = [(patch, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, Mapping):
            d = value.get("$patch")
            if d is not None and not (isinstance(d, str) and d in _PATCH_DIRECTIVES):
                raise BadRequest(f"invalid patch type {d!r} at {where or '.'}: "
                                 "$patch must be replace, delete or merge")
            for k, v in value.items():
                if k.startswith(_SET_ORDER) and not isinstance(v, list):
                    raise BadRequest(f"{where}.{k}: must be a list")
                stack.append((v, f"{where}.{k}"))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def apply_strategic_patch(
    current: Mapping[str, Any], patch: Mapping[str, Any], schema: Schema = MERGE_KEYS
) -> dict[str, Any]:
    """``current`` with strategic merge ``patch`` applied (see the module docstring).
    A ``$patch`` directive other than replace, delete or merge is refused (BadRequest)."""
    check_depth(patch)
    _check_directives(patch, "")
    result = copy.deepcopy(dict(current))
    return _apply_map(result, patch, "", schema)


def _apply_map(
    cur: dict[str, Any], patch: Mapping[str, Any], parent: str, schema: Schema
) -> dict[str, Any]:
    if patch.get("$patch") == "replace":
        return _clean(patch)
    orders: dict[str, Any] = {}
    for k, pv in patch.items():
        if k.startswith(_SET_ORDER):
            orders[k[len(_SET_ORDER) :]] = pv
            continue
        if k.startswith("$"):
            continue
        if pv is None:
            cur.pop(k, None)
            continue
        cv = cur.get(k)
        if isinstance(pv, Mapping):
            if pv.get("$patch") == "delete":
                cur.pop(k, None)
            elif isinstance(cv, dict):
                cur[k] = _apply_map(cv, pv, k, schema)
            else:
                cur[k] = _apply_map({}, pv, k, schema)
        elif isinstance(pv, list):
            cur[k] = _apply_list(cv, pv, parent, k, schema)
        else:
            cur[k] = copy.deepcopy(pv)
    for k, order in orders.items():
        key = merge_key(parent, k, schema)
        lst = cur.get(k)
        if key is not None and isinstance(lst, list) and isinstance(order, list):
            cur[k] = _reorder(lst, order, key)
    return cur


def _apply_list(cv: Any, pv: list[Any], parent: str, field: str, schema: Schema) -> list[Any]:
    if any(isinstance(i, Mapping) and i.get("$patch") == "replace" for i in pv):
        return [_clean(i) for i in pv if not (isinstance(i, Mapping) and "$patch" in i)]
    key = merge_key(parent, field, schema)
    if key is None or not isinstance(cv, list) or not _keyed(cv, key):
        # Replaced as a whole; delete directives for items that are not there are dropped.
        return [
            _clean(i) if isinstance(i, Mapping) else copy.deepcopy(i)
            for i in pv
            if not (isinstance(i, Mapping) and i.get("$patch") == "delete")
        ]
    out: list[Any] = list(cv)
    index = {item[key]: i for i, item in enumerate(out)}
    deleted: set[int] = set()
    for item in pv:
        if not isinstance(item, Mapping) or key not in item:
            # Not addressable by the merge key: Kubernetes refuses such a patch.
            raise BadRequest(f"{field}: every item of the patch needs its merge key {key!r}")
        kv = item[key]
        i = index.get(kv)
        if item.get("$patch") == "delete":
            if i is not None:
                deleted.add(i)
            continue
        if i is None or i in deleted:
            index[kv] = len(out)
            out.append(_apply_map({}, item, field, schema))
            continue
        out[i] = _apply_map(out[i], item, field, schema)
    return [x for i, x in enumerate(out) if i not in deleted]


def _reorder(items: list[Any], order: list[Any], key: str) -> list[Any]:
    """Items named in ``order`` in that order, then the others in their current order."""
    rank = {o.get(key): n for n, o in enumerate(order) if isinstance(o, Mapping)}
    named = sorted((i for i in items if i.get(key) in rank), key=lambda i: rank[i.get(key)])
    return named + [i for i in items if i.get(key) not in rank]


def _clean(value: Any) -> Any:
    """A patch value as plain data: directives and nulls removed."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [
            _clean(i) for i in value if not (isinstance(i, Mapping) and i.get("$patch") == "delete")
        ]
    return copy.deepcopy(value)
