"""The multi-machine lab: N "machines" on this host as network namespaces joined by one
bridge, a Flotilla cluster across them. Run through ``scripts/lab``.

    scripts/lab up [--nodes N] [--dir DIR] [--name NAME] [--registry HOST:PORT]
                                                           build it, wait for every node Ready
    scripts/lab status [--dir DIR]                         machines, processes, nodes
    scripts/lab down [--dir DIR]                           remove everything it created
    scripts/lab stop-agent|start-agent MACHINE [--kill]    for tests: crash and restart

Topology (every object lives in a namespace the lab created; the host's own network is
never changed)::

    netns <dir>/netns/lan        bridge lab0, one port per machine (lab-m1, lab-m2, ...)
    netns <dir>/netns/m<i>       eth0 172.30.255.(10+i)/24, no default route;
                                 processes here get their own UTS namespace (hostname)
    m1                           flotilla server (API on 172.30.255.11:6443, join port
                                 9345; agents join with the server's token)
    every machine                flotilla agent --pod-network bridge, own data dir
                                 (<dir>/m<i>/agent: runtime state, pod netns pins, leases),
                                 own cgroup prefix (flotilla/<node>)
    host                         a relay from 127.0.0.1:<port> into m1's API, so the CLI
                                 on the host reaches the cluster (<dir>/lab.conf)
    --registry HOST:PORT         a registry on the host's loopback (``scripts/images``):
                                 a relay listens on 127.0.0.1:5000 inside every machine
                                 and dials it; the agents mirror docker.io there, so pods
                                 run their images as written

Nothing routes the cluster's ranges out: the machines have no default route, and each
agent puts ``unreachable`` routes over the cluster and service ranges.

``down`` stops the processes (agents, server, relay), kills anything still running in a
machine's or pod's namespace (monitors, containers), unmounts every namespace pin under the
lab dir, removes the agents' cgroups and the lab dir. Each step is bounded and goes on
when one fails, so a half-built lab comes down too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.network import netns  # noqa: E402

LAN = "172.30.255"
API_PORT = 6443
SUPERVISOR_PORT = 9345
# where a machine's agent finds the host's registry (up --registry), on its own loopback
MACHINE_REGISTRY = "127.0.0.1:5000"
DEFAULT_DIR = Path(os.environ.get("FLOTILLA_LAB_DIR", "/tmp/flotilla-lab"))
CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
MNT_DETACH = 2
READY_TIMEOUT = 120.0


class LabError(Exception):
    pass


def machine_ip(i: int) -> str:
    return f"{LAN}.{10 + i}"


# -- state --------------------------------------------------------------------------------


def state_path(d: Path) -> Path:
    return d / "lab.json"


def load_state(d: Path) -> dict[str, Any]:
    try:
        data = json.loads(state_path(d).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(d: Path, state: dict[str, Any]) -> None:
    tmp = state_path(d).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, state_path(d))


# -- processes ----------------------------------------------------------------------------


def _python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def spawn(d: Path, name: str, ns: str | None, hostname: str, argv: list[str]) -> int:
    """Start ``argv`` in the machine namespace ``ns`` (host when None) with its own
    hostname; output to <dir>/logs/<name>.log. Returns the pid."""
    (d / "logs").mkdir(exist_ok=True)
    log = open(d / "logs" / f"{name}.log", "ab")  # handed to the child, closed here
    wrapper = [_python(), str(Path(__file__).resolve()), "_exec", ns or "-", hostname, "--"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.Popen([*wrapper, *argv], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
                                env=env)
    finally:
        log.close()
    return proc.pid


def exec_in(ns: str, hostname: str, argv: list[str]) -> None:
    """``_exec``: join the machine's network namespace, a UTS namespace of our own, exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    if ns != "-":
        fd = os.open(ns, os.O_RDONLY)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        os.close(fd)
        if libc.unshare(CLONE_NEWUTS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
        name = hostname.encode()
        if libc.sethostname(name, len(name)) != 0:
            raise OSError(ctypes.get_errno(), "sethostname")
    os.execvp(argv[0], argv)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return False
    return True


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
    if not pid or not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap(pid)
        if not alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        reap(pid)
        if not alive(pid):
            return
        time.sleep(0.02)


def ns_inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino if netns.is_pinned(path) else None
    except OSError:
        return None


def pids_in_namespaces(inodes: set[int]) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                out.append(int(entry))
        except OSError:
            continue
    return out


# -- network ------------------------------------------------------------------------------


def build_network(d: Path, n: int) -> None:
    from pyroute2 import IPRoute

    nsdir = d / "netns"
    nsdir.mkdir(parents=True, exist_ok=True)
    lan = nsdir / "lan"
    netns.create(lan)

    def lan_bridge() -> None:
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname="lab0"):
                ipr.link("add", ifname="lab0", kind="bridge")
            idx = ipr.link_lookup(ifname="lab0")[0]
            ipr.link("set", index=idx, state="up")
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")

    netns.run_in(lan, lan_bridge)
    for i in range(1, n + 1):
        m = nsdir / f"m{i}"
        netns.create(m)
        port = f"lab-m{i}"

        def plug(m: Path = m, port: str = port) -> None:
            with IPRoute() as ipr:
                if not ipr.link_lookup(ifname=port):
                    fd = os.open(m, os.O_RDONLY)
                    try:
                        ipr.link("add", ifname=port, kind="veth",
                                 peer={"ifname": "eth0", "net_ns_fd": fd})
                    finally:
                        os.close(fd)
                idx = ipr.link_lookup(ifname=port)[0]
                br = ipr.link_lookup(ifname="lab0")[0]
                ipr.link("set", index=idx, master=br, state="up")

        netns.run_in(lan, plug)

        def address(i: int = i) -> None:
            with IPRoute() as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.link("set", index=lo, state="up")
                eth = ipr.link_lookup(ifname="eth0")[0]
                with contextlib.suppress(Exception):
                    ipr.addr("add", index=eth, address=machine_ip(i), prefixlen=24)
                ipr.link("set", index=eth, state="up")

        netns.run_in(m, address)


