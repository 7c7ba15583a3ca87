"""VolumeManager: each volume type with objects from a real in-process API server, updates
through refresh, tmpfs as root, teardown; the pure payload helpers as tables."""

# Checking the file system after each awaited step is what these tests are for; the
# blocking calls are tiny and nothing else runs on the loop meanwhile.
# ruff: noqa: ASYNC240

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from agent.kubelet.mounts import mounts_under, parse_mount_points, read_mount_points
from agent.kubelet.volumes import (
    DEFAULT_MODE,
    VolumeError,
    VolumeManager,
    _SourceError,
    check_host_path,
    field_value,
    format_map,
    go_quote,
    key_payload,
    memory_volume_size,
    resource_value,
)
from control.api.pb import core_pb2, meta_pb2
from control.apiserver import jws
from tests.conftest import Cluster
from tests.support.token_client import token_client

IS_ROOT = os.geteuid() == 0
NS = "default"


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def pod(*volumes: core_pb2.Volume, uid: str = "pod-uid-1",
        containers: list[core_pb2.Container] | None = None) -> core_pb2.Pod:
    return core_pb2.Pod(
        metadata=meta_pb2.ObjectMeta(name="web", namespace=NS, uid=uid,
                                     labels={"app": "web", "tier": "front"},
                                     annotations={"note": 'say "hi"\n'}),
        spec=core_pb2.PodSpec(volumes=list(volumes),
                              containers=containers or [core_pb2.Container(name="app")]))


def cm(name: str, data: dict[str, str], binary: dict[str, bytes] | None = None
       ) -> core_pb2.ConfigMap:
    return core_pb2.ConfigMap(metadata=meta_pb2.ObjectMeta(name=name, namespace=NS),
                              data=data, binary_data=binary or {})


def secret(name: str, data: dict[str, bytes]) -> core_pb2.Secret:
    return core_pb2.Secret(metadata=meta_pb2.ObjectMeta(name=name, namespace=NS), data=data)


def ktp(key: str, path: str, mode_: int | None = None) -> core_pb2.KeyToPath:
    k = core_pb2.KeyToPath(key=key, path=path)
    if mode_ is not None:
        k.mode = mode_
    return k


# -- pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(("s", "quoted"), [
    ("plain", '"plain"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("a\nb\tc\\", '"a\\nb\\tc\\\\"'),
    ("\x01", '"\\x01"'),
    ("héllo", '"héllo"'),
])
def test_go_quote(s: str, quoted: str) -> None:
    assert go_quote(s) == quoted


def test_format_map_sorted_without_trailing_newline() -> None:
    assert format_map({"b": "2", "a": "1"}) == 'a="1"\nb="2"'
    assert format_map({}) == ""


@pytest.mark.parametrize(("path", "value"), [
    ("metadata.name", "web"),
    ("metadata.namespace", NS),
    ("metadata.uid", "pod-uid-1"),
    ("metadata.labels", 'app="web"\ntier="front"'),
    ("metadata.annotations", 'note="say \\"hi\\"\\n"'),
    ("metadata.labels['tier']", "front"),
    ("metadata.labels['missing']", ""),
    ('metadata.annotations["note"]', 'say "hi"\n'),
    ("spec.nodeName", None),
])
def test_field_value(path: str, value: str | None) -> None:
    if value is None:
        with pytest.raises(_SourceError, match="unsupported fieldRef"):
            field_value(pod(), path)
    else:
        assert field_value(pod(), path) == value


def _res_pod() -> core_pb2.Pod:
    c = core_pb2.Container(name="app", resources=core_pb2.ResourceRequirements(
        limits={"cpu": meta_pb2.Quantity(string="500m"),
                "memory": meta_pb2.Quantity(string="64Mi")},
        requests={"cpu": meta_pb2.Quantity(string="250m")}))
    return pod(containers=[c])


