"""The software L2 gateway: h2's agent runs with ``--l2gw-device``; an L2 gateway naming that
device and one of its interfaces, connected to a VXLAN network, bridges the network's overlay
to the interface, so a "bare-metal" machine behind it reaches an instance on h1, and the MACs
the gateway host learns behind the interface become static FDB entries on h1. A remote gateway
connection tunnels the network to another cloud's border gateway (a namespace on the underlay).

The bare-metal machine is a namespace with a veth into h2 (``bm0``). Every namespace is named
with the lab's tag, so the lab's teardown deletes them (and the veths inside) with the rest.
"""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import NeutrinoServer, _server_binary, osc
from dataplane_lab import (
    Lab, bound_port, ip_of, needs_root, network_with_subnet, sh, wait_active, wait_for)
from test_dataplane_provider import kernel_has_vlan, open_group

pytestmark = needs_root


@pytest.fixture
def glab(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1", "h2"))
    lab.device = f"gw-{lab.tag}"
    # A quick resync: the gateway reports what its bridge learned after each reconcile.
    lab.agent_args = {"h2": ["--l2gw-device", lab.device, "--resync-interval", "1"]}
    try:
        yield lab.setup()
    finally:
        lab.teardown()
        server.stop()


def bare_metal(lab: Lab, address: str) -> str:
    """A namespace whose ``eth0`` is a veth to ``bm0`` on h2, with ``address`` (CIDR)."""
    ns = f"nt{lab.tag}-bm"
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "bm0", "netns", lab.host_ns("h2"), "type", "veth",
       "peer", "name", "eth0", "netns", ns)
    sh("ip", "-n", lab.host_ns("h2"), "link", "set", "bm0", "up")
    sh("ip", "-n", ns, "addr", "add", address, "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    return ns


def master_of(ns: str, dev: str) -> str | None:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev).stdout)[0].get("master")


def mac_of(ns: str, dev: str) -> str:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev).stdout)[0]["address"]


def fdb_toward(ns: str, mac: str, dst: str) -> bool:
    """Whether ``ns`` has a VXLAN FDB entry sending ``mac`` to ``dst``."""
    return any(line.startswith(f"{mac} ") and f"dst {dst} " in line + " "
               for line in sh("bridge", "-n", ns, "fdb", "show").stdout.splitlines())


def test_gateway_bridges_bare_metal_to_the_overlay(glab):
    lab, env = glab, glab.server.env
    net, _ = network_with_subnet(env, "10.68.0.0/24")
    a = wait_active(env, bound_port(env, net, "h1", "a", *open_group(env))["id"])
    bm = bare_metal(lab, "10.68.0.50/24")
    assert not lab.pings(bm, ip_of(a)), "reachable before any connection"

    # The gateway agent reports its device.
    agents = {r["Host"]: r["ID"] for r in osc("network", "agent", "list", env=env)
              if r["Agent Type"] == "Neutrino agent"}
    conf = osc("network", "agent", "show", agents["h2"], env=env)["configuration"]
    conf = json.loads(conf) if isinstance(conf, str) else conf
    assert conf["l2gw_device"] == lab.device

    # VLAN 0: untagged on the interface.
    gw = osc("l2gw", "create", f"dp-gw-{uuid.uuid4().hex[:6]}",
             "--device", f"name={lab.device},interface_names=bm0|0", env=env)
    conn = osc("l2gw", "connection", "create", gw["id"], net, env=env)
    bridge = f"brq{net[:11]}"
    h2 = lab.host_ns("h2")
    wait_for("bm0 on the network's bridge", lambda: master_of(h2, "bm0") == bridge)
    assert lab.pings(bm, ip_of(a), count=2)
    # The gateway host reported the MAC it learned behind bm0; h1 sends it there directly.
    bm_mac = mac_of(bm, "eth0")
    h1 = lab.host_ns("h1")
    wait_for("h1's FDB entry for the bare-metal MAC",
             lambda: fdb_toward(h1, bm_mac, lab.tunnel_ip("h2")))

    # The connection goes: bm0 is released (and stays), the instance is unreachable again.
    osc("l2gw", "connection", "delete", conn["id"], env=env, json_output=False)
    wait_for("bm0 released", lambda: master_of(h2, "bm0") is None)
    assert not lab.pings(bm, ip_of(a))
    wait_for("the bare-metal MAC's entry removed on h1",
             lambda: not fdb_toward(h1, bm_mac, lab.tunnel_ip("h2")))
    osc("l2gw", "delete", gw["id"], env=env, json_output=False)


