"""Service environment variables: the variables of a Service, which Services a pod sees
(enableServiceLinks, the kubernetes Service), precedence against the container's own env,
and a live kubelet putting them into a container's config."""

from __future__ import annotations

from typing import Any

import pytest

from agent.kubelet.container_spec import PodContext, resolve_env
from agent.kubelet.service_env import service_env, variables_of
from control.api import convert
from control.api.pb import core_pb2
from tests.agent.kubelet.conftest import Env


def svc(name: str, ns: str = "default", ip: str = "10.96.0.11",
        ports: list[dict[str, Any]] | None = None) -> core_pb2.Service:
    return convert.from_dict({"metadata": {"name": name, "namespace": ns},
                              "spec": {"clusterIP": ip, "ports": ports or [
                                  {"name": "redis", "port": 6379, "protocol": "TCP"}]}},
                             core_pb2.Service())


def pod(ns: str = "default", links: bool | None = None) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.namespace = ns
    if links is not None:
        p.spec.enable_service_links = links
    return p


def test_variables_of_one_service() -> None:
    got = dict(variables_of(svc("redis-primary", ports=[
        {"name": "redis", "port": 6379, "protocol": "TCP"},
        {"name": "metrics", "port": 9121, "protocol": "UDP"}])))
    assert got == {
        "REDIS_PRIMARY_SERVICE_HOST": "10.96.0.11",
        "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_REDIS": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_METRICS": "9121",
        "REDIS_PRIMARY_PORT": "tcp://10.96.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP": "tcp://10.96.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "10.96.0.11",
        "REDIS_PRIMARY_PORT_9121_UDP": "udp://10.96.0.11:9121",
        "REDIS_PRIMARY_PORT_9121_UDP_PROTO": "udp",
        "REDIS_PRIMARY_PORT_9121_UDP_PORT": "9121",
        "REDIS_PRIMARY_PORT_9121_UDP_ADDR": "10.96.0.11",
    }


@pytest.mark.parametrize("ip", ["None", ""])
def test_no_cluster_ip_no_variables(ip: str) -> None:
    assert variables_of(svc("h", ip=ip)) == []


def test_ipv6_link_in_brackets() -> None:
    assert dict(variables_of(svc("v6", ip="fd00::5")))["V6_PORT"] == "tcp://[fd00::5]:6379"


KUBE = svc("kubernetes", ip="10.96.0.1", ports=[{"name": "https", "port": 443,
                                                 "protocol": "TCP"}])


@pytest.mark.parametrize(("p", "services", "hosts"), [
    pytest.param(pod("shop"), [svc("db", "shop"), svc("web", "other"), KUBE],
                 {"DB_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"}, id="own-namespace-and-kube"),
    pytest.param(pod("shop", links=False), [svc("db", "shop"), KUBE],
                 {"KUBERNETES_SERVICE_HOST"}, id="links-off-keeps-kubernetes"),
    pytest.param(pod("default", links=False), [svc("db"), KUBE],
                 {"KUBERNETES_SERVICE_HOST"}, id="links-off-in-default"),
    pytest.param(pod("default"), [svc("db"), svc("h", ip="None"), KUBE],
                 {"DB_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"}, id="headless-skipped"),
])
def test_which_services(p: core_pb2.Pod, services: list[core_pb2.Service],
                        hosts: set[str]) -> None:
    got = {k for k, _ in service_env(p, services) if k.endswith("_SERVICE_HOST")}
    assert got == hosts


def test_own_namespace_kubernetes_wins() -> None:
    mine = svc("kubernetes", "shop", ip="10.96.0.99")
    env = dict(service_env(pod("shop"), [KUBE, mine]))
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.99"


def test_container_env_wins_and_can_refer_to_service_vars() -> None:
    c = convert.from_dict({"name": "app", "env": [
        {"name": "DB_SERVICE_PORT", "value": "1"},
        {"name": "URL", "value": "http://$(DB_SERVICE_HOST):$(DB_SERVICE_PORT_REDIS)"}]},
        core_pb2.Container())
    ctx = PodContext(pod=pod(), service_env=service_env(pod(), [svc("db")]))
    env = resolve_env(c, ctx)
    names = [k for k, _ in env]
    d = dict(env)
    assert d["DB_SERVICE_PORT"] == "1" and d["URL"] == "http://10.96.0.11:6379"
    assert names[:2] == ["DB_SERVICE_PORT", "URL"]  # the container's own first
    assert d["DB_SERVICE_HOST"] == "10.96.0.11"


async def test_live_kubelet_puts_service_vars_in_the_container(env: Env) -> None:
    await env.client.create(svc("db", ip=""))
    made = await env.client.get(core_pb2.Service, "db", "default")
    await env.start()
    await env.create("uses-db")
    await env.wait("uses-db", lambda p: p.status.phase == "Running")
    c = env.rt.find("uses-db", "app")
    assert c is not None
    got = dict(c.config.env)
    assert got["DB_SERVICE_HOST"] == made.spec.cluster_ip
    assert got["KUBERNETES_SERVICE_PORT"] == "443"
