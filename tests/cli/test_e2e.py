"""End to end: a real `flotilla server` subprocess and the CLI driven as subprocesses.

One server per module (module-scoped fixture, port 0, address read from DIR/admin.conf);
every object a test makes has a name of its own, so tests do not depend on each other's
order. Every subprocess has a timeout and the server is stopped in the fixture's finally.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "control.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
CMD_TIMEOUT = 30.0
# the root CA bundle every namespace gets, as in Kubernetes
ROOT_CA = "kube-root-ca.crt"


# the module's server's admin.conf (its credentials), once the fixture has started it
_ADMIN_CONF: dict[str, str] = {}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FLOTILLA_CONFIG", None)
    if "path" in _ADMIN_CONF:
        env["FLOTILLA_CONFIG"] = _ADMIN_CONF["path"]
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("server")
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            *CLI,
            "server",
            "--data-dir",
            str(data_dir),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--event-ttl",
            "5m",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        cwd=ROOT,
    )
    try:
        conf = data_dir / "admin.conf"
        deadline = time.monotonic() + START_TIMEOUT
        while not conf.exists():
            if proc.poll() is not None:
                log.flush()
                pytest.fail(
                    f"flotilla server exited with {proc.returncode}:\n"
                    f"{(data_dir / 'server.log').read_text()}"
                )
            if time.monotonic() > deadline:
                pytest.fail("flotilla server did not write admin.conf in time")
            time.sleep(0.05)
        _ADMIN_CONF["path"] = str(conf)
        yield yaml.safe_load(conf.read_text())["server"]
    finally:
        _ADMIN_CONF.pop("path", None)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


class Flotilla:
    def __init__(self, address: str, cwd: Path) -> None:
        self.address = address
        self.cwd = cwd

    def __call__(
        self, *args: str, stdin: str | None = None, timeout: float = CMD_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args, "--server", self.address],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env(),
            cwd=self.cwd,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        r = self(*args, stdin=stdin)
        assert r.returncode == 0, f"flotilla {' '.join(args)}: {r.returncode}\n{r.stderr}"
        assert "Traceback" not in r.stderr
        return r.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, *args, "--server", self.address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=self.cwd,
        )

    def get_json(self, *args: str) -> dict:
        return json.loads(self.ok("get", *args, "-o", "json"))  # type: ignore[no-any-return]


@pytest.fixture
def fl(server: str, tmp_path: Path) -> Flotilla:
    return Flotilla(server, tmp_path)


def _write(path: Path, docs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _cm(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict:
    meta: dict = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=5)


# -- tests --------------------------------------------------------------------------------


def test_apply_examples_then_unchanged(fl: Flotilla) -> None:
    examples = ROOT / "examples"
    out = fl.ok("apply", "-f", str(examples))
    assert "namespace/demo created" in out
    assert "deployment.apps/web created" in out
    assert "service/web created" in out and "configmap/web-settings created" in out
    applied = len(out.splitlines())
    out = fl.ok("apply", "-f", str(examples))
    assert out.count("unchanged") == applied == len(out.splitlines()), out
    deploy = fl.get_json("deploy", "web", "-n", "demo")
    assert deploy["kind"] == "Deployment" and deploy["spec"]["replicas"] == 2
    recorded = deploy["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(recorded)["metadata"]["name"] == "web"
    # without a name: always a List, even for one match
    listed = fl.get_json("configmaps", "-n", "demo")
    assert listed["kind"] == "List" and [
        i["metadata"]["name"] for i in listed["items"] if i["metadata"]["name"] != ROOT_CA
    ] == ["web-settings"]
    assert fl.ok("get", "svc/web", "-n", "demo", "-o", "name").strip() == "service/web"


def test_get_empty_and_namespaced_message(fl: Flotilla) -> None:
    fl.ok("create", "namespace", "empty-ns")
    r = fl("get", "pods", "-n", "empty-ns")
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr.strip() == "No resources found in empty-ns namespace."
    listed = fl.get_json("pods", "-n", "empty-ns")
    assert listed["kind"] == "List" and listed["items"] == []


def test_reapply_prunes_dropped_fields_and_keeps_cluster_set_ones(
    fl: Flotilla, tmp_path: Path
) -> None:
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "np", "labels": {"app": "np", "tier": "front"}},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "np"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }
    f = _write(tmp_path / "svc.yaml", [svc])
    assert fl.ok("apply", "-f", str(f)).strip() == "service/np created"
    # someone else (here: by hand; normally the cluster) sets fields apply never set
    fl.ok(
        "patch",
        "svc",
        "np",
        "--type",
        "strategic",
        "-p",
        '{"spec":{"ports":[{"port":80,"nodePort":30080}]}}',
    )
    fl.ok("label", "svc", "np", "owner=ops")
    del svc["metadata"]["labels"]["tier"]
    _write(f, [svc])
    assert fl.ok("apply", "-f", str(f)).strip() == "service/np configured"
    live = fl.get_json("svc", "np")
    assert live["metadata"]["labels"] == {"app": "np", "owner": "ops"}
    assert live["spec"]["ports"][0]["nodePort"] == 30080
    assert fl.ok("apply", "-f", str(f)).strip() == "service/np unchanged"


def test_bad_file_writes_nothing(fl: Flotilla, tmp_path: Path) -> None:
    good = _cm("bad-file-good", {"a": "1"})
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad-file-deploy"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "bogus": True},
    }
    f = _write(tmp_path / "mixed.yaml", [good, bad])
    r = fl("apply", "-f", str(f))
    assert r.returncode == 1
    assert r.stdout == ""
    assert str(f) in r.stderr and "document 2" in r.stderr and "spec.bogus" in r.stderr
    assert "Traceback" not in r.stderr
    r = fl("get", "cm", "bad-file-good")
    assert r.returncode == 1 and "not found" in r.stderr
    # malformed YAML: the file and document are named, nothing is written
    f.write_text(yaml.safe_dump(good) + "---\nkind: [\n")
    r = fl("apply", "-f", str(f))
    assert r.returncode == 1 and "document 2" in r.stderr and "Traceback" not in r.stderr


def test_server_refusal_is_per_object(fl: Flotilla, tmp_path: Path) -> None:
    f = _write(
        tmp_path / "two.yaml",
        [
            {
                **_cm("per-object-a", {"k": "v"}),
                "metadata": {"name": "per-object-a", "namespace": "does-not-exist"},
            },
            _cm("per-object-b", {"k": "v"}),
        ],
    )
    r = fl("apply", "-f", str(f))
    assert r.returncode == 1
    assert "configmap/per-object-b created" in r.stdout
    assert r.stderr.startswith("error: ") and "does-not-exist" in r.stderr


def test_namespace_conflict_with_flag(fl: Flotilla, tmp_path: Path) -> None:
    doc = _cm("ns-conflict", {"k": "v"})
    doc["metadata"]["namespace"] = "demo"
    f = _write(tmp_path / "ns.yaml", [doc])
    r = fl("apply", "-f", str(f), "-n", "default")
    assert r.returncode == 1 and "does not match the namespace" in r.stderr


def test_dry_run_writes_nothing(fl: Flotilla, tmp_path: Path) -> None:
    f = _write(tmp_path / "dry.yaml", [_cm("dry", {"k": "v"})])
    assert fl.ok("apply", "-f", str(f), "--dry-run=server").strip() == (
        "configmap/dry created (server dry run)"
    )
    assert fl.ok("apply", "-f", str(f), "--dry-run=client").strip() == (
        "configmap/dry created (dry run)"
    )
    assert fl.ok("create", "-f", str(f), "--dry-run=server").strip() == (
        "configmap/dry created (server dry run)"
    )
    assert fl("get", "cm", "dry").returncode == 1


def test_create_label_annotate_patch_delete(fl: Flotilla, tmp_path: Path) -> None:
    f = _write(tmp_path / "c.yaml", [_cm("meta", {"k": "v"}, {"app": "x"})])
    assert fl.ok("create", "-f", str(f)).strip() == "configmap/meta created"
    r = fl("create", "-f", str(f))
    assert r.returncode == 1 and "already exists" in r.stderr
    assert fl.ok("label", "cm", "meta", "team=a").strip() == "configmap/meta labeled"
    r = fl("label", "cm/meta", "team=b")
    assert r.returncode == 1 and "--overwrite" in r.stderr
    fl.ok("label", "cm/meta", "team=b", "--overwrite")
    fl.ok("label", "cm", "meta", "app-")
    fl.ok("annotate", "configmap", "meta", "note=hello")
    live = fl.get_json("cm", "meta")
    assert live["metadata"]["labels"] == {"team": "b"}
    assert live["metadata"]["annotations"]["note"] == "hello"
    out = fl.ok("patch", "cm", "meta", "--type", "merge", "-p", '{"data":{"k":"w"}}')
    assert out.strip() == "configmap/meta patched"
    assert fl.get_json("cm", "meta")["data"] == {"k": "w"}
    assert fl.ok("delete", "cm", "meta").strip() == 'configmap "meta" deleted'
    r = fl("delete", "cm", "meta")
    assert r.returncode == 1 and 'configmaps "meta" not found' in r.stderr


def test_history_table_diff_and_json(fl: Flotilla, tmp_path: Path) -> None:
    f = _write(tmp_path / "h.yaml", [_cm("hist", {"k": "one"})])
    fl.ok("apply", "-f", str(f))
    fl.ok("patch", "cm", "hist", "--type", "merge", "-p", '{"data":{"k":"two"}}')
    table = fl.ok("history", "cm", "hist").splitlines()
    assert table[0].split()[:3] == ["REVISION", "TYPE", "GENERATION"]
    assert [line.split()[1] for line in table[1:]] == ["ADDED", "MODIFIED"]
    diff = fl.ok("history", "configmap/hist", "--diff")
    assert "-  k: one" in diff and "+  k: two" in diff
    revisions = json.loads(fl.ok("history", "cm", "hist", "-o", "json"))
    assert revisions["kind"] == "List"
    assert [i["data"]["k"] for i in revisions["items"]] == ["one", "two"]


def test_diff(fl: Flotilla, tmp_path: Path) -> None:
    f = _write(tmp_path / "d.yaml", [_cm("difftest", {"k": "one"})])
    r = fl("diff", "-f", str(f))
    assert r.returncode == 1 and "+  k: one" in r.stdout  # not there yet: all added
    fl.ok("apply", "-f", str(f))
    r = fl("diff", "-f", str(f))
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    _write(f, [_cm("difftest", {"k": "two"})])
    r = fl("diff", "-f", str(f))
    assert r.returncode == 1
    assert "-  k: one" in r.stdout and "+  k: two" in r.stdout
    assert fl.get_json("cm", "difftest")["data"] == {"k": "one"}  # diff changed nothing


def test_wait_jsonpath_condition_and_delete(fl: Flotilla, tmp_path: Path) -> None:
    f = _write(tmp_path / "w.yaml", [_cm("waiter", {"state": "starting"})])
    fl.ok("apply", "-f", str(f))
    waiter = fl.popen("wait", "--for=jsonpath={.data.state}=ready", "cm/waiter", "--timeout", "20s")
    try:
        time.sleep(0.5)
        fl.ok("patch", "cm", "waiter", "--type", "merge", "-p", '{"data":{"state":"ready"}}')
        out, err = waiter.communicate(timeout=20)
    finally:
        _stop(waiter)
    assert waiter.returncode == 0, err
    assert out.strip() == "configmap/waiter condition met"

    started = time.monotonic()
    r = fl("wait", "--for=condition=Ready", "cm", "waiter", "--timeout", "1s")
    assert r.returncode == 1 and "timed out waiting for the condition" in r.stderr
    assert time.monotonic() - started < 10

    waiter = fl.popen("wait", "--for=delete", "configmap/waiter", "--timeout", "20s")
    try:
        time.sleep(0.5)
        fl.ok("delete", "cm", "waiter")
        out, err = waiter.communicate(timeout=20)
    finally:
        _stop(waiter)
    assert waiter.returncode == 0, err


def test_pod_graceful_then_forced_delete(fl: Flotilla, tmp_path: Path) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stuck"},
        "spec": {
            "nodeName": "no-such-node",
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }
    f = _write(tmp_path / "pod.yaml", [pod])
    fl.ok("apply", "-f", str(f))
    # bound to a node: a normal delete only marks it (no agent will ever confirm)
    assert fl.ok("delete", "pod", "stuck").strip() == 'pod "stuck" deleted'
    assert fl.get_json("pod", "stuck")["metadata"].get("deletionTimestamp")
    r = fl("delete", "pod", "stuck", "--force", "--grace-period", "0")
    assert r.returncode == 0 and r.stdout.strip() == 'pod "stuck" force deleted'
    assert fl("get", "pod", "stuck").returncode == 1


def test_get_watch_flushes_each_line(fl: Flotilla, tmp_path: Path) -> None:
    lines: queue.Queue[str] = queue.Queue()
    watcher = fl.popen("get", "configmaps", "-n", "watch-ns", "-w", "--watch-only", "-o", "name")
    stdout = watcher.stdout
    assert stdout is not None

    def read() -> None:
        for line in iter(stdout.readline, ""):
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        fl.ok("create", "namespace", "watch-ns")
        time.sleep(0.5)
        f = _write(tmp_path / "w.yaml", [_cm("watched", {"k": "v"})])
        fl.ok("apply", "-f", str(f), "-n", "watch-ns")
        # the namespace is new: its root CA bundle may arrive first
        seen = [lines.get(timeout=15).strip()]
        if seen[0] == f"configmap/{ROOT_CA}":
            seen.append(lines.get(timeout=15).strip())
        assert seen[-1] == "configmap/watched", seen
    finally:
        _stop(watcher)


def test_unreachable_server_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    r = subprocess.run(
        [*CLI, "get", "pods", "--server", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
        env=_env(),
        cwd=ROOT,
    )
    assert time.monotonic() - started < 10
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "127.0.0.1:1" in lines[0]
    assert "Traceback" not in r.stderr


def test_config_file_and_env_lookup(server: str, tmp_path: Path) -> None:
    conf = tmp_path / "my.conf"
    # the server's credentials, the server's address
    conf.write_text(yaml.safe_dump({**yaml.safe_load(Path(_ADMIN_CONF["path"]).read_text()),
                                    "server": server}))
    env = {**_env(), "FLOTILLA_CONFIG": str(conf)}
    r = subprocess.run(
        [*CLI, "get", "ns", "default", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
        env=env,
        cwd=ROOT,
    )
    assert (r.returncode, r.stdout.strip()) == (0, "namespace/default"), r.stderr
    r = subprocess.run(
        [*CLI, "--config", str(conf), "get", "ns", "default", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
        env=_env(),
        cwd=ROOT,
    )
    assert (r.returncode, r.stdout.strip()) == (0, "namespace/default"), r.stderr


def test_describe(fl: Flotilla, tmp_path: Path) -> None:
    pytest.importorskip("control.cli.describe")
    f = _write(tmp_path / "desc.yaml", [_cm("described", {"k": "v"}, {"app": "d"})])
    fl.ok("apply", "-f", str(f))
    out = fl.ok("describe", "cm", "described")
    assert "described" in out and "app=d" in out
    r = fl("describe", "cm", "nope")
    assert r.returncode == 1 and "not found" in r.stderr


def test_get_pods_loads_only_what_it_prints(fl: Flotilla, tmp_path: Path) -> None:
    # A read-only verb imports the message module of the kind it lists and no other, no
    # logging and no cryptography (YAML it needs: the config file holds its credentials).
    fl.ok("create", "namespace", "quick-imports")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "quick-imports"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    }
    fl.ok("apply", "-f", str(_write(tmp_path / "pod.yaml", [pod])))
    script = (
        "import json, sys\n"
        "from control.cli.main import main\n"
        f"rc = main(['--server', {fl.address!r}, '-n', 'quick-imports', 'get', 'pods'])\n"
        "print(json.dumps([rc, sorted(sys.modules)]))"
    )
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=CMD_TIMEOUT,
        env=_env(), cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rc, modules = json.loads(r.stdout.splitlines()[-1])
    assert rc == 0 and r.stdout.splitlines()[1].startswith("p ")
    messages = {m for m in modules if m.startswith("control.api.pb.")}
    assert messages == {
        "control.api.pb.api_pb2", "control.api.pb.api_pb2_grpc",
        "control.api.pb.core_pb2", "control.api.pb.meta_pb2",
    }
    assert not [m for m in modules if m.startswith(("structlog", "cryptography"))]