def test_gateway_vlan_sub_interface(glab):
    lab, env = glab, glab.server.env
    if not kernel_has_vlan(lab.tag):
        pytest.skip("this kernel lacks 802.1q VLAN devices (ip link add ... type vlan fails); "
                    "the VLAN sub-interface plan is covered by crates/neutrino-dataplane/tests/l2gw.rs")
    net, _ = network_with_subnet(env, "10.69.0.0/24")
    a = wait_active(env, bound_port(env, net, "h1", "a", *open_group(env))["id"])
    bm = bare_metal(lab, "198.18.200.1/24")
    sh("ip", "-n", bm, "link", "add", "link", "eth0", "name", "eth0.100", "type", "vlan", "id", "100")
    sh("ip", "-n", bm, "addr", "add", "10.69.0.50/24", "dev", "eth0.100")
    sh("ip", "-n", bm, "link", "set", "eth0.100", "up")
    gw = osc("l2gw", "create", f"dp-gw-{uuid.uuid4().hex[:6]}",
             "--device", f"name={lab.device},interface_names=bm0", env=env)
    osc("l2gw", "connection", "create", gw["id"], net, "--default-segmentation-id", "100", env=env)
    wait_for("bm0.100 on the bridge", lambda: master_of(lab.host_ns("h2"), "bm0.100") == f"brq{net[:11]}")
    assert lab.pings(bm, ip_of(a), count=2)


def remote_cloud(lab: Lab, tunnel_ip: str, key: int, endpoint: str) -> str:
    """Another cloud's border gateway on the underlay (``tunnel_ip``): a bridge with a VXLAN
    device of WAN key ``key`` that floods to h2, and a machine on it with ``endpoint`` (CIDR).
    Returns the machine's namespace."""
    gw, machine = f"nt{lab.tag}-rgw", f"nt{lab.tag}-rhost"
    for ns in (gw, machine):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "ulrgw", "netns", lab.underlay, "type", "veth",
       "peer", "name", "uplink", "netns", gw)
    sh("ip", "-n", lab.underlay, "link", "set", "ulrgw", "master", "br0", "up")
    sh("ip", "-n", gw, "addr", "add", f"{tunnel_ip}/24", "dev", "uplink")
    sh("ip", "-n", gw, "link", "set", "uplink", "up")
    sh("ip", "-n", gw, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", gw, "link", "add", "wan", "type", "vxlan", "id", str(key), "local", tunnel_ip,
       "dstport", "4789")
    sh("bridge", "-n", gw, "fdb", "append", "00:00:00:00:00:00", "dev", "wan",
       "dst", lab.tunnel_ip("h2"))
    sh("ip", "-n", gw, "link", "add", "rh0", "type", "veth", "peer", "name", "eth0",
       "netns", machine)
    for dev in ("wan", "rh0"):
        sh("ip", "-n", gw, "link", "set", dev, "master", "br0", "up")
    sh("ip", "-n", gw, "link", "set", "br0", "up")
    sh("ip", "-n", machine, "addr", "add", endpoint, "dev", "eth0")
    sh("ip", "-n", machine, "link", "set", "eth0", "up")
    return machine


def test_border_gateway_reaches_a_remote_cloud(glab):
    lab, env = glab, glab.server.env
    net, _ = network_with_subnet(env, "10.70.0.0/24")
    a = wait_active(env, bound_port(env, net, "h1", "a", *open_group(env))["id"])
    bare_metal(lab, "10.70.0.50/24")
    gw = osc("l2gw", "create", f"dp-gw-{uuid.uuid4().hex[:6]}",
             "--device", f"name={lab.device},interface_names=bm0|0", env=env)
    osc("l2gw", "connection", "create", gw["id"], net, env=env)
    remote = remote_cloud(lab, "198.18.0.50", 456, "10.70.0.60/24")
    assert not lab.pings(remote, ip_of(a)), "reachable before the remote connection"

    conn = lab.server.connect()
    post = lambda path, key, body: conn.network.post(path, json={key: body}).json()[key]  # noqa: E731
    rgw = post("/l2-remote-gateways", "l2_remote_gateway", {"name": "cloud-b", "ipaddr": "198.18.0.50"})
    rc = post("/l2-remote-gateway-connections", "l2_remote_gateway_connection",
              {"gateway": gw["id"], "network": net, "remote_gateway": rgw["id"], "seg_id": "456",
               "flood": "True"})
    h2 = lab.host_ns("h2")
    wait_for("the WAN tunnel on the network's bridge", lambda: sh(
        "ip", "-n", h2, "link", "show", "vxlan-456", check=False).returncode == 0
        and master_of(h2, "vxlan-456") == f"brq{net[:11]}")
    assert lab.pings(remote, ip_of(a), count=2)

    # The remote connection goes: so does the WAN tunnel, and the remote cloud is cut off.
    conn.network.delete(f"/l2-remote-gateway-connections/{rc['id']}")
    wait_for("the WAN tunnel removed", lambda: sh(
        "ip", "-n", h2, "link", "show", "vxlan-456", check=False).returncode != 0)
    assert not lab.pings(remote, ip_of(a))


