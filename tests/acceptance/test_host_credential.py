"""A host agent with its own host's credential instead of the admin's openrc.

``neutrino host-credential create --host h1 --output FILE`` (with the admin's openrc) writes
the agent's openrc (an application credential); the agent of h1 runs with
``--credential-file FILE`` next to an agent of h2 with the admin's credentials, and ports on
both hosts become ACTIVE and reach each other. The credential's token is refused (403) for
every user call (Neutron and identity) and for another host's agent calls; deleting the
credential revokes it (401). Needs root (a lab host is a network namespace).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import NeutrinoServer, _server_binary, parse_openrc
from dataplane_lab import Lab, bound_port, ip_of, needs_root, network_with_subnet, wait_active

pytestmark = needs_root


def call(server: NeutrinoServer, method: str, path: str, token: str | None = None,
         body: dict | None = None) -> tuple[int, dict, dict]:
    """One request: status, headers, JSON body."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    req = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def login(server: NeutrinoServer, creds: dict[str, str]) -> tuple[int, str | None]:
    status, headers, _ = call(server, "POST", "/v3/auth/tokens", body={"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": creds["OS_APPLICATION_CREDENTIAL_ID"],
                                   "secret": creds["OS_APPLICATION_CREDENTIAL_SECRET"]}}}})
    token = {k.lower(): v for k, v in headers.items()}.get("x-subject-token")
    return status, token


def host_credential(server: NeutrinoServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_server_binary(), "host-credential", *args], env=server.env,
                          capture_output=True, text=True, timeout=60, check=True)


def test_an_agent_runs_with_its_hosts_credential(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1", "h2"))
    try:
        cred_file = tmp_path / "h1-openrc"
        host_credential(server, "create", "--host", "h1", "--output", str(cred_file))
        assert cred_file.stat().st_mode & 0o777 == 0o600
        creds = parse_openrc(cred_file)
        assert creds["OS_AUTH_TYPE"] == "v3applicationcredential"
        # The admin's OS_* variables are in the agent's environment too: the file wins.
        lab.agent_args["h1"] = ["--credential-file", str(cred_file)]
        lab.setup()
        env = server.env
        net, _ = network_with_subnet(env, "10.71.0.0/24")
        a = bound_port(env, net, "h1", "a")
        b = bound_port(env, net, "h2", "b")
        a, b = wait_active(env, a["id"]), wait_active(env, b["id"])
        assert lab.pings(lab.instance("h1", "a"), ip_of(b), count=2)
        log = (tmp_path / "agent-h1.log").read_text(errors="replace")
        assert "authenticating with a host credential" in log, log
        # The server saw h1's agent log in with the application credential, not a password.
        server_log = server.log_path.read_text(errors="replace")
        assert "host credential created" in server_log

        status, token = login(server, creds)
        assert status == 201 and token
        for method, path in [("GET", "/v2.0/ports"), ("GET", f"/v2.0/ports/{b['id']}"),
                             ("GET", "/v2.0/networks"), ("GET", "/v2.0/agents")]:
            status, _, doc = call(server, method, path, token)
            assert status == 403, (path, doc)
            assert doc["NeutronError"]["type"] == "PolicyNotAuthorized", doc
        status, _, doc = call(server, "GET", "/v3/users", token)
        assert status == 403 and doc["error"]["code"] == 403, doc
        # Another host's agent calls: 403; its own: 200.
        status, _, doc = call(server, "PUT", "/neutrino/v1/port-status", token,
                              {"host": "h2", "ports": [{"id": b["id"], "status": "DOWN"}]})
        assert status == 403, doc
        status, _, doc = call(server, "POST", "/neutrino/v1/agents", token,
                              {"agent": {"host": "h2"}})
        assert status == 403, doc
        status, _, _ = call(server, "GET", "/neutrino/v1/bgp-speakers?host=h1", token)
        assert status == 200
        assert wait_active(env, b["id"])["status"] == "ACTIVE"

        # Deleting the credential revokes its tokens; the secret no longer logs in.
        listed = host_credential(server, "list").stdout
        cred_id = creds["OS_APPLICATION_CREDENTIAL_ID"]
        assert cred_id in listed and "h1" in listed, listed
        host_credential(server, "delete", cred_id)
        status, _, _ = call(server, "GET", "/neutrino/v1/snapshot", token)
        assert status == 401
        assert login(server, creds)[0] == 401
    finally:
        lab.teardown()
        server.stop()


@pytest.mark.parametrize("bad", [["--host", ""], []])
def test_create_needs_a_host(tmp_path, bad):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    try:
        proc = subprocess.run([_server_binary(), "host-credential", "create", *bad],
                              env=server.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0, proc.stdout
    finally:
        server.stop()
