"""Pods in their images, for real: an in-process control plane, an agent whose default
handler runs images, and Debian's docker-registry on loopback filled with images built
here from busybox-static. Needs root (overlay mounts) and docker-registry."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.main import Agent
from control.api import convert, errors
from control.api.pb import core_pb2
from tests.conftest import Cluster
from tests.images import builder as b
from tests.images import registry as reg
from tests.images.conftest import USERS
from tests.support import eventually
from tests.support.agents import stop_agent_and_pods
from tests.support.cluster import start_agent
from tests.support.runtimeclasses import HOST, ensure_host_runtime_class

pytestmark = [
    pytest.mark.root(reason="overlay mounts"),
    pytest.mark.skipif(not reg.available(), reason="Debian's docker-registry is missing"),
]
NODE = "img-node"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[reg.Registry]:
    with reg.running_registry(tmp_path / "registry") as (r, _):
        yield r


@pytest.fixture
def private(tmp_path: Path) -> Iterator[reg.Registry]:
    with reg.running_registry(tmp_path / "private", auth="htpasswd", users=USERS) as (r, _):
        yield r


@pytest.fixture
async def agent(
    cluster: Cluster, tmp_path: Path, registry: reg.Registry, private: reg.Registry
) -> AsyncIterator[Agent]:
    a = start_agent(cluster, NODE, tmp_path / "agent", default_runtime_handler="image",
                    insecure_registries=[registry.host, private.host],
                    kubelet={"backoff_initial": 0.5, "default_handler": "image",
                             "volume_refresh_period": 60.0, "minimum_grace": 2.0})
    await a.start()
    try:
        yield a
    finally:
        await stop_agent_and_pods(cluster, a, NODE)


def web_image(port: int, text: bytes) -> b.BuiltImage:
    site = b.layer_tar([b.Entry("www", kind="dir", mode=0o755), b.Entry("www/index.html", text)])
    return b.build_image(
        [b.busybox_layer(), site],
        {
            "Entrypoint": ["httpd", "-f"],
            "Cmd": ["-p", f"127.0.0.1:{port}", "-h", "/www"],
            "Env": ["GREETING=image"],
            "WorkingDir": "/www",
        },
    )


def pod(name: str, image: str, **spec: Any) -> core_pb2.Pod:
    return convert.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "web", "image": image}],
                **spec,
            },
        },
        core_pb2.Pod(),
    )


async def status_of(cluster: Cluster, name: str) -> core_pb2.ContainerStatus | None:
    p = await cluster.client.get(core_pb2.Pod, name, "default")
    return p.status.container_statuses[0] if p.status.container_statuses else None


async def get(url: str) -> str | None:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            r = await http.get(url)
            return r.text if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def test_pod_runs_its_image_after_the_image_appears(
    cluster: Cluster, agent: Agent, registry: reg.Registry
) -> None:
    port = reg.free_port()
    ref = f"{registry.host}/team/web:v1"
    await cluster.client.create(pod("web", ref))

    async def waiting(reason: str) -> bool:
        st = await status_of(cluster, "web")
        return st is not None and st.state.waiting.reason == reason

    await eventually(lambda: waiting("ErrImagePull"))
    await eventually(lambda: waiting("ImagePullBackOff"))
    image = web_image(port, b"hello from the image\n")
    pusher = b.Pusher(registry.url)
    pusher.image("team/web", "v1", image)
    pusher.close()

    async def running() -> core_pb2.ContainerStatus | None:
        st = await status_of(cluster, "web")
        return st if st is not None and st.state.HasField("running") else None

    st = await eventually(running, timeout=30)
    assert st.image_id == f"{registry.host}/team/web@{image.manifest.digest}"
    assert await eventually(lambda: get(f"http://127.0.0.1:{port}/")) == "hello from the image\n"

    async def pull_events() -> bool:
        events = (await cluster.client.list(core_pb2.Event, namespace="default")).items
        reasons = {e.reason for e in events if e.involved_object.name == "web"}
        # "Pulled" may fall to the Event spam filter after many failed rounds: the private
        # image test checks it
        return {"Pulling", "Failed", "BackOff"} <= reasons

    await eventually(pull_events)

    async def node_has_image() -> bool:
        node = await cluster.client.get(core_pb2.Node, NODE)
        handlers = [h.name for h in node.status.runtime_handlers]
        return handlers == ["image", "runc", "host"] and any(
            ref in i.names for i in node.status.images
        )

    await eventually(node_has_image)


async def test_private_image_with_pull_secret(
    cluster: Cluster, agent: Agent, private: reg.Registry
) -> None:
    pusher = b.Pusher(private.url, auth=("alice", USERS["alice"]))
    pusher.image(
        "secret/app",
        "v1",
        b.build_image(
            [b.busybox_layer()],
            {
                "Cmd": ["sh", "-c", "echo $GREETING from $(pwd) as $(id -u); sleep 600"],
                "Env": ["GREETING=hi"],
                "WorkingDir": "/tmp",
                "User": "web",
            },
        ),
    )
    pusher.close()
    auth = base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
    secret = core_pb2.Secret(api_version="v1", kind="Secret", type="kubernetes.io/dockerconfigjson")
    secret.metadata.name = "pull"
    secret.metadata.namespace = "default"
    secret.data[".dockerconfigjson"] = json.dumps(
        {"auths": {private.host: {"auth": auth}}}
    ).encode()
    ref = f"{private.host}/secret/app:v1"
    await cluster.client.create(pod("nosecret", ref))

    async def refused() -> bool:
        # ErrImagePull lasts only until the next sync turns it into ImagePullBackOff (a
        # poll can miss it): the pull's refusal is read from its Failed Event, which stays
        st = await status_of(cluster, "nosecret")
        if st is None or st.state.waiting.reason not in ("ErrImagePull", "ImagePullBackOff"):
            return False
        events = (await cluster.client.list(core_pb2.Event, namespace="default")).items
        return any(e.involved_object.name == "nosecret" and e.reason == "Failed"
                   and "wants credentials" in e.message for e in events)

    await eventually(refused)
    await cluster.client.create(secret)
    await cluster.client.create(pod("withsecret", ref, imagePullSecrets=[{"name": "pull"}]))

    async def running(name: str) -> bool:
        st = await status_of(cluster, name)
        return st is not None and st.state.HasField("running")

    await eventually(lambda: running("withsecret"), timeout=30)

    async def pulled() -> bool:
        events = (await cluster.client.list(core_pb2.Event, namespace="default")).items
        return any(e.reason == "Pulled" and "Successfully pulled" in e.message
                   and e.involved_object.name == "withsecret" for e in events)

    await eventually(pulled)
    log_dir = agent.options.data_dir / "pods"

    def log_text() -> str:
        return "".join(p.read_text() for p in log_dir.glob("*/logs/web/0.log"))

    async def logged() -> bool:
        return "hi from /tmp as 1000" in await asyncio.to_thread(log_text)

    await eventually(logged)


async def test_imported_image_runs_with_never_pull(
    cluster: Cluster, agent: Agent, tmp_path: Path
) -> None:
    """An air-gapped node: the image comes from `flotilla image import`, the pod says
    imagePullPolicy Never."""
    from control.cli.main import main

    image = b.build_image(
        [b.busybox_layer()], {"Cmd": ["sh", "-c", "echo imported; sleep 600"]}, flavour="docker"
    )
    archive = tmp_path / "offline.tar"
    b.docker_save(archive, [(image, ["offline/tool:2"])])
    missing = pod("early", "offline/tool:2")
    missing.spec.containers[0].image_pull_policy = "Never"
    await cluster.client.create(missing)

    async def never_pull() -> bool:
        st = await status_of(cluster, "early")
        return st is not None and st.state.waiting.reason == "ErrImageNeverPull"

    await eventually(never_pull)
    code = await asyncio.to_thread(
        main, ["image", "import", "--data-dir", str(agent.options.data_dir), str(archive)]
    )
    assert code == 0
    ready = pod("late", "offline/tool:2")
    ready.spec.containers[0].image_pull_policy = "Never"
    await cluster.client.create(ready)

    async def running() -> core_pb2.ContainerStatus | None:
        st = await status_of(cluster, "late")
        return st if st is not None and st.state.HasField("running") else None

    st = await eventually(running, timeout=30)
    assert st.image_id == image.id  # no registry digest for an imported image


async def test_no_silent_fallback_to_the_host(
    cluster: Cluster, agent: Agent, registry: reg.Registry
) -> None:
    """``image:`` means the image: a pod naming no RuntimeClass whose image cannot be
    pulled waits in ErrImagePull/ImagePullBackOff and never runs the host's sh instead;
    the host's files are used only through a RuntimeClass that exists and says so."""
    ref = f"{registry.host}/absent/app:v1"
    sh = [{"name": "web", "image": ref, "command": ["sh", "-c", "echo ran-on-host; sleep 600"]}]
    with pytest.raises(errors.Forbidden, match=f'RuntimeClass "{HOST}" not found'):
        await cluster.client.create(pod("named", ref, runtimeClassName=HOST, containers=sh))
    plain = await cluster.client.create(pod("plain", ref, containers=sh))

    async def waiting(*reasons: str) -> bool:
        st = await status_of(cluster, "plain")
        return st is not None and st.state.waiting.reason in reasons

    # ErrImagePull lasts only until the next sync turns it into ImagePullBackOff: a poll can
    # miss it, so the attempt is read from the Failed Events below
    await eventually(lambda: waiting("ErrImagePull", "ImagePullBackOff"))
    await eventually(lambda: waiting("ImagePullBackOff"))

    async def pull_events() -> set[str]:
        events = (await cluster.client.list(core_pb2.Event, namespace="default")).items
        return {e.reason for e in events if e.involved_object.name == "plain"
                and (e.reason == "BackOff" or ref in e.message)}

    assert {"Failed", "BackOff"} <= await eventually(
        lambda: _superset(pull_events, {"Failed", "BackOff"}))
    p = await cluster.client.get(core_pb2.Pod, "plain", "default")
    st = p.status.container_statuses[0]
    assert p.status.phase == "Pending"
    assert not st.state.HasField("running") and not st.last_state.HasField("terminated")
    assert st.restart_count == 0 and not st.container_id
    pods = agent.options.data_dir / "pods"
    assert not list((pods / plain.metadata.uid).glob("logs/web/*.log"))

    await ensure_host_runtime_class(cluster.client)
    await ensure_host_runtime_class(cluster.client)  # idempotent
    onhost = await cluster.client.create(
        pod("onhost", ref, runtimeClassName=HOST, containers=sh))

    async def ran_on_host() -> bool:
        logs = await asyncio.to_thread(
            lambda: "".join(f.read_text() for f in
                            (pods / onhost.metadata.uid).glob("logs/web/*.log")))
        return "ran-on-host" in logs

    await eventually(ran_on_host, timeout=30)
    st = await status_of(cluster, "plain")
    assert st is not None and st.state.HasField("waiting") and st.restart_count == 0


async def _superset(get: Any, want: set[str]) -> set[str] | None:
    got: set[str] = await get()
    return got if want <= got else None
