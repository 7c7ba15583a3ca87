"""ServiceAccount admission's token part: every new pod runs as an account and, unless told
not to, sees its API credentials at /var/run/secrets/kubernetes.io/serviceaccount.

As Kubernetes' ServiceAccount admission plugin: a pod naming no account runs as
``default``; unless ``automountServiceAccountToken`` is false (the pod's field wins over
the account's; unset on both is true), the pod gets a projected volume
``kube-api-access-<5 random characters>`` holding

- ``token``: a ServiceAccountToken source (expirationSeconds 3607, Kubernetes' value),
  which the kubelet fills with a token bound to the pod;
- ``ca.crt``: key ``ca.crt`` of the ``kube-root-ca.crt`` ConfigMap;
- ``namespace``: the pod's namespace (downward API),

mode 0644, mounted read-only at that path in every container and init container that does
not already mount something there (none needing it: no volume).

Unlike Kubernetes, a pod whose account does not exist (yet) is not refused: the default
account is made by a controller shortly after its namespace, and the kubelet retries the
volume until the token can be had.

Pure functions over the pod message; no I/O.
"""

from __future__ import annotations

import secrets
from typing import Any

from control.api.pb import core_pb2

DEFAULT_SERVICE_ACCOUNT = "default"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
# Kubernetes asks for 3607 s: a token 7 s over the hour tells its metrics the kubelet made it
TOKEN_EXPIRATION_SECONDS = 3607
VOLUME_MODE = 0o644
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' name generator's alphabet


def should_automount(pod: Any, account: Any | None) -> bool:
    """The pod's automountServiceAccountToken, else the account's, else true."""
    if pod.spec.HasField("automount_service_account_token"):
        return bool(pod.spec.automount_service_account_token)
    if account is not None and account.HasField("automount_service_account_token"):
        return bool(account.automount_service_account_token)
    return True


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def token_volume(name: str) -> core_pb2.Volume:
    return core_pb2.Volume(name=name, projected=core_pb2.ProjectedVolumeSource(
        default_mode=VOLUME_MODE,
        sources=[
            core_pb2.VolumeProjection(service_account_token=core_pb2.ServiceAccountTokenProjection(
                path="token", expiration_seconds=TOKEN_EXPIRATION_SECONDS)),
            core_pb2.VolumeProjection(config_map=core_pb2.ConfigMapProjection(
                name=ROOT_CA_CONFIGMAP, items=[core_pb2.KeyToPath(key="ca.crt",
                                                                  path="ca.crt")])),
            core_pb2.VolumeProjection(downward_api=core_pb2.DownwardAPIProjection(items=[
                core_pb2.DownwardAPIVolumeFile(path="namespace",
                                               field_ref=core_pb2.ObjectFieldSelector(
                                                   api_version="v1",
                                                   field_path="metadata.namespace"))])),
        ]))


def admit_pod(pod: Any, account: Any | None, suffix: str | None = None) -> None:
    """Name the default account if none, and mount the token volume (see the module
    docstring). ``account`` is the pod's ServiceAccount, or None when it does not exist."""
    spec = pod.spec
    if not spec.service_account_name:
        spec.service_account_name = DEFAULT_SERVICE_ACCOUNT
        spec.service_account = DEFAULT_SERVICE_ACCOUNT
    if not should_automount(pod, account):
        return
    containers = [c for c in (*spec.init_containers, *spec.containers)
                  if not any(m.mount_path.rstrip("/") == TOKEN_MOUNT_PATH
                             for m in c.volume_mounts)]
    if not containers:
        return
    taken = {v.name for v in spec.volumes}
    name = VOLUME_PREFIX + (suffix or random_suffix())
    while name in taken:
        name = VOLUME_PREFIX + random_suffix()
    spec.volumes.append(token_volume(name))
    for c in containers:
        c.volume_mounts.add(name=name, read_only=True, mount_path=TOKEN_MOUNT_PATH)


__all__ = ["DEFAULT_SERVICE_ACCOUNT", "ROOT_CA_CONFIGMAP", "TOKEN_EXPIRATION_SECONDS",
           "TOKEN_MOUNT_PATH", "VOLUME_PREFIX", "admit_pod", "should_automount",
           "token_volume"]
