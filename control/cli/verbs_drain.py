"""`drain`: cordon a node, then evict its pods through the eviction subresource (kubectl's
drain).

Owns deciding which pods may go (``plan_drain``, a plain function over the listed pods,
with kubectl's filters and wording):

- mirror pods (annotation ``kubernetes.io/config.mirror``) are skipped silently;
- DaemonSet pods (controller kind DaemonSet) refuse the drain unless
  ``--ignore-daemonsets``, which skips them with a warning (their controller would put
  them back anyway); finished ones are simply deleted;
- pods with emptyDir volumes refuse unless ``--delete-emptydir-data``;
- pods without a controller refuse unless ``--force`` (nothing would recreate them).

Any refusal stops the drain before the first eviction (the node stays cordoned, as with
kubectl). Otherwise every pod is evicted in parallel: an eviction refused with
TooManyRequests (a PodDisruptionBudget with no disruption left) is retried every 5 s;
each pod is then waited for until it is gone (or replaced by a namesake with another uid).
``--timeout`` (0 = forever) bounds the whole drain; ``--grace-period`` overrides the
pods' own termination grace.

Concurrency: one event loop; a task per pod, all cancelled when the global timeout hits.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from control.api import errors as api_errors
from control.api.podutil import controller_of
from control.cli.errors import CliError, describe_exception
from control.cli.main import parse_timeout

if TYPE_CHECKING:
    from control.cli.main import Context
    from control.client.client import ApiClient

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# kubectl retries an eviction refused by a disruption budget after 5 s.
EVICTION_RETRY_SECONDS = 5.0
DELETE_POLL_SECONDS = 0.5

DAEMONSET_FATAL = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
DAEMONSET_WARNING = "ignoring DaemonSet-managed Pods"
LOCAL_STORAGE_FATAL = "Pods with local storage (use --delete-emptydir-data to override)"
LOCAL_STORAGE_WARNING = "deleting Pods with local storage"
UNMANAGED_FATAL = "Pods that declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"


def register(sub: Any) -> None:
    p = sub.add_parser("drain", help="cordon a node and evict its pods",
                       description="Mark NODE unschedulable, then evict every pod on it "
                                   "through the eviction API (respecting "
                                   "PodDisruptionBudgets).")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--ignore-daemonsets", action="store_true",
                   help="skip DaemonSet-managed pods instead of refusing")
    p.add_argument("--delete-emptydir-data", action="store_true",
                   help="evict pods with emptyDir volumes (their data is lost)")
    p.add_argument("--force", action="store_true",
                   help="also evict pods that no controller will recreate")
    p.add_argument("--grace-period", type=int, default=-1,
                   help="seconds each pod gets to terminate (-1: the pod's own)")
    p.add_argument("--timeout", default="0s",
                   help="give up after this long (\"0\": wait forever)")
    p.set_defaults(handler=run_drain)


@dataclass
class DrainPlan:
    """Which pods to evict, and what to warn about or refuse (message -> "ns/name"s)."""

    evict: list[Any] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    fatal: dict[str, list[str]] = field(default_factory=dict)

    def error_text(self) -> str:
        return "; ".join(f"cannot delete {msg}: {', '.join(pods)}"
                         for msg, pods in self.fatal.items())


def _controller_kind(pod: Any) -> str | None:
    ref = controller_of(pod)
    return ref.kind if ref is not None else None


def _finished(pod: Any) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def plan_drain(pods: Iterable[Any], *, ignore_daemonsets: bool, delete_emptydir_data: bool,
               force: bool, daemonset_exists: Callable[[Any], bool] = lambda _p: True
               ) -> DrainPlan:
    """kubectl drain's pod filters, in its order; see the module docstring."""
    plan = DrainPlan()

    def note(where: dict[str, list[str]], msg: str, pod: Any) -> None:
        where.setdefault(msg, []).append(f"{pod.metadata.namespace}/{pod.metadata.name}")

    for pod in pods:
        if MIRROR_ANNOTATION in pod.metadata.annotations:
            continue
        kind = _controller_kind(pod)
        if kind == "DaemonSet" and not _finished(pod):
            if not daemonset_exists(pod) and force:
                note(plan.warnings, UNMANAGED_WARNING, pod)
                plan.evict.append(pod)
                continue
            if not ignore_daemonsets:
                note(plan.fatal, DAEMONSET_FATAL, pod)
            else:
                note(plan.warnings, DAEMONSET_WARNING, pod)
            continue
        if any(v.HasField("empty_dir") for v in pod.spec.volumes) and not _finished(pod):
            if not delete_emptydir_data:
                note(plan.fatal, LOCAL_STORAGE_FATAL, pod)
                continue
            note(plan.warnings, LOCAL_STORAGE_WARNING, pod)
        if kind is None and not _finished(pod):
            if not force:
                note(plan.fatal, UNMANAGED_FATAL, pod)
                continue
            note(plan.warnings, UNMANAGED_WARNING, pod)
        plan.evict.append(pod)
    return plan


