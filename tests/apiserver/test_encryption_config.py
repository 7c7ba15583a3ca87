"""EncryptionConfiguration parsing: what is accepted, and each refusal naming its field."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.apiserver.encryption_config import ConfigError, load, parse

K16 = base64.b64encode(b"a" * 16).decode()
K32 = base64.b64encode(b"b" * 32).decode()


def doc(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": list(entries)}


def aes(kind: str = "aescbc", *keys: tuple[str, str]) -> dict[str, Any]:
    return {kind: {"keys": [{"name": n, "secret": s} for n, s in keys or (("key1", K32),)]}}


def entry(resources: list[str], *providers: dict[str, Any]) -> dict[str, Any]:
    return {"resources": resources, "providers": list(providers) or [aes()]}


def test_kubernetes_documented_example_parses() -> None:
    text = f"""
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
      - configmaps
      - pandas.awesome.bears.example
    providers:
      - aesgcm:
          keys:
            - name: key1
              secret: {K16}
            - name: key2
              secret: {K32}
      - aescbc:
          keys:
            - name: key1
              secret: {K32}
      - identity: {{}}
  - resources:
      - events
    providers:
      - identity: {{}}
  - resources:
      - '*.apps'
    providers:
      - aescbc:
          keys:
          - name: key2
            secret: {K32}
  - resources:
      - '*.*'
    providers:
      - aescbc:
          keys:
          - name: key3
            secret: {K32}
"""
    cfg = parse(yaml.safe_load(text))
    assert [r.resources for r in cfg.rules] == [
        ("secrets", "configmaps", "pandas.awesome.bears.example"), ("events",), ("*.apps",),
        ("*.*",)]
    first = cfg.rules[0].providers
    assert [p.type for p in first] == ["aesgcm", "aescbc", "identity"]
    assert [k.name for k in first[0].keys] == ["key1", "key2"]
    assert first[0].keys[0].secret == b"a" * 16
    assert "secret" not in repr(first[0].keys[0]).replace("secret=", "")  # never printed
    assert b"a" * 16 not in repr(cfg).encode()


BAD: list[tuple[str, Any, str]] = [
    ("not a mapping", ["x"], "expected a YAML mapping"),
    ("wrong kind", {**doc(entry(["secrets"])), "kind": "EncryptionConfig"},
     "kind: expected 'EncryptionConfiguration'"),
    ("wrong apiVersion", {**doc(entry(["secrets"])), "apiVersion": "v1"},
     "apiVersion: expected 'apiserver.config.k8s.io/v1'"),
    ("unknown top-level field", {**doc(entry(["secrets"])), "resource": []},
     "resource: unknown field"),
    ("no resources", doc(), "resources: required"),
    ("entry without resources", doc({"providers": [aes()]}), "resources[0].resources: required"),
    ("entry without providers", doc({"resources": ["secrets"]}),
     "resources[0].providers: required"),
    ("bare star", doc(entry(["*"])), "resources[0].resources[0]: '*' is not allowed"),
    ("uppercase", doc(entry(["Secrets"])), "resources[0].resources[0]: 'Secrets': resource "
                                           "names are lowercase"),
    ("wildcard group only", doc(entry(["secrets.*"])), "needs a wildcard resource"),
    ("duplicate across entries", doc(entry(["secrets"]), entry(["configmaps", "secrets"])),
     "resources[1].resources[1]: 'secrets' is already named at resources[0].resources[0]"),
    ("masked by *.*", doc(entry(["*.*"]), entry(["secrets"])),
     "resources[1].resources[0]: 'secrets' is masked by the earlier rule '*.*'"),
    ("masked by *. in the same list", doc(entry(["*.", "secrets"])),
     "resources[0].resources[1]: 'secrets' is masked by the earlier rule '*.'"),
    ("masked group", doc(entry(["*.apps", "deployments.apps"])),
     "'deployments.apps' is masked by the earlier rule '*.apps'"),
    ("two providers in one element", doc(entry(["secrets"], {**aes(), "identity": {}})),
     "resources[0].providers[0]: more than one provider (aescbc, identity) in one element"),
    ("unknown provider", doc(entry(["secrets"], {"aesgsm": {}})),
     "resources[0].providers[0].aesgsm: unknown provider type"),
    ("secretbox refused", doc(entry(["secrets"], aes("secretbox"))),
     "resources[0].providers[0].secretbox: not supported: XSalsa20-Poly1305 is not available"),
    ("kms refused", doc(entry(["secrets"], {"kms": {"name": "x"}})),
     "resources[0].providers[0].kms: not supported"),
    ("identity with settings", doc(entry(["secrets"], {"identity": {"x": 1}})),
     "resources[0].providers[0].identity: takes no settings"),
    ("no keys", doc(entry(["secrets"], {"aescbc": {"keys": []}})),
     "resources[0].providers[0].aescbc.keys: required"),
    ("key without name", doc(entry(["secrets"], {"aesgcm": {"keys": [{"secret": K32}]}})),
     "resources[0].providers[0].aesgcm.keys[0].name: required"),
    ("key name with colon", doc(entry(["secrets"], aes("aescbc", ("a:b", K32)))),
     "keys[0].name: 'a:b': must not contain ':'"),
    ("duplicate key name", doc(entry(["secrets"], aes("aescbc", ("k", K32), ("k", K16)))),
     "resources[0].providers[0].aescbc.keys[1].name: 'k': duplicate key name"),
    ("key without secret", doc(entry(["secrets"], {"aescbc": {"keys": [{"name": "k"}]}})),
     "resources[0].providers[0].aescbc.keys[0].secret: required"),
    ("secret not base64", doc(entry(["secrets"], aes("aescbc", ("k", "not base64!!"))))
     , "keys[0].secret: not valid base64 (the secret is not shown)"),
    ("short aescbc key", doc(entry(["secrets"], aes("aescbc", ("k", base64.b64encode(
        b"12345678").decode()))))
     , "aescbc.keys[0].secret: the key is 8 bytes, expected 16, 24 or 32"),
    ("long aesgcm key", doc(entry(["secrets"], aes("aesgcm", ("k", base64.b64encode(
        b"x" * 33).decode()))))
     , "aesgcm.keys[0].secret: the key is 33 bytes, expected 16, 24 or 32"),
]


@pytest.mark.parametrize(("case", "document", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_config_names_field_and_why(case: str, document: Any, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(document, "enc.yaml")
    assert str(e.value).startswith("enc.yaml: ")
    assert message in str(e.value), str(e.value)


def test_every_problem_reported_and_no_secret_shown() -> None:
    short = base64.b64encode(b"SECRETKEY").decode()
    with pytest.raises(ConfigError) as e:
        parse(doc(entry(["Secrets"], aes("aescbc", ("k", short)), {"identity": {}, **aes()})),
              "enc.yaml")
    assert len(e.value.problems) == 3, e.value.problems
    assert str(e.value).startswith("enc.yaml: 3 problems:\n  resources[0].resources[0]")
    assert short not in str(e.value) and "SECRETKEY" not in str(e.value)


def test_load_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"{missing}: cannot read the file"):
        load(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("resources: [\n")
    with pytest.raises(ConfigError, match=f"{broken}: not valid YAML"):
        load(broken)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(doc(entry(["secrets"], aes("aesgcm"), {"identity": {}}))))
    assert [p.type for p in load(good).rules[0].providers] == ["aesgcm", "identity"]
