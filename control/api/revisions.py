"""ControllerRevision data as Kubernetes writes it, shared by the DaemonSet controller and
the CLI's rollout verbs: the pod template as the strategic-merge patch
``{"spec": {"template": {..., "$patch": "replace"}}}``, and the annotations rollouts use.

Concurrency contract: pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from control.api import convert
from control.api.pb import core_pb2

CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"


def revision_data(template: core_pb2.PodTemplateSpec) -> struct_pb2.Struct:
    """The ``data`` of a revision holding ``template``."""
    body = convert.to_dict(template)
    body["$patch"] = "replace"
    data = struct_pb2.Struct()
    data.update({"spec": {"template": body}})
    return data


def template_of(data: struct_pb2.Struct) -> core_pb2.PodTemplateSpec:
    """The pod template a revision's ``data`` holds."""
    raw: Mapping[str, Any] = convert.to_dict(data)
    body = dict(raw.get("spec", {}).get("template", {}))
    body.pop("$patch", None)
    out: core_pb2.PodTemplateSpec = convert.from_dict(body, core_pb2.PodTemplateSpec())
    return out
