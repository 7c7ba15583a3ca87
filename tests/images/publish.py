"""Build the images the examples, the README's tour and the tests use, from Debian's
busybox-static, and push them to a registry on loopback (started here when none answers).

    python -m tests.images.publish [--registry 127.0.0.1:5000] [--data-dir DIR] [--stop]

Images (as Docker Hub names, so ``--registry-mirror docker.io=127.0.0.1:5000`` serves
manifests written for Kubernetes unchanged):

- ``busybox:latest``, ``:1.35`` (Debian's) and ``:1.36`` (what examples/ name): busybox's
  applets, ``Cmd ["sh"]``;
- ``nginx:latest`` and ``nginx:1.27``: busybox httpd serving /usr/share/nginx/html on port 80
  (a stand-in: only what the examples ask of nginx, a page on :80).

The registry runs as a background process whose pid is in ``DATA_DIR/registry.pid``;
``--stop`` ends it. Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.images import builder as b
from tests.images import registry as reg

BUSYBOX_VERSION = "1.35"


def images() -> dict[str, list[tuple[str, b.BuiltImage]]]:
    base = b.busybox_layer()
    busybox = b.build_image(
        [base],
        {
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
    )
    html = b"<!DOCTYPE html>\n<title>Welcome to nginx!</title>\n<h1>Welcome to nginx!</h1>\n"
    site = b.layer_tar(
        [
            b.Entry("usr", kind="dir", mode=0o755),
            b.Entry("usr/share", kind="dir", mode=0o755),
            b.Entry("usr/share/nginx", kind="dir", mode=0o755),
            b.Entry("usr/share/nginx/html", kind="dir", mode=0o755),
            b.Entry("usr/share/nginx/html/index.html", html),
        ]
    )
    nginx = b.build_image(
        [base, site],
        {
            "Entrypoint": ["httpd", "-f", "-v"],
            "Cmd": ["-p", "80", "-h", "/usr/share/nginx/html"],
            "ExposedPorts": {"80/tcp": {}},
            "StopSignal": "SIGQUIT",
        },
    )
    return {
        "library/busybox": [(t, busybox) for t in ("latest", BUSYBOX_VERSION, "1.36")],
        "library/nginx": [("latest", nginx), ("1.27", nginx)],
    }


def push_all(host: str) -> list[str]:
    """Push every image to the registry at ``host``; one line per tag pushed."""
    done = []
    pusher = b.Pusher(f"http://{host}")
    try:
        for repo, tags in images().items():
            for tag, image in tags:
                pusher.image(repo, tag, image)
                done.append(f"pushed {repo.removeprefix('library/')}:{tag} "
                            f"({image.manifest.digest})")
    finally:
        pusher.close()
    return done


def _answers(host: str) -> bool:
    try:
        httpx.get(f"http://{host}/v2/", timeout=1)
        return True
    except httpx.TransportError:
        return False


def start_registry(host: str, data_dir: Path) -> None:
    addr, _, port = host.rpartition(":")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
        f"  filesystem:\n    rootdirectory: {data_dir / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}:{port}\n"
    )
    log = open(data_dir / "registry.log", "ab")
    proc = subprocess.Popen(
        [reg.REGISTRY, "serve", str(data_dir / "config.yml")],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    (data_dir / "registry.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 15
    while not _answers(host):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"docker-registry did not start; see {data_dir / 'registry.log'}")
        time.sleep(0.05)


def stop_registry(data_dir: Path) -> None:
    pidfile = data_dir / "registry.pid"
    if not pidfile.exists():
        print("no registry started from this data dir", file=sys.stderr)
        return
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    pidfile.unlink()
    print(f"registry (pid {pid}) stopped")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/images", description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", default="127.0.0.1:5000", metavar="HOST:PORT")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/flotilla-registry"))
    p.add_argument("--stop", action="store_true", help="stop the registry started here")
    args = p.parse_args(argv)
    if args.stop:
        stop_registry(args.data_dir)
        return 0
    addr = args.registry.rpartition(":")[0]
    if addr != "localhost" and not ipaddress.ip_address(addr.strip("[]")).is_loopback:
        raise SystemExit(f"--registry {args.registry}: only loopback addresses")
    if not _answers(args.registry):
        if not reg.available():
            raise SystemExit("docker-registry is not installed (Debian package docker-registry)")
        start_registry(args.registry, args.data_dir)
        print(f"registry started on {args.registry} (data in {args.data_dir})")
    for line in push_all(args.registry):
        print(line)
    print(
        f"agents use it with: --registry-mirror docker.io={args.registry} "
        f"--insecure-registry {args.registry}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
