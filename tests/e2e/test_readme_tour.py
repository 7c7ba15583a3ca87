"""The README's tour works as written: its commands, read from README.md, run in order
against `flotilla server --with-agent` with the images of `scripts/images` in a loopback
registry, each exiting 0 (`diff`: 0 or 1), with the placeholders (POD, NODE,
ADDRESS:PORT) filled in as a reader would and the prose's one edit (a changed pod
template, applied) made between the blocks."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.servers import start_server, stop
from tests.images import publish
from tests.images import registry as reg
from tests.support.agents import remove_leftovers

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 120.0


@dataclass
class Step:
    argv: str
    stdin: str = ""
    block: int = 0


def tour_steps(readme: str) -> list[Step]:
    """The commands of the tour's code blocks: from "A five-minute tour" to the next
    top-level section; shell set-up (scripts/, export) and watches (-w) left out."""
    section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    block = 0
    lines = section.splitlines()
    i = 0
    in_block = False
    while i < len(lines):
        line = lines[i]
        if not line.startswith("    "):
            if in_block and line.strip():
                in_block = False
            i += 1
            continue
        if not in_block:
            in_block, block = True, block + 1
        text = line.strip()
        i += 1
        if not (text.startswith("flotilla ") or text.startswith("python -m dnslib")):
            continue
        command = text.split("  #", 1)[0].strip()
        stdin = ""
        if command.endswith("<<'EOF'"):
            command = command[: -len("<<'EOF'")].strip()
            body = []
            while lines[i].strip() != "EOF":
                body.append(lines[i][4:])
                i += 1
            i += 1
            stdin = "\n".join(body) + "\n"
        if " -w" in command:
            continue
        steps.append(Step(command, stdin, block))
    return steps


def test_tour_steps_are_read_from_the_readme() -> None:
    steps = tour_steps((ROOT / "README.md").read_text())
    commands = [s.argv for s in steps]
    assert "flotilla apply -f examples/" in commands
    assert commands[-1] == "flotilla delete -f examples/ --wait"
    assert any(s.stdin.startswith("apiVersion: node.k8s.io/v1") for s in steps)
    assert not any(" -w" in c for c in commands)


@pytest.fixture
def images(tmp_path: Path) -> Iterator[str]:
    """The registry `scripts/images` fills, on a free loopback port."""
    with reg.running_registry(tmp_path / "registry") as (registry, _):
        publish.push_all(registry.host)
        yield registry.host


class Shell:
    """Runs the tour's commands as a reader's shell would, in a directory holding a copy
    of examples/."""

    def __init__(self, cwd: Path, config: Path) -> None:
        self.cwd = cwd
        self.env = dict(os.environ, FLOTILLA_CONFIG=str(config), PYTHONPATH=str(ROOT))
        self.values: dict[str, str] = {}

    def run(self, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        for name, value in self.values.items():
            command = re.sub(rf"\b{re.escape(name)}\b", value, command)
        words = command.split()
        if words[0] == "flotilla":
            argv = [sys.executable, "-m", "control.cli.main", *words[1:]]
        else:
            argv = [sys.executable, *words[1:]]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              cwd=self.cwd, env=self.env, timeout=COMMAND_TIMEOUT)

    def ok(self, command: str, stdin: str = "", codes: tuple[int, ...] = (0,)) -> str:
        proc = self.run(command, stdin)
        assert proc.returncode in codes, (
            f"{command!r} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}")
        return proc.stdout

    def wait_for(self, command: str, timeout: float = 60.0) -> str:
        """The output of ``command`` once it succeeds with some output."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.run(command)
            if proc.returncode == 0 and proc.stdout.strip():
                return proc.stdout
            assert time.monotonic() < deadline, f"{command!r}: {proc.stderr or proc.stdout}"
            time.sleep(0.5)


def change_the_template(examples: Path) -> None:
    """The prose's edit: the container gets its own GREETING."""
    path = examples / "20-deployment.yaml"
    text = path.read_text()
    marker = "          envFrom:\n"
    assert marker in text
    path.write_text(text.replace(
        marker, "          env:\n            - name: GREETING\n              value: hello again\n"
        + marker, 1))


@pytest.mark.root(reason="the tour's pods get their own hostname and namespaces as root")
def test_readme_tour(tmp_path: Path, images: str) -> None:
    data = tmp_path / "server"
    dns_port = reg.free_port()
    proc = start_server(
        data, "--with-agent", "--registry-mirror", f"docker.io={images}",
        "--insecure-registry", images, "--dns-listen", f"127.0.0.1:{dns_port}",
        log=tmp_path / "server.log")
    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples", work / "examples")
    sh = Shell(work, data / "admin.conf")
    toured = False
    try:
        # the in-process agent registers its node, Ready, while the reader opens a terminal
        sh.values["NODE"] = sh.wait_for("flotilla get nodes -o jsonpath={.items[0].metadata.name}")
        sh.ok("flotilla wait --for=condition=Ready node/NODE --timeout 60s")
        steps = tour_steps((ROOT / "README.md").read_text())
        first_block = steps[0].block
        for step in steps:
            if step.block == first_block + 1 and "_edited" not in sh.values:
                change_the_template(work / "examples")
                sh.ok("flotilla apply -f examples/")
                sh.ok("flotilla rollout status deployment/web -n demo --timeout 90s")
                sh.values["_edited"] = "yes"
            if "POD" in step.argv.split():
                sh.values["POD"] = sh.ok(
                    "flotilla get pods -n demo -l app=web "
                    "--field-selector status.phase=Running "
                    "-o jsonpath={.items[0].metadata.name}")
            if "ADDRESS:PORT" in step.argv:
                # the DNS listens on loopback here (tests send nothing to the machine's
                # address), which kube-dns' Endpoints do not list: the reader's
                # ADDRESS:PORT is where it listens
                sh.values["ADDRESS:PORT"] = f"127.0.0.1:{dns_port}"
            out = sh.ok(step.argv, step.stdin,
                        codes=(0, 1) if step.argv.startswith("flotilla diff") else (0,))
            if step.argv.startswith("flotilla exec"):
                assert out.strip() == sh.values["POD"]
            if step.argv.startswith("flotilla logs db-0"):
                # started twice (the pod deleted in between), on the same data
                assert len(out.split()) >= 2 * len("Tue Dec 8 01:00:00 UTC 2026".split()), out
            elif step.argv.startswith("flotilla logs"):
                # the new pods', or an old one still stopping (kubectl's pick: the pod
                # ready the longest)
                assert out.startswith(("hello again", "hello from flotilla")), out
            if "dnslib" in step.argv and "SRV" not in step.argv:
                cluster_ip = sh.ok("flotilla get svc web -n demo -o jsonpath={.spec.clusterIP}")
                assert out.split() == [cluster_ip]
        assert sh.values.get("_edited")
        toured = True
    finally:
        # the in-process agent leaves its containers running when the server stops (as
        # an agent does): whatever the tour did not remove goes here, and counts
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            stop(proc)
        node = sh.values.get("NODE", "")
        leaked = asyncio.run(remove_leftovers(data / "agent" / node, node)) if node else []
    if toured:
        assert leaked == [], f"the tour left these containers running: {leaked}"