@pytest.fixture
def two_clouds(tmp_path, request):
    """Two deployments on one underlay, each with its own server, a compute host h1 and a
    software gateway host h2; extra gateway agent arguments from the test's ``gateway_args``
    mark."""
    mark = request.node.get_closest_marker("gateway_args")
    extra = list(mark.args) if mark else []
    labs = []
    try:
        for name in ("a", "b"):
            server = NeutrinoServer(_server_binary(), tmp_path / name / "server").start()
            lab = Lab(server, tmp_path / name, ("h1", "h2"), beside=labs[0] if labs else None)
            labs.append(lab)
            lab.device = f"gw-{lab.tag}"
            lab.agent_args = {"h2": ["--l2gw-device", lab.device, "--resync-interval", "1",
                                     *extra]}
            lab.setup()
            # The gateway device's interface (nothing behind it: this gateway only borders).
            sh("ip", "-n", lab.host_ns("h2"), "link", "add", "bm0", "type", "veth",
               "peer", "name", "bm1")
            for dev in ("bm0", "bm1"):
                sh("ip", "-n", lab.host_ns("h2"), "link", "set", dev, "up")
        yield labs
    finally:
        # The second joined the first's underlay: it goes first.
        for lab in reversed(labs):
            lab.teardown()
            lab.server.stop()


def stretched_side(lab: Lab, address: str) -> tuple[dict, str, str]:
    """One cloud's half: a network on 10.72.0.0/24, an instance on h1 with ``address``, the
    network connected to the cloud's gateway. Returns the port, the network and the gateway."""
    env = lab.server.env
    net, sub = network_with_subnet(env, "10.72.0.0/24")
    port = bound_port(env, net, "h1", "vm", *open_group(env),
                      "--fixed-ip", f"subnet={sub},ip-address={address}")
    port = wait_active(env, port["id"])
    gw = osc("l2gw", "create", f"dp-gw-{uuid.uuid4().hex[:6]}",
             "--device", f"name={lab.device},interface_names=bm0", env=env)
    osc("l2gw", "connection", "create", gw["id"], net, "--default-segmentation-id", "0", env=env)
    return port, net, gw["id"]


def border(lab: Lab, gw: str, net: str, remote: Lab, flood: bool,
           macs: list[dict] | None = None) -> str:
    """A remote gateway connection from ``lab``'s gateway to ``remote``'s over WAN key 456, with
    ``macs`` as remote MACs; returns its id."""
    conn = lab.server.connect()
    post = lambda path, key, body: conn.network.post(path, json={key: body}).json()[key]  # noqa: E731
    rgw = post("/l2-remote-gateways", "l2_remote_gateway",
               {"name": f"cloud-{remote.tag}", "ipaddr": remote.tunnel_ip("h2")})
    rc = post("/l2-remote-gateway-connections", "l2_remote_gateway_connection",
              {"gateway": gw, "network": net, "remote_gateway": rgw["id"], "seg_id": "456",
               "flood": str(flood)})
    if macs:
        r = conn.network.post("/l2-remote-macs", json={"l2_remote_macs": [
            {**m, "rgw_connection": rc["id"]} for m in macs]})
        assert r.status_code == 201, r.text
    return rc["id"]


def unborder(lab: Lab, rc: str) -> None:
    lab.server.connect().network.delete(f"/l2-remote-gateway-connections/{rc}")
    wait_for("the WAN tunnel removed", lambda: sh(
        "ip", "-n", lab.host_ns("h2"), "link", "show", "vxlan-456", check=False).returncode != 0)


