"""Validation of certificates.k8s.io/v1 CertificateSigningRequest (Kubernetes' rules).

The request must be a PEM PKCS#10 request with a valid signature; ``signerName`` a
qualified name (``example.com/signer``); ``usages`` at least one of Kubernetes' key
usages, without repeats; ``expirationSeconds`` at least 600; the spec never changes
after creation; a request is not both Approved and Denied; an issued certificate is PEM.

Pure functions: message in, field errors out.
"""

from __future__ import annotations

from typing import Any

from control.api import names
from control.apiserver.validation_util import (
    Errors,
    duplicate,
    forbidden,
    immutable,
    invalid,
    not_supported,
    required,
)
from control.client import pki

KEY_USAGES = ("signing", "digital signature", "content commitment", "key encipherment",
              "key agreement", "data encipherment", "cert sign", "crl sign",
              "encipher only", "decipher only", "any", "server auth", "client auth",
              "code signing", "email protection", "s/mime", "ipsec end system",
              "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
              "microsoft sgc", "netscape sgc")
CONDITION_TYPES = ("Approved", "Denied", "Failed")
MIN_EXPIRATION_SECONDS = 600


def validate_csr(obj: Any, old: Any) -> Errors:
    errs: Errors = []
    spec = obj.spec
    if not spec.request:
        errs.append(required("spec.request"))
    else:
        try:
            pki.read_csr(bytes(spec.request))
        except pki.PkiError as e:
            errs.append(invalid("spec.request", "<request>", str(e)))
    if not spec.signer_name:
        errs.append(required("spec.signerName"))
    else:
        msgs = names.is_qualified_name(spec.signer_name)
        if "/" not in spec.signer_name or msgs:
            errs.append(invalid("spec.signerName", spec.signer_name,
                                "; ".join(msgs) or "must be a fully qualified domain and "
                                "path of the form 'example.com/signer-name'"))
    if not spec.usages:
        errs.append(required("spec.usages"))
    seen: set[str] = set()
    for i, u in enumerate(spec.usages):
        path = f"spec.usages[{i}]"
        if u not in KEY_USAGES:
            errs.append(not_supported(path, u, KEY_USAGES))
        elif u in seen:
            errs.append(duplicate(path, u))
        seen.add(u)
    if spec.HasField("expiration_seconds") and spec.expiration_seconds < MIN_EXPIRATION_SECONDS:
        errs.append(invalid("spec.expirationSeconds", spec.expiration_seconds,
                            f"may not specify a duration less than {MIN_EXPIRATION_SECONDS} "
                            f"seconds"))
    if old is not None and spec.SerializeToString(deterministic=True) != \
            old.spec.SerializeToString(deterministic=True):
        errs.append(immutable("spec", "<spec>"))
    types = [c.type for c in obj.status.conditions]
    for i, t in enumerate(types):
        if t not in CONDITION_TYPES and not t:
            errs.append(required(f"status.conditions[{i}].type"))
        if types.count(t) > 1 and t in CONDITION_TYPES and types.index(t) != i:
            errs.append(duplicate(f"status.conditions[{i}].type", t))
    if "Approved" in types and "Denied" in types:
        errs.append(forbidden("status.conditions",
                              "Approved and Denied conditions are mutually exclusive"))
    if obj.status.certificate:
        try:
            pki.load_cert(bytes(obj.status.certificate))
        except pki.PkiError as e:
            errs.append(invalid("status.certificate", "<certificate data>", str(e)))
        if "Approved" not in types:
            errs.append(forbidden("status.certificate",
                                  "a certificate may only be issued to an approved request"))
    return errs
