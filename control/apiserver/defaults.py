"""Per-kind defaulting: fills in what a user may leave out, so stored objects are complete.

Owns :func:`apply_defaults`, which the apiserver calls at admission (on create and on
update, before validation) with the decoded message. It does what Kubernetes' defaulting
functions do (``pkg/apis/<group>/v1/defaults.go`` and the generated ``SetObjectDefaults_*``
walks): every ``PodSpec`` — in a Pod and in the template of every workload kind — gets the
same container, probe, volume and env defaults, and each kind gets its own on top.

Rules kept from Kubernetes on purpose:

- A default is applied only when the field is unset: an ``optional`` scalar without
  presence, an empty string, or 0 where Kubernetes' field is a plain (non-pointer) int.
- Requests are copied from limits, and ``enableServiceLinks`` is set, only on a Pod, never
  on a template: Kubernetes does it in ``SetDefaults_Pod`` so that templates stay as the
  user wrote them and a Deployment's template hash does not change across upgrades.
- A Job's (or CronJob's) template gets no ``restartPolicy``: Kubernetes would default it to
  ``Always`` and then refuse it; leaving it empty lets validation say "Required value".
- Things that are not defaulting proper stay elsewhere: a Namespace's finalizers and phase,
  a Service's cluster IP, a Pod's service account and priority are set by other admission
  steps.

Defaulting is idempotent (running it twice changes nothing) and never fails: a malformed
value is left as it is for validation to report. Pure module: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, MutableMapping
from fractions import Fraction

from google.protobuf.message import Message

from control.api import quantity
from control.api.pb import (
    apps_pb2,
    batch_pb2,
    core_pb2,
    meta_pb2,
    rbac_pb2,
    scheduling_pb2,
    storage_pb2,
)

__all__ = [
    "DEFAULT_SCHEDULER_NAME",
    "DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS",
    "apply_defaults",
    "default_image_pull_policy",
    "default_pod_spec",
    "default_pod_template",
]

DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# 0644: the mode Kubernetes gives files projected from secrets, config maps and the
# downward API when the user does not say.
DEFAULT_FILE_MODE = 0o644
CLIENT_IP_AFFINITY_SECONDS = 10800  # 3 hours, Kubernetes' DefaultClientIPServiceAffinitySeconds
SERVICE_ACCOUNT_TOKEN_SECONDS = 3600
RBAC_GROUP = "rbac.authorization.k8s.io"

# Job selector generation (Kubernetes' batch registry strategy, generateSelector).
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

_INT32_MAX = 2**31 - 1

# ---------------------------------------------------------------------------------------
# Small helpers


def default_image_pull_policy(image: str) -> str:
    """``Always`` when the image's tag is ``latest`` or missing (and no digest), else
    ``IfNotPresent`` — Kubernetes' rule: an untagged image means ``:latest``, which moves.

    The tag is what follows the last ``:`` of the last path component, so a registry port
    (``localhost:5000/app``) is not mistaken for a tag.
    """
    if not image:
        return "IfNotPresent"
    name, at, _digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    _, colon, tag = last.rpartition(":")
    if not colon:
        # No tag: with a digest the image is pinned, without one it is ":latest".
        return "IfNotPresent" if at else "Always"
    return "Always" if tag == "latest" else "IfNotPresent"


def _round_resource_list(resources: MutableMapping[str, meta_pb2.Quantity]) -> None:
    """Round every quantity up to milli precision and write it in canonical form.

    Kubernetes does this to every ResourceList at defaulting (``"0.5m"`` cpu is stored as
    ``"1m"``), so what is stored is what the scheduler and quota will count. A quantity
    that does not parse is left alone: validation reports it.
    """
    for key in list(resources):
        text = resources[key].string
        try:
            amount = quantity.parse_quantity(text)
            family = quantity.quantity_family(text)
        except quantity.QuantityError:
            continue
        milli = Fraction(quantity.milli_value(amount), 1000)
        canonical = quantity.format_quantity(milli, family)
        if canonical != text:
            resources[key].string = canonical


def _requests_from_limits(res: core_pb2.ResourceRequirements) -> None:
    """Per resource: a limit without a request means the request equals the limit."""
    for key, limit in res.limits.items():
        if key not in res.requests:
            res.requests[key].CopyFrom(limit)


# ---------------------------------------------------------------------------------------
# PodSpec and what it contains


def _default_http_get(action: core_pb2.HTTPGetAction) -> None:
    if not action.path:
        action.path = "/"
    if not action.scheme:
        action.scheme = "HTTP"


def _default_probe(probe: core_pb2.Probe) -> None:
    if probe.HasField("http_get"):
        _default_http_get(probe.http_get)
    # Kubernetes' fields are plain ints here, so 0 means "unset" (and is invalid anyway).
    if probe.timeout_seconds == 0:
        probe.timeout_seconds = 1
    if probe.period_seconds == 0:
        probe.period_seconds = 10
    if probe.success_threshold == 0:
        probe.success_threshold = 1
    if probe.failure_threshold == 0:
        probe.failure_threshold = 3


def _default_lifecycle_handler(handler: core_pb2.LifecycleHandler) -> None:
    if handler.HasField("http_get"):
        _default_http_get(handler.http_get)


def _default_field_ref(sel: core_pb2.ObjectFieldSelector) -> None:
    if not sel.api_version:
        sel.api_version = "v1"


def _default_container(c: core_pb2.Container | core_pb2.EphemeralContainer) -> None:
    if not c.image_pull_policy:
        c.image_pull_policy = default_image_pull_policy(c.image)
    if not c.termination_message_path:
        c.termination_message_path = TERMINATION_MESSAGE_PATH
    if not c.termination_message_policy:
        c.termination_message_policy = "File"
    for port in c.ports:
        if not port.protocol:
            port.protocol = "TCP"
    for env in c.env:
        if env.HasField("value_from") and env.value_from.HasField("field_ref"):
            _default_field_ref(env.value_from.field_ref)
    for name in ("liveness_probe", "readiness_probe", "startup_probe"):
        if c.HasField(name):
            _default_probe(getattr(c, name))
    if c.HasField("lifecycle"):
        for name in ("post_start", "pre_stop"):
            if c.lifecycle.HasField(name):
                _default_lifecycle_handler(getattr(c.lifecycle, name))
    if c.HasField("resources"):
        _round_resource_list(c.resources.limits)
        _round_resource_list(c.resources.requests)


def _default_downward_files(files: Iterable[core_pb2.DownwardAPIVolumeFile]) -> None:
    for f in files:
        if f.HasField("field_ref"):
            _default_field_ref(f.field_ref)


def _default_pvc_spec(spec: core_pb2.PersistentVolumeClaimSpec) -> None:
    if not spec.HasField("volume_mode"):
        spec.volume_mode = "Filesystem"
    if spec.HasField("resources"):
        _round_resource_list(spec.resources.limits)
        _round_resource_list(spec.resources.requests)


# Every field of Volume but its name is a source; computed once from the descriptor so a
# source added to the proto is covered without touching this module.
_VOLUME_SOURCES: tuple[str, ...] = tuple(
    f.name for f in core_pb2.Volume.DESCRIPTOR.fields if f.name != "name"
)


def _default_volume(v: core_pb2.Volume) -> None:
    if not any(v.HasField(name) for name in _VOLUME_SOURCES):
        # Kubernetes: a volume with no source is an emptyDir.
        v.empty_dir.SetInParent()
    if v.HasField("host_path") and not v.host_path.HasField("type"):
        v.host_path.type = ""
    if v.HasField("secret") and not v.secret.HasField("default_mode"):
        v.secret.default_mode = DEFAULT_FILE_MODE
    if v.HasField("config_map") and not v.config_map.HasField("default_mode"):
        v.config_map.default_mode = DEFAULT_FILE_MODE
    if v.HasField("downward_api"):
        if not v.downward_api.HasField("default_mode"):
            v.downward_api.default_mode = DEFAULT_FILE_MODE
        _default_downward_files(v.downward_api.items)
    if v.HasField("projected"):
        if not v.projected.HasField("default_mode"):
            v.projected.default_mode = DEFAULT_FILE_MODE
        for src in v.projected.sources:
            if src.HasField("downward_api"):
                _default_downward_files(src.downward_api.items)
            if src.HasField("service_account_token") and not (
                src.service_account_token.HasField("expiration_seconds")
            ):
                src.service_account_token.expiration_seconds = SERVICE_ACCOUNT_TOKEN_SECONDS
    if v.HasField("iscsi") and not v.iscsi.iscsi_interface:
        v.iscsi.iscsi_interface = "default"
    if v.HasField("image") and not v.image.pull_policy:
        v.image.pull_policy = default_image_pull_policy(v.image.reference)
    if v.HasField("ephemeral") and v.ephemeral.HasField("volume_claim_template"):
        _default_pvc_spec(v.ephemeral.volume_claim_template.spec)


def default_pod_spec(spec: core_pb2.PodSpec, *, restart_policy: str | None = "Always") -> None:
    """Kubernetes' ``SetDefaults_PodSpec`` and everything nested in a PodSpec.

    ``restart_policy`` is the default for an empty ``restartPolicy``; ``None`` leaves it
    empty (Job templates, where the user must choose OnFailure or Never).
    """
    if not spec.dns_policy:
        spec.dns_policy = "ClusterFirst"
    if not spec.restart_policy and restart_policy is not None:
        spec.restart_policy = restart_policy
    if not spec.HasField("security_context"):
        spec.security_context.SetInParent()
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    if not spec.scheduler_name:
        spec.scheduler_name = DEFAULT_SCHEDULER_NAME
    # serviceAccount is the deprecated spelling of serviceAccountName: Kubernetes' v1
    # conversion reads it when the new field is empty and always writes it back equal.
    if not spec.service_account_name and spec.service_account:
        spec.service_account_name = spec.service_account
    if spec.service_account_name:
        spec.service_account = spec.service_account_name
    for c in (*spec.init_containers, *spec.containers):
        _default_container(c)
    for ec in spec.ephemeral_containers:
        _default_container(ec)
    for v in spec.volumes:
        _default_volume(v)
    _round_resource_list(spec.overhead)
    if spec.HasField("resources"):
        _round_resource_list(spec.resources.limits)
        _round_resource_list(spec.resources.requests)
    if spec.host_network:
        # With the host's network a container port is a host port; templates too
        # (Kubernetes' DefaultHostNetworkHostPortsInPodTemplates behaviour).
        for c in (*spec.init_containers, *spec.containers):
            for port in c.ports:
                if port.host_port == 0:
                    port.host_port = port.container_port


def default_pod_template(
    template: core_pb2.PodTemplateSpec, *, restart_policy: str | None = "Always"
) -> None:
    """Defaults of a template's PodSpec (not the Pod-only ones: see the module docstring)."""
    default_pod_spec(template.spec, restart_policy=restart_policy)


