"""Kubernetes name and metadata syntax checks (``k8s.io/apimachinery/pkg/util/validation``).

Owns:
- the string checks ``is_dns1123_label``, ``is_dns1123_subdomain``, ``is_dns1035_label``,
  ``is_qualified_name`` (label and annotation keys, finalizers), ``is_valid_label_value``;
  each returns a list of messages, empty when valid, worded as Kubernetes words them so a
  user's search for the message finds Kubernetes' documentation;
- name validators with Kubernetes' ``ValidateNameFunc`` shape ``(name, prefix) -> messages``
  (``prefix`` is true for generateName, whose trailing ``-`` is allowed), and
  :func:`name_validator`, the one each kind uses (the apiserver and the CLI's manifest
  checks both ask it);
- ``validate_object_meta``: the generic ObjectMeta checks every kind shares.

Pure module: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from control.api.errors import FieldError
from control.api.pb import meta_pb2

__all__ = [
    "DNS1035_LABEL_MAX_LENGTH",
    "DNS1123_LABEL_MAX_LENGTH",
    "DNS1123_SUBDOMAIN_MAX_LENGTH",
    "LABEL_VALUE_MAX_LENGTH",
    "QUALIFIED_NAME_MAX_LENGTH",
    "TOTAL_ANNOTATION_SIZE_LIMIT",
    "NameValidator",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "name_is_dns1035_label",
    "name_is_dns_label",
    "name_is_dns_subdomain",
    "name_validator",
    "validate_annotations",
    "validate_labels",
    "validate_object_meta",
    "validate_path_segment_name",
]

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1035_LABEL_MAX_LENGTH = 63
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)

# fullmatch of an ASCII-only pattern: "\n" at the end does not sneak through as with "$".
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)

NameValidator = Callable[[str, bool], list[str]]


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Kubernetes' RegexError text (its odd ``',  or '`` spacing included)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, ex in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += f"'{ex}', "
    return msg + f"regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def empty_error() -> str:
    return "must be non-empty"


def is_dns1123_label(value: str) -> list[str]:
    """RFC 1123 label: namespaces, most names that become host names (<= 63)."""
    errs = []
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        errs.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    """RFC 1123 subdomain: most object names (<= 253)."""
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    """RFC 1035 label: Service names (they become DNS labels starting with a letter)."""
    errs = []
    if len(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """``[prefix/]name``: label and annotation keys, finalizers; prefix a DNS subdomain."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append(
            "name part "
            + regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """A label value: may be empty, else like a qualified name part (<= 63)."""
    errs = []
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _mask_trailing_dash(name: str) -> str:
    # generateName "web-" is a valid prefix: Kubernetes checks it with the dash masked.
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    """ValidateNameFunc for most kinds (Pod, ConfigMap, Deployment, ...)."""
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    """ValidateNameFunc for Namespace (and anything whose name is one DNS label)."""
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    """ValidateNameFunc for Service."""
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def validate_path_segment_name(name: str, prefix: bool) -> list[str]:
    """ValidateNameFunc for RBAC kinds: anything that is a safe URL path segment."""
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


# Kinds whose names follow another rule than a DNS subdomain, as each kind's
# ValidateNameFunc in Kubernetes: RBAC names are URL path segments, so the names of
# Kubernetes' own roles ("system:kube-scheduler", "metrics-server:system:auth-delegator")
# are valid.
_NAME_RULES: dict[str, NameValidator] = {
    "Namespace": name_is_dns_label,
    "Service": name_is_dns1035_label,
    "Role": validate_path_segment_name,
    "ClusterRole": validate_path_segment_name,
    "RoleBinding": validate_path_segment_name,
    "ClusterRoleBinding": validate_path_segment_name,
}


def name_validator(kind: str) -> NameValidator:
    """The ValidateNameFunc for objects of ``kind``: a DNS subdomain unless listed above."""
    return _NAME_RULES.get(kind, name_is_dns_subdomain)


