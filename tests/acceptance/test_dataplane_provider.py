"""Flat and VLAN provider networks: instances on a physical segment, not on VXLAN.

Each lab host gets a second interface ``eth1`` (a veth into a shared "physical" namespace
holding one bridge) and its agent ``--physical-interface-mappings physnet1:eth1``; h3's agent
maps nothing. An "outside" namespace on the same physical bridge stands for a machine on the
provider network. Every namespace is named with the lab's tag, so the lab's teardown deletes
them (and the veths inside) with the rest.
"""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import NeutrinoServer, _server_binary, osc
from dataplane_lab import (
    Lab, bound_port, ip_of, needs_root, sh, tcp_peer, upper_pool, wait_active, wait_for)

pytestmark = needs_root

MAPPING = ["--physical-interface-mappings", "physnet1:eth1"]
PHYS_CIDR = "203.0.113.0/24"
# The machine outside on the physical segment: below the pool of ``upper_pool(PHYS_CIDR)``, so
# no port (address drawn at random from the pool) or router gateway can have it too.
OUTSIDE_IP = "203.0.113.50"


class ProviderLab:
    """A lab whose h1 and h2 map physnet1 to eth1 on one physical bridge."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.phys = f"nt{lab.tag}-phys"
        self.ports = 0

    def setup(self) -> "ProviderLab":
        sh("ip", "netns", "add", self.phys)
        sh("ip", "-n", self.phys, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.phys, "link", "set", "br0", "up")
        for host in ("h1", "h2"):
            self.attach(self.lab.host_ns(host), "eth1")
        return self

    def attach(self, ns: str, name: str) -> None:
        """A veth from ``ns`` (named ``name``, up) to the physical bridge."""
        self.ports += 1
        end = f"ph{self.ports}"
        sh("ip", "link", "add", end, "netns", self.phys, "type", "veth",
           "peer", "name", name, "netns", ns)
        sh("ip", "-n", self.phys, "link", "set", end, "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", name, "up")

    def outside(self, name: str, address: str) -> str:
        """A namespace on the physical segment with ``address`` (CIDR) on its ``eth0``."""
        ns = f"nt{self.lab.tag}-{name}"
        sh("ip", "netns", "add", ns)
        self.attach(ns, "eth0")
        sh("ip", "-n", ns, "addr", "add", address, "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def learned_macs(self) -> str:
        return sh("bridge", "-n", self.phys, "fdb", "show", "br", "br0").stdout


@pytest.fixture(params=[("h1", "h2", "h3")])
def plab(request, tmp_path):
    """h1 and h2 map physnet1 to eth1; h3, when present, maps nothing."""
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, request.param)
    lab.agent_args = {"h1": MAPPING, "h2": MAPPING}
    try:
        lab.setup()
        yield ProviderLab(lab).setup()
    finally:
        lab.teardown()
        server.stop()


def flat_network(env, *extra: str) -> str:
    return osc("network", "create", "--provider-network-type", "flat",
               "--provider-physical-network", "physnet1", *extra,
               f"dp-flat-{uuid.uuid4().hex[:6]}", env=env)["id"]


def open_group(env) -> tuple[str, ...]:
    """A security group that lets ICMP and TCP in from anywhere."""
    sg = osc("security", "group", "create", f"dp-open-{uuid.uuid4().hex[:6]}", env=env)["id"]
    for proto in ("tcp", "icmp"):
        osc("security", "group", "rule", "create", "--ingress", "--protocol", proto,
            "--remote-ip", "0.0.0.0/0", sg, env=env)
    return ("--security-group", sg)


def test_flat_network_on_the_physical_segment(plab):
    lab, env = plab.lab, plab.lab.server.env
    # The agents report their mappings; h3's maps nothing.
    agents = {a["Host"]: a["ID"] for a in osc("network", "agent", "list", env=env)
              if a["Agent Type"] == "Neutrino agent"}
    conf = osc("network", "agent", "show", agents["h1"], env=env)["configuration"]
    if isinstance(conf, str):
        conf = json.loads(conf)
    assert conf["interface_mappings"] == {"physnet1": "eth1"}

    net = flat_network(env)
    sub = osc("subnet", "create", "--network", net, "--subnet-range", PHYS_CIDR,
              *upper_pool(PHYS_CIDR), "--no-dhcp", f"dp-{uuid.uuid4().hex[:6]}", env=env)["id"]
    sg = open_group(env)
    a = wait_active(env, bound_port(env, net, "h1", "a", *sg)["id"])
    b = wait_active(env, bound_port(env, net, "h2", "b", *sg)["id"])
    assert a["binding_vif_type"] == "bridge"
    ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h2", "b")
    assert lab.pings(ns_a, ip_of(b), count=2)
    # Through the physical segment: the physical bridge learned both instances' MACs, and no
    # host has a VXLAN device.
    learned = plab.learned_macs()
    assert a["mac_address"] in learned and b["mac_address"] in learned
    for host in ("h1", "h2"):
        ns = lab.host_ns(host)
        assert sh("ip", "-n", ns, "-d", "link", "show", "type", "vxlan").stdout == ""
        master = json.loads(sh("ip", "-n", ns, "-j", "link", "show", "eth1").stdout)[0]
        assert master.get("master") == f"brq{net[:11]}"
    # A machine on the segment reaches both instances.
    out = plab.outside("out", f"{OUTSIDE_IP}/24")
    assert lab.pings(out, ip_of(a)) and lab.pings(out, ip_of(b))
    assert tcp_peer(lab, ns_b, out, ip_of(b)) == OUTSIDE_IP

    # A host whose agent does not map physnet1 cannot bind a port on it.
    c = bound_port(env, net, "h3", "c", *sg)
    failed = wait_for("port on h3 to fail", lambda: (
        lambda p: p if p["status"] == "ERROR" else None)(osc("port", "show", c["id"], env=env)))
    assert failed["binding_vif_type"] == "binding_failed"

    # Deleting the ports releases eth1 from the (deleted) bridge; eth1 itself stays.
    for p in (a, b, c):
        osc("port", "delete", p["id"], env=env, json_output=False)
    for host in ("h1", "h2"):
        ns = lab.host_ns(host)
        wait_for(f"eth1 released on {host}", lambda ns=ns: "master" not in json.loads(
            sh("ip", "-n", ns, "-j", "link", "show", "eth1").stdout)[0])
    osc("subnet", "delete", sub, env=env, json_output=False)


@pytest.mark.parametrize("plab", [("h1", "h2")], indirect=True)
def test_router_gateway_on_a_flat_network_snats(plab):
    lab, env = plab.lab, plab.lab.server.env
    tag = uuid.uuid4().hex[:6]
    ext = flat_network(env, "--external")
    ext_sub = osc("subnet", "create", "--network", ext, "--subnet-range", PHYS_CIDR,
                  *upper_pool(PHYS_CIDR), "--no-dhcp", f"dp-ext-{tag}", env=env)["id"]
    net = osc("network", "create", f"dp-in-{tag}", env=env)["id"]
    sub = osc("subnet", "create", "--network", net, "--subnet-range", "10.67.0.0/24",
              f"dp-in-{tag}", env=env)["id"]
    router = osc("router", "create", f"dp-r-{tag}", env=env)["id"]
    osc("router", "add", "subnet", router, sub, env=env, json_output=False)
    osc("router", "set", "--external-gateway", ext, router, env=env, json_output=False)
    a = wait_active(env, bound_port(env, net, "h1", "a")["id"])
    router_ports = osc("port", "list", "--router", router, "--long", env=env)
    for rp in router_ports:
        wait_active(env, rp["ID"])
    gateway_ip = next(ip["ip_address"] for rp in router_ports for ip in rp["Fixed IP Addresses"]
                      if ip["subnet_id"] == ext_sub)
    out = plab.outside("out", f"{OUTSIDE_IP}/24")
    # The instance reaches the outside machine, which sees the router's gateway address.
    # The outside namespace was just plugged into the physical bridge: give its link a
    # moment (a few attempts), then the address it sees must be the router's.
    seen = wait_for("a connection to the outside machine",
                    lambda: tcp_peer(lab, out, lab.instance("h1", "a"), OUTSIDE_IP),
                    timeout=30)
    assert seen == gateway_ip
    assert lab.pings(out, gateway_ip)
    assert ip_of(a).startswith("10.67.0.")


def kernel_has_vlan(tag: str) -> bool:
    """Whether this kernel creates 802.1q VLAN devices (tried in a scratch namespace)."""
    ns = f"nt{tag}-vlancheck"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        return sh("ip", "-n", ns, "link", "add", "link", "d0", "name", "d0.5", "type", "vlan",
                  "id", "5", check=False).returncode == 0
    finally:
        sh("ip", "netns", "del", ns, check=False)


@pytest.mark.parametrize("plab", [("h1", "h2")], indirect=True)
def test_vlan_network_on_the_physical_segment(plab):
    lab, env = plab.lab, plab.lab.server.env
    if not kernel_has_vlan(lab.tag):
        pytest.skip("this kernel lacks 802.1q VLAN devices (ip link add ... type vlan fails); "
                    "the VLAN plan is covered by the golden test h1-provider.plan")
    net = osc("network", "create", "--provider-network-type", "vlan",
              "--provider-physical-network", "physnet1", "--provider-segment", "100",
              f"dp-vlan-{uuid.uuid4().hex[:6]}", env=env)["id"]
    osc("subnet", "create", "--network", net, "--subnet-range", PHYS_CIDR, *upper_pool(PHYS_CIDR),
        "--no-dhcp", f"dp-{uuid.uuid4().hex[:6]}", env=env)
    sg = open_group(env)
    a = wait_active(env, bound_port(env, net, "h1", "a", *sg)["id"])
    b = wait_active(env, bound_port(env, net, "h2", "b", *sg)["id"])
    assert lab.pings(lab.instance("h1", "a"), ip_of(b), count=2)
    ns = lab.host_ns("h1")
    sub_if = json.loads(sh("ip", "-n", ns, "-d", "-j", "link", "show", "eth1.100").stdout)[0]
    assert sub_if.get("master") == f"brq{net[:11]}"
    # A machine on the segment reaches the instances on VLAN 100 only.
    out = plab.outside("out", "198.18.100.1/24")
    sh("ip", "-n", out, "link", "add", "link", "eth0", "name", "eth0.100", "type", "vlan",
       "id", "100")
    sh("ip", "-n", out, "addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0.100")
    sh("ip", "-n", out, "link", "set", "eth0.100", "up")
    assert lab.pings(out, ip_of(a))
    osc("port", "delete", a["id"], env=env, json_output=False)
    osc("port", "delete", b["id"], env=env, json_output=False)
    wait_for("eth1.100 deleted", lambda: sh("ip", "-n", ns, "link", "show", "eth1.100",
                                           check=False).returncode != 0)