# ---------------------------------------------------------------------------------------
# core/v1 kinds


def _pod(pod: core_pb2.Pod) -> None:
    default_pod_spec(pod.spec)
    for c in (*pod.spec.init_containers, *pod.spec.containers):
        if c.HasField("resources"):
            _requests_from_limits(c.resources)
    if pod.spec.HasField("resources"):
        # Pod-level resources: only the simple half of Kubernetes' rule (requests from
        # pod-level limits); aggregating container requests is left out.
        _requests_from_limits(pod.spec.resources)
    if not pod.spec.HasField("enable_service_links"):
        pod.spec.enable_service_links = True


def _pod_template(obj: core_pb2.PodTemplate) -> None:
    default_pod_template(obj.template)


def _replication_controller(rc: core_pb2.ReplicationController) -> None:
    labels = rc.spec.template.metadata.labels if rc.spec.HasField("template") else {}
    if labels:
        if not rc.spec.selector:
            rc.spec.selector.update(labels)
        if not rc.metadata.labels:
            rc.metadata.labels.update(labels)
    if not rc.spec.HasField("replicas"):
        rc.spec.replicas = 1
    if rc.spec.HasField("template"):
        default_pod_template(rc.spec.template)


def _service(svc: core_pb2.Service) -> None:
    spec = svc.spec
    if not spec.session_affinity:
        spec.session_affinity = "None"
    if spec.session_affinity == "None":
        spec.ClearField("session_affinity_config")
    elif spec.session_affinity == "ClientIP" and not (
        spec.session_affinity_config.client_ip.HasField("timeout_seconds")
    ):
        spec.session_affinity_config.client_ip.timeout_seconds = CLIENT_IP_AFFINITY_SECONDS
    if not spec.type:
        spec.type = "ClusterIP"
    for port in spec.ports:
        if not port.protocol:
            port.protocol = "TCP"
        tp = port.target_port
        kind = tp.WhichOneof("value")
        if (
            kind is None
            or (kind == "int_val" and tp.int_val == 0)
            or (kind == "str_val" and not tp.str_val)
        ):
            tp.int_val = port.port
    if spec.type in ("NodePort", "LoadBalancer") and not spec.external_traffic_policy:
        spec.external_traffic_policy = "Cluster"
    if spec.type in ("ClusterIP", "NodePort", "LoadBalancer"):
        if not spec.HasField("internal_traffic_policy"):
            spec.internal_traffic_policy = "Cluster"
        _service_ip_families(spec)
    if spec.type == "LoadBalancer" and not spec.HasField("allocate_load_balancer_node_ports"):
        spec.allocate_load_balancer_node_ports = True
    if spec.type == "LoadBalancer":
        for ing in svc.status.load_balancer.ingress:
            if ing.ip and not ing.HasField("ip_mode"):
                ing.ip_mode = "VIP"


