"""PodControl: how workload controllers create, delete, adopt and release their pods.

Kubernetes' ``controller.RealPodControl`` and ``ControllerRefManager`` in one place:

- ``pod_from_template``: a Pod built from a ``PodTemplateSpec`` — the template's labels,
  annotations and finalizers, its spec, ``generateName: "<owner>-"`` and an ownerReference
  to the owner with ``controller: true`` and ``blockOwnerDeletion: true`` (so foreground
  deletion of the owner waits for the pod). Pure.
- ``PodControl.create_pod`` / ``delete_pod``: the API calls, each followed by the Event a
  user expects (SuccessfulCreate / FailedCreate / SuccessfulDelete / FailedDelete).
- ``PodControl.adopt`` / ``release``: add or remove our controller reference on an existing
  pod with a compare-and-swap update of the cached copy; when that copy was stale (another
  writer, e.g. the scheduler, got there first) the pod is read again, re-checked and
  written again, a few times, before Conflict goes back to the caller. A pod that has
  gone (NotFound) needs nothing.
- ``controller_uid_index``: an informer index "pods by controller uid" shared by every
  controller that owns pods (reading controller references is ``control.api.podutil``'s).

Concurrency contract: stateless apart from the client and recorder it holds; every method
may be awaited from many tasks at once. Callers keep their own expectations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from control.api import errors, kinds
from control.api.pb import core_pb2, meta_pb2
from control.api.podutil import Object, controller_of, controller_uid, is_controlled_by
from control.client.client import ApiClient
from control.client.retry import guaranteed_update
from control.runtime.events import NORMAL, WARNING, Recorder

# Index name under which pods are filed by the uid of their controller (shared informer:
# the first controller to ask adds it, the others reuse it).
CONTROLLER_UID_INDEX = "flotilla.io/controller-uid"

# Kubernetes truncates generateName prefixes so that "<prefix><5 random chars>" is a
# valid 63-character name.
_MAX_PREFIX = 58
# Compare-and-swap attempts before giving up (the caller's reconcile then retries).
_RETRIES = 3


def controller_uid_index(obj: Any) -> list[str]:
    """Index function: the controller's uid, or nothing for an orphan."""
    uid = controller_uid(obj)
    return [uid] if uid else []


def owner_reference(owner: Any, *, controller: bool = True,
                    block_owner_deletion: bool = True) -> meta_pb2.OwnerReference:
    info = kinds.by_message(owner)
    return meta_pb2.OwnerReference(api_version=info.api_version, kind=info.kind,
                                   name=owner.metadata.name, uid=owner.metadata.uid,
                                   controller=controller,
                                   block_owner_deletion=block_owner_deletion)


def generate_name_prefix(owner_name: str) -> str:
    prefix = f"{owner_name}-"
    if len(prefix) > _MAX_PREFIX:
        prefix = prefix[:_MAX_PREFIX]
    return prefix


def pod_from_template(template: core_pb2.PodTemplateSpec, owner: Any,
                      name_prefix: str | None = None) -> core_pb2.Pod:
    """The pod a controller creates for ``owner`` from ``template``; see the docstring.
    ``name_prefix``: instead of ``<owner>-`` (an Indexed Job's ``<job>-<index>-``)."""
    pod = core_pb2.Pod(api_version="v1", kind="Pod")
    m = pod.metadata
    m.namespace = owner.metadata.namespace
    m.generate_name = generate_name_prefix(name_prefix or owner.metadata.name)
    m.labels.update(template.metadata.labels)
    m.annotations.update(template.metadata.annotations)
    m.finalizers.extend(template.metadata.finalizers)
    m.owner_references.append(owner_reference(owner))
    pod.spec.CopyFrom(template.spec)
    return pod


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class PodControl:
    """Pod writes on behalf of a controller, with their Events; see the module docstring."""

    def __init__(self, client: ApiClient, recorder: Recorder) -> None:
        self._client = client
        self.recorder = recorder

    async def create_pod(self, template: core_pb2.PodTemplateSpec, owner: Any,
                         name_prefix: str | None = None, *,
                         name: str | None = None) -> core_pb2.Pod:
        """Create one pod for ``owner`` (named ``name`` if given: a StatefulSet's replica);
        raises the API error after recording FailedCreate."""
        pod = pod_from_template(template, owner, name_prefix)
        if name is not None:
            pod.metadata.name = name
            pod.metadata.generate_name = ""
        try:
            created: core_pb2.Pod = await self._client.create(pod)
        except errors.ApiError as exc:
            self.recorder.event(owner, WARNING, "FailedCreate",
                                f"Error creating: {_describe(exc)}")
            raise
        self.recorder.event(owner, NORMAL, "SuccessfulCreate",
                            f"Created pod: {created.metadata.name}")
        return created

    async def delete_pod(self, pod: core_pb2.Pod, owner: Any) -> None:
        """Delete ``pod`` (uid precondition, so a namesake is never hit); NotFound is fine."""
        m = pod.metadata
        try:
            await self._client.delete(core_pb2.Pod, m.name, m.namespace, uid=m.uid)
        except errors.NotFound:
            return
        except errors.ApiError as exc:
            self.recorder.event(owner, WARNING, "FailedDelete",
                                f"Error deleting: {_describe(exc)}")
            raise
        self.recorder.event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {m.name}")

    async def adopt(self, pod: core_pb2.Pod, owner: Object,
                    still_wanted: Callable[[core_pb2.Pod], bool] = lambda _p: True,
                    finalizers: tuple[str, ...] = ()) -> bool:
        """Make ``owner`` the controller of the orphan ``pod``; False if it went away, got
        another controller, is being deleted or no longer satisfies ``still_wanted``
        (checked again on a fresh read whenever the cached copy was stale). ``finalizers``
        are added with the reference (a Job's tracking finalizer)."""

        def take(current: core_pb2.Pod) -> bool:
            if (controller_of(current) is not None
                    or current.metadata.HasField("deletion_timestamp")
                    or not still_wanted(current)):
                return False
            current.metadata.owner_references.append(owner_reference(owner))
            for f in finalizers:
                if f not in current.metadata.finalizers:
                    current.metadata.finalizers.append(f)
            return True

        try:
            got = await guaranteed_update(self._client, core_pb2.Pod, pod.metadata.namespace,
                                          pod.metadata.name, take, current=pod,
                                          attempts=_RETRIES)
        except errors.NotFound:
            return False
        return is_controlled_by(got, owner)

    async def release(self, pod: core_pb2.Pod, owner: Object) -> bool:
        """Remove ``owner``'s references from ``pod``; False if it went away."""

        def drop(current: core_pb2.Pod) -> bool:
            refs = current.metadata.owner_references
            keep = [r for r in refs if r.uid != owner.metadata.uid]
            if len(keep) == len(refs):
                return False
            del refs[:]
            refs.extend(keep)
            return True

        try:
            await guaranteed_update(self._client, core_pb2.Pod, pod.metadata.namespace,
                                    pod.metadata.name, drop, current=pod, attempts=_RETRIES)
        except errors.NotFound:
            return False
        return True