# -- relays (host loopback <-> inside the machines) -----------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _splice(cr: asyncio.StreamReader, cw: asyncio.StreamWriter,
                  sock: socket.socket, target: tuple[str, int]) -> None:
    """Connect ``sock`` (made in the namespace it must dial from) to ``target`` and copy
    both ways until either side closes."""
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, target), 5)
    except (OSError, TimeoutError):
        sock.close()
        cw.close()
        return
    ur, uw = await asyncio.open_connection(sock=sock)
    await asyncio.gather(_pipe(cr, uw), _pipe(ur, cw))


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def relay(port_file: Path, ns: str, target: str) -> None:
    """127.0.0.1:<ephemeral port> of the host -> ``target`` dialled from inside ``ns``."""
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sock = await asyncio.to_thread(netns.run_in, ns, lambda: socket.socket())
        await _splice(cr, cw, sock, _target(target))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    bound = server.sockets[0].getsockname()[1]
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(bound))
    os.replace(tmp, port_file)
    async with server:
        await server.serve_forever()


async def registry_relay(namespaces: list[str], target: str) -> None:
    """:data:`MACHINE_REGISTRY` inside each machine's namespace -> ``target`` on the host's
    loopback (the listening sockets are made in the machines, the dialling ones here)."""
    def listener() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(_target(MACHINE_REGISTRY))
        s.listen(64)
        return s

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        await _splice(cr, cw, socket.socket(), _target(target))

    servers = [await asyncio.start_server(handle, sock=netns.run_in(ns, listener))
               for ns in namespaces]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def loopback_target(text: str) -> str:
    """``HOST:PORT`` with a loopback HOST (the lab dials nothing else on the host)."""
    host, _, port = text.rpartition(":")
    try:
        ok = ipaddress.ip_address(host).is_loopback and 0 < int(port) < 65536
    except ValueError:
        ok = False
    if not ok:
        raise LabError(f"--registry {text!r}: expected a loopback HOST:PORT, such as "
                       "127.0.0.1:5000")
    return text


# -- up / down / status -------------------------------------------------------------------


def agent_argv(d: Path, state: dict[str, Any], i: int) -> list[str]:
    node = f"{state['name']}-m{i}"
    # agents join as another machine would: through the supervisor port, with the
    # server's join token (a restarted agent reuses the certificate it got)
    return [_python(), "-m", "control.cli.main", "--server",
            f"{machine_ip(1)}:{SUPERVISOR_PORT}", "agent", "--token-file",
            str(d / "server" / "token"), "--node-name", node, "--node-ip", machine_ip(i),
            "--data-dir", str(d / f"m{i}" / "agent"), "--pod-network", "bridge",
            "--cluster-cidr", state["cluster_cidr"], "--node-status-update-frequency", "2s",
            "--proxy-mode", "nftables", "--log-format", "json",
            *(["--registry-mirror", f"docker.io={MACHINE_REGISTRY}", "--insecure-registry",
               MACHINE_REGISTRY] if state.get("registry") else [])]


def start_agent(d: Path, state: dict[str, Any], i: int) -> None:
    node = f"{state['name']}-m{i}"
    state["pids"][f"agent-m{i}"] = spawn(d, f"agent-m{i}", str(d / "netns" / f"m{i}"), node,
                                         agent_argv(d, state, i))
    save_state(d, state)


