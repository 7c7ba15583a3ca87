"""Client configuration: where the server is and how to prove who we are, found the way
kubectl finds its kubeconfig.

Order of the file: explicit ``--config FILE``; ``$FLOTILLA_CONFIG``; the default data dir's
``admin.conf`` (``/var/lib/flotilla`` as root, else ``~/.local/share/flotilla``). An explicit
``--server HOST:PORT`` overrides the file's address and keeps its credentials, as kubectl's
``--server`` does. ``admin.conf`` is YAML written by ``flotilla server`` (mode 0600), with
kubeconfig's key names::

    apiVersion: flotilla/v1
    kind: Config
    server: 10.0.0.5:6443            # the API (mutual TLS)
    servers: [10.0.0.5:6443, ...]    # every address it listens on
    supervisor: 10.0.0.5:9345        # the join port (tokens; no client certificate)
    certificate-authority-data: <base64 PEM>
    client-certificate-data: <base64 PEM>
    client-key-data: <base64 PEM>

``certificate-authority``, ``client-certificate`` and ``client-key`` name files instead
(relative to the config file), which is how an agent's config follows a renewed
certificate; ``token`` is a bearer token, ``insecure-skip-tls-verify: true`` trusts any
server (debugging only). :func:`view` is the file without its secrets.

Pure functions plus small file reads; no network.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control.client.credentials import Credentials

DEFAULT_LISTEN = "127.0.0.1:6443"
DEFAULT_SUPERVISOR_PORT = 9345
SECRET_KEYS = ("client-key-data", "token")


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class ClientConfig:
    server: str
    source: str  # where the address came from, for error messages
    credentials: Credentials = field(default_factory=Credentials)
    supervisor: str = ""


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/flotilla")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flotilla"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def config_document(server: str, credentials: Credentials, *, servers: list[str] | None = None,
                    supervisor: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "flotilla/v1", "kind": "Config", "server": server}
    if servers:
        doc["servers"] = list(servers)
    if supervisor:
        doc["supervisor"] = supervisor
    if credentials.ca_pem:
        doc["certificate-authority-data"] = b64(credentials.ca_pem)
    if credentials.cert_pem:
        doc["client-certificate-data"] = b64(credentials.cert_pem)
    if credentials.key_pem:
        doc["client-key-data"] = b64(credentials.key_pem)
    if credentials.token:
        doc["token"] = credentials.token
    return doc


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    """Write a config file atomically, 0600 (it holds a private key)."""
    import yaml

    from control.client.pki import write_private

    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, yaml.safe_dump(doc, sort_keys=False).encode())
    return path


def write_admin_conf(data_dir: Path, server: str, credentials: Credentials = Credentials(),
                     *, servers: list[str] | None = None, supervisor: str = "") -> Path:
    """Write ``DIR/admin.conf`` atomically (temp file + rename: never half-written)."""
    return write_config(data_dir / "admin.conf", config_document(
        server, credentials, servers=servers, supervisor=supervisor))


def _pem(data: dict[str, Any], key: str, path: Path) -> bytes | None:
    inline, file_key = data.get(f"{key}-data"), data.get(key)
    if inline is not None:
        try:
            return base64.b64decode(str(inline), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"config file {path}: {key}-data is not base64") from None
    if file_key is not None:
        ref = Path(str(file_key))
        ref = ref if ref.is_absolute() else path.parent / ref
        try:
            return ref.read_bytes()
        except OSError as e:
            raise ConfigError(f"config file {path}: cannot read {key} {ref}: "
                              f"{e.strerror or e}") from None
    return None


def parse_config(data: Any, path: Path) -> ClientConfig:
    if not isinstance(data, dict) or not isinstance(data.get("server"), str):
        raise ConfigError(f"config file {path}: expected a mapping with a 'server' string")
    token = data.get("token")
    creds = Credentials(
        ca_pem=_pem(data, "certificate-authority", path),
        cert_pem=_pem(data, "client-certificate", path),
        key_pem=_pem(data, "client-key", path),
        token=str(token) if token else None,
        insecure_skip_verify=bool(data.get("insecure-skip-tls-verify", False)),
        server_name=data.get("tls-server-name") or None)
    if bool(creds.cert_pem) != bool(creds.key_pem):
        raise ConfigError(f"config file {path}: a client certificate needs its key "
                          f"(client-certificate and client-key go together)")
    return ClientConfig(server=data["server"], source=str(path), credentials=creds,
                        supervisor=str(data.get("supervisor") or ""))


def read_yaml(path: Path) -> Any:
    # Imported here: YAML costs a CLI call only when it reads a config file.
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None


def read_config_file(path: Path) -> ClientConfig:
    return parse_config(read_yaml(path), path)


def config_path(config: str | None = None) -> Path | None:
    """The config file in effect (explicit, ``$FLOTILLA_CONFIG``, default), if any."""
    if config:
        return Path(config)
    env = os.environ.get("FLOTILLA_CONFIG")
    if env:
        return Path(env)
    default = default_data_dir() / "admin.conf"
    return default if default.exists() else None


def load(server: str | None = None, config: str | None = None, *,
         insecure_skip_tls_verify: bool = False) -> ClientConfig:
    path = config_path(config)
    cfg = read_config_file(path) if path is not None else ClientConfig(
        server=DEFAULT_LISTEN, source="default")
    if server:
        cfg = ClientConfig(server=server, source="--server", credentials=cfg.credentials,
                           supervisor=cfg.supervisor)
    if insecure_skip_tls_verify:
        creds = cfg.credentials
        cfg = ClientConfig(server=cfg.server, source=cfg.source, supervisor=cfg.supervisor,
                           credentials=Credentials(
                               ca_pem=None, cert_pem=creds.cert_pem, key_pem=creds.key_pem,
                               token=creds.token, insecure_skip_verify=True))
    return cfg


def view(path: Path) -> str:
    """The config file as YAML with keys and tokens shown as ``REDACTED`` (kubectl's
    ``config view``) and the certificates as ``DATA+OMITTED``."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping")
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k in SECRET_KEYS:
            out[k] = "REDACTED"
        elif k.endswith("-data"):
            out[k] = "DATA+OMITTED"
        else:
            out[k] = v
    import yaml

    return yaml.safe_dump(out, sort_keys=False)
