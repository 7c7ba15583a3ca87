"""ServiceAccount admission's token volume as tables: the default account, who decides
automounting (the pod over the account), which containers get the mount, the volume."""

from __future__ import annotations

from typing import Any

import pytest

from control.api import convert
from control.api.pb import core_pb2
from control.apiserver.serviceaccount_admission import (
    TOKEN_MOUNT_PATH,
    admit_pod,
    should_automount,
)


def pod(**spec: Any) -> core_pb2.Pod:
    spec.setdefault("containers", [{"name": "app", "image": "busybox"}])
    return convert.from_dict({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "p", "namespace": "ns"}, "spec": spec},
                             core_pb2.Pod())


def account(automount: bool | None) -> core_pb2.ServiceAccount:
    sa = core_pb2.ServiceAccount()
    if automount is not None:
        sa.automount_service_account_token = automount
    return sa


@pytest.mark.parametrize(("pod_says", "account_says", "mounted"), [
    (None, None, True),
    (None, True, True),
    (None, False, False),
    (True, False, True),
    (False, True, False),
    (False, None, False),
])
def test_the_pod_wins_over_the_account(pod_says: bool | None, account_says: bool | None,
                                       mounted: bool) -> None:
    p = pod() if pod_says is None else pod(automountServiceAccountToken=pod_says)
    assert should_automount(p, account(account_says)) is mounted
    admit_pod(p, account(account_says))
    assert bool(p.spec.volumes) is mounted


def test_the_volume_and_mounts() -> None:
    p = pod(initContainers=[{"name": "init", "image": "busybox"}],
            containers=[{"name": "a", "image": "busybox"},
                        {"name": "b", "image": "busybox", "volumeMounts": [
                            {"name": "mine", "mountPath": TOKEN_MOUNT_PATH + "/"}]}],
            volumes=[{"name": "mine", "emptyDir": {}}])
    admit_pod(p, None, suffix="x7k2q")
    doc = convert.to_dict(p)["spec"]
    assert doc["serviceAccountName"] == doc["serviceAccount"] == "default"
    assert doc["volumes"][1] == {"name": "kube-api-access-x7k2q", "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}
    mount = {"name": "kube-api-access-x7k2q", "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}
    assert doc["initContainers"][0]["volumeMounts"] == [mount]
    assert doc["containers"][0]["volumeMounts"] == [mount]
    # a container mounting its own credentials there keeps them
    assert doc["containers"][1]["volumeMounts"] == [
        {"name": "mine", "mountPath": TOKEN_MOUNT_PATH + "/"}]


def test_nothing_needs_it_no_volume_and_names_do_not_clash() -> None:
    p = pod(containers=[{"name": "a", "image": "busybox", "volumeMounts": [
        {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}],
            volumes=[{"name": "mine", "emptyDir": {}}])
    admit_pod(p, None)
    assert [v.name for v in p.spec.volumes] == ["mine"]
    q = pod(serviceAccountName="robot", volumes=[{"name": "kube-api-access-aaaaa",
                                                  "emptyDir": {}}])
    admit_pod(q, None, suffix="aaaaa")
    assert q.spec.service_account_name == "robot"
    names = [v.name for v in q.spec.volumes]
    assert len(set(names)) == 2 and names[1].startswith("kube-api-access-")
