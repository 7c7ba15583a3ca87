"""`flotilla rollout status|history|undo|pause|resume|restart TYPE/NAME`: kubectl's rollout.

Owns the client side of Deployment rollouts; DaemonSets and StatefulSets (status, history,
undo, restart) are handled by :mod:`control.cli.rollout_daemonset`:

- ``status``: list + watch the Deployment (no polling) and print kubectl's progress lines
  as they change ('Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas
  are available...') until 'deployment "web" successfully rolled out' (exit 0). A rollout
  past its progressDeadlineSeconds (Progressing=False, ProgressDeadlineExceeded) is an
  error (exit 1), and so is ``--timeout`` (default: wait forever, as kubectl).
  ``--watch=false`` prints the current state once; ``--revision N`` insists the
  Deployment is at revision N.
- ``history``: REVISION / CHANGE-CAUSE from the revision and change-cause annotations of
  the Deployment's ReplicaSets; ``--revision N`` shows that revision's pod template.
- ``undo [--to-revision N]``: rollback done as kubectl does it — the chosen ReplicaSet's
  template (without its pod-template-hash label) and its annotations are written into the
  Deployment with a compare-and-swap update before the verb returns; the controller then
  finds that ReplicaSet as the new one and gives it the next revision. Without
  ``--to-revision``, the revision before the latest.
- ``pause`` / ``resume``: ``spec.paused``; ``restart``: the template annotation
  ``kubectl.kubernetes.io/restartedAt`` set to now, which makes a new revision.

Every read-modify-write is a compare-and-swap update, retried a few times on Conflict.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from control.api import convert, deployutil, kinds, timeutil
from control.api import errors as api_errors
from control.api.pb import apps_pb2
from control.api.podutil import controller_of
from control.cli import printers, rollout_daemonset
from control.cli.errors import CliError, UsageError
from control.cli.main import api_error_text, parse_refs, parse_timeout, ref_name
from control.cli.verbs_misc import table

if TYPE_CHECKING:
    from control.cli.main import Context
    from control.client.client import ApiClient

CONFLICT_RETRIES = 5


def register(sub: Any) -> None:
    p = sub.add_parser("rollout", help="manage the rollout of a deployment, daemonset or statefulset")
    verbs = p.add_subparsers(dest="rollout_verb", metavar="SUBCOMMAND")
    verbs.required = True

    s = verbs.add_parser("status", help="watch a rollout until it finishes")
    s.add_argument("resources", nargs="+", metavar="TYPE/NAME | TYPE NAME")
    s.add_argument("-w", "--watch", default="true", choices=("true", "false"),
                   nargs="?", const="true", help="wait for the rollout (default true)")
    s.add_argument("--timeout", default="0s", help="give up after this long (0: never)")
    s.add_argument("--revision", type=int, default=0, help="the revision to wait for")
    s.set_defaults(handler=run_status)

    h = verbs.add_parser("history", help="the revisions of a deployment")
    h.add_argument("resources", nargs="+", metavar="TYPE/NAME | TYPE NAME")
    h.add_argument("--revision", type=int, default=0, help="show this revision's template")
    h.set_defaults(handler=run_history)

    u = verbs.add_parser("undo", help="roll back to a previous revision")
    u.add_argument("resources", nargs="+", metavar="TYPE/NAME | TYPE NAME")
    u.add_argument("--to-revision", type=int, default=0,
                   help="the revision to roll back to (default: the previous one)")
    u.set_defaults(handler=run_undo)

    for verb, what in (("pause", "pause"), ("resume", "resume"),
                       ("restart", "restart the pods of")):
        q = verbs.add_parser(verb, help=f"{what} a deployment")
        q.add_argument("resources", nargs="+", metavar="TYPE/NAME | TYPE NAME")
        q.set_defaults(handler=run_simple, rollout_verb=verb)


# -- shared ---------------------------------------------------------------------------------


def _targets(args: argparse.Namespace, daemonsets: bool = True) -> list[tuple[str, str]]:
    """(resource, name) of every object named; deployments, and daemonsets and
    statefulsets if allowed."""
    kinds_ok = ("deployments", "daemonsets", "statefulsets") if daemonsets else (
        "deployments",)
    out: list[tuple[str, str]] = []
    for ref in parse_refs(args.resources):
        if ref.info.plural not in kinds_ok:
            what = " and ".join(kinds_ok)
            raise UsageError(f"rollout works on {what}, not {ref.info.plural} "
                             f"({ref.info.kind} has no rollout here)")
        assert ref.name is not None
        out.append((ref.info.plural, ref.name))
    return out


def _deployments(ctx: Context, args: argparse.Namespace) -> list[str]:
    return [name for plural, name in _targets(args) if plural == "deployments"]


# the kinds whose history is ControllerRevisions (control/cli/rollout_daemonset.py)
_REVISIONED: dict[str, type[Any]] = {"daemonsets": apps_pb2.DaemonSet,
                                     "statefulsets": apps_pb2.StatefulSet}


def _daemonsets(args: argparse.Namespace) -> list[tuple[type[Any], str]]:
    """(message class, name) of every DaemonSet and StatefulSet named."""
    return [(_REVISIONED[plural], name) for plural, name in _targets(args)
            if plural in _REVISIONED]


def _info() -> kinds.KindInfo:
    return kinds.by_message(apps_pb2.Deployment)


def _label(name: str) -> str:
    return ref_name(_info(), name)


async def _get(client: ApiClient, ctx: Context, name: str) -> apps_pb2.Deployment:
    try:
        d: apps_pb2.Deployment = await client.get(apps_pb2.Deployment, name, ctx.namespace)
    except api_errors.NotFound as e:
        raise CliError(f"Error from server (NotFound): {api_error_text(e, _info(), name)}"
                       ) from None
    return d


async def owned_replica_sets(client: ApiClient, d: apps_pb2.Deployment) -> list[Any]:
    """The Deployment's ReplicaSets: in its namespace, controlled by it."""
    listing = await client.list_all(apps_pb2.ReplicaSet, d.metadata.namespace)
    out = []
    for rs in listing.items:
        ref = controller_of(rs)
        if ref is not None and ref.uid == d.metadata.uid:
            out.append(rs)
    return out