def _service_ip_families(spec: core_pb2.ServiceSpec) -> None:
    """What Kubernetes' service REST storage settles before allocating: clusterIPs mirrors
    clusterIP, a single-stack policy unless the service is headless without a selector,
    and the family of a literal cluster IP. Allocation itself is not done here."""
    if spec.cluster_ip and not spec.cluster_ips:
        spec.cluster_ips.append(spec.cluster_ip)
    headless = spec.cluster_ip == "None"
    if not spec.HasField("ip_family_policy"):
        spec.ip_family_policy = (
            "RequireDualStack" if headless and not spec.selector else "SingleStack"
        )
    if not spec.ip_families and not headless:
        families = []
        for ip in spec.cluster_ips:
            try:
                families.append(f"IPv{ipaddress.ip_address(ip).version}")
            except ValueError:
                families = []  # validation reports the bad address
                break
        spec.ip_families.extend(families)


def _endpoints(ep: core_pb2.Endpoints) -> None:
    for subset in ep.subsets:
        for port in subset.ports:
            if not port.protocol:
                port.protocol = "TCP"


def _secret(secret: core_pb2.Secret) -> None:
    if not secret.type:
        secret.type = "Opaque"
    # stringData is a write-only convenience: Kubernetes merges it into data (winning over
    # a key present in both) so that only data is ever stored. (Tested first: iterating
    # even an empty protobuf map costs ~2 us on every Secret write.)
    if secret.string_data:
        for k, v in secret.string_data.items():
            secret.data[k] = v.encode()
        secret.ClearField("string_data")