@pytest.mark.parametrize(("resource", "divisor", "value"), [
    ("limits.cpu", "", "1"),  # 500m rounds up to 1 core
    ("limits.cpu", "1m", "500"),
    ("requests.cpu", "1m", "250"),
    ("limits.memory", "", str(64 * 1024 * 1024)),
    ("limits.memory", "1Mi", "64"),
    ("requests.memory", "1Mi", "64"),  # unset request defaults to the limit
    ("limits.ephemeral-storage", "1Gi", "10"),  # unset limit: node allocatable
    ("requests.ephemeral-storage", "", "0"),
])
def test_resource_value(resource: str, divisor: str, value: str) -> None:
    assert resource_value(_res_pod(), "app", resource, divisor,
                          {"ephemeral-storage": "10Gi"}) == value


@pytest.mark.parametrize(("container", "resource", "divisor"), [
    ("nope", "limits.cpu", ""),
    ("app", "limits.gpu", ""),
    ("app", "status.cpu", ""),
    ("app", "limits.cpu", "0"),
])
def test_resource_value_errors(container: str, resource: str, divisor: str) -> None:
    with pytest.raises(_SourceError):
        resource_value(_res_pod(), container, resource, divisor, None)


@pytest.mark.parametrize(("size_limit", "limits", "allocatable", "expected"), [
    ("", [], None, None),
    ("1Mi", [], None, 1024 * 1024),
    ("", [], {"memory": "1Gi"}, 1024**3),
    ("2Gi", [], {"memory": "1Gi"}, 1024**3),  # capped by node allocatable
    ("", ["64Mi", "64Mi"], {"memory": "1Gi"}, 128 * 1024**2),  # all containers limited
    ("", ["64Mi", None], {"memory": "1Gi"}, 1024**3),  # one unlimited: the node's
    ("16Mi", ["64Mi"], None, 16 * 1024**2),
])
def test_memory_volume_size(size_limit: str, limits: list[str | None],
                            allocatable: dict[str, str] | None, expected: int | None) -> None:
    containers = [core_pb2.Container(name=f"c{i}", resources=core_pb2.ResourceRequirements(
        limits={"memory": meta_pb2.Quantity(string=q)} if q else {}))
        for i, q in enumerate(limits)]
    p = pod(containers=containers) if containers else core_pb2.Pod()
    assert memory_volume_size(size_limit, p, allocatable) == expected


