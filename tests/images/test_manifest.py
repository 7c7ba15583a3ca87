from __future__ import annotations

import json

import pytest

from agent.images import manifest as mf
from agent.images.errors import NoMatchingPlatform, PullError

D = ["sha256:" + c * 64 for c in "abcdef"]


def _entry(i: int, plat: dict[str, str]) -> mf.Descriptor:
    return mf.Descriptor(mf.OCI_MANIFEST, D[i], 10, plat)


@pytest.mark.parametrize(
    ("want", "entries", "chosen"),
    [
        (
            ("linux", "amd64", ""),
            [{"os": "linux", "architecture": "arm64"}, {"os": "linux", "architecture": "amd64"}],
            1,
        ),
        (
            ("linux", "arm64", "v8"),
            [
                {"os": "linux", "architecture": "arm64"},
                {"os": "linux", "architecture": "arm64", "variant": "v8"},
            ],
            1,
        ),
        (("linux", "arm64", "v8"), [{"os": "linux", "architecture": "arm64"}], 0),
        (
            ("linux", "arm", "v7"),
            [
                {"os": "linux", "architecture": "arm", "variant": "v6"},
                {"os": "linux", "architecture": "arm", "variant": "v7"},
            ],
            1,
        ),
        (
            ("linux", "amd64", ""),
            [
                {"os": "unknown", "architecture": "unknown"},
                {"os": "linux", "architecture": "amd64"},
            ],
            1,
        ),
    ],
)
def test_select_platform(
    want: tuple[str, str, str], entries: list[dict[str, str]], chosen: int
) -> None:
    descs = [_entry(i, p) for i, p in enumerate(entries)]
    assert mf.select_platform(descs, "idx", want) == descs[chosen]


def test_no_platform_names_what_the_index_has() -> None:
    descs = [
        _entry(0, {"os": "linux", "architecture": "arm64"}),
        _entry(1, {"os": "windows", "architecture": "amd64"}),
    ]
    with pytest.raises(NoMatchingPlatform, match="linux/arm64, windows/amd64"):
        mf.select_platform(descs, "idx", ("linux", "amd64", ""))


def test_manifest_refusals() -> None:
    with pytest.raises(PullError, match="schema version 1"):
        mf.parse_manifest(b'{"schemaVersion": 1}', "m")
    bad_layer = {
        "schemaVersion": 2,
        "config": {"mediaType": mf.OCI_CONFIG, "digest": D[0], "size": 2},
        "layers": [{"mediaType": "application/x-foreign", "digest": D[1], "size": 3}],
    }
    with pytest.raises(PullError, match="unsupported media type"):
        mf.parse_manifest(json.dumps(bad_layer).encode(), "m")
    with pytest.raises(PullError, match="not sha256"):
        mf.parse_manifest(
            json.dumps({**bad_layer, "config": {"digest": "md5:x", "size": 1}}).encode(), "m"
        )


def test_media_type_detection() -> None:
    assert mf.media_type_of(b'{"mediaType": "x"}', mf.OCI_MANIFEST) == "x"
    assert mf.media_type_of(b'{"schemaVersion": 2}', mf.DOCKER_LIST) == mf.DOCKER_LIST
    assert mf.media_type_of(b'{"manifests": []}', "") == mf.OCI_INDEX
    assert mf.media_type_of(b'{"layers": []}', "application/json") == mf.OCI_MANIFEST


def test_config() -> None:
    body = json.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "config": {
                "Entrypoint": ["/e"],
                "Cmd": ["c"],
                "Env": ["A=1"],
                "WorkingDir": "/w",
                "User": "web",
                "ExposedPorts": {"80/tcp": {}},
                "Labels": {"k": "v"},
            },
            "rootfs": {"type": "layers", "diff_ids": D[:2]},
        }
    ).encode()
    c = mf.parse_config(body, "c")
    assert (c.entrypoint, c.cmd, c.env, c.working_dir, c.user) == (
        ["/e"],
        ["c"],
        ["A=1"],
        "/w",
        "web",
    )
    assert c.exposed_ports == ["80/tcp"] and c.labels == {"k": "v"} and c.diff_ids == D[:2]
    empty = mf.parse_config(b'{"rootfs": {"diff_ids": []}}', "c")
    assert empty.entrypoint == [] and empty.cmd == []
