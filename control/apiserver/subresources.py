"""Subresources: pods/binding, */scale and pods/eviction, on top of the registry.

- binding: sets ``spec.nodeName`` of an unbound pod (Conflict if already bound) and its
  PodScheduled condition, in one compare-and-swap.
- scale: ``spec.replicas`` of Deployments, ReplicaSets, StatefulSets and
  ReplicationControllers, with the selector in its string form.
- eviction: a graceful delete that first asks every PodDisruptionBudget covering the pod;
  a budget with no disruption left refuses (TooManyRequests, as Kubernetes' 429); an allowed
  eviction is recorded in the budget's status (disruptionsAllowed - 1, disruptedPods).

Concurrency: event loop only; every write is a compare-and-swap through the registry.
"""

from __future__ import annotations

from typing import Any

from control.api import errors, kinds, labels, names, timeutil
from control.apiserver import codec
from control.apiserver.registry import UPDATE_RETRIES, Registry
from control.store.interface import KeyNotFound, RevisionMismatch

SCALABLE = ("deployments", "replicasets", "statefulsets", "replicationcontrollers")


async def bind(reg: Registry, namespace: str, name: str, node_name: str, pod_uid: str) -> bytes:
    """Set ``spec.nodeName`` and PodScheduled=True in one compare-and-swap.

    A binding changes only those two fields of a pod that was defaulted and validated when
    it was written, so - as Kubernetes' binding REST does - it does not re-run defaulting
    and whole-object validation: it validates what changes (the node name, and that no
    scheduling gate remains) and writes the object with the generation bumped (the spec
    changed), as an update through ``guaranteed_update`` would produce."""
    info = kinds.by_resource("pods")
    if not node_name:
        raise errors.BadRequest("binding: target node name is required")
    bad = names.is_dns1123_subdomain(node_name)
    if bad:
        raise errors.Invalid(f'Pod "{name}" is invalid', [errors.FieldError(
            "spec.nodeName", f"Invalid value: {node_name!r}: {'; '.join(bad)}")])

    def mutate(pod: Any) -> Any:
        if pod_uid and pod.metadata.uid != pod_uid:
            raise errors.Conflict(
                f"Precondition failed: UID in precondition: {pod_uid}, UID in object meta: "
                f"{pod.metadata.uid}")
        if pod.metadata.HasField("deletion_timestamp"):
            raise errors.Conflict(f'pod "{name}" is being deleted, cannot be assigned to a host')
        if pod.spec.node_name:
            raise errors.Conflict(
                f'pod {name} is already assigned to node "{pod.spec.node_name}"')
        if pod.spec.scheduling_gates:
            raise errors.Invalid(f'Pod "{name}" is invalid', [errors.FieldError(
                "spec.nodeName",
                "Forbidden: cannot be set until all schedulingGates have been cleared")])
        new = type(pod)()
        new.CopyFrom(pod)
        new.spec.node_name = node_name
        conds = [c for c in new.status.conditions if c.type != "PodScheduled"]
        del new.status.conditions[:]
        new.status.conditions.extend(conds)
        cond = new.status.conditions.add()
        cond.type, cond.status = "PodScheduled", "True"
        cond.last_transition_time.CopyFrom(timeutil.now_timestamp())
        new.metadata.generation = pod.metadata.generation + 1
        new.metadata.resource_version = ""
        return new

    await reg.cache.wait_fresh()
    for _ in range(UPDATE_RETRIES):
        current = reg.lookup(info, namespace, name)
        data = mutate(current.obj).SerializeToString(deterministic=True)
        try:
            kv = await reg.store.update(current.key, data, current.revision,
                                        lease=await reg.admission.lease_for(info))
        except RevisionMismatch:
            await reg.cache.wait_fresh()  # lost a race: re-read and re-check
            continue
        except KeyNotFound:
            raise errors.NotFound(f'pods "{name}" not found') from None
        return codec.with_revision(kv.value, kv.mod_revision)
    raise errors.Conflict(
        f'Operation cannot be fulfilled on pods "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again")


def _selector_string(info: kinds.KindInfo, obj: Any) -> str:
    if info.plural == "replicationcontrollers":
        return str(labels.from_map(dict(obj.spec.selector)))
    return str(labels.from_label_selector(obj.spec.selector))


def _scalable(resource: str) -> kinds.KindInfo:
    if resource not in SCALABLE:
        raise errors.NotFound(f"{resource} have no scale subresource")
    return kinds.by_resource(resource)


async def get_scale(reg: Registry, resource: str, namespace: str,
                    name: str) -> tuple[int, int, str, str]:
    info = _scalable(resource)
    co = await reg.get(info, namespace, name)
    obj = co.obj
    return (obj.spec.replicas, obj.status.replicas, _selector_string(info, obj),
            obj.metadata.resource_version)


async def update_scale(reg: Registry, resource: str, namespace: str, name: str,
                       replicas: int, resource_version: str) -> tuple[int, int, str, str]:
    info = _scalable(resource)
    if replicas < 0:
        raise errors.Invalid(f'Scale "{name}" is invalid',
                             [errors.FieldError("spec.replicas",
                                                f"Invalid value: {replicas}: must be greater "
                                                "than or equal to 0")])

    def mutate(obj: Any) -> Any:
        if resource_version and resource_version != obj.metadata.resource_version:
            raise errors.Conflict(
                f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again")
        new = type(obj)()
        new.CopyFrom(obj)
        new.spec.replicas = replicas
        return new

    await reg.guaranteed_update(info, namespace, name, mutate, conditional=bool(resource_version))
    return await get_scale(reg, resource, namespace, name)


async def evict(reg: Registry, namespace: str, name: str, grace: int | None) -> None:
    pods = kinds.by_resource("pods")
    pod = (await reg.get(pods, namespace, name)).obj
    terminal_or_pending = pod.status.phase in ("Succeeded", "Failed", "Pending")
    if not terminal_or_pending and not pod.metadata.HasField("deletion_timestamp"):
        pdbs = kinds.by_resource("poddisruptionbudgets")
        covering = [co.obj for co in reg.cache.scan("poddisruptionbudgets", namespace)
                    if labels.from_label_selector(co.obj.spec.selector).matches(
                        pod.metadata.labels)]
        if len(covering) > 1:
            raise errors.ApiError(
                "This pod has more than one PodDisruptionBudget, which the eviction "
                "subresource does not support.")
        for pdb in covering:
            if pdb.status.observed_generation < pdb.metadata.generation:
                raise errors.TooManyRequests(
                    "Cannot evict pod as it would violate the pod's disruption budget: the "
                    "disruption budget is still being processed by the server.")
            if pdb.status.disruptions_allowed <= 0:
                raise errors.TooManyRequests(
                    "Cannot evict pod as it would violate the pod's disruption budget.")

            def take(budget: Any) -> Any:
                if budget.status.disruptions_allowed <= 0:
                    raise errors.TooManyRequests(
                        "Cannot evict pod as it would violate the pod's disruption budget.")
                new = type(budget)()
                new.CopyFrom(budget)
                new.status.disruptions_allowed -= 1
                new.status.disrupted_pods[name].CopyFrom(timeutil.now_timestamp())
                return new

            await reg.guaranteed_update(pdbs, namespace, pdb.metadata.name, take,
                                        conditional=False)
    await reg.delete(pods, namespace, name, grace_period_seconds=grace)
