"""Tokens through the real clients: they expire after ``--token-expiration``, are revoked one by
one (``openstack token revoke``), by a password change (``openstack user password set``) and
by losing a role; and a host agent renews its own before they expire, so the server never
has to refuse it.

Expiry and the agent's renewal run against a server whose tokens live 4 seconds; the
revocation tests against one with the default lifetime, so that a token they expect to keep
working can't simply have expired while a slow CLI ran (and a revoked one isn't refused merely
for being old). The agent test needs root (a lab host is a network namespace).
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest

from conftest import NeutrinoServer, _server_binary, osc, osc_run, unique, user_env
from dataplane_lab import Lab, bound_port, needs_root, network_with_subnet, wait_active

LIFETIME = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = NeutrinoServer(_server_binary(), tmp_path_factory.mktemp("tokens"),
                         extra_args=["--token-expiration", str(LIFETIME)]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def lasting(tmp_path_factory):
    """A server issuing tokens of the default lifetime (an hour)."""
    srv = NeutrinoServer(_server_binary(), tmp_path_factory.mktemp("tokens-lasting")).start()
    try:
        yield srv
    finally:
        srv.stop()


def status_with(server: NeutrinoServer, token: str) -> int:
    """The status of ``GET /v2.0/networks`` with this token."""
    req = urllib.request.Request(server.url + "/v2.0/networks", headers={"X-Auth-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def issue(env: dict[str, str]) -> str:
    return osc("token", "issue", env=env)["id"]


def member(server: NeutrinoServer) -> tuple[dict[str, str], str, str]:
    """A new user with the member role on a new project: its CLI env, name and project."""
    admin = server.env
    name, project = unique("tok-user"), unique("tok-project")
    osc("project", "create", project, env=admin)
    osc("user", "create", "--password", "pw1", "--project", project, name, env=admin)
    osc_run("role", "add", "--user", name, "--project", project, "member", env=admin)
    return user_env(admin, name, "pw1", project), name, project


def test_tokens_expire(server):
    token = issue(server.env)
    assert status_with(server, token) == 200
    time.sleep(LIFETIME + 1.5)
    assert status_with(server, token) == 401
    assert status_with(server, issue(server.env)) == 200, "a new token works"


def test_token_revoke_takes_back_that_token_only(lasting):
    env = lasting.env
    one, two = issue(env), issue(env)
    osc_run("token", "revoke", one, env=env)
    assert status_with(lasting, one) == 401
    assert status_with(lasting, two) == 200


def test_password_change_revokes_the_users_tokens(lasting):
    env, _, _ = member(lasting)
    old = issue(env)
    assert status_with(lasting, old) == 200
    osc_run("user", "password", "set", "--original-password", "pw1", "--password", "pw2",
            env=env)
    assert status_with(lasting, old) == 401
    env["OS_PASSWORD"] = "pw2"
    assert status_with(lasting, issue(env)) == 200


def test_losing_the_role_revokes_the_tokens_on_the_project(lasting):
    env, name, project = member(lasting)
    token = issue(env)
    assert status_with(lasting, token) == 200
    osc_run("role", "remove", "--user", name, "--project", project, "member", env=lasting.env)
    assert status_with(lasting, token) == 401


@needs_root
def test_agent_renews_its_token_before_it_expires(server, tmp_path):
    """Three lifetimes of an agent: it keeps reporting and realising ports, and the server
    never answers it 401 (it renews ahead instead of waiting to be refused)."""
    log_start = server.log_path.stat().st_size
    lab = Lab(server, tmp_path, ("h1",))
    try:
        lab.setup()
        # Only the agent talks to the server while it waits.
        quiet_start = server.log_path.stat().st_size
        time.sleep(3 * LIFETIME)
        quiet_end = server.log_path.stat().st_size
        env = server.env
        net, _ = network_with_subnet(env, "10.67.0.0/24")
        port = bound_port(env, net, "h1", "a")
        assert wait_active(env, port["id"])["status"] == "ACTIVE"
        agents = osc("network", "agent", "list", "--host", "h1", env=env)
        assert agents and all(a["Alive"] in (True, ":-)") for a in agents), agents
        with open(server.log_path, "rb") as f:
            f.seek(log_start)
            data = f.read()
        log = data.decode(errors="replace")
        quiet = data[quiet_start - log_start:quiet_end - log_start].decode(errors="replace")
        logins = re.findall(r"method=POST path=/v3/auth/tokens status=201", quiet)
        assert len(logins) >= 2, f"the agent logged in again as its tokens aged:\n{quiet}"
        refused = [line for line in log.splitlines() if "status=401" in line]
        assert refused == [], "\n".join(refused)
    finally:
        lab.teardown()
