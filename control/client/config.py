"""Client configuration: where the server is, read the way kubectl finds its kubeconfig.

Order: explicit ``--server HOST:PORT``; explicit ``--config FILE``; ``$FLOTILLA_CONFIG``;
the default data dir's ``admin.conf`` (``/var/lib/flotilla`` as root, else
``~/.local/share/flotilla``). ``admin.conf`` is YAML written by ``flotilla server``::

    apiVersion: flotilla/v1
    kind: Config
    server: 127.0.0.1:6443

Pure functions plus small file reads; no network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:6443"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class ClientConfig:
    server: str
    source: str  # where the address came from, for error messages


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/flotilla")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flotilla"


def write_admin_conf(data_dir: Path, server: str) -> Path:
    """Write ``DIR/admin.conf`` atomically (temp file + rename: never half-written)."""
    import yaml

    path = data_dir / "admin.conf"
    tmp = path.with_suffix(".conf.tmp")
    tmp.write_text(yaml.safe_dump({"apiVersion": "flotilla/v1", "kind": "Config", "server": server}))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def read_config_file(path: Path) -> ClientConfig:
    # Imported here: YAML costs a CLI call only when it reads a config file.
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("server"), str):
        raise ConfigError(f"config file {path}: expected a mapping with a 'server' string")
    return ClientConfig(server=data["server"], source=str(path))


def load(server: str | None = None, config: str | None = None) -> ClientConfig:
    if server:
        return ClientConfig(server=server, source="--server")
    if config:
        return read_config_file(Path(config))
    env = os.environ.get("FLOTILLA_CONFIG")
    if env:
        return read_config_file(Path(env))
    default = default_data_dir() / "admin.conf"
    if default.exists():
        return read_config_file(default)
    return ClientConfig(server=DEFAULT_LISTEN, source="default")
