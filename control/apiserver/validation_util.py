"""Building blocks of API validation: Kubernetes-worded errors, paths and small checks.

Owns:
- the error constructors (``required``, ``invalid``, ``not_supported``, ``duplicate``,
  ``forbidden``, ``not_found``, ``too_long``, ``too_many``) that word a ``FieldError`` exactly
  as Kubernetes' ``field.Error`` does ("Unsupported value: "x": supported values: ...");
- path helpers (``child``, ``index``, ``key``) producing ``spec.containers[0].ports[1].name``;
- the string checks of ``k8s.io/apimachinery/pkg/util/validation`` that are not name or
  label syntax (those live in ``control.api.names``): port numbers and IANA service names,
  environment variable names, config map keys, percentages, IP addresses and CIDRs;
- checks shared by several kinds: int-or-percent values, quantities and resource lists,
  label selectors against template labels, immutability;
- the cron schedule parser used by CronJob validation.

Everything here is pure and returns a list of errors (empty when valid).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from fractions import Fraction

from control.api import cron, names, quantity
from control.api import labels as label_sel
from control.api.errors import ApiError, FieldError
from control.api.pb import meta_pb2

Errors = list[FieldError]

# ---------------------------------------------------------------------------------------
# Paths


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


# ---------------------------------------------------------------------------------------
# Error constructors (field.Error's wording)


def fmt_value(value: object) -> str:
    """A value as Kubernetes prints it in an error: strings quoted, numbers bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Fraction):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, f"Required value: {detail}" if detail else "Required value")


def invalid(path: str, value: object, detail: str) -> FieldError:
    return FieldError(path, f"Invalid value: {fmt_value(value)}: {detail}")


def not_supported(path: str, value: object, supported: Iterable[str]) -> FieldError:
    quoted = ", ".join(fmt_value(s) for s in supported)
    return FieldError(path, f"Unsupported value: {fmt_value(value)}: supported values: {quoted}")


def duplicate(path: str, value: object) -> FieldError:
    return FieldError(path, f"Duplicate value: {fmt_value(value)}")


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, f"Forbidden: {detail}")


def not_found(path: str, value: object) -> FieldError:
    return FieldError(path, f"Not found: {fmt_value(value)}")


def too_long(path: str, limit: int) -> FieldError:
    return FieldError(path, f"Too long: may not be more than {limit} bytes")


def too_many(path: str, actual: int, limit: int) -> FieldError:
    return FieldError(path, f"Too many: {actual}: must have at most {limit} items")


def immutable(path: str, value: object) -> FieldError:
    return invalid(path, value, "field is immutable")


def messages(path: str, value: object, msgs: Iterable[str]) -> Errors:
    """One ``Invalid`` per message of a string check (``names.is_dns1123_label`` ...)."""
    return [invalid(path, value, m) for m in msgs]


# ---------------------------------------------------------------------------------------
# Scalar checks


def enum(path: str, value: str, supported: Iterable[str], *, allow_empty: bool = False) -> Errors:
    """``Required`` when empty (unless allowed), ``Unsupported`` when not one of ``supported``."""
    values = tuple(supported)
    if not value:
        return [] if allow_empty else [required(path, "")]
    if value not in values:
        return [not_supported(path, value, values)]
    return []


def non_negative(path: str, value: int) -> Errors:
    return [] if value >= 0 else [invalid(path, value, "must be greater than or equal to 0")]


def positive(path: str, value: int) -> Errors:
    return [] if value > 0 else [invalid(path, value, "must be greater than 0")]


def in_range(path: str, value: int, lo: int, hi: int) -> Errors:
    if lo <= value <= hi:
        return []
    return [invalid(path, value, inclusive_range(lo, hi))]


