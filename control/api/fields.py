"""Field selectors (``--field-selector``, the API's ``fieldSelector``) and per-kind field values.

Owns:
- ``parse("metadata.name=x,status.phase!=Running")``: terms joined by ``,`` with the
  operators ``=``, ``==`` and ``!=`` only; values may escape ``\\,``, ``\\=`` and ``\\\\``
  (Kubernetes' EscapeValue); anything else is ``BadRequest``;
- ``FieldSelector``: ``matches(fields)``, ``requires_exact(field)`` (for index lookups such as
  the agent's ``spec.nodeName=<node>`` watch), canonical ``str``;
- ``object_fields(obj)`` / ``supported_fields(kind)``: the selectable fields of each kind, as
  Kubernetes' registry strategies define them (``metadata.name`` and ``metadata.namespace``
  for every kind, plus e.g. ``spec.nodeName`` and ``status.phase`` for Pods);
- ``check_supported(selector, kind)``: refuses a field the kind does not offer, by name.

Pure module: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from control.api.errors import BadRequest, excerpt

__all__ = [
    "EQUALS",
    "NOT_EQUALS",
    "FieldSelector",
    "Term",
    "check_supported",
    "escape_value",
    "everything",
    "object_fields",
    "one_term",
    "parse",
    "supported_fields",
]

EQUALS = "="
NOT_EQUALS = "!="


@dataclass(frozen=True, order=True)
class Term:
    """``field = value`` (``==`` is read as ``=``) or ``field != value``."""

    field: str
    operator: str
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        # A field the object does not have reads as "", as in Kubernetes' Fields.Get.
        actual = fields.get(self.field, "")
        return actual == self.value if self.operator == EQUALS else actual != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[Term, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        for t in self.terms:
            if not t.matches(fields):
                return False
        return True

    def empty(self) -> bool:
        return not self.terms

    def requires_exact(self, field: str) -> str | None:
        """The value ``field`` must equal for a match, if the selector says ``field=value``."""
        for t in self.terms:
            if t.field == field and t.operator == EQUALS:
                return t.value
        return None

    def fields(self) -> set[str]:
        return {t.field for t in self.terms}

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def __bool__(self) -> bool:  # a selector is an object, not a truth value
        return True


_EVERYTHING = FieldSelector()


def everything() -> FieldSelector:
    return _EVERYTHING


def one_term(field: str, value: str) -> FieldSelector:
    """``field=value`` (OneTermEqualSelector), e.g. ``spec.nodeName=<node>`` for an agent."""
    return FieldSelector((Term(field, EQUALS, value),))


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_terms(text: str) -> list[tuple[str, int]]:
    """Split on commas not escaped with a backslash; keep each term's start position."""
    terms: list[tuple[str, int]] = []
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == ",":
            terms.append((text[start:i], start))
            start = i + 1
        i += 1
    terms.append((text[start:], start))
    return terms