async def _update(client: ApiClient, ctx: Context, name: str,
                  change: Callable[[apps_pb2.Deployment], Awaitable[bool]]) -> bool:
    """Read, ``change`` (False: nothing to write), CAS-update; retried on Conflict."""
    for attempt in range(CONFLICT_RETRIES):
        d = await _get(client, ctx, name)
        if not await change(d):
            return False
        try:
            await client.update(d)
            return True
        except api_errors.Conflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
    return False


# -- status ---------------------------------------------------------------------------------


async def _watch_status(client: ApiClient, ctx: Context, name: str,
                        revision: int) -> None:
    """Print progress until the rollout is done; CliError when it stalls or goes away."""
    last = ""

    def show(d: Any) -> bool:
        nonlocal last
        if d is None:
            raise CliError(f'deployment "{name}" was deleted')
        if revision and deployutil.revision_of(d) and deployutil.revision_of(d) != revision:
            raise CliError(f"desired revision ({revision}) is different from the running "
                           f"revision ({deployutil.revision_of(d)})")
        try:
            message, done = deployutil.rollout_status_message(d)
        except deployutil.RolloutStalled as e:
            raise CliError(str(e)) from None
        if message != last:
            ctx.out(message)
            ctx.stdout.flush()
            last = message
        return done

    selector = f"metadata.name={name}"
    while True:
        listing = await client.list(apps_pb2.Deployment, ctx.namespace,
                                    field_selector=selector)
        if show(listing.items[0] if listing.items else None):
            return
        try:
            async for ev in client.watch(apps_pb2.Deployment, ctx.namespace,
                                         field_selector=selector,
                                         resource_version=listing.resource_version):
                if ev.type == "BOOKMARK" or ev.object is None:
                    continue
                if show(None if ev.type == "DELETED" else ev.object):
                    return
        except api_errors.Gone:
            continue
        await asyncio.sleep(0.2)  # the server ended the stream: look again, then re-watch


async def run_status(ctx: Context, args: argparse.Namespace) -> int:
    names = _deployments(ctx, args)
    timeout = parse_timeout(args.timeout, "--timeout")
    client = await ctx.client()
    for cls, name in _daemonsets(args):
        await _daemonset_status(client, ctx, cls, name, args.watch != "false", timeout)
    for name in names:
        d = await _get(client, ctx, name)
        if args.watch == "false":
            try:
                message, _ = deployutil.rollout_status_message(d)
            except deployutil.RolloutStalled as e:
                raise CliError(str(e)) from None
            ctx.out(message)
            continue
        try:
            async with asyncio.timeout(timeout):
                await _watch_status(client, ctx, name, args.revision)
        except TimeoutError:
            raise CliError("timed out waiting for the condition") from None
    return 0


async def _daemonset_status(client: ApiClient, ctx: Context, cls: type[Any], name: str,
                            watch: bool, limit: float | None) -> None:
    """Like the Deployment's: list + watch, printing each new message until done."""
    ds = await rollout_daemonset.get(client, ctx, name, cls)
    message, done = rollout_daemonset.status_message(ds)
    ctx.out(message)
    if done or not watch:
        return
    last = message
    selector = f"metadata.name={name}"
    try:
        async with asyncio.timeout(limit):
            while True:
                listing = await client.list(cls, ctx.namespace, field_selector=selector)
                try:
                    async for ev in client.watch(cls, ctx.namespace,
                                                 field_selector=selector,
                                                 resource_version=listing.resource_version):
                        if ev.type == "BOOKMARK" or ev.object is None:
                            continue
                        if ev.type == "DELETED":
                            raise CliError(
                                f'{kinds.by_message(cls).singular} "{name}" was deleted')
                        message, done = rollout_daemonset.status_message(ev.object)
                        if message != last:
                            ctx.out(message)
                            ctx.stdout.flush()
                            last = message
                        if done:
                            return
                except api_errors.Gone:
                    continue
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise CliError("timed out waiting for the condition") from None


# -- history --------------------------------------------------------------------------------