async def wait_ready(conf: Path, nodes: list[str], limit: float) -> None:
    from control.api.pb import core_pb2
    from control.client.channel import open_channel
    from control.client.client import ApiClient
    from control.client.config import read_config_file

    cfg = read_config_file(conf)
    address = cfg.server
    channel = open_channel(address, cfg.credentials)
    client = ApiClient(channel, address, timeout=5)
    deadline = time.monotonic() + limit
    last = ""
    try:
        while time.monotonic() < deadline:
            try:
                found = {n.metadata.name: n for n in (await client.list(core_pb2.Node)).items}
                ready = [n for n in nodes if n in found and any(
                    c.type == "Ready" and c.status == "True"
                    for c in found[n].status.conditions) and found[n].spec.pod_cidr]
                last = f"{len(ready)}/{len(nodes)} nodes Ready with a podCIDR"
                if len(ready) == len(nodes):
                    return
            except Exception as e:  # the server may still be starting
                last = str(e)
            await asyncio.sleep(0.5)
    finally:
        await channel.close(None)
    raise LabError(f"the cluster was not ready within {limit:.0f} s ({last})")


def up(d: Path, n: int, name: str, cluster_cidr: str, registry: str = "") -> None:
    if n < 1 or n > 200:
        raise LabError("--nodes must be between 1 and 200")
    if registry:
        loopback_target(registry)
    if load_state(d):
        raise LabError(f"a lab already exists in {d}: `scripts/lab down --dir {d}` first")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bridges, mounts)")
    d.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"name": name, "nodes": n, "cluster_cidr": cluster_cidr,
                             "registry": registry, "pids": {}, "machines": [
                                 {"name": f"{name}-m{i}", "ip": machine_ip(i),
                                  "netns": str(d / "netns" / f"m{i}")}
                                 for i in range(1, n + 1)]}
    save_state(d, state)
    try:
        build_network(d, n)
        if registry:
            state["pids"]["registry-relay"] = spawn(
                d, "registry-relay", None, "",
                [_python(), str(Path(__file__).resolve()), "_registry_relay", registry,
                 *(str(d / "netns" / f"m{i}") for i in range(1, n + 1))])
            save_state(d, state)
        state["pids"]["server"] = spawn(
            d, "server", str(d / "netns" / "m1"), f"{name}-m1",
            [_python(), "-m", "control.cli.main", "server", "--data-dir", str(d / "server"),
             "--listen", f"{machine_ip(1)}:{API_PORT}", "--cluster-cidr", cluster_cidr,
             # the machines have no default route to take an address from: the kubernetes
             # Service's endpoint (what pods reach the API at) is this machine's
             "--advertise-address", machine_ip(1),
             # the machines reach nothing outside the lab: the cluster DNS forwards nowhere
             "--dns-resolv-conf", "/dev/null", "--log-format", "json"])
        save_state(d, state)
        port_file = d / "relay.port"
        state["pids"]["relay"] = spawn(
            d, "relay", None, "", [_python(), str(Path(__file__).resolve()), "_relay",
                                   str(port_file), str(d / "netns" / "m1"),
                                   f"{machine_ip(1)}:{API_PORT}"])
        save_state(d, state)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if time.monotonic() > deadline:
                raise LabError("the API relay did not start (see logs/relay.log)")
            time.sleep(0.05)
        admin, token = d / "server" / "admin.conf", d / "server" / "token"
        while not (admin.exists() and token.exists()):
            if time.monotonic() > deadline:
                raise LabError("the server did not write admin.conf and its join token "
                               "(see logs/server.log)")
            time.sleep(0.05)
        # the server's admin credentials, through the relay (127.0.0.1 is in the
        # server's certificate)
        conf = d / "lab.conf"
        from control.client.config import config_document, read_config_file, write_config
        write_config(conf, config_document(f"127.0.0.1:{port_file.read_text().strip()}",
                                           read_config_file(admin).credentials))
        for i in range(1, n + 1):
            start_agent(d, state, i)
        asyncio.run(wait_ready(conf, [m["name"] for m in state["machines"]], READY_TIMEOUT))
    except BaseException:
        print("lab up failed; removing what was built", file=sys.stderr)
        down(d)
        raise
    print(f"lab {name}: {n} machine(s) Ready ({', '.join(m['ip'] for m in state['machines'])})",
          file=sys.stderr)
    print(f"export FLOTILLA_CONFIG={d / 'lab.conf'}")


