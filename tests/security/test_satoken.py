"""Service-account JWTs as tables: what the signer writes and every way the authenticator
refuses a token (signature, key, issuer, audience, times, the objects it is bound to)."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from control.api import errors
from control.api.pb import core_pb2
from control.apiserver import jws, satoken

NOW = 1_800_000_000.0
ISSUER = satoken.DEFAULT_ISSUER


def sa(name: str = "robot", uid: str = "sa-uid") -> core_pb2.ServiceAccount:
    obj = core_pb2.ServiceAccount()
    obj.metadata.name, obj.metadata.namespace, obj.metadata.uid = name, "ns", uid
    return obj


def pod(name: str = "p", uid: str = "pod-uid", deleted_at: float | None = None
        ) -> core_pb2.Pod:
    obj = core_pb2.Pod()
    obj.metadata.name, obj.metadata.namespace, obj.metadata.uid = name, "ns", uid
    obj.spec.service_account_name = "robot"
    if deleted_at is not None:
        obj.metadata.deletion_timestamp.seconds = int(deleted_at)
    return obj


@dataclass
class World:
    objects: dict[tuple[str, str], Any]

    def lookup(self, resource: str, namespace: str, name: str) -> Any:
        assert namespace == "ns"
        return self.objects.get((resource, name))


KEY = jws.new_signing_key()
OTHER_KEY = jws.new_signing_key()


def issue(*, key: jws.SigningKey = KEY, issuer: str = ISSUER, audiences: tuple[str, ...] = (),
          now: float = NOW, seconds: int = 3600,
          bound: satoken.BoundPod | None = satoken.BoundPod("p", "pod-uid")) -> str:
    token, _ = satoken.TokenIssuer(key, issuer, now=lambda: now).issue(
        "ns", "robot", "sa-uid", audiences=audiences, pod=bound, expiration_seconds=seconds)
    return token


def authenticate(token: str, *, now: float = NOW, objects: dict[tuple[str, str], Any] | None
                 = None, audiences: tuple[str, ...] = ()) -> Any:
    world = World(objects if objects is not None else {("serviceaccounts", "robot"): sa(),
                                                        ("pods", "p"): pod()})
    return satoken.TokenAuthenticator([KEY.public_key()], [ISSUER], audiences, world.lookup,
                                      now=lambda: now).authenticate(token)


def tamper(token: str) -> str:
    head, claims, sig = token.split(".")
    doc = json.loads(jws.b64url_decode(claims))
    doc["kubernetes.io"]["serviceaccount"]["name"] = "admin"
    doc["sub"] = "system:serviceaccount:ns:admin"
    return f"{head}.{jws.b64url(json.dumps(doc).encode())}.{sig}"


def unsigned(token: str) -> str:
    _, claims, _ = token.split(".")
    header = jws.b64url(json.dumps({"alg": "none"}).encode())
    return f"{header}.{claims}."


def test_a_token_names_its_account_pod_and_times() -> None:
    token = issue(audiences=("vault",), seconds=600)
    header, claims, _, sig = jws.header_and_claims(token)
    assert header == {"alg": "ES256", "kid": jws.key_id(KEY)}
    assert len(sig) == 64
    assert claims["iss"] == ISSUER and claims["aud"] == ["vault"]
    assert claims["sub"] == "system:serviceaccount:ns:robot"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW, NOW + 600)
    assert claims["kubernetes.io"] == {
        "namespace": "ns", "serviceaccount": {"name": "robot", "uid": "sa-uid"},
        "pod": {"name": "p", "uid": "pod-uid"}}
    assert issue() != issue()  # jti differs


def test_a_valid_token_is_its_service_account() -> None:
    user = authenticate(issue())
    assert user.name == "system:serviceaccount:ns:robot"
    assert user.uid == "sa-uid"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ns",
                           "system:authenticated")


def test_rsa_keys_sign_rs256() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = issue(key=key)
    assert jws.header_and_claims(token)[0]["alg"] == "RS256"
    world = World({("serviceaccounts", "robot"): sa(), ("pods", "p"): pod()})
    auth = satoken.TokenAuthenticator([KEY.public_key(), key.public_key()], [ISSUER], (),
                                      world.lookup, now=lambda: NOW)
    assert auth.authenticate(token).name == "system:serviceaccount:ns:robot"
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(jws.JwsError, match="too small"):
        jws.sign({}, small)


REFUSALS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("bad signature", lambda: tamper(issue()), {}, "invalid signature"),
    ("signed by another key", lambda: issue(key=OTHER_KEY), {}, "invalid signature"),
    ("alg none", lambda: unsigned(issue()), {}, "unsupported signing algorithm 'none'"),
    ("truncated", lambda: issue().rsplit(".", 1)[0], {}, "not three"),
    ("garbage", lambda: "eyJhbGciOi.e30.AAAA", {}, "not JSON|base64url"),
    ("another issuer", lambda: issue(issuer="https://elsewhere"), {}, "issuer"),
    ("another audience", lambda: issue(audiences=("vault",)), {}, "audience"),
    ("expired", lambda: issue(now=NOW - 3600 - 61), {}, "expired"),
    ("not yet valid", lambda: issue(now=NOW + 61), {}, "not valid yet"),
    ("pod deleted", lambda: issue(), {"objects": {("serviceaccounts", "robot"): sa()}},
     "no longer exists"),
    ("pod uid mismatch", lambda: issue(),
     {"objects": {("serviceaccounts", "robot"): sa(), ("pods", "p"): pod(uid="other")}},
     "bound to pod-uid"),
    ("pod deleted a while ago, still terminating", lambda: issue(),
     {"objects": {("serviceaccounts", "robot"): sa(), ("pods", "p"): pod(
         deleted_at=NOW - 61)}}, "deleted and awaiting removal"),
    ("service account deleted", lambda: issue(), {"objects": {("pods", "p"): pod()}},
     'serviceaccounts "robot" not found'),
    ("service account recreated", lambda: issue(),
     {"objects": {("serviceaccounts", "robot"): sa(uid="new"), ("pods", "p"): pod()}},
     "recreated"),
    ("unbound token, account recreated", lambda: issue(bound=None),
     {"objects": {("serviceaccounts", "robot"): sa(uid="new")}}, "recreated"),
]


@pytest.mark.parametrize(("make", "kw", "why"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refused(make: Any, kw: dict[str, Any], why: str) -> None:
    with pytest.raises(errors.Unauthorized, match=why):
        authenticate(make(), **kw)


ACCEPTED: list[tuple[str, Any, dict[str, Any]]] = [
    ("within the clock leeway after exp", lambda: issue(now=NOW - 3600 - 59), {}),
    ("within the clock leeway before nbf", lambda: issue(now=NOW + 59), {}),
    ("pod terminating gracefully", lambda: issue(),
     {"objects": {("serviceaccounts", "robot"): sa(), ("pods", "p"): pod(
         deleted_at=NOW + 30)}}),
    ("unbound token", lambda: issue(bound=None),
     {"objects": {("serviceaccounts", "robot"): sa()}}),
    ("one of several audiences", lambda: issue(audiences=("vault", ISSUER)), {}),
    ("the API's own audience", lambda: issue(audiences=("api",)), {"audiences": ("api",)}),
]


@pytest.mark.parametrize(("make", "kw"), [r[1:] for r in ACCEPTED],
                         ids=[r[0] for r in ACCEPTED])
def test_accepted(make: Any, kw: dict[str, Any]) -> None:
    assert authenticate(make(), **kw).name == "system:serviceaccount:ns:robot"


def test_keys_are_made_once_private_and_reused(tmp_path: Path) -> None:
    key, trusted = satoken.load_or_create_keys(tmp_path / "pki", None, [])
    path = tmp_path / "pki" / satoken.DEFAULT_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, _ = satoken.load_or_create_keys(tmp_path / "pki", None, [])
    assert jws.key_id(again) == jws.key_id(key)
    assert [jws.key_id(k) for k in trusted] == [jws.key_id(key)]
    # an old key's public half stays trusted through --service-account-key-file
    old = tmp_path / "old.pem"
    old.write_bytes(jws.private_pem(OTHER_KEY))
    _, trusted = satoken.load_or_create_keys(tmp_path / "pki", path, [old])
    assert [jws.key_id(k) for k in trusted] == [jws.key_id(key), jws.key_id(OTHER_KEY)]
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(jws.JwsError, match=r"bad\.pem: no public key"):
        satoken.load_or_create_keys(tmp_path / "pki", None, [bad])
    with pytest.raises(jws.JwsError, match=r"bad\.pem: not a PEM private key"):
        satoken.load_or_create_keys(tmp_path / "pki", bad, [])