def test_two_clouds_stretch_a_network(two_clouds):
    a, b = two_clouds
    port_a, net_a, gw_a = stretched_side(a, "10.72.0.10")
    port_b, net_b, gw_b = stretched_side(b, "10.72.0.20")
    vm_a, vm_b = a.instance("h1", "vm"), b.instance("h1", "vm")
    assert not a.pings(vm_a, "10.72.0.20"), "reachable before the clouds are joined"

    # Flooding both ways: ARP crosses the WAN, the instances reach each other.
    rc_a = border(a, gw_a, net_a, b, flood=True)
    rc_b = border(b, gw_b, net_b, a, flood=True)
    wait_for("cloud A reaching cloud B", lambda: a.pings(vm_a, "10.72.0.20"))
    assert b.pings(vm_b, "10.72.0.10", count=2)

    # One side's remote connection goes: the clouds are cut apart.
    unborder(a, rc_a)
    sh("ip", "-n", vm_a, "neigh", "flush", "all")
    assert not a.pings(vm_a, "10.72.0.20", count=2)

    # No flooding, the other cloud's instance given as a remote MAC with its address on both
    # sides: each gateway answers ARP for the other cloud's instance, unicast crosses.
    unborder(b, rc_b)
    rc_a = border(a, gw_a, net_a, b, flood=False,
                  macs=[{"mac": port_b["mac_address"], "ipaddr": "10.72.0.20"}])
    rc_b = border(b, gw_b, net_b, a, flood=False,
                  macs=[{"mac": port_a["mac_address"], "ipaddr": "10.72.0.10"}])
    for lab, vm in ((a, vm_a), (b, vm_b)):
        sh("ip", "-n", vm, "neigh", "flush", "all")
    # Cloud A's compute host sends the remote MAC straight to its gateway host.
    wait_for("h1's FDB entry for cloud B's instance toward A's gateway", lambda: fdb_toward(
        a.host_ns("h1"), port_b["mac_address"], a.tunnel_ip("h2")))
    wait_for("cloud A reaching cloud B without flooding", lambda: a.pings(vm_a, "10.72.0.20"))
    assert b.pings(vm_b, "10.72.0.10", count=2)
    neigh = sh("ip", "-n", vm_a, "neigh", "show", "10.72.0.20").stdout
    assert port_b["mac_address"] in neigh, neigh
    # Nothing floods across: no flood entry on the WAN device, and an address no remote MAC
    # names stays unresolved.
    assert not fdb_toward(a.host_ns("h2"), "00:00:00:00:00:00", b.tunnel_ip("h2"))
    assert not a.pings(vm_a, "10.72.0.30")


@pytest.mark.gateway_args("--l2gw-exchange-macs")
def test_two_clouds_learn_each_others_macs(two_clouds):
    """With the MAC exchange, no flooding and no remote MAC given: each gateway learns the other
    cloud's instance (MAC and address) from the other gateway."""
    a, b = two_clouds
    port_a, net_a, gw_a = stretched_side(a, "10.72.0.10")
    port_b, net_b, gw_b = stretched_side(b, "10.72.0.20")
    vm_a, vm_b = a.instance("h1", "vm"), b.instance("h1", "vm")
    rc_a = border(a, gw_a, net_a, b, flood=False)
    border(b, gw_b, net_b, a, flood=False)
    # A's gateway sends B's instance over the WAN, and A's compute host sends it to the gateway.
    wait_for("A's gateway forwarding B's instance over the WAN", lambda: fdb_toward(
        a.host_ns("h2"), port_b["mac_address"], b.tunnel_ip("h2")))
    wait_for("h1's FDB entry for cloud B's instance toward A's gateway", lambda: fdb_toward(
        a.host_ns("h1"), port_b["mac_address"], a.tunnel_ip("h2")))
    wait_for("cloud A reaching cloud B", lambda: a.pings(vm_a, "10.72.0.20"))
    assert b.pings(vm_b, "10.72.0.10", count=2)
    assert not fdb_toward(a.host_ns("h2"), "00:00:00:00:00:00", b.tunnel_ip("h2"))

    # A port created later in B is announced too.
    env_b = b.server.env
    sub_b = osc("network", "show", net_b, env=env_b)["subnets"][0]
    later = bound_port(env_b, net_b, "h1", "vm2", *open_group(env_b),
                       "--fixed-ip", f"subnet={sub_b},ip-address=10.72.0.21")
    wait_active(env_b, later["id"])
    wait_for("A's gateway forwarding B's new instance", lambda: fdb_toward(
        a.host_ns("h2"), later["mac_address"], b.tunnel_ip("h2")))
    assert a.pings(vm_a, "10.72.0.21", count=2)

    # The border goes on A's side: what A learned from B is dropped with it.
    unborder(a, rc_a)
    wait_for("h1's entry for B's instance withdrawn", lambda: not fdb_toward(
        a.host_ns("h1"), port_b["mac_address"], a.tunnel_ip("h2")))
    sh("ip", "-n", vm_a, "neigh", "flush", "all")
    assert not a.pings(vm_a, "10.72.0.20")
