"""`flotilla create job NAME --from=cronjob/X` and `create job NAME --image=IMG [-- CMD...]`:
building the Job (kubectl's ``create job``). Pure: the caller reads the CronJob and sends
the Job.

From a CronJob: the jobTemplate's labels, annotations and spec, the annotation
``cronjob.kubernetes.io/instantiate: manual`` and an ownerReference to the CronJob (so the
Job goes when the CronJob is deleted, as kubectl does). From an image: one container named
after the Job, restartPolicy Never.
"""

from __future__ import annotations

from collections.abc import Sequence

from control.api import kinds
from control.api.pb import batch_pb2, meta_pb2

INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"


def job_from_cronjob(cj: batch_pb2.CronJob, name: str) -> batch_pb2.Job:
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    job.metadata.name = name
    job.metadata.namespace = cj.metadata.namespace
    job.metadata.labels.update(cj.spec.job_template.metadata.labels)
    job.metadata.annotations.update(cj.spec.job_template.metadata.annotations)
    job.metadata.annotations[INSTANTIATE_ANNOTATION] = "manual"
    info = kinds.by_message(batch_pb2.CronJob)
    job.metadata.owner_references.append(meta_pb2.OwnerReference(
        api_version=info.api_version, kind=info.kind, name=cj.metadata.name,
        uid=cj.metadata.uid, controller=True))
    job.spec.CopyFrom(cj.spec.job_template.spec)
    return job


def job_from_image(name: str, namespace: str, image: str,
                   command: Sequence[str]) -> batch_pb2.Job:
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    job.metadata.name = name
    job.metadata.namespace = namespace
    job.spec.template.spec.restart_policy = "Never"
    c = job.spec.template.spec.containers.add(name=name, image=image)
    c.command.extend(command)
    return job