def inclusive_range(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def port_num_errors(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range(1, 65535)]


_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")


def port_name_errors(name: str) -> list[str]:
    """IANA_SVC_NAME (RFC 6335): what a named port must look like."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.fullmatch(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


_ENV_VAR_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_RE = re.compile(_ENV_VAR_FMT)


def env_var_name_errors(name: str) -> list[str]:
    """Kubernetes' IsEnvVarName (the strict, C-identifier-like form)."""
    errs = []
    if not _ENV_VAR_RE.fullmatch(name):
        errs.append(
            names.regex_error(
                "a valid environment variable name must consist of alphabetic characters, "
                "digits, '_', '-', or '.', and must not start with a digit",
                _ENV_VAR_FMT,
                "my.env-name",
                "MY_ENV.NAME",
                "MY-ENV_NAME",
            )
        )
    errs.extend(_dot_errors(name))
    return errs


_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(_CONFIG_KEY_FMT)


# A key config_map_key_errors has nothing to say about, in one match: 1-253 allowed
# characters, neither "." nor starting with "..". Every write of a ConfigMap or Secret
# checks all its keys, and nearly all are valid: only a key this refuses is looked at
# again for the messages.
_VALID_CONFIG_KEY_RE = re.compile(
    rf"(?!\.\Z)(?!\.\.)[-._a-zA-Z0-9]{{1,{names.DNS1123_SUBDOMAIN_MAX_LENGTH}}}")


def is_config_map_key(k: str) -> bool:
    """True exactly when :func:`config_map_key_errors` returns no message (faster)."""
    return _VALID_CONFIG_KEY_RE.fullmatch(k) is not None


def config_map_key_errors(k: str) -> list[str]:
    """Kubernetes' IsConfigMapKey: keys of ConfigMap and Secret data (they become files)."""
    errs = []
    if len(k) > names.DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(names.max_len_error(names.DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _CONFIG_KEY_RE.fullmatch(k):
        errs.append(
            names.regex_error(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                _CONFIG_KEY_FMT,
                "key.name",
                "KEY_NAME",
                "key-name",
            )
        )
    errs.extend(_dot_errors(k))
    return errs


def _dot_errors(value: str) -> list[str]:
    # A key that is "." or ".." (or starts with "..") would escape the directory it is
    # projected into.
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def ip_errors(value: str) -> list[str]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def cidr_errors(value: str) -> list[str]:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    return []


_PERCENT_RE = re.compile(r"[0-9]+%")


def percent_errors(value: str) -> list[str]:
    if _PERCENT_RE.fullmatch(value):
        return []
    return [
        names.regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            "[0-9]+%",
            "1%",
            "93%",
        )
    ]


# ---------------------------------------------------------------------------------------
# IntOrString


def int_or_string_value(ios: meta_pb2.IntOrString) -> int | str | None:
    which = ios.WhichOneof("value")
    if which == "int_val":
        return ios.int_val
    if which == "str_val":
        return ios.str_val
    return None


def int_or_percent(path: str, ios: meta_pb2.IntOrString, *, max_100: bool = False) -> Errors:
    """A non-negative int or a percentage (maxSurge, maxUnavailable, minAvailable)."""
    v = int_or_string_value(ios)
    if isinstance(v, int):
        return non_negative(path, v)
    if isinstance(v, str):
        msgs = percent_errors(v)
        if msgs:
            return messages(path, v, msgs)
        if max_100 and int(v[:-1]) > 100:
            return [invalid(path, v, "must not be greater than 100%")]
        return []
    return [invalid(path, "", "must be an integer or percentage (e.g '5%')")]


def is_zero_int_or_percent(ios: meta_pb2.IntOrString) -> bool:
    v = int_or_string_value(ios)
    if isinstance(v, int):
        return v == 0
    if isinstance(v, str) and _PERCENT_RE.fullmatch(v):
        return int(v[:-1]) == 0
    return v is None


def port_num_or_name(path: str, ios: meta_pb2.IntOrString) -> Errors:
    """A container port given by number or by name (probes, Service targetPort)."""
    v = int_or_string_value(ios)
    if isinstance(v, int):
        return messages(path, v, port_num_errors(v))
    if isinstance(v, str) and v:
        return messages(path, v, port_name_errors(v))
    return [required(path, "")]


# ---------------------------------------------------------------------------------------
# Quantities and resource lists

_STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})


