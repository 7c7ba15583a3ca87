"""Table tests for control.api.names (Kubernetes' validation messages)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from control.api import names
from control.api.errors import FieldError
from control.api.pb import meta_pb2

LABEL_REGEX = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_REGEX = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
QN_REGEX = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


@pytest.mark.parametrize(
    ("check", "value", "errors"),
    [
        (names.is_dns1123_label, "a", []),
        (names.is_dns1123_label, "0", []),
        (names.is_dns1123_label, "my-name", []),
        (names.is_dns1123_label, "a" * 63, []),
        (names.is_dns1123_label, "a" * 64, ["must be no more than 63 characters"]),
        (names.is_dns1123_label, "", [LABEL_REGEX]),
        (names.is_dns1123_label, "A", [LABEL_REGEX]),
        (names.is_dns1123_label, "a.b", [LABEL_REGEX]),
        (names.is_dns1123_label, "-a", [LABEL_REGEX]),
        (names.is_dns1123_label, "a-", [LABEL_REGEX]),
        (names.is_dns1123_label, "a\n", [LABEL_REGEX]),
        (names.is_dns1123_subdomain, "example.com", []),
        (names.is_dns1123_subdomain, "a.b-c.d", []),
        (names.is_dns1123_subdomain, "a" * 253, []),
        (names.is_dns1123_subdomain, "a" * 254, ["must be no more than 253 characters"]),
        (names.is_dns1123_subdomain, "a..b", [SUBDOMAIN_REGEX]),
        (names.is_dns1123_subdomain, "a_b", [SUBDOMAIN_REGEX]),
        (names.is_dns1123_subdomain, "Web", [SUBDOMAIN_REGEX]),
        (names.is_dns1035_label, "web-1", []),
        (
            names.is_dns1035_label,
            "1web",
            [
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                "with an alphabetic character, and end with an alphanumeric character (e.g. "
                "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ],
        ),
        (names.is_qualified_name, "app", []),
        (names.is_qualified_name, "App.Kubernetes_io-x", []),
        (names.is_qualified_name, "example.com/My_Name", []),
        (names.is_qualified_name, "a" * 63, []),
        (names.is_qualified_name, "a" * 64, ["name part must be no more than 63 characters"]),
        (names.is_qualified_name, "", ["name part must be non-empty", "name part " + QN_REGEX]),
        (names.is_qualified_name, "/a", ["prefix part must be non-empty"]),
        (names.is_qualified_name, "Example.com/a", ["prefix part " + SUBDOMAIN_REGEX]),
        (names.is_qualified_name, "a/", ["name part must be non-empty", "name part " + QN_REGEX]),
        (names.is_qualified_name, "-a", ["name part " + QN_REGEX]),
        (
            names.is_qualified_name,
            "a/b/c",
            [
                "a qualified name "
                + QN_REGEX
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ],
        ),
        (names.is_valid_label_value, "", []),
        (names.is_valid_label_value, "v1.2_x-Y", []),
        (
            names.is_valid_label_value,
            "a" * 64,
            [
                "must be no more than 63 characters",
            ],
        ),
        (
            names.is_valid_label_value,
            "a b",
            [
                "a valid label must be an empty string or consist of alphanumeric characters, '-', "
                "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
                "or 'my_value',  or '12345', regex used for validation is "
                "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ],
        ),
    ],
)
def test_checks(check: Callable[[str], list[str]], value: str, errors: list[str]) -> None:
    assert check(value) == errors


@pytest.mark.parametrize(
    ("validator", "name", "prefix", "ok"),
    [
        (names.name_is_dns_subdomain, "web-", True, True),  # generateName
        (names.name_is_dns_subdomain, "web-", False, False),
        (names.name_is_dns_label, "ns-", True, True),
        (names.name_is_dns_label, "a.b", False, False),
        (names.name_is_dns1035_label, "svc-", True, True),
        (names.name_is_dns1035_label, "1svc", False, False),
        (names.validate_path_segment_name, "system:admin", False, True),
        (names.validate_path_segment_name, "..", False, False),
        (names.validate_path_segment_name, "a/b", False, False),
        (names.validate_path_segment_name, "a%b", True, False),
    ],
)
def test_name_validators(validator: names.NameValidator, name: str, prefix: bool, ok: bool) -> None:
    assert (validator(name, prefix) == []) is ok


@pytest.mark.parametrize(
    ("kind", "name", "ok"),
    [
        ("ClusterRole", "system:kube-scheduler", True),
        ("ClusterRole", "system:aggregated-metrics-reader", True),
        ("ClusterRoleBinding", "metrics-server:system:auth-delegator", True),
        ("Role", "system:kube-scheduler", True),
        ("RoleBinding", "metrics-server:system:auth-delegator", True),
        ("Role", ".", False),
        ("ClusterRole", "a/b", False),
        ("ConfigMap", "system:kube-scheduler", False),
        ("Deployment", "a.b", True),
        ("Namespace", "a.b", False),
        ("Service", "1svc", False),
    ],
)
def test_name_validator_by_kind(kind: str, name: str, ok: bool) -> None:
    assert (names.name_validator(kind)(name, False) == []) is ok


def _meta(**kw: object) -> meta_pb2.ObjectMeta:
    return meta_pb2.ObjectMeta(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("meta", "namespaced", "errors"),
    [
        (_meta(name="web", namespace="default"), True, []),
        (_meta(generate_name="web-", namespace="default"), True, []),
        (_meta(name="node-1"), False, []),
        (
            _meta(namespace="default"),
            True,
            [FieldError("metadata.name", "Required value: name or generateName is required")],
        ),
        (_meta(name="web"), True, [FieldError("metadata.namespace", "Required value")]),
        (
            _meta(name="n", namespace="default"),
            False,
            [FieldError("metadata.namespace", "Forbidden: not allowed on this type")],
        ),
        (
            _meta(name="Web", namespace="default"),
            True,
            [FieldError("metadata.name", f'Invalid value: "Web": {SUBDOMAIN_REGEX}')],
        ),
        (
            _meta(name="w", namespace="Default"),
            True,
            [FieldError("metadata.namespace", f'Invalid value: "Default": {LABEL_REGEX}')],
        ),
        (
            _meta(name="w", namespace="d", labels={"a b": "ok", "k": "bad value"}),
            True,
            [
                FieldError("metadata.labels", f'Invalid value: "a b": name part {QN_REGEX}'),
                FieldError(
                    "metadata.labels",
                    'Invalid value: "bad value": ' + names.is_valid_label_value("bad value")[0],
                ),
            ],
        ),
        (
            _meta(name="w", namespace="d", annotations={"x/": "v"}),
            True,
            [
                FieldError(
                    "metadata.annotations", 'Invalid value: "x/": name part must be non-empty'
                ),
                FieldError("metadata.annotations", f'Invalid value: "x/": name part {QN_REGEX}'),
            ],
        ),
        (
            _meta(name="w", namespace="d", annotations={"big": "x" * (256 * 1024)}),
            True,
            [FieldError("metadata.annotations", "Too long: may not be more than 262144 bytes")],
        ),
        (
            _meta(name="w", namespace="d", finalizers=["kubernetes.io/pv-protection", "a/b/c"]),
            True,
            [
                FieldError(
                    "metadata.finalizers[1]",
                    'Invalid value: "a/b/c": ' + names.is_qualified_name("a/b/c")[0],
                )
            ],
        ),
        (
            _meta(
                name="w",
                namespace="d",
                owner_references=[
                    meta_pb2.OwnerReference(
                        api_version="v1", kind="K", name="a", uid="1", controller=True
                    ),
                    meta_pb2.OwnerReference(name="b", controller=True),
                ],
            ),
            True,
            [
                FieldError(
                    "metadata.ownerReferences", 'Invalid value: "b": version must not be empty'
                ),
                FieldError(
                    "metadata.ownerReferences", 'Invalid value: "b": kind must not be empty'
                ),
                FieldError("metadata.ownerReferences", 'Invalid value: "b": uid must not be empty'),
                FieldError(
                    "metadata.ownerReferences",
                    'Invalid value: "a, b": Only one reference can have Controller set to true. '
                    'Found "true" in references for a, b',
                ),
            ],
        ),
        (
            _meta(name="w", namespace="d", generation=-1),
            True,
            [
                FieldError(
                    "metadata.generation", "Invalid value: -1: must be greater than or equal to 0"
                )
            ],
        ),
    ],
)
def test_validate_object_meta(
    meta: meta_pb2.ObjectMeta, namespaced: bool, errors: list[FieldError]
) -> None:
    assert names.validate_object_meta(meta, namespaced) == errors


def test_validate_object_meta_with_other_name_rules() -> None:
    meta = _meta(name="my.svc", namespace="d")
    errs = names.validate_object_meta(meta, True, names.name_is_dns1035_label)
    assert [e.path for e in errs] == ["metadata.name"]
    assert names.validate_object_meta(_meta(name="x"), False, path="") == []
