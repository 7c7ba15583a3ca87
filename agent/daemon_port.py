"""The agent's daemon port across restarts: remembered in its data dir, bound again.

Kubernetes' kubelet serves on a fixed port (10250), so an apiserver that dials the port a
Node advertised reaches the kubelet again after a restart. Our agent binds an ephemeral port
unless ``--daemon-port`` fixes one; this module remembers the port it bound so that a
restarted agent (same data dir) binds the same one, and what the Node still advertises
stays true. A port taken meanwhile is given up for a new one; the agent then advertises
the new one in its first status post.

Pure functions over one small file; the caller serialises (one agent per data dir).
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_NAME = "daemon-port"


def parse_port(text: str) -> int:
    """The port in ``text`` (the file's content); 0 (none) if it is not a valid port."""
    try:
        port = int(text.strip())
    except ValueError:
        return 0
    return port if 0 < port <= 65535 else 0


def remembered(data_dir: Path) -> int:
    """The port an earlier run bound (0: none, or the file is unreadable)."""
    try:
        return parse_port((data_dir / FILE_NAME).read_text())
    except OSError:
        return 0


def remember(data_dir: Path, port: int) -> None:
    """Record ``port`` for the next run (written aside and renamed: never half a number)."""
    path = data_dir / FILE_NAME
    tmp = path.with_name(FILE_NAME + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)
