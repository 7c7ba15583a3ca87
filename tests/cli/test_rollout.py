"""`flotilla rollout ...` against a real control plane (the cluster fixture runs the
Deployment and ReplicaSet controllers; ``simulated_pods`` plays the kubelet). The CLI runs
in-process on a thread (it owns its own event loop), bounded by a timeout."""

from __future__ import annotations

import pytest

from control.api import deployutil
from control.api.pb import apps_pb2
from control.cli.errors import CliError
from control.cli.verbs_rollout import apply_rollback, rollback_target
from control.controllers import deployment_util as du
from tests.conftest import Cluster
from tests.support import eventually
from tests.support.cli import flotilla
from tests.support.deployments import (
    deployment,
    get_deploy,
    image_of,
    mutate,
    replica_sets,
    rolled_out,
    set_image,
    simulated_pods,
)


def rs_with(revision: int, image: str, **annotations: str) -> apps_pb2.ReplicaSet:
    rs = du.new_replica_set(deployment("web", image=image), None)
    rs.metadata.annotations[deployutil.REVISION_ANNOTATION] = str(revision)
    rs.metadata.annotations.update(annotations)
    return rs


def test_rollback_target_and_patch() -> None:
    rss = [rs_with(1, "v1"), rs_with(3, "v3"), rs_with(2, "v2")]
    assert image_of(rollback_target(rss, 0).spec.template) == "v2"  # the one before latest
    assert image_of(rollback_target(rss, 1).spec.template) == "v1"
    assert rollback_target(rss[:1], 0) is None
    with pytest.raises(CliError, match="unable to find specified revision 7"):
        rollback_target(rss, 7)
    d = deployment("web", image="v3")
    d.metadata.annotations[deployutil.REVISION_ANNOTATION] = "3"
    d.metadata.annotations["note"] = "dropped"
    target = rs_with(1, "v1", **{deployutil.CHANGE_CAUSE_ANNOTATION: "first"})
    apply_rollback(d, target)
    assert image_of(d.spec.template) == "v1"
    assert deployutil.HASH_LABEL not in d.spec.template.metadata.labels
    assert dict(d.metadata.annotations) == {deployutil.REVISION_ANNOTATION: "3",
                                            deployutil.CHANGE_CAUSE_ANNOTATION: "first"}


async def test_status_waits_for_the_rollout(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c):
        await c.create(deployment("web", 3))
        code, out, err = await flotilla(cluster, "rollout", "status", "deployment/web",
                                        "--timeout", "20s")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1] == 'deployment "web" successfully rolled out'
    assert all(line.startswith(("Waiting for deployment", 'deployment "web"'))
               for line in lines)
    assert len(lines) == len(set(lines))  # each message once
    code, out, _ = await flotilla(cluster, "rollout", "status", "deployment", "web",
                                  "--watch=false")
    assert (code, out) == (0, 'deployment "web" successfully rolled out\n')


async def test_status_fails_on_a_stalled_rollout_and_on_timeout(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c, ready=lambda p: image_of(p) == "v1"):
        await c.create(deployment("stuck", 2, deadline=2))
        await c.create(deployment("slow", 2))  # the default 600 s deadline
        await eventually(lambda: rolled_out(c, "stuck"))
        await eventually(lambda: rolled_out(c, "slow"))
        await set_image(c, "stuck", "broken")
        await set_image(c, "slow", "broken")
        code, out, err = await flotilla(cluster, "rollout", "status", "deployment/stuck",
                                        "--timeout", "20s")
        assert code == 1
        assert 'error: deployment "stuck" exceeded its progress deadline' in err
        assert "Waiting for deployment \"stuck\" rollout to finish" in out
        code, out, err = await flotilla(cluster, "rollout", "status", "deployment/slow",
                                        "--timeout", "1s")
        assert code == 1
        assert "error: timed out waiting for the condition" in err
        assert '1 of 2 updated replicas are available' in out or "new replicas" in out


