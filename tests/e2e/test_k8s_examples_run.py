"""Kubernetes' own Pod examples run unchanged on a real agent, on this machine's files.

The corpus is ``/work/shared/k8s-examples`` (Kubernetes' documentation manifests; see its
README.md and INDEX.tsv). Selected: every Pod document whose images are all busybox, alpine
or bash and whose containers all have an explicit ``command`` — or give only ``args``,
which for busybox (no entrypoint) are the command line. These need no image: the host's
commands run them.

Each document is created as written except for three fields the harness sets: its
``metadata.namespace`` (one namespace per document, so the several ``dapi-test-pod``s do not
collide), ``spec.nodeName`` (the scheduler is not part of this test) and
``spec.runtimeClassName: host`` (the RuntimeClass the harness creates, without which the pods
would run in their images, which this machine cannot pull). The ConfigMaps and
Secrets the documentation tells the reader to create first are created in that namespace
(taken from the corpus where it has them, see :data:`SUPPORT`). All pods run concurrently;
each must reach its expected state within one overall bound.

Expected states: by default Running (every app container running, or — restartPolicy
Always with a command that ends — having run and exited 0) or Succeeded. :data:`EXPECTED`
lists the documents that must end otherwise, each with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.main import Agent
from control.api import convert, errors
from control.api.pb import core_pb2
from control.cli.manifest import parse_text
from tests.conftest import Cluster
from tests.support.agents import stop_agent_and_pods
from tests.support.cluster import start_agent
from tests.support.runtimeclasses import HOST, ensure_host_runtime_class

CORPUS = Path("/work/shared/k8s-examples")
NODE = "examples-node"
OVERALL_LIMIT = 60.0
IMAGE = re.compile(r"(^|/)(busybox|alpine|bash)(:|@|$)")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# What the examples' pages have the reader create before the pod (ConfigMaps with the keys
# the pods read; the corpus's configmap/configmaps.yaml and configmap-multikeys.yaml both
# define special-config, with different keys, so their union is used).
SUPPORT: list[dict[str, Any]] = [
    {"kind": "ConfigMap", "metadata": {"name": "special-config"},
     "data": {"special.how": "very", "SPECIAL_LEVEL": "very", "SPECIAL_TYPE": "charm"}},
    {"kind": "ConfigMap", "metadata": {"name": "env-config"}, "data": {"log_level": "INFO"}},
    {"kind": "ConfigMap", "metadata": {"name": "game-demo"},
     "data": {"player_initial_lives": "3", "ui_properties_file_name": "user-interface.properties",
              "game.properties": "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n",
              "user-interface.properties": "color.good=purple\ncolor.bad=yellow\n"}},
    {"kind": "ConfigMap", "metadata": {"name": "myconfigmap"},
     "data": {"username": "k8s-admin", "access_level": "1", "config": "some-config"}},
    {"kind": "Secret", "metadata": {"name": "mysecret"},
     "data": {"username": _b64("my-app"), "password": _b64("39528$vdg7Jb")}},
    {"kind": "Secret", "metadata": {"name": "mysecret2"},
     "data": {"password": _b64("39528$vdg7Jb")}},
    {"kind": "Secret", "metadata": {"name": "user"}, "data": {"username": _b64("admin")}},
    {"kind": "Secret", "metadata": {"name": "pass"}, "data": {"password": _b64("1f2d1e2e67df")}},
]

# Documents that do not reach Running/Succeeded, and the state they must reach instead.
# Each check gets the pod and returns True once it holds.
EXPECTED: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "pods/storage/expandable-pvc-pod.yaml": (
        "its claim is not part of the document: the pod waits in ContainerCreating, its "
        "container status naming the missing claim, as the kubelet's FailedMount does",
        lambda p: p.status.phase == "Pending" and any(
            'persistentvolumeclaim "expandable-pvc" not found' in cs.state.waiting.message
            for cs in p.status.container_statuses)),
    "pods/storage/projected-clustertrustbundle.yaml": (
        "clusterTrustBundle projections need the certificates API: refused by name",
        lambda p: p.status.phase == "Pending" and any(
            "not supported" in cs.state.waiting.message for cs in p.status.container_statuses)),
}

# Documents refused at creation, by name: (why, what the error must say).
REFUSED: dict[str, tuple[str, str]] = {
    "pods/emptydir-volume-mode.yaml": (
        "emptyDir.mode is newer than Flotilla's API types: refused with the field's path",
        'spec.volumes[0].emptyDir.mode: unknown field "mode"'),
}

# Log lines some examples must print (what their documentation pages show).
LOGS: dict[str, str] = {
    "pods/pod-configmap-env-var-valueFrom.yaml": "very charm",
    "pods/inject/dependent-envars.yaml": "https://172.17.0.1:80",
    "pods/pod-configmap-volume-specific-key.yaml": "very",
    "configmap/env-configmap.yaml": "username=k8s-admin",
    "service/networking/hostaliases-pod.yaml": "foo.remote",
    "debug/counter-pod.yaml": "0: ",
}


def selected() -> list[tuple[str, str]]:
    """(path, name) of every Pod document the corpus's README counts as runnable."""
    out = []
    with open(CORPUS / "INDEX.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["kind"] != "Pod":
                continue
            images = [i for i in row["images"].split(",") if i]
            if not images or not all(IMAGE.search(i) for i in images):
                continue
            busybox_args = "args" in row["features"].split(",") and all(
                "busybox" in i for i in images)
            if row["all_containers_have_command"] == "yes" or busybox_args:
                out.append((row["path"], row["name"]))
    return out


def namespace_for(index: int) -> str:
    return f"ex-{index:02d}"


def ran_ok(p: Any) -> bool:
    """Running with every app container running or done with exit 0, or Succeeded."""
    if p.status.phase == "Succeeded":
        return True
    if p.status.phase != "Running" or len(p.status.container_statuses) != len(
            p.spec.containers):
        return False
    for cs in p.status.container_statuses:
        if cs.state.HasField("running"):
            continue
        done = cs.state.terminated if cs.state.HasField("terminated") else \
            cs.last_state.terminated
        if not (cs.state.HasField("terminated") or cs.last_state.HasField("terminated")) \
                or done.exit_code != 0:
            return False
    return True


@pytest.fixture
async def agent(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Agent]:
    # slower timings than the other e2e tests: many pods start at once here
    a = start_agent(cluster, NODE, tmp_path / "agent", node_status_update_frequency=1.0,
                    lease_renew_interval=1.0,
                    kubelet={"sync_period": 5.0, "relist_period": 0.5, "backoff_initial": 1.0,
                             "backoff_max": 5.0, "retry_period": 1.0,
                             "volume_refresh_period": 60.0, "minimum_grace": 2.0})
    await a.start()
    try:
        yield a
    finally:
        await stop_agent_and_pods(cluster, a, NODE)


async def create_example(cluster: Cluster, index: int, path: str,
                         name: str) -> core_pb2.Pod:
    c = cluster.client
    ns = namespace_for(index)
    await c.create(convert.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}}, core_pb2.Namespace()))
    for obj in SUPPORT:
        data = {"apiVersion": "v1", **obj, "metadata": {**obj["metadata"], "namespace": ns}}
        await c.create(convert.from_dict(data, getattr(core_pb2, obj["kind"])()))
    pod: core_pb2.Pod | None = None
    for doc in parse_text((CORPUS / path).read_text(), path):
        kind = doc.data.get("kind")
        if kind in ("ConfigMap", "Secret"):  # shipped beside the pod (secret/dotfile-secret)
            doc.data.setdefault("metadata", {})["namespace"] = ns
            await c.create(convert.from_dict(doc.data, getattr(core_pb2, kind)()))
        elif kind == "Pod" and doc.data["metadata"]["name"] == name:
            pod = convert.from_dict(doc.data, core_pb2.Pod())
    assert pod is not None, f"{path}: no Pod {name}"
    pod.metadata.namespace = ns
    pod.spec.node_name = NODE
    pod.spec.runtime_class_name = HOST
    return await c.create(pod)