def parse_quantity(path: str, q: meta_pb2.Quantity) -> tuple[Fraction | None, Errors]:
    """The value of ``q``; an error (and None) if it is not a quantity."""
    try:
        return quantity.parse_quantity(q.string), []
    except quantity.QuantityError:
        return None, [
            invalid(
                path,
                q.string,
                "quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )
        ]


def resource_name_errors(name: str, *, container: bool) -> list[str]:
    """A resource name: a standard one, ``hugepages-<size>``, or a domain-qualified name."""
    msgs = names.is_qualified_name(name)
    if msgs:
        return msgs
    if not container or name in _STANDARD_CONTAINER_RESOURCES or "/" in name:
        return []
    if name.startswith("hugepages-"):
        try:
            quantity.parse_quantity(name.removeprefix("hugepages-"))
        except quantity.QuantityError:
            return ["must be a standard resource for containers"]
        return []
    return ["must be a standard resource for containers"]


def resource_list(
    path: str, resources: Mapping[str, meta_pb2.Quantity], *, container: bool = False
) -> tuple[dict[str, Fraction], Errors]:
    """Names and quantities of a ResourceList; the parsed values of the valid entries."""
    errs: Errors = []
    values: dict[str, Fraction] = {}
    for name in sorted(resources):
        p = key(path, name)
        errs.extend(messages(p, name, resource_name_errors(name, container=container)))
        amount, q_errs = parse_quantity(p, resources[name])
        errs.extend(q_errs)
        if amount is None:
            continue
        if amount < 0:
            errs.append(invalid(p, resources[name].string, "must be greater than or equal to 0"))
            continue
        values[name] = amount
    return values, errs


# ---------------------------------------------------------------------------------------
# Selectors


def selector_matches_template(
    selector: meta_pb2.LabelSelector,
    template_labels: Mapping[str, str],
    labels_path: str,
) -> Errors:
    """The template's labels must be selected, or the controller would orphan its pods."""
    try:
        sel = label_sel.from_label_selector(selector)
    except ApiError:
        return []  # the selector's own errors are reported by validate_label_selector
    if sel.empty() or sel.matches(template_labels):
        return []
    return [
        invalid(labels_path, dict(template_labels), "`selector` does not match template `labels`")
    ]


def label_sel_to_dict(sel: meta_pb2.LabelSelector) -> dict[str, object]:
    """A LabelSelector as JSON-like data, for an error message."""
    out: dict[str, object] = {}
    if sel.match_labels:
        out["matchLabels"] = dict(sel.match_labels)
    if sel.match_expressions:
        out["matchExpressions"] = [
            {"key": e.key, "operator": e.operator, "values": list(e.values)}
            for e in sel.match_expressions
        ]
    return out


def workload_selector(
    path: str,
    selector: meta_pb2.LabelSelector | None,
    template_labels: Mapping[str, str],
    *,
    kind: str,
) -> Errors:
    """``spec.selector`` of a workload: required, valid, non-empty, selecting the template.

    ``selector`` is None when the field is not set.
    """
    sel_path = child(path, "selector")
    if selector is None:
        return [required(sel_path, "")]
    errs = label_sel.validate_label_selector(selector, sel_path)
    if not selector.match_labels and not selector.match_expressions:
        errs.append(invalid(sel_path, {}, f"empty selector is invalid for {kind}"))
        return errs
    if not errs:
        errs.extend(
            selector_matches_template(
                selector, template_labels, child(path, "template.metadata.labels")
            )
        )
    return errs


# ---------------------------------------------------------------------------------------
# Cron schedules: the parser the CronJob controller uses too

cron_errors = cron.errors