async def test_history_and_undo(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c):
        d = deployment("app", 2)
        d.metadata.annotations[deployutil.CHANGE_CAUSE_ANNOTATION] = "first"
        await c.create(d)
        await eventually(lambda: rolled_out(c, "app"))
        code, out, err = await flotilla(cluster, "rollout", "undo", "deployment/app")
        assert code == 1 and 'no rollout history found for deployment "app"' in err

        def second(d: apps_pb2.Deployment) -> None:
            d.spec.template.spec.containers[0].image = "v2"
            d.metadata.annotations[deployutil.CHANGE_CAUSE_ANNOTATION] = "second"

        await mutate(c, "app", second)
        await eventually(lambda: rolled_out(c, "app", "v2"))

        code, out, _ = await flotilla(cluster, "rollout", "history", "deployment/app")
        assert code == 0
        assert out.splitlines()[:4] == ["deployment.apps/app", "REVISION   CHANGE-CAUSE",
                                        "1          first", "2          second"]

        code, out, err = await flotilla(cluster, "rollout", "undo", "deployment/app")
        assert (code, out) == (0, "deployment.apps/app rolled back\n"), err
        # as kubectl: the template is the old one when the verb returns
        now = await get_deploy(c, "app")
        assert image_of(now.spec.template) == "v1"
        assert now.metadata.annotations[deployutil.CHANGE_CAUSE_ANNOTATION] == "first"
        await eventually(lambda: rolled_out(c, "app", "v1"))

        async def revision_three() -> bool:
            revs = {image_of(rs.spec.template): rs.metadata.annotations for rs in
                    await replica_sets(c, "app")}
            return revs["v1"].get(deployutil.REVISION_ANNOTATION) == "3"

        await eventually(revision_three)
        v1 = next(rs for rs in await replica_sets(c, "app")
                  if image_of(rs.spec.template) == "v1")
        assert v1.metadata.annotations[deployutil.REVISION_HISTORY_ANNOTATION] == "1"
        assert len(await replica_sets(c, "app")) == 2  # the same ReplicaSet came back

        code, out, _ = await flotilla(cluster, "rollout", "history", "deployment/app")
        assert [line.split()[0] for line in out.splitlines()[2:4]] == ["2", "3"]
        code, out, _ = await flotilla(cluster, "rollout", "history", "deployment/app",
                                      "--revision", "2")
        assert code == 0 and "with revision #2" in out and "image: v2" in out

        code, out, err = await flotilla(cluster, "rollout", "undo", "deployment/app",
                                        "--to-revision", "3")
        assert code == 0 and "skipped rollback" in out, err
        code, out, err = await flotilla(cluster, "rollout", "undo", "deployment/app",
                                        "--to-revision", "9")
        assert code == 1 and "unable to find specified revision 9 in history" in err
        code, out, err = await flotilla(cluster, "rollout", "undo", "deployment/app",
                                        "--to-revision", "2")
        assert code == 0, err
        await eventually(lambda: rolled_out(c, "app", "v2"))


async def test_pause_resume_restart(cluster: Cluster) -> None:
    c = cluster.client
    async with simulated_pods(c):
        await c.create(deployment("pr", 2))
        await eventually(lambda: rolled_out(c, "pr"))
        assert await flotilla(cluster, "rollout", "pause", "deployment/pr") == (
            0, "deployment.apps/pr paused\n", "")
        assert (await flotilla(cluster, "rollout", "pause", "deployment/pr"))[1] == (
            "deployment.apps/pr already paused\n")
        assert (await get_deploy(c, "pr")).spec.paused
        code, _, err = await flotilla(cluster, "rollout", "restart", "deployment/pr")
        assert code == 1 and "can't restart paused deployment" in err
        code, _, err = await flotilla(cluster, "rollout", "undo", "deployment/pr")
        assert code == 1 and "cannot rollback a paused deployment" in err
        assert (await flotilla(cluster, "rollout", "resume", "deployment/pr"))[1] == (
            "deployment.apps/pr resumed\n")
        assert (await flotilla(cluster, "rollout", "resume", "deployment/pr"))[1] == (
            "deployment.apps/pr already resumed\n")
        code, out, _ = await flotilla(cluster, "rollout", "restart", "deployment/pr")
        assert (code, out) == (0, "deployment.apps/pr restarted\n")
        d = await get_deploy(c, "pr")
        assert deployutil.RESTARTED_AT_ANNOTATION in d.spec.template.metadata.annotations
        code, out, err = await flotilla(cluster, "rollout", "status", "deployment/pr",
                                        "--timeout", "20s")
        assert code == 0, err
        revisions = sorted(rs.metadata.annotations[deployutil.REVISION_ANNOTATION]
                           for rs in await replica_sets(c, "pr"))
        assert revisions == ["1", "2"]


async def test_rollout_refuses_other_kinds_and_missing_deployments(cluster: Cluster) -> None:
    code, _, err = await flotilla(cluster, "rollout", "status", "pod/x")
    assert code == 1 and "rollout works on deployments" in err
    code, _, err = await flotilla(cluster, "rollout", "history", "deployment/nope")
    assert code == 1 and 'deployments.apps "nope" not found' in err