def _unescape(value: str, text: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            nxt = value[i + 1 : i + 2]
            if nxt not in ("\\", ",", "="):
                raise BadRequest(
                    f"invalid field selector {excerpt(text)!r}: invalid escape sequence '\\{nxt}'"
                )
            out.append(nxt)
            i += 2
            continue
        if c in ",=":
            raise BadRequest(f"invalid field selector {excerpt(text)!r}: unescaped character '{c}'")
        out.append(c)
        i += 1
    return "".join(out)


def parse(text: str) -> FieldSelector:
    """A field selector from its string form; ``""`` selects everything."""
    terms: list[Term] = []
    for part, pos in _split_terms(text):
        if not part.strip():  # "" or `a=b,,c=d`: Kubernetes skips empty terms too
            continue
        # Order matters: "!=" and "==" contain "=".
        found = next(
            (
                (part.find(op), op, normal)
                for op, normal in (("!=", NOT_EQUALS), ("==", EQUALS), ("=", EQUALS))
                if op in part
            ),
            None,
        )
        if found is None:
            raise BadRequest(
                f"invalid field selector {excerpt(text)!r}: can't understand {excerpt(part.strip())!r} at position "
                f"{pos}: expected field=value, field==value or field!=value"
            )
        idx, op, operator = found
        name, raw = part[:idx].strip(), part[idx + len(op) :].strip()
        if not name or any(c in name for c in "<>!=() \t\\"):
            raise BadRequest(
                f"invalid field selector {excerpt(text)!r}: invalid field name {excerpt(name)!r} at position {pos}"
                " (only the operators =, == and != are supported)"
            )
        terms.append(Term(name, operator, _unescape(raw, text)))
    return FieldSelector(tuple(sorted(terms)))


# ------------------------------------------------------------------- per-kind field values


def _attr(path: str) -> Callable[[Any], str]:
    """A getter for a protobuf attribute path (``spec.node_name``) giving Kubernetes' text."""
    parts = path.split(".")

    def get(obj: Any) -> str:
        for p in parts:
            obj = getattr(obj, p)
        if isinstance(obj, bool):
            return "true" if obj else "false"
        return str(obj)

    return get


def _pod_ip(pod: Any) -> str:
    return str(pod.status.pod_ip)


# Kind -> selector field -> getter.  metadata.name / metadata.namespace are added to all.
# Sources: the ToSelectableFields / GetAttrs of each kind's registry strategy in Kubernetes.
_KIND_FIELDS: dict[str, dict[str, Callable[[Any], str]]] = {
    "Pod": {
        "spec.nodeName": _attr("spec.node_name"),
        "spec.restartPolicy": _attr("spec.restart_policy"),
        "spec.schedulerName": _attr("spec.scheduler_name"),
        "spec.serviceAccountName": _attr("spec.service_account_name"),
        "spec.hostNetwork": _attr("spec.host_network"),
        "status.phase": _attr("status.phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _attr("status.nominated_node_name"),
    },
    "Node": {"spec.unschedulable": _attr("spec.unschedulable")},
    "Secret": {"type": _attr("type")},
    "Namespace": {"status.phase": _attr("status.phase")},
    "Event": {
        "involvedObject.kind": _attr("involved_object.kind"),
        "involvedObject.namespace": _attr("involved_object.namespace"),
        "involvedObject.name": _attr("involved_object.name"),
        "involvedObject.uid": _attr("involved_object.uid"),
        "involvedObject.apiVersion": _attr("involved_object.api_version"),
        "involvedObject.resourceVersion": _attr("involved_object.resource_version"),
        "involvedObject.fieldPath": _attr("involved_object.field_path"),
        "reason": _attr("reason"),
        "reportingComponent": _attr("reporting_component"),
        "source": _attr("source.component"),
        "type": _attr("type"),
    },
    "ReplicationController": {"status.replicas": _attr("status.replicas")},
    "ReplicaSet": {"status.replicas": _attr("status.replicas")},
    "Job": {"status.successful": _attr("status.succeeded")},
    "Service": {"spec.clusterIP": _attr("spec.cluster_ip"), "spec.type": _attr("spec.type")},
    "PersistentVolumeClaim": {},
}
_COMMON = ("metadata.name", "metadata.namespace")


def supported_fields(kind: str) -> set[str]:
    """The fields a selector may name for ``kind`` (Pod, Node, Event, ...)."""
    return {*_COMMON, *_KIND_FIELDS.get(kind, {})}


def object_fields(obj: Message) -> dict[str, str]:
    """The selectable field values of ``obj``, keyed by selector field name."""
    o: Any = obj
    meta = o.metadata
    out = {"metadata.name": meta.name, "metadata.namespace": meta.namespace}
    for name, get in _KIND_FIELDS.get(obj.DESCRIPTOR.name, {}).items():
        out[name] = get(obj)
    return out


def check_supported(selector: FieldSelector, kind: str) -> None:
    """``BadRequest`` naming the first field ``kind`` cannot be selected by."""
    allowed = supported_fields(kind)
    for t in selector.terms:
        if t.field not in allowed:
            raise BadRequest(
                f'field label not supported: "{t.field}" is not a known field selector for '
                f"{kind}: only " + ", ".join(f'"{f}"' for f in sorted(allowed))
            )