async def run_history(ctx: Context, args: argparse.Namespace) -> int:
    client = await ctx.client()
    for cls, ds_name in _daemonsets(args):
        await rollout_daemonset.history(client, ctx, ds_name, args.revision, cls)
    for name in _deployments(ctx, args):
        d = await _get(client, ctx, name)
        by_revision: dict[int, Any] = {}
        for rs in await owned_replica_sets(client, d):
            rev = deployutil.revision_of(rs)
            if rev > 0:
                by_revision[rev] = rs
        if args.revision:
            rs = by_revision.get(args.revision)
            if rs is None:
                raise CliError(f"unable to find the specified revision {args.revision}")
            ctx.out(f"{_label(name)} with revision #{args.revision}")
            ctx.out("Pod Template:")
            template = convert.to_dict(rs.spec.template)
            for line in printers.dump_yaml(template).splitlines():
                ctx.out(f"  {line}")
            continue
        ctx.out(_label(name))
        rows = [[str(rev), by_revision[rev].metadata.annotations.get(
                    deployutil.CHANGE_CAUSE_ANNOTATION, "<none>")]
                for rev in sorted(by_revision)]
        ctx.stdout.write(table(["REVISION", "CHANGE-CAUSE"], rows))
        ctx.out("")
    return 0


# -- undo -----------------------------------------------------------------------------------


def rollback_target(rss: list[Any], to_revision: int) -> Any:
    """The ReplicaSet to roll back to (kubectl's rule); CliError when there is none."""
    if to_revision > 0:
        for rs in rss:
            if deployutil.revision_of(rs) == to_revision:
                return rs
        raise CliError(f"unable to find specified revision {to_revision} in history")
    ordered = sorted((rs for rs in rss if deployutil.revision_of(rs) > 0),
                     key=deployutil.revision_of)
    if len(ordered) < 2:
        return None
    return ordered[-2]


def apply_rollback(d: apps_pb2.Deployment, rs: Any) -> None:
    """The Deployment as kubectl writes it for a rollback to ``rs``."""
    d.spec.template.CopyFrom(deployutil.template_without_hash(rs.spec.template))
    keep = {k: v for k, v in d.metadata.annotations.items() if k in deployutil.ANNOTATIONS_TO_SKIP}
    d.metadata.annotations.clear()
    d.metadata.annotations.update(keep)
    for key, value in rs.metadata.annotations.items():
        if key not in deployutil.ANNOTATIONS_TO_SKIP:
            d.metadata.annotations[key] = value


async def run_undo(ctx: Context, args: argparse.Namespace) -> int:
    client = await ctx.client()
    for cls, ds_name in _daemonsets(args):
        ctx.out(await rollout_daemonset.undo(client, ctx, ds_name, args.to_revision, cls))
    for name in _deployments(ctx, args):
        outcome: list[str] = []

        async def change(d: apps_pb2.Deployment, name: str = name,
                         outcome: list[str] = outcome) -> bool:
            if d.spec.paused:
                raise CliError(f"you cannot rollback a paused deployment; resume it first "
                               f"with 'flotilla rollout resume {_label(name)}' and try again")
            target = rollback_target(await owned_replica_sets(client, d), args.to_revision)
            if target is None:
                raise CliError(f'no rollout history found for deployment "{name}"')
            rev = deployutil.revision_of(target)
            if deployutil.equal_ignore_hash(d.spec.template, target.spec.template):
                outcome[:] = [f"{_label(name)} skipped rollback (current template already "
                              f"matches revision {rev})"]
                return False
            apply_rollback(d, target)
            outcome[:] = [f"{_label(name)} rolled back"]
            return True

        await _update(client, ctx, name, change)
        ctx.out(outcome[0])
    return 0


# -- pause / resume / restart ---------------------------------------------------------------


async def run_simple(ctx: Context, args: argparse.Namespace) -> int:
    client = await ctx.client()
    verb = args.rollout_verb
    for cls, ds_name in _daemonsets(args):
        if verb != "restart":
            doing = {"pause": "pausing", "resume": "resuming"}[verb]
            info = kinds.by_message(cls)
            raise CliError(f'{info.plural}.{info.group} "{ds_name}" {doing} is not supported')
        await rollout_daemonset.restart(client, ctx, ds_name, cls)
        ctx.out(f"{rollout_daemonset.label(ds_name, cls)} restarted")
    for name in _deployments(ctx, args):

        async def change(d: apps_pb2.Deployment, name: str = name) -> bool:
            if verb == "restart":
                if d.spec.paused:
                    raise CliError(f'deployments.apps "{name}" can\'t restart paused '
                                   "deployment (run rollout resume first)")
                d.spec.template.metadata.annotations[deployutil.RESTARTED_AT_ANNOTATION] = (
                    timeutil.format_rfc3339(float(int(time.time()))))
                return True
            want = verb == "pause"
            if d.spec.paused == want:
                return False
            d.spec.paused = want
            return True

        changed = await _update(client, ctx, name, change)
        past = {"pause": "paused", "resume": "resumed", "restart": "restarted"}[verb]
        ctx.out(f"{_label(name)} {past}" if changed else f"{_label(name)} already {past}")
    return 0