def _invalid(value: object, msg: str) -> str:
    """field.Invalid's text: ``Invalid value: "x": msg``."""
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return f"Invalid value: {shown}: {msg}"


def validate_labels(labels: Mapping[str, str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not labels:
        return errs
    for k, v in sorted(labels.items()):  # sorted: deterministic messages (maps are not ordered)
        # (messages built only when there are some: this runs on every write)
        if msgs := is_qualified_name(k):
            errs.extend(FieldError(path, _invalid(k, m)) for m in msgs)
        if msgs := is_valid_label_value(v):
            errs.extend(FieldError(path, _invalid(v, m)) for m in msgs)
    return errs


def validate_annotations(annotations: Mapping[str, str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not annotations:
        return errs
    total = 0
    for k, v in sorted(annotations.items()):
        # Kubernetes checks the lower-cased key: annotation keys are case-insensitive there.
        errs.extend(FieldError(path, _invalid(k, m)) for m in is_qualified_name(k.lower()))
        total += len(k.encode()) + len(v.encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(
            FieldError(path, f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes")
        )
    return errs


def _validate_owner_references(refs: list[meta_pb2.OwnerReference], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    controllers = []
    for ref in refs:
        for attr, label in (
            ("api_version", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ):
            if not getattr(ref, attr):
                errs.append(FieldError(path, _invalid(ref.name, f"{label} must not be empty")))
        if ref.HasField("controller") and ref.controller:
            controllers.append(ref.name)
    if len(controllers) > 1:
        names = ", ".join(controllers)
        errs.append(
            FieldError(
                path,
                _invalid(
                    names,
                    "Only one reference can have Controller set to true. "
                    f'Found "true" in references for {names}',
                ),
            )
        )
    return errs


def validate_object_meta(
    meta: meta_pb2.ObjectMeta,
    namespaced: bool,
    name_validator: NameValidator = name_is_dns_subdomain,
    path: str = "metadata",
) -> list[FieldError]:
    """Kubernetes' ValidateObjectMeta: every failing field, paths under ``path``."""
    errs: list[FieldError] = []

    def child(name: str) -> str:
        return f"{path}.{name}" if path else name

    # Each field is read once, and messages are built only when a check fails: this runs
    # on every write, and nearly every object is valid.
    generate_name, name, namespace = meta.generate_name, meta.name, meta.namespace
    if generate_name and (msgs := name_validator(generate_name, True)):
        errs.extend(FieldError(child("generateName"), _invalid(generate_name, m)) for m in msgs)
    if name:
        if msgs := name_validator(name, False):
            errs.extend(FieldError(child("name"), _invalid(name, m)) for m in msgs)
    elif not generate_name:
        errs.append(FieldError(child("name"), "Required value: name or generateName is required"))
    if namespaced:
        if not namespace:
            errs.append(FieldError(child("namespace"), "Required value"))
        elif msgs := is_dns1123_label(namespace):
            errs.extend(FieldError(child("namespace"), _invalid(namespace, m)) for m in msgs)
    elif namespace:
        errs.append(FieldError(child("namespace"), "Forbidden: not allowed on this type"))
    if meta.generation < 0:
        errs.append(
            FieldError(
                child("generation"), _invalid(meta.generation, "must be greater than or equal to 0")
            )
        )
    if meta.labels:
        errs.extend(validate_labels(meta.labels, child("labels")))
    if meta.annotations:
        errs.extend(validate_annotations(meta.annotations, child("annotations")))
    if meta.owner_references:
        errs.extend(_validate_owner_references(list(meta.owner_references),
                                               child("ownerReferences")))
    for i, fin in enumerate(meta.finalizers):
        errs.extend(
            FieldError(f"{child('finalizers')}[{i}]", _invalid(fin, m))
            for m in is_qualified_name(fin)
        )
    return errs
