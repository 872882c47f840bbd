"""The `openstack bgp speaker ...`, `openstack bgp peer ...` and `openstack bgp dragent ...`
commands (python-neutronclient's dynamic-routing plugin, now part of python-openstackclient,
requirements.txt), unchanged, against the server.

The dragent commands need a BGP dynamic routing agent: the test registers a host the way
`neutrino agent --bgp` does (its report says `"bgp": true`), with the L3 and DHCP roles
turned off so that no other test schedules routers or DHCP on that host, and deletes its
entries afterwards.
"""

from __future__ import annotations

import pytest

from conftest import osc, osc_fails, osc_run, unique


@pytest.fixture(autouse=True)
def _plugin_installed():
    try:
        import openstackclient.network.v2.dynamic_routing.bgp_speaker  # noqa: F401
    except ImportError as e:  # pragma: no cover - requirements.txt installs it
        pytest.fail(f"the openstack CLI's dynamic routing commands are missing ({e})")


def _speaker(env, cleanup, *args: str) -> dict:
    sp = osc("bgp", "speaker", "create", unique("speaker"), *args, env=env)
    cleanup.add(osc_run, "bgp", "speaker", "delete", sp["id"], env=env)
    return sp


def _peer(env, cleanup, *args: str) -> dict:
    peer = osc("bgp", "peer", "create", unique("peer"), *args, env=env)
    cleanup.add(osc_run, "bgp", "peer", "delete", peer["id"], env=env)
    return peer


def test_speaker_lifecycle(admin_env, cleanup):
    env = admin_env
    sp = _speaker(env, cleanup, "--local-as", "65001")
    assert sp["local_as"] == 65001 and sp["ip_version"] == 4
    assert sp["advertise_floating_ip_host_routes"] is True
    assert sp["advertise_tenant_networks"] is True
    assert sp["peers"] == [] and sp["networks"] == []
    # 4-byte AS numbers; IPv6; flags off.
    sp6 = _speaker(env, cleanup, "--local-as", "4200000000", "--ip-version", "6",
                   "--no-advertise-floating-ip-host-routes", "--no-advertise-tenant-networks")
    assert sp6["local_as"] == 4200000000 and sp6["ip_version"] == 6
    assert sp6["advertise_floating_ip_host_routes"] is False
    assert sp6["advertise_tenant_networks"] is False

    # show by name and id; list.
    assert osc("bgp", "speaker", "show", sp["name"], env=env)["id"] == sp["id"]
    listed = {row["ID"]: row for row in osc("bgp", "speaker", "list", env=env)}
    assert listed[sp["id"]]["Local AS"] == 65001
    assert listed[sp6["id"]]["IP Version"] == 6

    # set: name and flags.
    new = unique("speaker")
    osc("bgp", "speaker", "set", sp["id"], "--name", new, "--no-advertise-tenant-networks", env=env)
    shown = osc("bgp", "speaker", "show", sp["id"], env=env)
    assert shown["name"] == new and shown["advertise_tenant_networks"] is False

    # An AS number out of range: the server refuses it.
    failed = osc_fails("bgp", "speaker", "create", unique("bad"), "--local-as", "4294967296", env=env)
    assert "local_as" in failed.stderr, failed.stderr

    osc("bgp", "speaker", "delete", sp["id"], env=env)
    assert osc_fails("bgp", "speaker", "show", sp["id"], env=env).returncode != 0
    assert sp["id"] not in {row["ID"] for row in osc("bgp", "speaker", "list", env=env)}


def test_peer_lifecycle_and_password_never_shown(neutrino, admin_conn, admin_env, cleanup):
    env = admin_env
    peer = _peer(env, cleanup, "--peer-ip", "192.0.2.10", "--remote-as", "65002",
                 "--auth-type", "md5", "--password", "s3cret")
    assert peer["peer_ip"] == "192.0.2.10" and peer["remote_as"] == 65002
    assert peer["auth_type"] == "md5"
    # (The create output echoes the password: openstacksdk keeps the attributes it sent when
    # the response leaves them out. What the server returns is in show and list.)
    shown = osc("bgp", "peer", "show", peer["name"], env=env)
    assert shown["id"] == peer["id"] and "s3cret" not in str(shown)
    assert not shown.get("password")
    raw = admin_conn.session.get(f"{neutrino.url}/v2.0/bgp-peers/{peer['id']}").json()["bgp_peer"]
    assert "password" not in raw and raw["peer_ip"] == "192.0.2.10"
    listed = {row["ID"]: row for row in osc("bgp", "peer", "list", env=env)}
    assert listed[peer["id"]]["Peer IP"] == "192.0.2.10"
    assert listed[peer["id"]]["Remote AS"] == 65002

    osc("bgp", "peer", "set", peer["id"], "--password", "other", env=env)
    renamed = unique("peer")
    osc("bgp", "peer", "set", peer["id"], "--name", renamed, env=env)
    assert osc("bgp", "peer", "show", peer["id"], env=env)["name"] == renamed

    # The server's own checks: an address that is not one, a password on an unauthenticated peer.
    failed = osc_fails("bgp", "peer", "create", unique("bad"), "--peer-ip", "192.0.2.0/24",
                       "--remote-as", "1", env=env)
    assert "peer_ip" in failed.stderr, failed.stderr
    plain = _peer(env, cleanup, "--peer-ip", "192.0.2.11", "--remote-as", "65003")
    failed = osc_fails("bgp", "peer", "set", plain["id"], "--password", "x", env=env)
    assert "not authenticated" in failed.stderr, failed.stderr

    osc("bgp", "peer", "delete", peer["id"], env=env)
    assert osc_fails("bgp", "peer", "show", peer["id"], env=env).returncode != 0


