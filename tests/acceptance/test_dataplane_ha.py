"""Highly available routers on real packets: a 3-host lab, an HA router active on one host
with a standby on another, an instance and an "outside" host on the third. The active host
dies (its agent stops and its underlay link goes down); the server moves the router to the
standby, whose agent builds it and announces its addresses, and SNAT and the floating IP
work again; ``l3-agents`` shows the new active host.
"""

from __future__ import annotations

import time
import uuid

import pytest

from conftest import NeutrinoServer, _server_binary, osc
from dataplane_lab import Lab, needs_root, sh, tcp_peer, upper_pool, wait_active, wait_for

pytestmark = needs_root

# Agents report every 2 s; the server declares them dead after 6 s without a heartbeat.
AGENT_DOWN_TIME = 6
# Generous: the machine is shared and slow at times; nothing here measures speed.
FAILOVER_WAIT = 120.0


@pytest.fixture
def lab3(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server",
                            extra_args=["--agent-down-time", str(AGENT_DOWN_TIME)]).start()
    lab = Lab(server, tmp_path, ("h1", "h2", "h3"))
    try:
        yield lab.setup()
    finally:
        lab.teardown()
        server.stop()


def ha_states(env, router: str) -> dict[str, str]:
    """``openstack network agent list --router R --long``: host → HA state."""
    agents = osc("network", "agent", "list", "--router", router, "--long", env=env)
    return {a["Host"]: a["HA State"] for a in agents}


def test_ha_router_fails_over_with_snat_and_floating_ip(lab3):
    lab = lab3
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    net = osc("network", "create", f"ha-in-{tag}", env=env)["id"]
    sub = osc("subnet", "create", "--network", net, "--subnet-range", "10.91.0.0/24",
              "--no-dhcp", f"ha-in-{tag}", env=env)["id"]
    ext = osc("network", "create", "--external", f"ha-ext-{tag}", env=env)["id"]
    ext_sub = osc("subnet", "create", "--network", ext, "--subnet-range", "198.51.100.0/24",
                  *upper_pool("198.51.100.0/24"), "--no-dhcp", f"ha-ext-{tag}", env=env)["id"]
    router = osc("router", "create", "--ha", f"ha-r-{tag}", env=env)
    assert router["ha"] is True
    router = router["id"]
    osc("router", "add", "subnet", router, sub, env=env, json_output=False)
    osc("router", "set", "--external-gateway", ext, router, env=env, json_output=False)
    states = ha_states(env, router)
    assert sorted(states.values()) == ["active", "standby"], states
    active = next(h for h, s in states.items() if s == "active")
    standby = next(h for h, s in states.items() if s == "standby")
    spare = next(h for h in lab.hosts if h not in states)
    print(f"router active on {active}, standby on {standby}; instances on {spare}")

    open_sg = osc("security", "group", "create", f"ha-open-{tag}", env=env)["id"]
    for proto in ("tcp", "icmp"):
        osc("security", "group", "rule", "create", "--ingress", "--protocol", proto,
            "--remote-ip", "0.0.0.0/0", open_sg, env=env)
    # Two instances: "vm" gets a floating IP, "vm2" reaches out through SNAT.
    vm = osc("port", "create", "--network", net, "--host", spare, "--device", "vm",
             "--security-group", open_sg, f"ha-vm-{tag}", env=env)
    vm2 = osc("port", "create", "--network", net, "--host", spare, "--device", "vm2",
              "--security-group", open_sg, f"ha-vm2-{tag}", env=env)
    out = osc("port", "create", "--network", ext, "--host", spare, "--device", "out",
              "--security-group", open_sg, "--fixed-ip",
              f"subnet={ext_sub},ip-address=198.51.100.50", f"ha-out-{tag}", env=env)
    for p in (vm, vm2, out):
        wait_active(env, p["id"])
    router_ports = [p for p in osc("port", "list", "--router", router, "--long", env=env)
                    if p["Device Owner"] != "network:router_ha_interface"]
    assert {p["Device Owner"] for p in router_ports} == {
        "network:ha_router_replicated_interface", "network:router_gateway"}
    for rp in router_ports:
        wait_active(env, rp["ID"])
    gateway_ip = next(ip["ip_address"] for rp in router_ports
                      for ip in rp["Fixed IP Addresses"] if ip["subnet_id"] == ext_sub)
    ns_vm, ns_vm2 = lab.instance(spare, "vm"), lab.instance(spare, "vm2")
    ns_out = lab.instance(spare, "out")
    fip = osc("floating", "ip", "create", "--port", vm["id"], ext, env=env)["floating_ip_address"]

    def snat_ok() -> bool:
        return tcp_peer(lab, ns_out, ns_vm2, "198.51.100.50") == gateway_ip

    def fip_ok() -> bool:
        return tcp_peer(lab, ns_vm, ns_out, fip, port=5004) == "198.51.100.50"

    # Through the router on the active host: SNAT outward, the floating IP inward.
    wait_for("SNAT through the active host", snat_ok, timeout=60, interval=1)
    wait_for("floating IP through the active host", fip_ok, timeout=60, interval=1)
    assert (lab.tmp / f"agent-{active}.log").read_text().count("arping") == 0

    # The active host dies: its agent stops and its underlay link goes down.
    started = time.monotonic()
    lab.stop_agent(active)
    sh("ip", "-n", lab.underlay, "link", "set", f"ul{lab.hosts.index(active)}", "down")
    wait_for("the standby to become active",
             lambda: ha_states(env, router).get(standby) == "active",
             timeout=FAILOVER_WAIT, interval=1)
    moved = time.monotonic() - started
    # The spare host is the new standby; the dead host hosts nothing.
    assert ha_states(env, router) == {standby: "active", spare: "standby"}
    for rp in router_ports:
        wait_active(env, rp["ID"])
        assert osc("port", "show", rp["ID"], env=env)["binding_host_id"] == standby
    wait_for("SNAT through the new active host", snat_ok, timeout=FAILOVER_WAIT, interval=1)
    wait_for("floating IP through the new active host", fip_ok, timeout=FAILOVER_WAIT,
             interval=1)
    restored = time.monotonic() - started
    # Informative only (the machine is shared): how long the failover took here.
    print(f"failover: router moved after {moved:.1f} s, traffic back after {restored:.1f} s")
    log = (lab.tmp / f"agent-{standby}.log").read_text()
    assert "announcing router addresses" in log, "the new host announces the router"
    assert "arping" not in log, "gratuitous ARP failed on the new host"