def status(d: Path) -> int:
    state = load_state(d)
    if not state:
        print(f"no lab in {d}")
        return 1
    print(f"lab {state['name']} in {d}: cluster CIDR {state['cluster_cidr']}")
    for key, pid in sorted(state["pids"].items()):
        print(f"  {key:<12} pid {pid:<8} {'running' if alive(pid) else 'stopped'}")
    for m in state["machines"]:
        print(f"  machine {m['name']:<16} {m['ip']:<16} netns {m['netns']}")
    conf = d / "lab.conf"
    if conf.exists():
        subprocess.run([_python(), "-m", "control.cli.main", "--config", str(conf), "get",
                        "nodes", "-o", "wide"], check=False, cwd=REPO, timeout=30)
    return 0


def _unmount_under(d: Path) -> None:
    """Unmount every mount point under ``d`` (namespace pins), deepest first."""
    root = str(d.resolve())
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                points.append(point)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    for point in sorted(set(points), key=len, reverse=True):
        libc.umount2(point.encode(), MNT_DETACH)


def _remove_cgroups(nodes: list[str]) -> None:
    base = Path("/sys/fs/cgroup")
    for hierarchy in [base, *(p for p in base.iterdir() if p.is_dir())] if base.exists() \
            else []:
        for node in nodes:
            top = hierarchy / "flotilla" / node
            if not top.is_dir():
                continue
            for sub in sorted((p for p in top.rglob("*") if p.is_dir()),
                              key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
            with contextlib.suppress(OSError):
                (hierarchy / "flotilla").rmdir()  # only when nobody else is under it


def down(d: Path) -> None:
    state = load_state(d)
    pids: dict[str, int] = state.get("pids", {})
    # agents first (they would restart pods), then the server, then the relay
    for key in sorted(k for k in pids if k.startswith("agent-")):
        stop_pid(pids[key])
    for key in ("server", "relay", "registry-relay"):
        if key in pids:
            stop_pid(pids[key])
    # whatever still runs in a machine's or a pod's namespace: monitors, containers
    pins = [*(d / "netns").glob("*"), *d.glob("m*/agent/runtime/netns/*")] \
        if d.exists() else []
    inodes = {ino for p in pins if (ino := ns_inode(p)) is not None}
    for _ in range(3):
        victims = pids_in_namespaces(inodes) if inodes else []
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    if d.exists():
        _unmount_under(d)
    _remove_cgroups([m["name"] for m in state.get("machines", [])])
    shutil.rmtree(d, ignore_errors=True)
    print(f"lab in {d} removed", file=sys.stderr)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_exec"]:
        ns, hostname = argv[1], argv[2]
        exec_in(ns, hostname, argv[4:])
        return 127
    if argv[:1] == ["_relay"]:
        asyncio.run(relay(Path(argv[1]), argv[2], argv[3]))
        return 0
    if argv[:1] == ["_registry_relay"]:
        asyncio.run(registry_relay(argv[2:], argv[1]))
        return 0
    p = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                   help=f"the lab's directory (default {DEFAULT_DIR}, or $FLOTILLA_LAB_DIR)")
    sub = p.add_subparsers(dest="verb", required=True)
    u = sub.add_parser("up", help="build the machines and the cluster")
    u.add_argument("--nodes", type=int, default=2)
    u.add_argument("--name", default="lab", help="prefix of the machines' names")
    u.add_argument("--cluster-cidr", default="10.244.0.0/16")
    u.add_argument("--registry", default="", metavar="HOST:PORT",
                   help="a registry on this host's loopback for the machines' agents to "
                        "pull docker.io images from (see scripts/images)")
    sub.add_parser("status", help="machines, processes and nodes")
    sub.add_parser("down", help="remove everything the lab created")
    for verb in ("stop-agent", "start-agent"):
        s = sub.add_parser(verb, help="(tests) stop or start one machine's agent")
        s.add_argument("machine", type=int, help="machine number (1..N)")
        if verb == "stop-agent":
            s.add_argument("--kill", action="store_true", help="SIGKILL, as a crash")
    args = p.parse_args(argv)
    d = args.dir.resolve()
    try:
        if args.verb == "up":
            up(d, args.nodes, args.name, args.cluster_cidr, args.registry)
        elif args.verb == "status":
            return status(d)
        elif args.verb == "down":
            down(d)
        else:
            state = load_state(d)
            if not state or not 1 <= args.machine <= state["nodes"]:
                raise LabError(f"no machine {args.machine} in the lab at {d}")
            if args.verb == "stop-agent":
                stop_pid(state["pids"].get(f"agent-m{args.machine}", 0),
                         sig=signal.SIGKILL if args.kill else signal.SIGTERM)
            else:
                start_agent(d, state, args.machine)
    except LabError as e:
        print(f"scripts/lab: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