def test_speaker_peers_networks_and_advertised_routes(neutrino, admin_conn, admin_env, cleanup):
    env = admin_env
    # An address scope shared by the external network's subnet and a tenant subnet.
    scope = osc("address", "scope", "create", unique("scope"), "--share", env=env)
    cleanup.add(osc_run, "address", "scope", "delete", scope["id"], env=env)
    ext_pool = osc("subnet", "pool", "create", unique("extpool"), "--pool-prefix", "203.0.113.0/24",
                   "--address-scope", scope["id"], env=env)
    cleanup.add(osc_run, "subnet", "pool", "delete", ext_pool["id"], env=env)
    pool = osc("subnet", "pool", "create", unique("pool"), "--pool-prefix", "10.77.0.0/16",
               "--address-scope", scope["id"], env=env)
    cleanup.add(osc_run, "subnet", "pool", "delete", pool["id"], env=env)
    ext = osc("network", "create", unique("bgpext"), "--external", env=env)
    cleanup.add(osc_run, "network", "delete", ext["id"], env=env)
    osc("subnet", "create", unique("extsub"), "--network", ext["id"], "--subnet-pool", ext_pool["id"],
        "--subnet-range", "203.0.113.0/24", env=env)
    net = osc("network", "create", unique("bgpnet"), env=env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=env)
    sub = osc("subnet", "create", unique("sub"), "--network", net["id"], "--subnet-pool", pool["id"],
              "--subnet-range", "10.77.1.0/24", env=env)
    router = osc("router", "create", unique("bgprouter"), env=env)
    cleanup.add(osc_run, "router", "delete", router["id"], env=env)
    osc("router", "set", router["id"], "--external-gateway", ext["id"], env=env)
    cleanup.add(osc_run, "router", "unset", "--external-gateway", router["id"], env=env)
    osc("router", "add", "subnet", router["id"], sub["id"], env=env)
    cleanup.add(osc_run, "router", "remove", "subnet", router["id"], sub["id"], env=env)
    gw = osc("router", "show", router["id"], env=env)["external_gateway_info"]
    gw_ip = gw["external_fixed_ips"][0]["ip_address"]

    sp = _speaker(env, cleanup, "--local-as", "65010")
    peer = _peer(env, cleanup, "--peer-ip", "192.0.2.20", "--remote-as", "65020")
    twin = _peer(env, cleanup, "--peer-ip", "192.0.2.20", "--remote-as", "65021")

    # Peers, by name.
    osc("bgp", "speaker", "add", "peer", sp["name"], peer["name"], env=env)
    assert osc("bgp", "speaker", "show", sp["id"], env=env)["peers"] == [peer["id"]]
    failed = osc_fails("bgp", "speaker", "add", "peer", sp["id"], twin["id"], env=env)
    assert "already configured to peer" in failed.stderr, failed.stderr
    osc("bgp", "speaker", "remove", "peer", sp["id"], peer["id"], env=env)
    assert osc("bgp", "speaker", "show", sp["id"], env=env)["peers"] == []
    failed = osc_fails("bgp", "speaker", "remove", "peer", sp["id"], peer["id"], env=env)
    assert "is not associated" in failed.stderr, failed.stderr

    # Nothing bound: nothing advertised. Bound: the tenant subnet via the router's gateway.
    assert osc("bgp", "speaker", "list", "advertised", "routes", sp["id"], env=env) == []
    osc("bgp", "speaker", "add", "network", sp["name"], ext["name"], env=env)
    assert osc("bgp", "speaker", "show", sp["id"], env=env)["networks"] == [ext["id"]]
    # Bound twice: 409 (openstacksdk's add_gateway_network does not check the status, so the
    # command itself succeeds and changes nothing).
    r = admin_conn.session.put(f"{neutrino.url}/v2.0/bgp-speakers/{sp['id']}/add_gateway_network",
                               json={"network_id": ext["id"]}, raise_exc=False)
    assert r.status_code == 409, r.text
    assert r.json()["NeutronError"]["type"] == "BgpSpeakerNetworkBindingError"
    osc("bgp", "speaker", "add", "network", sp["id"], ext["id"], env=env)
    assert osc("bgp", "speaker", "show", sp["id"], env=env)["networks"] == [ext["id"]]
    routes = osc("bgp", "speaker", "list", "advertised", "routes", sp["id"], env=env)
    assert routes == [{"Destination": "10.77.1.0/24", "Nexthop": gw_ip}], routes

    # A floating IP of an instance behind the router: a /32 host route.
    port = osc("port", "create", unique("vm"), "--network", net["id"], "--device-owner", "compute:nova",
               env=env)
    cleanup.add(osc_run, "port", "delete", port["id"], env=env)
    fip = osc("floating", "ip", "create", ext["id"], "--port", port["id"], env=env)
    cleanup.add(osc_run, "floating", "ip", "delete", fip["id"], env=env)
    routes = osc("bgp", "speaker", "list", "advertised", "routes", sp["id"], env=env)
    assert {"Destination": f"{fip['floating_ip_address']}/32", "Nexthop": gw_ip} in routes, routes
    assert len(routes) == 2
    # Removing the interface withdraws the tenant route; deleting the FIP its host route.
    osc("floating", "ip", "delete", fip["id"], env=env)
    osc("port", "delete", port["id"], env=env)
    osc("router", "remove", "subnet", router["id"], sub["id"], env=env)
    assert osc("bgp", "speaker", "list", "advertised", "routes", sp["id"], env=env) == []

    osc("bgp", "speaker", "remove", "network", sp["id"], ext["id"], env=env)
    assert osc("bgp", "speaker", "show", sp["id"], env=env)["networks"] == []


