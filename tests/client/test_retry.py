"""guaranteed_update against an in-memory API double that enforces compare-and-swap on
resourceVersion, with other writers scripted to race it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from google.protobuf.message import Message

from control.api import errors
from control.api.pb import core_pb2
from control.client.retry import DEFAULT_ATTEMPTS, guaranteed_update

M = TypeVar("M", bound=Message)


@dataclass
class FakeApi:
    """One namespace of objects by name; writes need the stored resourceVersion.

    ``races``: how many of the next writes another writer gets in first (the stored object
    changes, so the write conflicts)."""

    objects: dict[str, Any] = field(default_factory=dict)
    races: int = 0
    gets: int = 0
    writes: list[str] = field(default_factory=list)  # "update" / "update_status", attempted
    fail_with: errors.ApiError | None = None

    def put(self, obj: Any) -> None:
        obj.metadata.resource_version = str(int(obj.metadata.resource_version or "0") + 1)
        stored = type(obj)()
        stored.CopyFrom(obj)
        self.objects[obj.metadata.name] = stored

    async def get(self, resource: type[M], name: str, namespace: str = "", *,
                  resource_version: str = "") -> M:
        self.gets += 1
        if name not in self.objects:
            raise errors.NotFound(f"{name} not found")
        out = resource()
        out.CopyFrom(self.objects[name])
        return out

    async def update(self, obj: M, *, dry_run: bool = False) -> M:
        return self._write("update", obj)

    async def update_status(self, obj: M) -> M:
        return self._write("update_status", obj)

    def _write(self, verb: str, obj: M) -> M:
        self.writes.append(verb)
        if self.fail_with is not None:
            raise self.fail_with
        name = obj.metadata.name  # type: ignore[attr-defined]
        if self.races > 0:
            self.races -= 1
            other = self.objects[name]
            other.metadata.labels["other-writer"] = str(self.races)
            self.put(other)
        stored = self.objects.get(name)
        if stored is None:
            raise errors.NotFound(f"{name} not found")
        if stored.metadata.resource_version != obj.metadata.resource_version:  # type: ignore[attr-defined]
            raise errors.Conflict(f"{name}: the object has been modified")
        self.put(obj)
        out = type(obj)()
        out.CopyFrom(self.objects[name])
        return out


def pod(name: str = "p", uid: str = "u1") -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", uid
    return p


def label(key: str, value: str) -> Any:
    calls: list[str] = []

    def mutate(p: core_pb2.Pod) -> bool:
        calls.append(p.metadata.resource_version)
        if p.metadata.labels.get(key) == value:
            return False
        p.metadata.labels[key] = value
        return True

    mutate.calls = calls  # type: ignore[attr-defined]
    return mutate


@pytest.mark.parametrize(
    ("races", "attempts", "from_cache", "outcome", "writes", "gets"),
    [
        # no one else writes: one read, one write
        (0, 3, False, "ok", 1, 1),
        # the cached copy is used for the first attempt: no read at all
        (0, 3, True, "ok", 1, 0),
        # two writers get in first: read again after each conflict
        (2, 3, False, "ok", 3, 3),
        (2, 3, True, "ok", 3, 2),
        # they keep getting in first: give up after the bound, with a Conflict
        (3, 3, False, "conflict", 3, 3),
        (9, DEFAULT_ATTEMPTS, True, "conflict", DEFAULT_ATTEMPTS, DEFAULT_ATTEMPTS - 1),
        (0, 1, False, "ok", 1, 1),
        (1, 1, False, "conflict", 1, 1),
    ],
)
async def test_retries_on_conflict_within_the_bound(
    races: int, attempts: int, from_cache: bool, outcome: str, writes: int, gets: int
) -> None:
    api = FakeApi()
    api.put(pod())
    cached = await api.get(core_pb2.Pod, "p") if from_cache else None
    api.gets = 0
    api.races = races
    mutate = label("app", "web")
    if outcome == "ok":
        got = await guaranteed_update(api, core_pb2.Pod, "default", "p", mutate,
                                      current=cached, attempts=attempts)
        assert got.metadata.labels["app"] == "web"
        assert got == api.objects["p"]
        # the other writers' change survives: ours was redone on top of it
        if races:
            assert "other-writer" in got.metadata.labels
    else:
        with pytest.raises(errors.Conflict, match='Pod "p" in namespace "default"'):
            await guaranteed_update(api, core_pb2.Pod, "default", "p", mutate,
                                    current=cached, attempts=attempts)
        assert "app" not in api.objects["p"].metadata.labels
    assert len(api.writes) == writes
    assert api.gets == gets
    assert len(mutate.calls) == writes  # mutate redone on every attempt
    # each attempt mutated what it had just read, never a stale copy twice
    assert len(set(mutate.calls)) == len(mutate.calls)


async def test_no_change_writes_nothing_and_returns_the_object_as_read() -> None:
    api = FakeApi()
    p = pod()
    p.metadata.labels["app"] = "web"
    api.put(p)
    got = await guaranteed_update(api, core_pb2.Pod, "default", "p", label("app", "web"))
    assert api.writes == []
    assert got == api.objects["p"]


async def test_status_subresource() -> None:
    api = FakeApi()
    api.put(pod())

    def running(p: core_pb2.Pod) -> bool:
        p.status.phase = "Running"
        return True

    got = await guaranteed_update(api, core_pb2.Pod, "default", "p", running, status=True)
    assert api.writes == ["update_status"]
    assert got.status.phase == "Running"


async def test_mutate_gets_a_private_copy_of_the_cached_object() -> None:
    api = FakeApi()
    api.put(pod())
    cached = await api.get(core_pb2.Pod, "p")
    before = core_pb2.Pod()
    before.CopyFrom(cached)
    await guaranteed_update(api, core_pb2.Pod, "default", "p", label("app", "web"),
                            current=cached)
    assert cached == before


async def test_gone_is_not_found() -> None:
    api = FakeApi()
    with pytest.raises(errors.NotFound):
        await guaranteed_update(api, core_pb2.Pod, "default", "p", label("a", "b"))
    assert api.writes == []


@pytest.mark.parametrize("from_cache", [False, True])
async def test_a_namesake_is_not_the_object_meant(from_cache: bool) -> None:
    api = FakeApi()
    api.put(pod(uid="old"))
    cached = await api.get(core_pb2.Pod, "p")
    api.put(pod(uid="new"))  # deleted and created again under the same name
    api.races = 1 if from_cache else 0  # the cached copy's write conflicts; the re-read sees "new"
    with pytest.raises(errors.NotFound, match="replaced"):
        await guaranteed_update(api, core_pb2.Pod, "default", "p", label("a", "b"),
                                current=cached if from_cache else None,
                                uid="" if from_cache else "old")
    assert api.objects["p"].metadata.uid == "new"
    assert "a" not in api.objects["p"].metadata.labels


async def test_other_errors_are_not_retried() -> None:
    api = FakeApi()
    api.put(pod())
    api.fail_with = errors.Invalid("spec: forbidden")
    with pytest.raises(errors.Invalid):
        await guaranteed_update(api, core_pb2.Pod, "default", "p", label("a", "b"))
    assert api.writes == ["update"]


async def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts"):
        await guaranteed_update(FakeApi(), core_pb2.Pod, "default", "p", label("a", "b"),
                                attempts=0)
