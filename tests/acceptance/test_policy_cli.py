"""Operators' policy files (oslo.policy syntax) through the `openstack` CLI: each file changes
exactly the outcomes its rules name, for a member, a reader and an admin; a broken file stops
the server at start with the line named; the dumped defaults load as a file.

One server for the module, restarted with `--policy-file` for each policy (same data directory
and port, so the users and resources made before stay)."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from conftest import NeutrinoServer, _server_binary, osc, osc_fails, osc_run, unique, user_env


def _binary() -> str:
    binary = _server_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip(f"no server binary at {binary}")
    return binary


class Cloud:
    """The server, the admin and three users of one project: a member, a reader, and a
    member who also holds the custom role `netadmin`."""

    def __init__(self, server: NeutrinoServer, policy_dir):
        self.server = server
        self.policy_dir = policy_dir
        self.admin = server.env
        self.project = unique("pol")
        osc("project", "create", self.project, env=self.admin)
        osc("role", "create", "netadmin", env=self.admin)
        self.users = {}
        for who, roles in [("member", ["member"]), ("reader", ["reader"]),
                           ("netadmin", ["member", "netadmin"])]:
            name, password = unique(who), "pw-" + secrets.token_hex(8)
            osc("user", "create", "--password", password, name, env=self.admin)
            for role in roles:
                osc("role", "add", "--user", name, "--project", self.project, role,
                    env=self.admin)
            self.users[who] = user_env(self.admin, name, password, self.project)

    def env(self, who: str) -> dict[str, str]:
        return self.admin if who == "admin" else self.users[who]

    def restart(self, policy: str | None) -> None:
        """Restarts the server with `policy` as its policy file (None: the defaults)."""
        self.server.stop()
        self.server.extra_args = []
        if policy is not None:
            path = self.policy_dir / f"policy-{secrets.token_hex(4)}.yaml"
            path.write_text(policy)
            self.server.extra_args = ["--policy-file", str(path)]
        self.server.start()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    server = NeutrinoServer(_binary(), tmp_path_factory.mktemp("policy-server"), name="policy")
    server.start()
    try:
        yield Cloud(server, tmp_path_factory.mktemp("policy-files"))
    finally:
        server.stop()


def _refused(proc: subprocess.CompletedProcess, rule: str) -> None:
    text = proc.stderr + proc.stdout
    assert "403" in text or "disallowed by policy" in text, text
    assert rule in text, text


def _try_network(cloud: Cloud, who: str, *args: str):
    """Creates a network as `who` (in the admin's case, in the test project); returns the
    network or the failed process."""
    extra = ["--project", cloud.project] if who == "admin" else []
    argv, proc = osc_run("network", "create", *extra, *args, unique(who), env=cloud.env(who),
                         json_output=True)
    if proc.returncode == 0:
        import json

        return json.loads(proc.stdout)
    return proc


def test_shared_networks(cloud):
    cloud.restart(None)
    # Neutron's default: only admins share networks.
    _refused(_try_network(cloud, "member", "--share"), "create_network:shared")
    assert _try_network(cloud, "admin", "--share")["shared"] is True

    cloud.restart('"create_network:shared": "rule:admin_only or role:member"\n')
    assert _try_network(cloud, "member", "--share")["shared"] is True
    _refused(_try_network(cloud, "reader", "--share"), "create_network")

    cloud.restart('"create_network:shared": "!"\n')
    _refused(_try_network(cloud, "member", "--share"), "create_network:shared")
    _refused(_try_network(cloud, "admin", "--share"), "create_network:shared")
    # Only the shared flag is refused: plain networks are created as before.
    assert _try_network(cloud, "member")["shared"] is False
    assert _try_network(cloud, "admin")["shared"] is False


def test_custom_role_creates_provider_networks(cloud):
    provider = ["--provider-network-type", "vxlan", "--provider-segment"]
    cloud.restart(None)
    _refused(_try_network(cloud, "netadmin", *provider, "4101"),
             "create_network:provider:")

    cloud.restart("\n".join(
        f'"create_network:provider:{attr}": "rule:admin_only or role:netadmin"'
        for attr in ("network_type", "physical_network", "segmentation_id")) + "\n")
    net = _try_network(cloud, "netadmin", *provider, "4102")
    assert isinstance(net, dict), net.stderr
    # Reading provider attributes is still the admins' (get_network:provider:*).
    seen = osc("network", "show", net["id"], env=cloud.env("netadmin"))
    assert seen.get("provider:segmentation_id") in (None, ""), seen
    shown = osc("network", "show", net["id"], env=cloud.admin)
    assert shown["provider:network_type"] == "vxlan"
    assert shown["provider:segmentation_id"] == 4102
    # A member without the role is still refused; admins still may.
    _refused(_try_network(cloud, "member", *provider, "4103"), "create_network:provider:")
    assert isinstance(_try_network(cloud, "admin", *provider, "4104"), dict)


def _host_of_port(cloud: Cloud, who: str, port: str):
    return osc("port", "show", port, env=cloud.env(who)).get("binding_host_id")


def test_binding_host_visible_to_members_hidden_from_readers(cloud):
    cloud.restart(None)
    net = osc("network", "create", unique("hostnet"), env=cloud.env("member"))
    port = osc("port", "create", "--network", net["id"], "--host", "compute-7", unique("p"),
               env=cloud.admin)
    # Neutron's default: binding:host_id is for admins (and the service role) only.
    assert _host_of_port(cloud, "admin", port["id"]) == "compute-7"
    assert _host_of_port(cloud, "member", port["id"]) in (None, "")
    assert _host_of_port(cloud, "reader", port["id"]) in (None, "")

    cloud.restart('"get_port:binding:host_id": "rule:admin_only or role:member"\n')
    assert _host_of_port(cloud, "admin", port["id"]) == "compute-7"
    assert _host_of_port(cloud, "member", port["id"]) == "compute-7"
    assert _host_of_port(cloud, "reader", port["id"]) in (None, "")
    listed = osc("port", "list", "--network", net["id"], "--long", env=cloud.env("reader"))
    assert [p["ID"] for p in listed] == [port["id"]]


def test_nobody_deletes_ports(cloud):
    cloud.restart(None)
    net = osc("network", "create", unique("delnet"), env=cloud.env("member"))
    mine = osc("port", "create", "--network", net["id"], unique("p"), env=cloud.env("member"))
    other = osc("port", "create", "--network", net["id"], unique("p"), env=cloud.env("member"))
    osc("port", "delete", other["id"], env=cloud.env("member"))

    cloud.restart('"delete_port": "!"\n')
    _refused(osc_fails("port", "delete", mine["id"], env=cloud.env("member")), "delete_port")
    _refused(osc_fails("port", "delete", mine["id"], env=cloud.admin), "delete_port")
    assert osc("port", "show", mine["id"], env=cloud.env("member"))["id"] == mine["id"]
    # Everything else goes on: ports are created, networks deleted.
    extra = osc("port", "create", "--network", net["id"], unique("p"), env=cloud.env("member"))
    assert extra["network_id"] == net["id"]
    spare = osc("network", "create", unique("spare"), env=cloud.env("member"))
    osc("network", "delete", spare["id"], env=cloud.env("member"))

    cloud.restart(None)
    osc("port", "delete", mine["id"], extra["id"], env=cloud.env("member"))


@pytest.mark.parametrize("text, line, says", [
    ('"get_network": "rule:admin_only"\n\n"create_port": "role:member and ("\n', 3, "cannot parse"),
    ('# comment\n"delete_network": "rule:no_such_rule"\n', 2, "no_such_rule"),
])
def test_broken_policy_file_stops_the_server(tmp_path, text, line, says):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    data_dir = tmp_path / "data"
    proc = subprocess.run(
        [_binary(), "server", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
         "--policy-file", str(path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items()
             if not k.startswith(("OS_", "NEUTRINO_")) and k != "RUST_BACKTRACE"})
    assert proc.returncode != 0
    assert f"policy.yaml line {line}" in proc.stderr, proc.stderr
    assert says in proc.stderr, proc.stderr
    # Refused before anything was written.
    assert not data_dir.exists()


def test_dumped_defaults_load_as_a_policy_file(cloud):
    dump = subprocess.run([_binary(), "server", "--dump-default-policy"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=True).stdout
    assert '"create_network:shared": "rule:admin_only"' in dump
    assert '"get_port:binding:host_id":' in dump
    cloud.restart(dump)
    _refused(_try_network(cloud, "member", "--share"), "create_network:shared")
    assert _try_network(cloud, "member")["shared"] is False
    cloud.restart(None)