def _namespace(ns: core_pb2.Namespace) -> None:
    # Every namespace carries its own name as a label, so that namespace selectors
    # (network policies, webhooks) can pick a namespace by name.
    if ns.metadata.name:
        ns.metadata.labels[NAMESPACE_NAME_LABEL] = ns.metadata.name


def _node(node: core_pb2.Node) -> None:
    _round_resource_list(node.status.capacity)
    _round_resource_list(node.status.allocatable)
    if not node.status.allocatable and node.status.capacity:
        for key, value in node.status.capacity.items():
            node.status.allocatable[key].CopyFrom(value)


def _persistent_volume(pv: core_pb2.PersistentVolume) -> None:
    if not pv.status.phase:
        pv.status.phase = "Pending"
    if not pv.spec.persistent_volume_reclaim_policy:
        pv.spec.persistent_volume_reclaim_policy = "Retain"
    if not pv.spec.HasField("volume_mode"):
        pv.spec.volume_mode = "Filesystem"
    if pv.spec.HasField("host_path") and not pv.spec.host_path.HasField("type"):
        pv.spec.host_path.type = ""
    if pv.spec.HasField("iscsi") and not pv.spec.iscsi.iscsi_interface:
        pv.spec.iscsi.iscsi_interface = "default"
    _round_resource_list(pv.spec.capacity)


def _pvc(pvc: core_pb2.PersistentVolumeClaim) -> None:
    if not pvc.status.phase:
        pvc.status.phase = "Pending"
    _default_pvc_spec(pvc.spec)


def _limit_range(lr: core_pb2.LimitRange) -> None:
    for item in lr.spec.limits:
        for rl in (item.max, item.min, item.default, item.default_request):
            _round_resource_list(rl)
        if item.type != "Container":
            continue
        # A container's default limit is the max; its default request is the default
        # limit, else the min.
        for key, value in item.max.items():
            if key not in item.default:
                item.default[key].CopyFrom(value)
        for key, value in item.default.items():
            if key not in item.default_request:
                item.default_request[key].CopyFrom(value)
        for key, value in item.min.items():
            if key not in item.default_request:
                item.default_request[key].CopyFrom(value)


