"""The scheduler: informers -> cache and queue -> scheduling cycle -> binding cycle.

One pod at a time, as kube-scheduler::

    queue.pop() -> Framework.schedule (synchronous: filter, score, pick)
      -> cache.assume + reserve -> spawn the binding cycle (bind through the API)
      -> success: cache.finish_binding, "Scheduled" Event; the informer confirms
      -> failure: cache.forget, unreserve, back to the queue with backoff
    no node fits -> PostFilter (preemption: nominate + evict victims)
      -> PodScheduled=False/Unschedulable with the message, a FailedScheduling Event,
         the pod parked in the unschedulable queue until an event may help

Only pods with an empty ``spec.nodeName`` and a ``spec.schedulerName`` one of our profiles
answers to are scheduled. Informers: pods (all: placed ones fill the cache, pending ones the
queue), nodes, namespaces (namespaceSelector of affinity terms), priorityclasses (a pod's
priority when ``spec.priority`` is unset).

Events that move unschedulable pods back (the "relevant events"): a node added, a node's
spec/labels/allocatable changed, a placed pod deleted or finished, a placed pod's labels
changed, an assumed pod expired. Status-only updates of pending pods (our own condition
writes) do not requeue them, so an unschedulable pod cannot loop on its own write.

Concurrency contract: one event loop. The scheduling loop is one task; every binding cycle
and every status write is its own task, tracked in a set (cancelled and awaited on stop)
and bounded by a semaphore; informer handlers are synchronous (the update that confirms
one of our own bindings is recognised by resourceVersion and costs no re-placement). The cache and queue are
touched only between awaits, so a scheduling cycle sees a consistent cache.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import structlog

from control.api import errors
from control.api.pb import core_pb2, scheduling_pb2, storage_pb2
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.credentials import Credentials
from control.client.listwatch import ApiListWatcher, ListWatcher
from control.client.retry import guaranteed_update
from control.runtime.clock import Clock, RealClock
from control.runtime.events import NORMAL, WARNING, EventBroadcaster
from control.runtime.informer import InformerSet, SharedInformer
from control.runtime.supervisor import Supervisor
from control.scheduler import config as configmod
from control.scheduler.cache import Cache
from control.scheduler.framework import (
    CycleState,
    FitError,
    Framework,
    Handle,
    PostFilterResult,
    SchedulingError,
)
from control.scheduler.metrics import SchedulerMetrics
from control.scheduler.queue import QueuedPodInfo, SchedulingQueue
from control.scheduler.registry import build_framework
from control.scheduler.types import PodInfo, new_pod_info, pod_key
from control.scheduler.volumes import VolumeStore

log = structlog.get_logger(__name__, component="scheduler")

# Binds in flight (the cycle never awaits its own bind). Measured with
# bench/scheduler_bench.py, 5,000 nodes / 10,000 pods: 64 -> ~720 pods/s, 128 -> ~930,
# 256 -> ~1,160, 512 -> ~880 (the scheduler's own loop then spends its time on waiting
# tasks). More in flight lets the server's group commit put more binds in one transaction.
DEFAULT_BIND_CONCURRENCY = 256
DEFAULT_SYNC_TIMEOUT = 30.0
CACHE_CLEANUP_INTERVAL = 1.0
RESOURCES = ("pods", "nodes", "namespaces", "priorityclasses", "persistentvolumeclaims",
             "persistentvolumes", "storageclasses")


def load_config(path: str | None) -> configmod.SchedulerConfig:
    """The configuration in ``path`` (``--scheduler-config``), or the defaults."""
    return configmod.load(path) if path else configmod.default_config()


def is_terminal(pod: core_pb2.Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


class Scheduler:
    """See the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        cfg: configmod.SchedulerConfig | None = None,
        *,
        clock: Clock | None = None,
        identity: str = "",
        bind_concurrency: int = DEFAULT_BIND_CONCURRENCY,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        rng: random.Random | None = None,
        assume_ttl: float | None = None,
    ) -> None:
        self.client = client
        self.config = cfg or configmod.default_config()
        self._clock = clock or RealClock()
        self.identity = identity or socket.gethostname()
        self.cache = Cache(self._clock) if assume_ttl is None else Cache(self._clock, assume_ttl)
        self.volumes = VolumeStore()
        handle = Handle(client=client, cache=self.cache, volumes=self.volumes,
                        clock=self._clock)
        self.frameworks: dict[str, Framework] = {}
        for prof in self.config.profiles:
            pct = prof.percentage_of_nodes_to_score
            self.frameworks[prof.scheduler_name] = build_framework(
                prof.scheduler_name, prof.plugins, prof.plugin_args, handle,
                percentage_of_nodes_to_score=self.config.percentage_of_nodes_to_score
                if pct is None else pct, rng=rng)
        self.queue = SchedulingQueue(
            clock=self._clock, initial_backoff=self.config.pod_initial_backoff_seconds,
            max_backoff=self.config.pod_max_backoff_seconds)
        self.metrics = SchedulerMetrics(pending=self.queue.counts)
        # Recording only queues: no scheduling cycle or bind waits for an Event write.
        self.events = EventBroadcaster(client, clock=self._clock,
                                       on_drop=self.metrics.events_dropped.inc)
        self.recorder = self.events.new_recorder("default-scheduler", self.identity)
        self.informers = InformerSet(self._list_watcher, clock=self._clock)
        # Created by start(); None before (methods driven directly, as in tests, then fall
        # back to the pods they are given).
        self._pcs: SharedInformer[scheduling_pb2.PriorityClass] | None = None
        self._pods: SharedInformer[core_pb2.Pod] | None = None
        self.supervisor = Supervisor("scheduler", clock=self._clock)
        self._bind_sem = asyncio.Semaphore(bind_concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_timeout = sync_timeout
        self._priority_classes: dict[str, int] = {}
        self._default_priority = 0
        self._channel: grpc.aio.Channel | None = None
        self._started = False
        self.scheduled = 0  # pods bound, for tests and the benchmark

    @classmethod
    def connect(cls, address: str, credentials: Credentials,
                cfg: configmod.SchedulerConfig | None = None, **kw: Any) -> Scheduler:
        """A scheduler on its own channel to ``address``, closed by ``stop``."""
        channel = open_channel(address, credentials)
        s = cls(ApiClient(channel, address), cfg, **kw)
        s._channel = channel
        return s

    def _list_watcher(self, resource: str) -> ListWatcher[Any]:
        return ApiListWatcher(self.client, resource)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start informers, wait for their caches, then the loops."""
        if self._started:
            raise RuntimeError("scheduler already started")
        self._started = True
        # priority classes and namespaces first: pods' handlers read them
        self._pcs = self.informers.informer(scheduling_pb2.PriorityClass)
        namespaces = self.informers.informer(core_pb2.Namespace)
        nodes = self.informers.informer(core_pb2.Node)
        self._pods = self.informers.informer(core_pb2.Pod)
        self._pcs.add_event_handler(
            on_add=self._on_pc, on_update=lambda _o, n: self._on_pc(n),
            on_delete=self._on_pc_delete)
        namespaces.add_event_handler(
            on_add=self.cache.set_namespace, on_update=lambda _o, n: self.cache.set_namespace(n),
            on_delete=lambda ns: self.cache.remove_namespace(ns.metadata.name))
        nodes.add_event_handler(
            on_add=self.on_node_add, on_update=self.on_node_update, on_delete=self.on_node_delete)
        self._pods.add_event_handler(
            on_add=self.on_pod_add, on_update=self.on_pod_update, on_delete=self.on_pod_delete)
        self._watch_storage()
        self.informers.start(self.supervisor)
        if not await self.informers.wait_for_sync(self._sync_timeout):
            await self.stop()
            raise TimeoutError(f"scheduler caches did not sync within {self._sync_timeout} s")
        self.supervisor.start("scheduler/queue-flush", self.queue.run)
        self.supervisor.start("scheduler/cache-cleanup", self._cleanup_loop)
        self.supervisor.start("scheduler/events", self.events.run)
        self.supervisor.start("scheduler/loop", self.run_loop)
        log.info("scheduler started", profiles=sorted(self.frameworks),
                 nodes=self.cache.node_count, pending=len(self.queue))

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - clock-measured
        self.queue.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.supervisor.stop(timeout)
        if self._channel is not None:
            # ours (connect made it): close the one the client uses now, which a
            # certificate renewal may have put in place of the first
            self._channel = None
            await self.client.channel.close(None)
        log.info("scheduler stopped")

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task failed", task=task.get_name(),
                      error=repr(task.exception()))

    async def _cleanup_loop(self) -> None:
        while True:
            await self._clock.sleep(CACHE_CLEANUP_INTERVAL)
            if self.cache.cleanup_expired():
                self.queue.move_all_to_active_or_backoff("AssumedPodExpired")

    # -- priority ------------------------------------------------------------------------

    def _on_pc(self, pc: scheduling_pb2.PriorityClass) -> None:
        self._priority_classes[pc.metadata.name] = pc.value
        self._recompute_default()

    def _on_pc_delete(self, pc: scheduling_pb2.PriorityClass) -> None:
        self._priority_classes.pop(pc.metadata.name, None)
        self._recompute_default()

    def _recompute_default(self) -> None:
        pcs = self._pcs.indexer.list() if self._pcs is not None else []
        defaults = [pc.value for pc in pcs if pc.global_default]
        self._default_priority = max(defaults, default=0)

    def priority_of(self, pod: core_pb2.Pod) -> int:
        """spec.priority, else the PriorityClass's value, else the global default, else 0."""
        if pod.spec.HasField("priority"):
            return pod.spec.priority
        name = pod.spec.priority_class_name
        if name:
            return self._priority_classes.get(name, self._default_priority)
        return self._default_priority

    def pod_info(self, pod: core_pb2.Pod) -> PodInfo:
        return new_pod_info(pod, self.priority_of(pod))

    # -- informer handlers ---------------------------------------------------------------

    def _responsible(self, pod: core_pb2.Pod) -> bool:
        return pod.spec.scheduler_name in self.frameworks

    def on_node_add(self, node: core_pb2.Node) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff("NodeAdd")

    def on_node_update(self, old: core_pb2.Node, new: core_pb2.Node) -> None:
        self.cache.update_node(new)
        # Heartbeats (conditions, times) change nothing a plugin reads: no requeue storm.
        if old.spec != new.spec or old.metadata.labels != new.metadata.labels or \
                old.status.allocatable != new.status.allocatable:
            self.queue.move_all_to_active_or_backoff("NodeUpdate")

    def on_node_delete(self, node: core_pb2.Node) -> None:
        self.cache.remove_node(node.metadata.name)

    def on_pod_add(self, pod: core_pb2.Pod) -> None:
        if pod.spec.node_name:
            if not is_terminal(pod):
                self.cache.add_pod(self.pod_info(pod))
            return
        if self._responsible(pod) and not pod.metadata.HasField("deletion_timestamp") \
                and not self.cache.is_assumed(pod_key(pod)):
            self.queue.add(self.pod_info(pod))

    def on_pod_update(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if new.spec.node_name and not old.spec.node_name and \
                self.cache.confirm(new, old.metadata.resource_version):
            return  # our own binding arriving: the assumption is now fact, nothing else moved
        key = pod_key(new)
        if new.spec.node_name:
            if not old.spec.node_name:
                self.queue.delete(key)  # bound (by us, or by someone else)
            if is_terminal(new):
                if self.cache.remove_pod(key) is not None:
                    self.queue.move_all_to_active_or_backoff("AssignedPodCompleted")
                return
            self.cache.update_pod(self.pod_info(new))
            if old.spec.node_name and old.metadata.labels != new.metadata.labels:
                self.queue.move_all_to_active_or_backoff("AssignedPodUpdate")
            return
        if not self._responsible(new) or new.metadata.HasField("deletion_timestamp"):
            self.queue.delete(key)
            return
        if self.cache.is_assumed(key):
            return  # bind in flight; the binding's own update settles it
        info = self.pod_info(new)
        if old.spec == new.spec and old.metadata.labels == new.metadata.labels \
                and old.metadata.annotations == new.metadata.annotations:
            self._refresh_queued(info)  # status-only (e.g. our own condition write)
        else:
            self.queue.update(info)

    def _refresh_queued(self, info: PodInfo) -> None:
        if info.key in self.queue:
            self.queue.refresh(info)
        else:
            self.queue.add(info)

    def on_pod_delete(self, pod: core_pb2.Pod) -> None:
        key = pod_key(pod)
        if self.cache.remove_pod(key) is not None:
            self.queue.move_all_to_active_or_backoff("AssignedPodDelete")
        self.queue.delete(key)

    def _watch_storage(self) -> None:
        """Claims, volumes and classes feed the VolumeStore; any change may make a pod
        that waits for its storage schedulable (Kubernetes requeues on these events too)."""
        v = self.volumes
        for cls, put, delete, event in (
                (core_pb2.PersistentVolumeClaim, v.set_claim, v.delete_claim, "Pvc"),
                (core_pb2.PersistentVolume, v.set_volume, v.delete_volume, "Pv"),
                (storage_pb2.StorageClass, v.set_class, v.delete_class, "StorageClass")):
            inf: SharedInformer[Any] = self.informers.informer(cls)
            inf.add_event_handler(on_add=self._storage_handler(put, f"{event}Add"),
                                  on_update=self._storage_update(put, f"{event}Update"),
                                  on_delete=delete)

    def _storage_handler(self, put: Callable[[Any], None], event: str) -> Callable[[Any], None]:
        def handle(obj: Any) -> None:
            put(obj)
            self.queue.move_all_to_active_or_backoff(event)
        return handle

    def _storage_update(self, put: Callable[[Any], None], event: str
                        ) -> Callable[[Any, Any], None]:
        handle = self._storage_handler(put, event)
        return lambda _old, new: handle(new)

    # -- the scheduling loop -------------------------------------------------------------

    async def run_loop(self) -> None:
        while True:
            q = await self.queue.pop()
            try:
                self.schedule_one(q)
            except Exception:
                log.exception("scheduling cycle failed", pod=q.key)
                self.queue.add_backoff(q)
            # Let watch events and binding tasks run between cycles.
            await asyncio.sleep(0)

    def schedule_one(self, q: QueuedPodInfo) -> None:
        """One scheduling cycle (synchronous); the binding cycle is spawned."""
        pi = q.info
        fw = self.frameworks.get(pi.pod.spec.scheduler_name)
        if fw is None or pi.terminating or self.cache.has_pod(pi.key):
            self.queue.done(pi.key)
            return
        state = CycleState(self.cache)
        start = self._clock.monotonic()
        try:
            result = fw.schedule(state, pi)
        except FitError as fe:
            post = fw.run_post_filter(state, pi, fe.diagnosis) if fw.plugins.post_filter \
                else None
            self._observe(start, "unschedulable", fw)
            q.unschedulable_plugins = fe.diagnosis.unschedulable_plugins
            self.queue.add_unschedulable(q)
            self._spawn(self._handle_unschedulable(pi, fe.message(), post),
                        f"scheduler/failure/{pi.key}")
            return
        except SchedulingError as e:
            self._observe(start, "error", fw)
            self.queue.add_backoff(q)
            self._spawn(self._handle_unschedulable(pi, str(e), None, error=True),
                        f"scheduler/failure/{pi.key}")
            return
        node = result.node
        self.cache.assume(pi, node)
        rejected = fw.run_reserve(state, pi, node)
        if rejected is not None:
            self.cache.forget(pi.key)
            self._observe(start, "error", fw)
            self.queue.add_backoff(q)
            return
        self._observe(start, "scheduled", fw)
        self.queue.done(pi.key)
        self._spawn(self._bind(fw, state, q, node), f"scheduler/bind/{pi.key}")

    def _observe(self, start: float, result: str, fw: Framework) -> None:
        self.metrics.attempt(result, fw.scheduler_name, self._clock.monotonic() - start)

    async def _bind(self, fw: Framework, state: CycleState, q: QueuedPodInfo, node: str) -> None:
        pi = q.info
        err: Exception | None = None
        st = None
        try:
            # Outside the semaphore: PreBind may wait long for volumes to be bound, and
            # must not hold a slot other pods' binds need.
            if fw.plugins.pre_bind:
                st = await fw.run_pre_bind(state, pi, node)
            if st is None:
                async with self._bind_sem:
                    st = await fw.run_bind(state, pi, node)
        except Exception as e:  # a plugin bug must not leak the assumption
            st = None
            err = e
        if err is None and st is None:
            self.cache.finish_binding(pi.key)
            self.scheduled += 1
            added = q.timestamp if q.initial_attempt is None else min(q.timestamp,
                                                                      q.initial_attempt)
            self.metrics.scheduled(q.attempts, self._clock.monotonic() - added)
            self.recorder.event(pi.pod, NORMAL, "Scheduled",
                                 f"Successfully assigned {pi.key} to {node}", action="Binding")
            return
        message = repr(err) if err is not None else (st.message if st is not None else "")
        log.warning("binding failed", pod=pi.key, node=node, error=message)
        self.cache.forget(pi.key)
        fw.run_unreserve(state, pi, node)
        self.metrics.attempts.labels("error", fw.scheduler_name).inc()
        self.queue.move_all_to_active_or_backoff("BindFailed")
        current = self._pods.indexer.get(pi.key) if self._pods is not None else None
        if current is not None and not current.spec.node_name and \
                current.metadata.uid == pi.uid:
            self.queue.readd_backoff(q)
            self.recorder.event(pi.pod, WARNING, "FailedScheduling",
                                 f"Binding rejected: {message}", action="Scheduling")

    # -- failures and preemption ---------------------------------------------------------

    async def _handle_unschedulable(self, pi: PodInfo, message: str,
                                    post: PostFilterResult | None, error: bool = False) -> None:
        self.recorder.event(pi.pod, WARNING, "FailedScheduling", message, action="Scheduling")
        nominated = post.nominated_node if post is not None else None
        if post is not None:
            self.metrics.preemption_attempts.inc()
            for v in post.victims:
                self._spawn(self._evict(v, pi, post.nominated_node), f"scheduler/evict/{v.key}")
        await self._set_unschedulable(pi, "SchedulerError" if error else "Unschedulable",
                                      message, nominated)

    async def _evict(self, victim: PodInfo, preemptor: PodInfo, node: str) -> None:
        try:
            await self.client.delete(core_pb2.Pod, victim.name, victim.namespace, uid=victim.uid)
        except errors.NotFound:
            return
        except errors.ApiError as e:
            log.warning("cannot evict preemption victim", pod=victim.key, error=str(e))
            return
        self.metrics.preemption_victims.inc()
        self.recorder.event(
            victim.pod, NORMAL, "Preempted",
            f"Preempted by pod {preemptor.uid} on node {node}", action="Preempting")

    async def _set_unschedulable(self, pi: PodInfo, reason: str, message: str,
                                 nominated: str | None) -> None:
        """PodScheduled=False with reason and message (and nominatedNodeName), unless the
        pod already says exactly that."""
        pod = self._latest(pi)
        if pod is None:
            return

        def apply(p: core_pb2.Pod) -> bool:
            if p.spec.node_name:
                return False  # bound meanwhile
            cond = next((c for c in p.status.conditions if c.type == "PodScheduled"), None)
            if cond is not None and cond.status == "False" and cond.reason == reason and \
                    cond.message == message and (nominated is None or
                                                 p.status.nominated_node_name == nominated):
                return False
            conds = [c for c in p.status.conditions if c.type != "PodScheduled"]
            c = core_pb2.PodCondition(type="PodScheduled", status="False", reason=reason,
                                      message=message)
            if cond is not None and cond.status == "False":
                c.last_transition_time.CopyFrom(cond.last_transition_time)
            else:
                c.last_transition_time.FromNanoseconds(int(self._clock.now() * 1e9))
            del p.status.conditions[:]
            p.status.conditions.extend([*conds, c])
            if nominated is not None:
                p.status.nominated_node_name = nominated
            return True

        try:
            # our informer may be behind: a Conflict reads the pod itself and tries again
            await guaranteed_update(self.client, core_pb2.Pod, pi.namespace, pi.name, apply,
                                    current=pod, uid=pi.uid, status=True, attempts=3)
        except (errors.NotFound, errors.Conflict):
            return

    def _latest(self, pi: PodInfo) -> core_pb2.Pod | None:
        if self._pods is not None:
            pod = self._pods.indexer.get(pi.key)
            if pod is not None and pod.metadata.uid == pi.uid:
                return pod
            return None
        return pi.pod
