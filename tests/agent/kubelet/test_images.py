"""The kubelet's side of images against the in-memory image service and runtime: pull
policies, ErrImagePull -> ImagePullBackOff -> Running, pull secrets, Events, imageID,
Entrypoint/Cmd/Env/WorkingDir/User from the image, RuntimeClass handlers, image GC."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from agent.images.auth import Credential
from agent.images.errors import NotFound
from agent.images.fake import FakeImageService
from agent.images.image import FsUsage, Image
from agent.images.manifest import ImageConfig
from agent.kubelet import container_spec
from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.fetch import M
from agent.kubelet.image_gc import GCPolicy, ImageGC, bytes_to_free, images_to_remove
from agent.kubelet.images import ImagePuller
from agent.kubelet.node_status import node_images
from agent.kubelet.sync import PodState, PodSyncer, SyncConfig
from agent.runtime.fake import FakeRuntime
from control.api import convert
from control.api.kinds import by_message
from control.api.pb import core_pb2, node_pb2
from control.runtime.clock import FakeClock
from control.runtime.events import FakeRecorder

REG = "registry.example.com"


def make_pod(containers: list[dict[str, Any]], **spec: Any) -> core_pb2.Pod:
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "uid": "uid-1"},
           "spec": {"nodeName": "n1", "containers": containers, **spec}}
    return convert.from_dict(doc, core_pb2.Pod())


class Harness:
    def __init__(self, tmp: Path, default_handler: str = "image") -> None:
        self.clock = FakeClock()
        self.rt = FakeRuntime(self.clock)
        self.images = FakeImageService()
        self.recorder = FakeRecorder()
        self.objects: dict[tuple[str, str, str], Any] = {}
        self.syncer = PodSyncer(
            self.rt, self.clock,
            SyncConfig(node_name="n1", data_dir=tmp, host_ip="10.0.0.1",
                       default_handler=default_handler),
            CrashLoopBackoff(self.clock), fetch=self.fetch, recorder=self.recorder,
            images=ImagePuller(self.images, CrashLoopBackoff(self.clock), fetch=self.fetch,
                               recorder=self.recorder))
        self.state = PodState("uid-1")

    async def fetch(self, kind: type[M], namespace: str, name: str) -> M | None:
        found = self.objects.get((by_message(kind).plural, namespace, name))
        return found if isinstance(found, kind) else None

    async def sync(self, pod: core_pb2.Pod) -> float | None:
        res = await self.syncer.sync_pod(pod, self.state)
        pod.status.CopyFrom(res.status)
        return res.requeue_after

    def waiting(self, pod: core_pb2.Pod) -> tuple[str, str]:
        w = pod.status.container_statuses[0].state.waiting
        return w.reason, w.message


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def _cfg(**kw: Any) -> ImageConfig:
    return ImageConfig(**kw)


@pytest.mark.parametrize(
    ("policy", "present", "pulls", "reason"),
    [
        ("IfNotPresent", False, 1, ""),
        ("IfNotPresent", True, 0, ""),
        ("Always", True, 1, ""),
        ("Never", True, 0, ""),
        ("Never", False, 0, "ErrImageNeverPull"),
    ],
)
async def test_pull_policies(h: Harness, policy: str, present: bool, pulls: int,
                             reason: str) -> None:
    h.images.add(f"{REG}/app:1", _cfg(cmd=["serve"]))
    if present:
        await h.images.pull(f"{REG}/app:1")
        h.images.pulls.clear()
    pod = make_pod([{"name": "c", "image": f"{REG}/app:1", "imagePullPolicy": policy}])
    await h.sync(pod)
    assert len(h.images.pulls) == pulls
    if reason:
        assert h.waiting(pod)[0] == reason
        assert "ErrImageNeverPull" in h.recorder.reasons()
    else:
        assert pod.status.container_statuses[0].state.HasField("running")


async def test_pull_failure_backs_off_then_runs(h: Harness) -> None:
    image_ref = f"{REG}/late:1"
    pod = make_pod([{"name": "c", "image": image_ref, "imagePullPolicy": "IfNotPresent",
                     "command": ["serve"]}])
    await h.sync(pod)
    assert h.waiting(pod)[0] == "ErrImagePull"
    assert "not found" in h.waiting(pod)[1]
    assert h.recorder.reasons() == ["Pulling", "Failed", "Failed"]
    again = await h.sync(pod)  # within the backoff: no pull
    assert h.waiting(pod) == ("ImagePullBackOff", f'Back-off pulling image "{image_ref}"')
    assert len(h.images.pulls) == 1 and h.recorder.reasons()[-1] == "BackOff"
    assert again is not None and 0 < again <= 10
    h.clock.advance(10)
    await h.sync(pod)  # second failure: the delay doubles
    assert h.waiting(pod)[0] == "ErrImagePull" and len(h.images.pulls) == 2
    h.clock.advance(10)
    await h.sync(pod)
    assert h.waiting(pod)[0] == "ImagePullBackOff" and len(h.images.pulls) == 2
    h.images.add(image_ref, size=1234)
    h.clock.advance(10)
    await h.sync(pod)
    status = pod.status.container_statuses[0]
    assert status.state.HasField("running")
    assert status.image_id.startswith(f"{REG}/late@sha256:")
    pulled = [e for e in h.recorder.events if e.reason == "Pulled"]
    assert "Image size: 1234 bytes" in pulled[-1].message
    assert pulled[-1].field_path == "spec.containers{c}"


async def test_pull_secrets(h: Harness) -> None:
    cred = Credential("alice", "pw")
    h.images.add(f"{REG}/private:1", _cfg(cmd=["x"]), credential=cred)
    auth = base64.b64encode(b"alice:pw").decode()
    secret = core_pb2.Secret(type="kubernetes.io/dockerconfigjson")
    secret.data[".dockerconfigjson"] = json.dumps({"auths": {REG: {"auth": auth}}}).encode()
    pod = make_pod([{"name": "c", "image": f"{REG}/private:1"}],
                   imagePullSecrets=[{"name": "missing"}, {"name": "pull"}])
    await h.sync(pod)
    assert h.waiting(pod)[0] == "ErrImagePull"
    h.objects[("secrets", "default", "pull")] = secret
    h.clock.advance(10)
    await h.sync(pod)
    assert pod.status.container_statuses[0].state.HasField("running")


@pytest.mark.parametrize(
    ("command", "args", "entrypoint", "cmd", "want"),
    [
        ([], [], ["/ep"], ["c1", "c2"], ["/ep", "c1", "c2"]),
        (["/mine"], [], ["/ep"], ["c1"], ["/mine"]),
        (["/mine"], ["a"], ["/ep"], ["c1"], ["/mine", "a"]),
        ([], ["a", "$(X)"], ["/ep"], ["c1"], ["/ep", "a", "x-value"]),
        ([], [], [], ["sh", "$(X)"], ["sh", "$(X)"]),  # the image's own words: not expanded
        ([], ["only"], [], ["c1"], ["only"]),
    ],
)
def test_entrypoint_and_cmd(command: list[str], args: list[str], entrypoint: list[str],
                            cmd: list[str], want: list[str]) -> None:
    c = core_pb2.Container(name="c", command=command, args=args)
    image = ImageConfig(entrypoint=entrypoint, cmd=cmd)
    assert container_spec.resolve_argv(c, {"X": "x-value"}, image) == want


def test_nothing_to_run() -> None:
    with pytest.raises(container_spec.ContainerConfigError, match="image no Entrypoint"):
        container_spec.resolve_argv(core_pb2.Container(name="c"), {}, ImageConfig())


def test_image_env_under_the_pods() -> None:
    merged = container_spec.merge_image_env(["PATH=/img/bin", "A=image", "bad"],
                                            [("A", "pod"), ("B", "b")])
    assert merged == [("PATH", "/img/bin"), ("A", "pod"), ("B", "b")]


async def test_config_from_the_image(h: Harness) -> None:
    h.images.add(f"{REG}/app:1", _cfg(entrypoint=["/ep"], env=["PATH=/x", "A=1"],
                                      working_dir="/srv", user="web"))
    pod = make_pod([{"name": "c", "image": f"{REG}/app:1", "env": [{"name": "A", "value": "2"}]}])
    await h.sync(pod)
    cfg = h.rt.find("p", "c").config  # type: ignore[union-attr]
    assert list(cfg.argv) == ["/ep"]
    assert ("PATH", "/x") in cfg.env and ("A", "2") in cfg.env
    assert cfg.working_dir == "/srv" and cfg.image_user == "web"
    pod2 = make_pod([{"name": "c", "image": f"{REG}/app:1", "workingDir": "/mine"}])
    h2 = Harness(h.syncer.config.data_dir / "two")
    h2.images = h.images
    assert h2.syncer.images is not None
    h2.syncer.images.service = h.images
    await h2.sync(pod2)
    assert h2.rt.find("p", "c").config.working_dir == "/mine"  # type: ignore[union-attr]


async def test_host_handler_and_runtime_classes(tmp_path: Path) -> None:
    h = Harness(tmp_path, default_handler="host")
    pod = make_pod([{"name": "c", "image": "ignored:1", "command": ["serve"]}])
    await h.sync(pod)
    assert h.images.pulls == []  # the host handler never pulls
    assert list(h.rt.find("p", "c").config.rootfs_layers) == []  # type: ignore[union-attr]

    h = Harness(tmp_path / "b")
    pod = make_pod([{"name": "c", "image": "x:1"}], runtimeClassName="gvisor")
    await h.sync(pod)
    assert h.rt.running() == [] and pod.status.phase == "Pending"
    assert h.recorder.reasons() == ["FailedCreatePodSandBox"]
    assert 'RuntimeClass "gvisor" not found' in h.recorder.events[0].message
    h.objects[("runtimeclasses", "", "gvisor")] = node_pb2.RuntimeClass(handler="runsc")
    await h.sync(pod)
    assert "no runtime for \"runsc\"" in h.recorder.events[-1].message
    h.objects[("runtimeclasses", "", "host")] = node_pb2.RuntimeClass(handler="host")
    pod = make_pod([{"name": "c", "image": "x:1", "command": ["serve"]}], runtimeClassName="host")
    h.state = PodState("uid-1")
    await h.sync(pod)
    assert len(h.rt.running()) == 1 and h.images.pulls == []


def _image(name: str, size: int, created: float, used: float = 0.0) -> Image:
    return Image(id=f"sha256:{name * 64}"[:71], repo_tags=[f"{name}:1"], repo_digests=[],
                 manifest_digest="", size=size, config=ImageConfig(), layers=[],
                 created_at=created, last_used=used)


def test_gc_policy() -> None:
    policy = GCPolicy(high=85, low=80, min_age=100)
    assert bytes_to_free(FsUsage(0, 0, 1000, 200), policy) == 0  # 80% used
    assert bytes_to_free(FsUsage(0, 0, 1000, 100), policy) == 100  # 90% -> 80%
    images = [_image("a", 60, 0, used=50), _image("b", 60, 0, used=10),
              _image("c", 60, 0, used=5), _image("d", 60, 950)]
    out = images_to_remove(images, {images[2].id}, 100, 1000, policy)
    # c is in use, d too young: b (least recently used), then a
    assert [i.repo_tags[0] for i in out] == ["b:1", "a:1"]


async def test_gc_removes_only_unused(tmp_path: Path) -> None:
    clock = FakeClock()
    images = FakeImageService(capacity_bytes=1000)
    big = images.add("big:1", size=500)
    used = images.add("used:1", size=400)
    await images.pull("big:1")
    await images.pull("used:1")

    async def in_use() -> set[str]:
        return {used.id}

    clock.advance(1000)
    gc = ImageGC(images, in_use, clock, GCPolicy(high=85, low=50))
    assert await gc.collect() == [big.id]
    assert [i.id for i in await images.list_images()] == [used.id]
    assert await gc.collect() == []  # 40% now


def test_node_images_biggest_first() -> None:
    out = node_images([_image("a", 1, 0), _image("b", 3, 0)])
    assert [(list(i.names), i.size_bytes) for i in out] == [(["b:1"], 3), (["a:1"], 1)]


async def test_missing_image_name(h: Harness) -> None:
    pod = make_pod([{"name": "c", "image": "Bad Name"}])
    await h.sync(pod)
    assert h.waiting(pod)[0] == "InvalidImageName"


async def test_fake_not_found_is_err_image_pull(h: Harness) -> None:
    h.images.fail(f"{REG}/x:1", NotFound("boom"))
    pod = make_pod([{"name": "c", "image": f"{REG}/x:1"}])
    await h.sync(pod)
    assert h.waiting(pod) == ("ErrImagePull", "boom")