def _resource_quota(rq: core_pb2.ResourceQuota) -> None:
    _round_resource_list(rq.spec.hard)


# ---------------------------------------------------------------------------------------
# apps/v1


def _deployment(d: apps_pb2.Deployment) -> None:
    spec = d.spec
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.strategy.type:
        spec.strategy.type = "RollingUpdate"
    if spec.strategy.type == "RollingUpdate":
        ru = spec.strategy.rolling_update
        if not ru.HasField("max_unavailable"):
            ru.max_unavailable.str_val = "25%"
        if not ru.HasField("max_surge"):
            ru.max_surge.str_val = "25%"
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    if not spec.HasField("progress_deadline_seconds"):
        spec.progress_deadline_seconds = 600
    default_pod_template(spec.template)


def _replica_set(rs: apps_pb2.ReplicaSet) -> None:
    if not rs.spec.HasField("replicas"):
        rs.spec.replicas = 1
    default_pod_template(rs.spec.template)


def _daemon_set(ds: apps_pb2.DaemonSet) -> None:
    spec = ds.spec
    if not spec.update_strategy.type:
        spec.update_strategy.type = "RollingUpdate"
    if spec.update_strategy.type == "RollingUpdate":
        ru = spec.update_strategy.rolling_update
        if not ru.HasField("max_unavailable"):
            ru.max_unavailable.int_val = 1
        if not ru.HasField("max_surge"):
            ru.max_surge.int_val = 0
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    default_pod_template(spec.template)


def _stateful_set(ss: apps_pb2.StatefulSet) -> None:
    spec = ss.spec
    if not spec.pod_management_policy:
        spec.pod_management_policy = "OrderedReady"
    if not spec.update_strategy.type:
        spec.update_strategy.type = "RollingUpdate"
        spec.update_strategy.rolling_update.SetInParent()
    if spec.update_strategy.type == "RollingUpdate" and spec.update_strategy.HasField(
        "rolling_update"
    ):
        if not spec.update_strategy.rolling_update.HasField("partition"):
            spec.update_strategy.rolling_update.partition = 0
    policy = spec.persistent_volume_claim_retention_policy
    if not policy.when_deleted:
        policy.when_deleted = "Retain"
    if not policy.when_scaled:
        policy.when_scaled = "Retain"
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    for pvc in spec.volume_claim_templates:
        _pvc(pvc)
    default_pod_template(spec.template)


# ---------------------------------------------------------------------------------------
# batch/v1


def _job_spec_templates(spec: batch_pb2.JobSpec) -> None:
    default_pod_template(spec.template, restart_policy=None)


def _job(job: batch_pb2.Job) -> None:
    spec = job.spec
    # Both unset: a plain "run one pod to completion" job.
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
        spec.parallelism = 1
    if not spec.HasField("parallelism"):
        spec.parallelism = 1
    if not spec.HasField("backoff_limit"):
        # With a per-index limit the global one must not get in the way.
        spec.backoff_limit = _INT32_MAX if spec.HasField("backoff_limit_per_index") else 6
    if not spec.HasField("completion_mode"):
        spec.completion_mode = "NonIndexed"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if spec.HasField("pod_failure_policy"):
        for rule in spec.pod_failure_policy.rules:
            for pattern in rule.on_pod_conditions:
                if not pattern.status:
                    pattern.status = "True"
    if not spec.HasField("pod_replacement_policy"):
        spec.pod_replacement_policy = (
            "Failed" if spec.HasField("pod_failure_policy") else "TerminatingOrFailed"
        )
    _generate_job_selector(job)
    # After the selector: a job without labels of its own carries its pods' labels
    # (generated ones included, as a stored Kubernetes Job does), and a second pass finds
    # nothing more to copy.
    template_labels = spec.template.metadata.labels
    if template_labels and not job.metadata.labels:
        job.metadata.labels.update(template_labels)
    _job_spec_templates(spec)