def test_key_payload() -> None:
    data = {"a": b"1", "b": b"2"}
    all_keys = key_payload("configmap", "c", data, [], 0o600, False)
    assert {k: (v.data, v.mode) for k, v in all_keys.items()} == {"a": (b"1", 0o600),
                                                                   "b": (b"2", 0o600)}
    items = key_payload("configmap", "c", data, [ktp("a", "x/y", 0o400)], DEFAULT_MODE,
                        False)
    assert {k: (v.data, v.mode) for k, v in items.items()} == {"x/y": (b"1", 0o400)}
    assert key_payload("secret", "s", None, [], DEFAULT_MODE, True) == {}
    assert key_payload("secret", "s", data, [ktp("zz", "p")], DEFAULT_MODE, True) == {}
    with pytest.raises(_SourceError, match='secret "s" not found'):
        key_payload("secret", "s", None, [], DEFAULT_MODE, False)
    with pytest.raises(_SourceError,
                       match="configmap references non-existent config key: zz"):
        key_payload("configmap", "c", data, [ktp("zz", "p")], DEFAULT_MODE, False)


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /var/pods/u1/volumes/empty-dir/cache rw - tmpfs tmpfs rw,size=1024k
41 22 0:36 / /var/pods/u1/volumes/secret/with\\040space rw - tmpfs tmpfs rw
42 40 0:37 / /var/pods/u1/volumes/empty-dir/cache/inner rw - tmpfs tmpfs rw
43 22 0:38 / /var/pods/u10/volumes/secret/x rw - tmpfs tmpfs rw
"""


def test_parse_mount_points_and_mounts_under() -> None:
    points = parse_mount_points(MOUNTINFO)
    assert "/var/pods/u1/volumes/secret/with space" in points
    assert mounts_under(points, "/var/pods/u1/volumes/") == [
        "/var/pods/u1/volumes/empty-dir/cache/inner",  # deepest first
        "/var/pods/u1/volumes/secret/with space",
        "/var/pods/u1/volumes/empty-dir/cache",
    ]


def test_check_host_path(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    sock_path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        ok = [("", str(tmp_path / "anything")), ("Directory", str(tmp_path)),
              ("File", str(f)), ("Socket", str(sock_path)), ("CharDevice", "/dev/null"),
              ("FileOrCreate", str(f)), ("DirectoryOrCreate", str(tmp_path))]
        for type_, path in ok:
            check_host_path(path, type_)
        bad = [("Directory", str(f), "is not a directory"),
               ("Directory", str(tmp_path / "missing"), "is not a directory"),
               ("File", str(tmp_path), "is not a file"),
               ("Socket", str(f), "is not a socket file"),
               ("CharDevice", str(f), "is not a character device"),
               ("BlockDevice", "/dev/null", "is not a block device"),
               ("DirectoryOrCreate", str(f), "is not a directory"),
               ("FileOrCreate", str(tmp_path), "is not a file"),
               ("FileOrCreate", str(tmp_path / "no/parent"), "parent directory"),
               ("Bogus", str(f), "invalid hostPath type")]
        for type_, path, msg in bad:
            with pytest.raises(_SourceError, match=msg):
                check_host_path(path, type_)
    finally:
        s.close()
    check_host_path(str(tmp_path / "new/dir"), "DirectoryOrCreate")
    assert (tmp_path / "new/dir").is_dir()
    check_host_path(str(tmp_path / "new/file"), "FileOrCreate")
    assert (tmp_path / "new/file").is_file()


# -- the manager against a real API server -----------------------------------------------


async def test_configmap_all_keys_items_modes_and_update(cluster: Cluster,
                                                         pods_dir: Path) -> None:
    await cluster.client.create(cm("cfg", {"game.properties": "lives=3",
                                           "ui.properties": "color=blue"},
                                       {"logo.bin": b"\x00\xff"}))
    vols = [
        core_pb2.Volume(name="all", config_map=core_pb2.ConfigMapVolumeSource(name="cfg")),
        core_pb2.Volume(name="some", config_map=core_pb2.ConfigMapVolumeSource(
            name="cfg", default_mode=0o600,
            items=[ktp("game.properties", "conf/game"),
                   ktp("ui.properties", "ui", 0o440)])),
    ]
    mgr = VolumeManager(cluster.client, pods_dir)
    p = pod(*vols)
    paths = await mgr.setup(p)
    assert paths == {
        "all": str(pods_dir / "pod-uid-1/volumes/configmap/all"),
        "some": str(pods_dir / "pod-uid-1/volumes/configmap/some"),
    }
    all_dir, some_dir = Path(paths["all"]), Path(paths["some"])
    assert (all_dir / "game.properties").read_text() == "lives=3"
    assert (all_dir / "logo.bin").read_bytes() == b"\x00\xff"
    assert mode(all_dir / "ui.properties") == 0o644
    assert os.readlink(all_dir / "ui.properties") == "..data/ui.properties"
    assert (some_dir / "conf/game").read_text() == "lives=3"
    assert mode(some_dir / "conf/game") == 0o600
    assert mode(some_dir / "ui") == 0o440
    assert sorted(n for n in os.listdir(some_dir) if not n.startswith("..")) == ["conf", "ui"]

    # An update reaches the file after a refresh; a removed key disappears.
    current = await cluster.client.get("configmaps", "cfg", NS)
    current.data["game.properties"] = "lives=5"
    del current.data["ui.properties"]
    await cluster.client.update(current)
    assert await mgr.refresh(p) == {"some": "configmap references non-existent config "
                                            "key: ui.properties"}
    assert (all_dir / "game.properties").read_text() == "lives=5"
    assert not (all_dir / "ui.properties").exists()
    assert (some_dir / "conf/game").read_text() == "lives=3"  # failed refresh keeps old
    # setup reports the same missing key (the kubelet keeps the container waiting).
    with pytest.raises(VolumeError, match='volume "some"'):
        await mgr.setup(p)


async def test_configmap_optional_and_missing(cluster: Cluster, pods_dir: Path) -> None:
    mgr = VolumeManager(cluster.client, pods_dir)
    opt = core_pb2.Volume(name="opt", config_map=core_pb2.ConfigMapVolumeSource(
        name="later", optional=True))
    paths = await mgr.setup(pod(opt))
    assert [n for n in os.listdir(paths["opt"]) if not n.startswith("..")] == []
    # The configMap appears later: a refresh projects it.
    await cluster.client.create(cm("later", {"k": "v"}))
    await mgr.refresh(pod(opt))
    assert (Path(paths["opt"]) / "k").read_text() == "v"

    required = core_pb2.Volume(name="req", config_map=core_pb2.ConfigMapVolumeSource(
        name="absent"))
    with pytest.raises(VolumeError) as exc:
        await mgr.setup(pod(required))
    assert str(exc.value) == \
        'MountVolume.SetUp failed for volume "req" : configmap "absent" not found'
    await cluster.client.create(cm("has-a", {"a": "1"}))
    missing_key = core_pb2.Volume(name="mk", config_map=core_pb2.ConfigMapVolumeSource(
        name="has-a", items=[ktp("b", "b")]))
    with pytest.raises(VolumeError, match="non-existent config key: b"):
        await mgr.setup(pod(missing_key))


async def test_secret_bytes_modes_optional(cluster: Cluster, pods_dir: Path) -> None:
    await cluster.client.create(secret("creds", {"password": b"s3cr\x00t",
                                                 "user": b"admin"}))
    mgr = VolumeManager(cluster.client, pods_dir)
    v = core_pb2.Volume(name="creds", secret=core_pb2.SecretVolumeSource(
        secret_name="creds", default_mode=0o400, items=[ktp("password", "pw")]))
    missing = core_pb2.Volume(name="none", secret=core_pb2.SecretVolumeSource(
        secret_name="ghost", optional=True))
    paths = await mgr.setup(pod(v, missing))
    d = Path(paths["creds"])
    assert (d / "pw").read_bytes() == b"s3cr\x00t"
    assert mode(d / "pw") == 0o400
    assert not (d / "user").exists()
    if IS_ROOT:  # secrets never touch the disk when the agent can mount
        assert os.path.realpath(d) in read_mount_points()
    with pytest.raises(VolumeError, match='secret "ghost2" not found'):
        await mgr.setup(pod(core_pb2.Volume(name="x", secret=core_pb2.SecretVolumeSource(
            secret_name="ghost2"))))
    await mgr.teardown("pod-uid-1")
    assert not (pods_dir / "pod-uid-1/volumes").exists()


async def test_downward_api_and_refresh_of_labels(pods_dir: Path) -> None:
    mgr = VolumeManager(None, pods_dir, node_allocatable={"cpu": "4", "memory": "8Gi"})
    items = [
        core_pb2.DownwardAPIVolumeFile(path="name", field_ref=core_pb2.ObjectFieldSelector(
            field_path="metadata.name")),
        core_pb2.DownwardAPIVolumeFile(path="labels", field_ref=core_pb2.ObjectFieldSelector(
            field_path="metadata.labels")),
        core_pb2.DownwardAPIVolumeFile(path="cpu_limit", mode=0o400,
                                       resource_field_ref=core_pb2.ResourceFieldSelector(
                                           container_name="app", resource="limits.cpu",
                                           divisor=meta_pb2.Quantity(string="1m"))),
    ]
    v = core_pb2.Volume(name="info", downward_api=core_pb2.DownwardAPIVolumeSource(
        items=items))
    p = pod(v)
    d = Path((await mgr.setup(p))["info"])
    assert (d / "name").read_text() == "web"
    assert (d / "labels").read_text() == 'app="web"\ntier="front"'
    assert (d / "cpu_limit").read_text() == "4000"  # no limit: the node's allocatable
    assert mode(d / "cpu_limit") == 0o400 and mode(d / "name") == 0o644
    p.metadata.labels["tier"] = "back"
    assert await mgr.refresh(p) == {}
    assert (d / "labels").read_text() == 'app="web"\ntier="back"'


async def test_projected_sources_and_token(cluster: Cluster, pods_dir: Path) -> None:
    await cluster.client.create(cm("pcfg", {"a": "from-cm"}))
    await cluster.client.create(secret("psec", {"b": b"from-secret"}))
    v = core_pb2.Volume(name="all-in-one", projected=core_pb2.ProjectedVolumeSource(
        default_mode=0o440,
        sources=[
            core_pb2.VolumeProjection(config_map=core_pb2.ConfigMapProjection(name="pcfg")),
            core_pb2.VolumeProjection(secret=core_pb2.SecretProjection(
                name="psec", items=[ktp("b", "sub/b", 0o400)])),
            core_pb2.VolumeProjection(secret=core_pb2.SecretProjection(
                name="absent", optional=True)),
            core_pb2.VolumeProjection(downward_api=core_pb2.DownwardAPIProjection(items=[
                core_pb2.DownwardAPIVolumeFile(path="ns", field_ref=core_pb2.ObjectFieldSelector(
                    field_path="metadata.namespace"))])),
            core_pb2.VolumeProjection(service_account_token=core_pb2.ServiceAccountTokenProjection(
                path="token", expiration_seconds=3600)),
        ]))
    # the token is bound to the pod: it must exist in the API, running as an account
    sa = core_pb2.ServiceAccount(metadata=meta_pb2.ObjectMeta(name="robot", namespace=NS))
    await cluster.client.create(sa)
    live = await cluster.client.create(core_pb2.Pod(
        metadata=meta_pb2.ObjectMeta(name="web", namespace=NS),
        spec=core_pb2.PodSpec(service_account_name="robot", containers=[
            core_pb2.Container(name="app", image="busybox")])))
    p = pod(v, uid=live.metadata.uid)
    p.spec.service_account_name = "robot"
    mgr = VolumeManager(cluster.client, pods_dir)
    d = Path((await mgr.setup(p))["all-in-one"])
    assert (d / "a").read_text() == "from-cm"
    assert mode(d / "a") == 0o440
    assert (d / "sub/b").read_bytes() == b"from-secret"
    assert mode(d / "sub/b") == 0o400
    assert (d / "ns").read_text() == NS
    token = (d / "token").read_text()
    assert mode(d / "token") == 0o440
    claims = jws.header_and_claims(token)[1]
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": live.metadata.uid}
    assert claims["exp"] - claims["iat"] == 3600
    robot = token_client(cluster, token)
    try:
        assert (await robot.whoami()).username == "system:serviceaccount:default:robot"
    finally:
        await robot.channel.close(None)
    # a refresh within the token's first 80% keeps it
    await mgr.refresh(p)
    assert (d / "token").read_text() == token

    bad = core_pb2.Volume(name="bad", projected=core_pb2.ProjectedVolumeSource(sources=[
        core_pb2.VolumeProjection(config_map=core_pb2.ConfigMapProjection(name="nope"))]))
    with pytest.raises(VolumeError, match='configmap "nope" not found'):
        await mgr.setup(pod(bad))


async def test_no_client_refuses_api_backed_volumes(pods_dir: Path) -> None:
    mgr = VolumeManager(None, pods_dir)
    v = core_pb2.Volume(name="c", config_map=core_pb2.ConfigMapVolumeSource(name="x"))
    with pytest.raises(VolumeError, match="no API client"):
        await mgr.setup(pod(v))


async def test_empty_dir_disk_and_unsupported(pods_dir: Path) -> None:
    mgr = VolumeManager(None, pods_dir)
    paths = await mgr.setup(pod(core_pb2.Volume(name="scratch",
                                                empty_dir=core_pb2.EmptyDirVolumeSource()),
                                core_pb2.Volume(name="nosource")))
    assert paths["scratch"] == str(pods_dir / "pod-uid-1/volumes/empty-dir/scratch")
    assert mode(Path(paths["scratch"])) == 0o777
    assert Path(paths["nosource"]).is_dir()  # no source: an emptyDir
    nfs = core_pb2.Volume(name="share", nfs=core_pb2.NFSVolumeSource(server="x", path="/"))
    with pytest.raises(VolumeError, match="nfs volumes are not supported"):
        await mgr.setup(pod(nfs))
    huge = core_pb2.Volume(name="h", empty_dir=core_pb2.EmptyDirVolumeSource(
        medium="HugePages"))
    with pytest.raises(VolumeError, match="medium 'HugePages' is not supported"):
        await mgr.setup(pod(huge))


async def test_memory_empty_dir_without_mount_is_a_plain_dir(pods_dir: Path) -> None:
    mgr = VolumeManager(None, pods_dir, can_mount=False)
    v = core_pb2.Volume(name="mem", empty_dir=core_pb2.EmptyDirVolumeSource(medium="Memory"))
    d = (await mgr.setup(pod(v)))["mem"]
    assert Path(d).is_dir()
    assert os.path.realpath(d) not in read_mount_points()


@pytest.mark.root(reason="mounting a tmpfs needs root")
async def test_memory_empty_dir_is_tmpfs_with_size_limit(pods_dir: Path) -> None:
    mgr = VolumeManager(None, pods_dir, node_allocatable={"memory": "1Gi"})
    v = core_pb2.Volume(name="mem", empty_dir=core_pb2.EmptyDirVolumeSource(
        medium="Memory", size_limit=meta_pb2.Quantity(string="1Mi")))
    p = pod(v)
    d = (await mgr.setup(p))["mem"]
    real = os.path.realpath(d)
    assert real in read_mount_points()
    st = os.statvfs(d)
    assert st.f_blocks * st.f_frsize == 1024 * 1024
    assert mode(Path(d)) == 0o777
    await mgr.setup(p)  # idempotent: not mounted twice
    assert read_mount_points().count(real) == 1
    Path(d, "data").write_bytes(b"x" * 1000)
    await mgr.teardown("pod-uid-1")
    assert real not in read_mount_points()
    assert not (pods_dir / "pod-uid-1/volumes").exists()


async def test_host_path_and_teardown_leaves_nothing(cluster: Cluster, tmp_path: Path,
                                                    pods_dir: Path) -> None:
    host = tmp_path / "host-data"
    await cluster.client.create(cm("td", {"k": "v"}))
    vols = [
        core_pb2.Volume(name="h", host_path=core_pb2.HostPathVolumeSource(
            path=str(host), type="DirectoryOrCreate")),
        core_pb2.Volume(name="hf", host_path=core_pb2.HostPathVolumeSource(
            path=str(tmp_path / "absent-file"), type="File")),
    ]
    mgr = VolumeManager(cluster.client, pods_dir)
    with pytest.raises(VolumeError, match="is not a file"):
        await mgr.setup(pod(*vols))
    vols.pop()
    vols += [
        core_pb2.Volume(name="e", empty_dir=core_pb2.EmptyDirVolumeSource()),
        core_pb2.Volume(name="m", empty_dir=core_pb2.EmptyDirVolumeSource(medium="Memory")),
        core_pb2.Volume(name="c", config_map=core_pb2.ConfigMapVolumeSource(name="td")),
    ]
    paths = await mgr.setup(pod(*vols))
    assert paths["h"] == str(host) and host.is_dir()
    (host / "keep.txt").write_text("user data")
    Path(paths["e"], "scratch").write_text("x")
    Path(paths["m"], "scratch").write_text("x")
    (pods_dir / "pod-uid-1" / "logs").mkdir()  # not the volume manager's: left alone
    await mgr.teardown("pod-uid-1")
    assert not (pods_dir / "pod-uid-1/volumes").exists()
    assert (pods_dir / "pod-uid-1" / "logs").is_dir()
    assert (host / "keep.txt").read_text() == "user data"
    assert not [m for m in read_mount_points() if m.startswith(os.path.realpath(pods_dir))]
    await mgr.teardown("pod-uid-1")  # idempotent
    # A refresh after teardown does not bring anything back.
    assert await mgr.refresh(pod(*vols)) == {}
    assert not (pods_dir / "pod-uid-1/volumes").exists()


@pytest.mark.root(reason="giving files to another group needs root")
async def test_fs_group_owns_the_pods_volumes(cluster: Cluster, pods_dir: Path,
                                              tmp_path: Path) -> None:
    await cluster.client.create(cm("fsg", {"k": "v"}))
    host = tmp_path / "host"
    host.mkdir()
    p = pod(core_pb2.Volume(name="scratch", empty_dir=core_pb2.EmptyDirVolumeSource()),
            core_pb2.Volume(name="conf", config_map=core_pb2.ConfigMapVolumeSource(name="fsg")),
            core_pb2.Volume(name="host", host_path=core_pb2.HostPathVolumeSource(
                path=str(host))))
    p.spec.security_context.fs_group = 2345
    paths = await VolumeManager(cluster.client, pods_dir).setup(p)
    scratch = os.stat(paths["scratch"])
    assert scratch.st_gid == 2345 and scratch.st_mode & stat.S_ISGID
    assert scratch.st_mode & stat.S_IWGRP
    data = Path(paths["conf"]) / "k"
    assert os.stat(data).st_gid == 2345 and data.read_text() == "v"  # through ..data link
    assert os.stat(host).st_gid != 2345  # the host's own directory is not touched


async def test_persistent_volume_claim_paths(cluster: Cluster, pods_dir: Path,
                                             tmp_path: Path) -> None:
    c = cluster.client
    data = tmp_path / "pv-data"
    data.mkdir()
    mgr = VolumeManager(c, pods_dir)
    vol = core_pb2.Volume(name="d", persistent_volume_claim=(
        core_pb2.PersistentVolumeClaimVolumeSource(claim_name="data")))
    with pytest.raises(VolumeError, match='persistentvolumeclaim "data" not found'):
        await mgr.setup(pod(vol))
    claim = core_pb2.PersistentVolumeClaim(api_version="v1", kind="PersistentVolumeClaim")
    claim.metadata.name, claim.metadata.namespace = "data", NS
    claim.spec.access_modes.append("ReadWriteOnce")
    claim.spec.resources.requests["storage"].string = "1Mi"
    claim = await c.create(claim)
    with pytest.raises(VolumeError, match="is not bound yet"):
        await mgr.setup(pod(vol))
    pv = core_pb2.PersistentVolume(api_version="v1", kind="PersistentVolume")
    pv.metadata.name = "pv-data"
    pv.spec.capacity["storage"].string = "1Mi"
    pv.spec.access_modes.append("ReadWriteOnce")
    pv.spec.local.path = str(data)
    term = pv.spec.node_affinity.required.node_selector_terms.add()
    term.match_expressions.add(key="kubernetes.io/hostname", operator="In", values=["n1"])
    await c.create(pv)
    claim.spec.volume_name = "pv-data"
    claim = await c.update(claim)
    claim.status.phase = "Bound"
    await c.update_status(claim)
    assert await mgr.setup(pod(vol)) == {"d": str(data)}
    nfs = core_pb2.PersistentVolume(api_version="v1", kind="PersistentVolume")
    nfs.metadata.name = "pv-nfs"
    nfs.spec.capacity["storage"].string = "1Mi"
    nfs.spec.access_modes.append("ReadWriteOnce")
    nfs.spec.nfs.server, nfs.spec.nfs.path = "127.0.0.1", "/x"
    await c.create(nfs)
    other = core_pb2.PersistentVolumeClaim()
    other.CopyFrom(claim)
    other.metadata.name, other.metadata.resource_version, other.metadata.uid = "nfs", "", ""
    other.spec.volume_name = "pv-nfs"
    other = await c.create(other)
    other.status.phase = "Bound"
    await c.update_status(other)
    vol.persistent_volume_claim.claim_name = "nfs"
    with pytest.raises(VolumeError, match="nfs volumes are not supported by this agent"):
        await mgr.setup(pod(vol))
