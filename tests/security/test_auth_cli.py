"""`flotilla auth whoami|can-i` and `--as`/`--as-group` against a real control plane: the
CLI runs in a thread (its own event loop) with a config file per identity, and the
answers come from the server's authorizer chain."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from control.api import errors
from control.api.pb import core_pb2, rbac_pb2
from control.cli.main import main
from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.config import config_document
from control.client.tls import Credentials
from tests.conftest import Cluster, running_cluster
from tests.support import eventually

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    token_file = tmp_path / "tokens.csv"
    token_file.write_text('bob-token,bob,1002\n')
    # the controllers aggregate the view role's rules
    async with running_cluster(tmp_path / "data", disable={"scheduler"},
                               token_auth_file=token_file) as cl:
        yield cl


def bob_config(c: Cluster, tmp_path: Path) -> Path:
    path = tmp_path / "bob.conf"
    doc = config_document(c.plane.supervisor_address,
                          Credentials(ca_pem=c.credentials.ca_pem, token="bob-token"))
    path.write_text(yaml.safe_dump(doc))
    return path


async def cli(config: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.wait_for(asyncio.to_thread(
        main, ["--config", str(config), *argv], stdout=out, stderr=err), 30)
    return code, out.getvalue(), err.getvalue()


async def bind_bob_to_view(c: Cluster) -> None:
    async def aggregated() -> bool:
        return bool((await c.client.get(rbac_pb2.ClusterRole, "view")).rules)

    await eventually(aggregated, "view aggregated")
    rb = rbac_pb2.RoleBinding()
    rb.metadata.name, rb.metadata.namespace = "bob-view", "default"
    rb.subjects.add(kind="User", name="bob", api_group=RBAC)
    rb.role_ref.kind, rb.role_ref.name, rb.role_ref.api_group = "ClusterRole", "view", RBAC
    await c.client.create(rb)


async def test_can_i_for_a_user_bound_to_view(c: Cluster, tmp_path: Path) -> None:
    await bind_bob_to_view(c)
    bob = bob_config(c, tmp_path)
    assert await cli(bob, "auth", "can-i", "get", "pods") == (0, "yes\n", "")
    assert await cli(bob, "auth", "can-i", "list", "pod", "web") == (0, "yes\n", "")
    assert await cli(bob, "auth", "can-i", "create", "pods") == (1, "no\n", "")
    assert await cli(bob, "auth", "can-i", "get", "secrets") == (1, "no\n", "")
    # the binding holds in its namespace only
    assert (await cli(bob, "auth", "can-i", "get", "pods", "-n", "kube-system"))[:2] == (
        1, "no\n")
    assert (await cli(bob, "auth", "can-i", "get", "pods", "-A"))[:2] == (1, "no\n")
    assert (await cli(bob, "auth", "can-i", "get", "pods", "--subresource", "log"))[:2] == (
        0, "yes\n")
    assert (await cli(bob, "auth", "can-i", "create", "pods/exec"))[:2] == (1, "no\n")
    assert (await cli(bob, "auth", "can-i", "get", "/api"))[:2] == (0, "yes\n")
    code, out, _ = await cli(bob, "auth", "can-i", "-q", "create", "deployments")
    assert (code, out) == (1, "")


async def test_can_i_list_shows_the_view_rules(c: Cluster, tmp_path: Path) -> None:
    await bind_bob_to_view(c)
    bob = bob_config(c, tmp_path)
    code, out, err = await cli(bob, "auth", "can-i", "--list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names",
                                "Verbs"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if line[0] != " "}
    assert rows["pods"] == ["[]", "[]", "[get", "list", "watch]"]
    assert rows["deployments.apps"] == ["[]", "[]", "[get", "list", "watch]"]
    assert "secrets" not in rows
    # the non-resource URLs every authenticated user reads (system:discovery)
    assert any(line.startswith(" ") and "[/api]" in line for line in lines)
    # elsewhere view does not apply
    code, out, _ = await cli(bob, "auth", "can-i", "--list", "-n", "kube-system")
    assert code == 0 and not any(line.startswith("pods ") for line in out.splitlines())


async def test_whoami_as_admin_and_as_an_impersonated_user(c: Cluster,
                                                          tmp_path: Path) -> None:
    admin = c.data_dir / "admin.conf"
    code, out, err = await cli(admin, "auth", "whoami")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ATTRIBUTE", "VALUE"]
    groups = next(line for line in lines if line.startswith("Groups"))
    assert "system:masters" in groups and "system:authenticated" in groups
    code, out, _ = await cli(admin, "auth", "whoami", "-o", "json")
    doc = json.loads(out)
    assert doc["kind"] == "SelfSubjectReview"
    assert "system:masters" in doc["status"]["userInfo"]["groups"]
    # system:masters may impersonate: the server then sees bob in the groups asked for
    code, out, err = await cli(admin, "--as", "bob", "--as-group", "g1", "--as-group=g2",
                               "auth", "whoami", "-o", "yaml")
    assert code == 0, err
    assert yaml.safe_load(out)["status"]["userInfo"] == {
        "username": "bob", "groups": ["g1", "g2", "system:authenticated"]}
    # and every verb runs as bob: no binding yet, so no pods
    assert (await cli(admin, "--as", "bob", "auth", "can-i", "get", "pods"))[:2] == (
        1, "no\n")
    code, _, err = await cli(admin, "--as", "bob", "get", "pods")
    assert code == 1 and 'User "bob" cannot list resource "pods"' in err


async def test_as_without_the_impersonate_verb_is_refused(c: Cluster,
                                                          tmp_path: Path) -> None:
    bob = bob_config(c, tmp_path)
    code, out, err = await cli(bob, "--as", "alice", "auth", "whoami")
    assert code == 1 and out == ""
    assert 'User "bob" cannot impersonate resource "users"' in err
    creds = Credentials(ca_pem=c.credentials.ca_pem, token="bob-token").impersonating(
        "alice")
    client = ApiClient(open_channel(c.plane.supervisor_address, creds),
                       c.plane.supervisor_address, timeout=5)
    try:
        with pytest.raises(errors.Forbidden, match='User "bob" cannot impersonate') as e:
            await client.list(core_pb2.Pod, "default")
        assert e.value.code.name == "PERMISSION_DENIED"
    finally:
        await client.channel.close(None)
    code, _, err = await cli(bob, "--as-group", "g", "auth", "whoami")
    assert code == 1 and "--as USER is required" in err


async def test_asking_needs_system_basic_user(c: Cluster, tmp_path: Path) -> None:
    bob = bob_config(c, tmp_path)
    code, out, _ = await cli(bob, "auth", "whoami")
    assert code == 0 and "bob" in out
    await c.client.delete(rbac_pb2.ClusterRoleBinding, "system:basic-user")
    code, _, err = await cli(bob, "auth", "whoami")
    assert code == 1 and 'User "bob" cannot create resource "selfsubjectreviews"' in err
    code, _, err = await cli(bob, "auth", "can-i", "get", "pods")
    assert code == 1 and 'cannot create resource "selfsubjectaccessreviews"' in err