def _generate_job_selector(job: batch_pb2.Job) -> None:
    """Kubernetes' generateSelector: unless the user asked for a manual selector, pods are
    labelled with the job's uid and name and the selector picks the uid, which no other
    object can match. Needs the uid, so it runs only once one is assigned; a selector
    the user wrote that disagrees is left for validation to refuse."""
    spec = job.spec
    uid = job.metadata.uid
    if (spec.HasField("manual_selector") and spec.manual_selector) or not uid:
        return
    labels = spec.template.metadata.labels
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        labels.setdefault(key, job.metadata.name)
    for key in (LEGACY_JOB_CONTROLLER_UID_LABEL, JOB_CONTROLLER_UID_LABEL):
        labels.setdefault(key, uid)
    spec.selector.match_labels.setdefault(JOB_CONTROLLER_UID_LABEL, uid)


def _cron_job(cj: batch_pb2.CronJob) -> None:
    spec = cj.spec
    if not spec.concurrency_policy:
        spec.concurrency_policy = "Allow"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.HasField("successful_jobs_history_limit"):
        spec.successful_jobs_history_limit = 3
    if not spec.HasField("failed_jobs_history_limit"):
        spec.failed_jobs_history_limit = 1
    # Only the pod template inside: the Job's own defaults apply when a Job is created
    # from the template, as in Kubernetes.
    _job_spec_templates(spec.job_template.spec)


# ---------------------------------------------------------------------------------------
# Other groups


def _subjects(subjects: Iterable[rbac_pb2.Subject]) -> None:
    for s in subjects:
        if not s.api_group and s.kind in ("User", "Group"):
            s.api_group = RBAC_GROUP


def _role_binding(rb: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding) -> None:
    if not rb.role_ref.api_group:
        rb.role_ref.api_group = RBAC_GROUP
    _subjects(rb.subjects)


def _storage_class(sc: storage_pb2.StorageClass) -> None:
    if not sc.HasField("reclaim_policy"):
        sc.reclaim_policy = "Delete"
    if not sc.HasField("volume_binding_mode"):
        sc.volume_binding_mode = "Immediate"


def _priority_class(pc: scheduling_pb2.PriorityClass) -> None:
    if not pc.HasField("preemption_policy"):
        pc.preemption_policy = "PreemptLowerPriority"


_Defaulter = Callable[[Message], None]


def _entry(cls: type[Message], fn: Callable[..., None]) -> tuple[str, _Defaulter]:
    return cls.DESCRIPTOR.full_name, fn


# By message full name. Kinds without an entry (ConfigMap, ServiceAccount, Event, Lease,
# Role, ClusterRole, PodDisruptionBudget, ControllerRevision) have nothing to default.
_DEFAULTERS: dict[str, _Defaulter] = dict(
    (
        _entry(core_pb2.Pod, _pod),
        _entry(core_pb2.PodTemplate, _pod_template),
        _entry(core_pb2.ReplicationController, _replication_controller),
        _entry(core_pb2.Service, _service),
        _entry(core_pb2.Endpoints, _endpoints),
        _entry(core_pb2.Secret, _secret),
        _entry(core_pb2.Namespace, _namespace),
        _entry(core_pb2.Node, _node),
        _entry(core_pb2.PersistentVolume, _persistent_volume),
        _entry(core_pb2.PersistentVolumeClaim, _pvc),
        _entry(core_pb2.LimitRange, _limit_range),
        _entry(core_pb2.ResourceQuota, _resource_quota),
        _entry(apps_pb2.Deployment, _deployment),
        _entry(apps_pb2.ReplicaSet, _replica_set),
        _entry(apps_pb2.DaemonSet, _daemon_set),
        _entry(apps_pb2.StatefulSet, _stateful_set),
        _entry(batch_pb2.Job, _job),
        _entry(batch_pb2.CronJob, _cron_job),
        _entry(rbac_pb2.RoleBinding, _role_binding),
        _entry(rbac_pb2.ClusterRoleBinding, _role_binding),
        _entry(storage_pb2.StorageClass, _storage_class),
        _entry(scheduling_pb2.PriorityClass, _priority_class),
    )
)


def apply_defaults(obj: Message) -> None:
    """Fill in, in place, every default Kubernetes gives an object of this kind.

    Dispatches on the message type; a message of a kind with no defaults (or not a kind at
    all) is left untouched. Idempotent.
    """
    fn = _DEFAULTERS.get(obj.DESCRIPTOR.full_name)
    if fn is not None:
        fn(obj)