async def test_k8s_pod_examples_run(cluster: Cluster, agent: Agent) -> None:
    examples = selected()
    assert len(examples) >= 40, examples  # README: 47 with command + 7 args-only (and docs
    c = cluster.client  # with other images are not selected)
    await ensure_host_runtime_class(c)
    failures: dict[str, str] = {}
    last: dict[str, Any] = {}

    async def run_one(index: int, path: str, name: str) -> None:
        ns = namespace_for(index)
        try:
            await create_example(cluster, index, path, name)
        except errors.ApiError as e:
            if path not in REFUSED or REFUSED[path][1] not in str(e):
                failures[path] = f"refused at create: {e}"
            return
        if path in REFUSED:
            failures[path] = "accepted, but expected to be refused"
        check = EXPECTED[path][1] if path in EXPECTED else ran_ok
        while True:
            p = last[path] = await c.get(core_pb2.Pod, name, ns)
            if check(p):
                break
            await asyncio.sleep(0.25)
        if path in LOGS:
            want = LOGS[path]
            while want not in (text := b"".join(
                    [x async for x in c.logs(ns, name)]).decode(errors="replace")):
                await asyncio.sleep(0.25)
            assert want in text

    tasks = {path: asyncio.create_task(run_one(i, path, name), name=path)
             for i, (path, name) in enumerate(examples)}
    _, pending = await asyncio.wait(tasks.values(), timeout=OVERALL_LIMIT)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for path, t in tasks.items():
        if t in pending:
            p = last.get(path)
            failures.setdefault(path, f"not in its expected state after {OVERALL_LIMIT} s; "
                                      f"last status: {p.status if p is not None else None}")
        elif (e := t.exception()) is not None:
            failures[path] = repr(e)
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))