def _register_bgp_host(neutrino, admin_conn, cleanup) -> str:
    """Reports in as a Neutrino agent that speaks BGP (no L3, no DHCP role); returns its host."""
    host = unique("bgphost")
    body = {"agent": {"host": host, "configurations": {"bgp": True, "l3": False, "dhcp": False}}}
    r = admin_conn.session.post(f"{neutrino.url}/neutrino/v1/agents", json=body)
    assert r.status_code in (200, 201), r.text
    return host


def test_dragent_commands(neutrino, admin_conn, admin_env, cleanup):
    env = admin_env
    host = _register_bgp_host(neutrino, admin_conn, cleanup)
    agents = [a for a in osc("bgp", "dragent", "list", env=env) if a["Host"] == host]
    assert len(agents) == 1, agents
    agent = agents[0]
    assert agent["Agent Type"] == "BGP dynamic routing agent"
    assert agent["Binary"] == "neutron-bgp-dragent"
    for row in osc("network", "agent", "list", "--host", host, env=env):
        cleanup.add(osc_run, "network", "agent", "delete", row["ID"], env=env)

    # A new speaker goes to a free BGP agent: this one, unless another test's holds it. (The
    # server also schedules unhosted speakers every few seconds, as upstream's periodic
    # schedule_all_unscheduled_bgp_speakers, so a speaker taken off an enabled agent may come
    # back to it at any time.)
    sp = _speaker(env, cleanup, "--local-as", "65030")
    hosting = osc("bgp", "dragent", "list", "--bgp-speaker", sp["id"], env=env)
    for row in hosting:
        if row["ID"] != agent["ID"]:
            osc("bgp", "dragent", "remove", "speaker", row["ID"], sp["id"], env=env)
    # Explicit add (by speaker name), list both ways, remove.
    osc("bgp", "dragent", "add", "speaker", agent["ID"], sp["name"], env=env)
    hosting = osc("bgp", "dragent", "list", "--bgp-speaker", sp["id"], env=env)
    assert [row["ID"] for row in hosting] == [agent["ID"]], hosting
    on_agent = osc("bgp", "speaker", "list", "--agent", agent["ID"], env=env)
    assert [row["ID"] for row in on_agent] == [sp["id"]], on_agent
    # One speaker per agent: 409 (openstacksdk does not check this call's status, so the
    # command itself succeeds and changes nothing).
    other = _speaker(env, cleanup, "--local-as", "65031")
    instances = f"{neutrino.url}/v2.0/agents/{agent['ID']}/bgp-drinstances"
    r = admin_conn.session.post(instances, json={"bgp_speaker_id": other["id"]}, raise_exc=False)
    assert r.status_code == 409, r.text
    assert r.json()["NeutronError"]["type"] == "DrAgentAssociationError"
    osc("bgp", "dragent", "add", "speaker", agent["ID"], other["id"], env=env)
    hosting = osc("bgp", "dragent", "list", "--bgp-speaker", other["id"], env=env)
    assert agent["ID"] not in [row["ID"] for row in hosting], hosting
    # Disabled, the agent is out of scheduling, so the removal below stays (removing works on a
    # disabled agent, as upstream's).
    osc("network", "agent", "set", "--disable", agent["ID"], env=env, json_output=False)
    osc("bgp", "dragent", "remove", "speaker", agent["ID"], sp["id"], env=env)
    hosting = osc("bgp", "dragent", "list", "--bgp-speaker", sp["id"], env=env)
    assert agent["ID"] not in [row["ID"] for row in hosting], hosting
    assert osc("bgp", "speaker", "list", "--agent", agent["ID"], env=env) == []
    r = admin_conn.session.delete(f"{instances}/{sp['id']}", raise_exc=False)
    assert r.status_code == 404, r.text
    assert r.json()["NeutronError"]["type"] == "DrAgentNotHostingBgpSpeaker"
