"""`flotilla rollout status|history|undo|restart daemonset/NAME` and `statefulset/NAME`:
kubectl's rollout viewers, history viewer and rollbacker of the kinds whose history is
ControllerRevisions (every function takes the kind's message class, DaemonSet by default).

- ``status``: kubectl's messages ('Waiting for daemon set "x" rollout to finish: 1 out of 3
  new pods have been updated...', '... 2 of 3 updated pods are available...', 'daemon set
  "x" successfully rolled out'; a StatefulSet's 'Waiting for 2 pods to be ready...',
  'partitioned roll out complete: ...', 'statefulset rolling update complete 3 pods at
  revision web-xyz...'); only RollingUpdate objects have a rollout status.
- ``history``: the object's ControllerRevisions (REVISION, CHANGE-CAUSE from the
  revision's ``kubernetes.io/change-cause`` annotation); ``--revision N`` prints that
  revision's pod template.
- ``undo [--to-revision N]``: the chosen revision's template written back into the
  object (a compare-and-swap update, retried on Conflict); without ``--to-revision``
  the revision before the newest. The controller then renumbers that revision.
- ``restart``: the template annotation ``kubectl.kubernetes.io/restartedAt``.

Pure parts (``status_message``, ``rollback_target``) are plain functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from control.api import convert, kinds, revisions, timeutil
from control.api import errors as api_errors
from control.api.pb import apps_pb2
from control.api.podutil import controller_of
from control.cli import printers
from control.cli.errors import CliError
from control.cli.main import api_error_text, ref_name
from control.cli.verbs_misc import table

if TYPE_CHECKING:
    from control.cli.main import Context
    from control.client.client import ApiClient

CONFLICT_RETRIES = 5


def _info(cls: type[Any] = apps_pb2.DaemonSet) -> kinds.KindInfo:
    return kinds.by_message(cls)


def label(name: str, cls: type[Any] = apps_pb2.DaemonSet) -> str:
    return ref_name(_info(cls), name)


def status_message(ds: Any) -> tuple[str, bool]:
    """kubectl's DaemonSetStatusViewer (StatefulSetStatusViewer for a StatefulSet):
    (message, done); CliError for OnDelete."""
    if isinstance(ds, apps_pb2.StatefulSet):
        return statefulset_status_message(ds)
    name = ds.metadata.name
    if ds.spec.update_strategy.type not in ("", "RollingUpdate"):
        raise CliError("rollout status is only available for RollingUpdate strategy type")
    s = ds.status
    if s.observed_generation < ds.metadata.generation:
        return "Waiting for daemon set spec update to be observed...", False
    if s.updated_number_scheduled < s.desired_number_scheduled:
        return (f'Waiting for daemon set "{name}" rollout to finish: '
                f"{s.updated_number_scheduled} out of {s.desired_number_scheduled} new pods "
                "have been updated...", False)
    if s.number_available < s.desired_number_scheduled:
        return (f'Waiting for daemon set "{name}" rollout to finish: {s.number_available} '
                f"of {s.desired_number_scheduled} updated pods are available...", False)
    return f'daemon set "{name}" successfully rolled out', True


def statefulset_status_message(ss: apps_pb2.StatefulSet) -> tuple[str, bool]:
    if ss.spec.update_strategy.type not in ("", "RollingUpdate"):
        raise CliError("rollout status is only available for RollingUpdate strategy type")
    s = ss.status
    if s.observed_generation == 0 or s.observed_generation < ss.metadata.generation:
        return "Waiting for statefulset spec update to be observed...", False
    replicas = ss.spec.replicas if ss.spec.HasField("replicas") else 1
    if s.ready_replicas < replicas:
        return f"Waiting for {replicas - s.ready_replicas} pods to be ready...", False
    ru = ss.spec.update_strategy.rolling_update
    partition = ru.partition if ru.HasField("partition") else 0
    if partition > 0:
        if s.updated_replicas < replicas - partition:
            return ("Waiting for partitioned roll out to finish: "
                    f"{s.updated_replicas} out of {replicas - partition} new pods have been "
                    "updated...", False)
        return (f"partitioned roll out complete: {s.updated_replicas} new pods have been "
                "updated...", True)
    if s.update_revision != s.current_revision:
        return ("waiting for statefulset rolling update to complete "
                f"{s.updated_replicas} pods at revision {s.update_revision}...", False)
    return (f"statefulset rolling update complete {s.current_replicas} pods at revision "
            f"{s.current_revision}...", True)


def rollback_target(revisions: list[Any], to_revision: int) -> Any | None:
    """The revision to roll back to; None when there is no earlier one."""
    if to_revision > 0:
        for r in revisions:
            if r.revision == to_revision:
                return r
        raise CliError(f"unable to find specified revision {to_revision} in history")
    ordered = sorted(revisions, key=lambda r: r.revision)
    return ordered[-2] if len(ordered) >= 2 else None


async def get(client: ApiClient, ctx: Context, name: str,
              cls: type[Any] = apps_pb2.DaemonSet) -> Any:
    try:
        return await client.get(cls, name, ctx.namespace)
    except api_errors.NotFound as e:
        raise CliError(f"Error from server (NotFound): {api_error_text(e, _info(cls), name)}"
                       ) from None


async def owned_revisions(client: ApiClient, ds: Any) -> list[Any]:
    listing = await client.list_all(apps_pb2.ControllerRevision, ds.metadata.namespace)
    out = []
    for r in listing.items:
        ref = controller_of(r)
        if ref is not None and ref.uid == ds.metadata.uid:
            out.append(r)
    return sorted(out, key=lambda r: r.revision)


async def update(client: ApiClient, ctx: Context, name: str,
                 change: Callable[[Any, list[Any]], bool],
                 cls: type[Any] = apps_pb2.DaemonSet) -> bool:
    for attempt in range(CONFLICT_RETRIES):
        ds = await get(client, ctx, name, cls)
        if not change(ds, await owned_revisions(client, ds)):
            return False
        try:
            await client.update(ds)
            return True
        except api_errors.Conflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
    return False


async def history(client: ApiClient, ctx: Context, name: str, revision: int,
                  cls: type[Any] = apps_pb2.DaemonSet) -> None:
    ds = await get(client, ctx, name, cls)
    revs = await owned_revisions(client, ds)
    if revision:
        match = next((r for r in revs if r.revision == revision), None)
        if match is None:
            raise CliError(f"unable to find the specified revision {revision}")
        ctx.out(f"{label(name, cls)} with revision #{revision}")
        ctx.out("Pod Template:")
        body = convert.to_dict(revisions.template_of(match.data))
        for line in printers.dump_yaml(body).splitlines():
            ctx.out(f"  {line}")
        return
    ctx.out(label(name, cls))
    rows = [[str(r.revision), r.metadata.annotations.get(revisions.CHANGE_CAUSE_ANNOTATION, "<none>")]
            for r in revs]
    ctx.stdout.write(table(["REVISION", "CHANGE-CAUSE"], rows))
    ctx.out("")


async def undo(client: ApiClient, ctx: Context, name: str, to_revision: int,
               cls: type[Any] = apps_pb2.DaemonSet) -> str:
    outcome: list[str] = []

    def change(ds: Any, revs: list[Any]) -> bool:
        target = rollback_target(revs, to_revision)
        if target is None:
            raise CliError(f'no rollout history found for {_info(cls).singular} "{name}"')
        template = revisions.template_of(target.data)
        if convert.to_dict(template) == convert.to_dict(ds.spec.template):
            outcome[:] = [f"{label(name, cls)} skipped rollback (current template already "
                          f"matches revision {target.revision})"]
            return False
        ds.spec.template.CopyFrom(template)
        outcome[:] = [f"{label(name, cls)} rolled back"]
        return True

    await update(client, ctx, name, change, cls)
    return outcome[0]


async def restart(client: ApiClient, ctx: Context, name: str,
                  cls: type[Any] = apps_pb2.DaemonSet) -> bool:
    def change(ds: Any, _revs: list[Any]) -> bool:
        if ds.spec.update_strategy.type == "OnDelete":
            info = _info(cls)
            raise CliError(f'{info.plural}.{info.group} "{name}" can\'t restart with the '
                           "OnDelete update strategy")
        ds.spec.template.metadata.annotations[revisions.RESTARTED_AT_ANNOTATION] = (
            timeutil.format_rfc3339(float(int(time.time()))))
        return True

    return await update(client, ctx, name, change, cls)