async def _daemonset_presence(client: ApiClient, pods: Iterable[Any]) -> set[str]:
    """uids of the pods whose DaemonSet is gone."""
    gone: set[str] = set()
    for pod in pods:
        ref = controller_of(pod)
        if ref is None or ref.kind != "DaemonSet":
            continue
        try:
            await client.get("daemonsets", ref.name, pod.metadata.namespace)
        except api_errors.NotFound:
            gone.add(pod.metadata.uid)
    return gone


async def _cordon(ctx: Context, client: ApiClient, name: str) -> None:
    node = await client.get("nodes", name)
    if node.spec.unschedulable:
        ctx.out(f"node/{name} already cordoned")
        return
    await client.patch("nodes", name, {"spec": {"unschedulable": True}}, patch_type="merge")
    ctx.out(f"node/{name} cordoned")


async def _evict_and_wait(ctx: Context, client: ApiClient, pod: Any,
                          grace: int | None) -> None:
    ns, name, uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
    ctx.out(f"evicting pod {ns}/{name}")
    ctx.stdout.flush()
    while True:
        try:
            await client.evict(ns, name, grace_period_seconds=grace)
            break
        except api_errors.NotFound:
            break  # already gone
        except api_errors.TooManyRequests as e:
            print(f'error when evicting pods/"{name}" -n "{ns}" (will retry after '
                  f"{EVICTION_RETRY_SECONDS:g}s): {describe_exception(e)}", file=ctx.stderr)
            ctx.stderr.flush()
            await asyncio.sleep(EVICTION_RETRY_SECONDS)
    while True:
        try:
            current = await client.get("pods", name, ns)
        except api_errors.NotFound:
            break
        if current.metadata.uid != uid:
            break
        await asyncio.sleep(DELETE_POLL_SECONDS)
    ctx.out(f"pod/{name} evicted")
    ctx.stdout.flush()


async def run_drain(ctx: Context, args: argparse.Namespace) -> int:
    timeout = parse_timeout(args.timeout, "--timeout")
    grace = None if args.grace_period < 0 else args.grace_period
    client = await ctx.client()
    node: str = args.node.rpartition("/")[2]
    try:
        await _cordon(ctx, client, node)
    except api_errors.NotFound:
        raise CliError(f'nodes "{node}" not found') from None
    pods = (await client.list_all("pods", "", field_selector=f"spec.nodeName={node}")).items
    gone = await _daemonset_presence(client, pods)
    plan = plan_drain(pods, ignore_daemonsets=args.ignore_daemonsets,
                      delete_emptydir_data=args.delete_emptydir_data, force=args.force,
                      daemonset_exists=lambda p: p.metadata.uid not in gone)
    if plan.fatal:
        raise CliError(f'unable to drain node "{node}" due to error: {plan.error_text()}\n'
                       f"There are pending nodes to be drained:\n {node}")
    for msg, names in plan.warnings.items():
        ctx.warn(f"{msg}: {', '.join(names)}")
    ctx.stderr.flush()
    tasks = [asyncio.ensure_future(_evict_and_wait(ctx, client, p, grace)) for p in plan.evict]
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        failures = [t.exception() for t in done if t.exception() is not None]
        if pending:
            left = len(pending)
            raise CliError(f'unable to drain node "{node}" due to error: global timeout '
                           f"reached: {args.timeout} ({left} pod(s) not evicted)\n"
                           f"There are pending nodes to be drained:\n {node}")
        if failures:
            detail = "; ".join(describe_exception(e) for e in failures if e is not None)
            raise CliError(f'unable to drain node "{node}" due to error: {detail}\n'
                           f"There are pending nodes to be drained:\n {node}")
    ctx.out(f"node/{node} drained")
    ctx.stdout.flush()
    return 0
