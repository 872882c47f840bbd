"""Host agents make networks real: packets between instance namespaces on several "hosts".

Each host is a network namespace on one underlay bridge (its own namespace too), with its own
``neutrino agent`` (``--dataplane-netns`` puts the host's bridges, VXLAN devices and taps in
that namespace; the agent process talks to the server on 127.0.0.1). Instances are the
namespaces the agents create for the ports bound to their host (see ``dataplane_lab``). Needs
root, iproute2 and ping; every namespace a test creates is deleted afterwards, and traffic
never leaves them.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    Lab, bound_port, ip_of, lab, needs_root, network_with_subnet, sh, tcp_exchange, tcp_peer,
    upper_pool, wait_active, wait_for)

pytestmark = needs_root


def test_two_hosts_ping_and_tcp(lab):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.61.0.0/24")
    a = bound_port(env, net, "h1", "a")
    b = bound_port(env, net, "h2", "b")
    a, b = wait_active(env, a["id"]), wait_active(env, b["id"])
    assert a["binding_vif_type"] == "bridge"
    ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h2", "b")
    assert lab.pings(ns_a, ip_of(b), count=2)
    assert lab.pings(ns_b, ip_of(a))
    assert tcp_exchange(lab, ns_b, ip_of(b), ns_a) == "hello-tcp"
    # The instance has the port's MAC and the subnet's default route.
    link = json.loads(sh("ip", "-n", ns_a, "-j", "link", "show", "eth0").stdout)[0]
    assert link["address"] == a["mac_address"]
    routes = sh("ip", "-n", ns_a, "route", "show", "default").stdout
    assert "via 10.61.0.1 dev eth0" in routes
    # Deleting a port unplugs it and removes its instance namespace.
    osc("port", "delete", b["id"], env=env, json_output=False)
    wait_for("instance b removed", lambda: ns_b not in sh("ip", "netns", "list").stdout)
    assert not lab.pings(ns_a, ip_of(b))


def test_networks_are_isolated(lab):
    env = lab.server.env
    net_x, sub_x = network_with_subnet(env, "10.62.0.0/24")
    net_y, sub_y = network_with_subnet(env, "10.62.0.0/24")
    c = bound_port(env, net_x, "h1", "c", "--fixed-ip", f"subnet={sub_x},ip-address=10.62.0.10")
    d = bound_port(env, net_y, "h2", "d", "--fixed-ip", f"subnet={sub_y},ip-address=10.62.0.20")
    e = bound_port(env, net_x, "h2", "e", "--fixed-ip", f"subnet={sub_x},ip-address=10.62.0.30")
    for p in (c, d, e):
        wait_active(env, p["id"])
    ns_c = lab.instance("h1", "c")
    assert lab.pings(ns_c, "10.62.0.30"), "same network, other host"
    assert not lab.pings(ns_c, "10.62.0.20", count=2), "other network must not be reachable"


def test_agent_restart_keeps_streams_and_kernel_state(lab):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.63.0.0/24")
    a = wait_active(env, bound_port(env, net, "h1", "a")["id"])
    b = wait_active(env, bound_port(env, net, "h2", "b")["id"])
    ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h2", "b")
    before = {h: lab.kernel_dump(h) for h in lab.hosts}
    # A TCP stream from a to b: 120 numbered lines, 50 ms apart, over one connection.
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", ns_b, "python3", "-c",
         "import socket\n"
         "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('{ip_of(b)}', 5002)); s.listen(1); s.settimeout(20)\n"
         "c,_=s.accept(); c.settimeout(20); data=b''\n"
         "while True:\n"
         "    chunk=c.recv(4096)\n"
         "    if not chunk: break\n"
         "    data+=chunk\n"
         "print(len(data.splitlines()), flush=True)"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    sender = subprocess.Popen(
        ["ip", "netns", "exec", ns_a, "python3", "-c",
         "import socket,time\n"
         f"s=socket.create_connection(('{ip_of(b)}', 5002), timeout=5)\n"
         "for i in range(120):\n"
         "    s.sendall(b'line %d\\n' % i); time.sleep(0.05)\n"
         "s.close()"])
    time.sleep(1.0)
    lab.stop_agent("h1")
    lab.start_agent("h1")
    assert sender.wait(timeout=30) == 0
    out, _ = receiver.communicate(timeout=30)
    assert out.strip() == "120", "the stream lost data across the agent restart"
    for h in lab.hosts:
        after = lab.kernel_dump(h)
        diff = "\n".join(difflib.unified_diff(before[h].splitlines(), after.splitlines(),
                                              lineterm="", n=1))
        assert not diff, f"the restarted agent changed the kernel of {h}:\n{diff}"
    assert lab.status("h1")["ops_total"] == 0


def test_server_restart_and_changes_while_an_agent_is_down(lab):
    env = lab.server.env
    net, sub = network_with_subnet(env, "10.64.0.0/24")
    a = wait_active(env, bound_port(env, net, "h1", "a")["id"])
    b = wait_active(env, bound_port(env, net, "h2", "b")["id"])
    ops = {h: lab.status(h)["ops_total"] for h in lab.hosts}
    # The server is killed and comes back with nothing changed: agents resume their watch
    # from the revision they had and touch nothing.
    lab.server.proc.kill()
    lab.server.proc.wait(timeout=10)
    time.sleep(1.0)
    lab.server.start()
    osc("network", "show", net, env=env)
    revision = max(lab.status(h)["revision"] for h in lab.hosts)
    osc("network", "create", f"dp-bump-{uuid.uuid4().hex[:6]}", env=env)
    for h in lab.hosts:
        wait_for(f"agent {h} to follow the restarted server",
                 lambda h=h: lab.status(h).get("revision", 0) > revision)
        assert lab.status(h)["ops_total"] == ops[h], f"agent {h} touched the kernel"
    # A change while h2's agent is down converges when it starts.
    lab.stop_agent("h2")
    osc("port", "set", b["id"], "--no-fixed-ip", "--fixed-ip",
        f"subnet={sub},ip-address=10.64.0.99", env=env, json_output=False)
    lab.start_agent("h2")
    wait_for("b's new address", lambda: lab.pings(lab.instance("h1", "a"), "10.64.0.99"))
    addrs = sh("ip", "-n", lab.instance("h2", "b"), "addr", "show", "eth0").stdout
    assert "10.64.0.99/24" in addrs and ip_of(b) not in addrs
    assert osc("port", "show", a["id"], env=env)["status"] == "ACTIVE"


def test_router_scopes_snat_and_floating_ip(lab):
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    scopes, pools = {}, {}
    for name, prefix in (("s1", "10.70.0.0/16"), ("s2", "10.80.0.0/16")):
        scopes[name] = osc("address", "scope", "create", "--ip-version", "4",
                           f"dp-{name}-{tag}", env=env)["id"]
        pools[name] = osc("subnet", "pool", "create", "--pool-prefix", prefix,
                          "--default-prefix-length", "24", "--address-scope", scopes[name],
                          f"dp-{name}-{tag}", env=env)["id"]
    subnets = {}
    nets = {}
    for name, pool in (("a", "s1"), ("b", "s1"), ("c", "s2")):
        nets[name] = osc("network", "create", f"dp-{name}-{tag}", env=env)["id"]
        subnets[name] = osc("subnet", "create", "--network", nets[name], "--subnet-pool",
                            pools[pool], f"dp-{name}-{tag}", env=env)["id"]
    ext = osc("network", "create", "--external", f"dp-ext-{tag}", env=env)["id"]
    ext_sub = osc("subnet", "create", "--network", ext, "--subnet-range", "198.51.100.0/24",
                  *upper_pool("198.51.100.0/24"), f"dp-ext-{tag}", env=env)["id"]
    router = osc("router", "create", f"dp-r-{tag}", env=env)["id"]
    for name in ("a", "b", "c"):
        osc("router", "add", "subnet", router, subnets[name], env=env, json_output=False)
    osc("router", "set", "--external-gateway", ext, router, env=env, json_output=False)
    # Security groups let everything in here: what is blocked below, the router blocks.
    open_sg = osc("security", "group", "create", f"dp-open-{tag}", env=env)["id"]
    for proto in ("tcp", "icmp"):
        osc("security", "group", "rule", "create", "--ingress", "--protocol", proto,
            "--remote-ip", "0.0.0.0/0", open_sg, env=env)
    sg = ("--security-group", open_sg)
    ports = {
        "a": bound_port(env, nets["a"], "h1", "a", *sg),
        "b": bound_port(env, nets["b"], "h2", "b", *sg),
        "c": bound_port(env, nets["c"], "h2", "c", *sg),
        "out": bound_port(env, ext, "h2", "out", *sg, "--fixed-ip",
                          f"subnet={ext_sub},ip-address=198.51.100.50"),
    }
    for p in ports.values():
        wait_active(env, p["id"])
    # The router's own ports are bound to one host and come up too.
    router_ports = osc("port", "list", "--router", router, "--long", env=env)
    assert len(router_ports) == 4
    for rp in router_ports:
        wait_active(env, rp["ID"])
    gateway_ip = next(ip["ip_address"] for rp in router_ports for ip in rp["Fixed IP Addresses"]
                      if ip["subnet_id"] == ext_sub)
    ns = {name: lab.instance(h, name) for name, h in
          (("a", "h1"), ("b", "h2"), ("c", "h2"), ("out", "h2"))}
    ip = {name: ip_of(p) for name, p in ports.items()}
    # Same scope: routed, and the receiver sees the sender's own address.
    assert tcp_peer(lab, ns["b"], ns["a"], ip["b"]) == ip["a"]
    # Different scopes: blocked in both directions.
    assert tcp_peer(lab, ns["c"], ns["a"], ip["c"]) == ""
    assert not lab.pings(ns["c"], ip["a"])
    # Toward the (unscoped) external network: SNAT to the router's gateway address.
    assert tcp_peer(lab, ns["out"], ns["a"], "198.51.100.50") == gateway_ip
    # Without a floating IP nothing outside reaches an instance.
    lab.exec(ns["out"], "ip", "route", "replace", "10.0.0.0/8", "via", gateway_ip)
    assert tcp_peer(lab, ns["c"], ns["out"], ip["c"]) == ""
    # A floating IP maps to the right instance, from outside, with the caller's address kept.
    fip = osc("floating", "ip", "create", "--port", ports["c"]["id"], ext, env=env)
    address = fip["floating_ip_address"]
    wait_for("floating IP reachable", lambda: lab.pings(ns["out"], address))
    assert tcp_peer(lab, ns["c"], ns["out"], address) == "198.51.100.50"
    assert tcp_peer(lab, ns["out"], ns["c"], "198.51.100.50") == address
    # Removing the association cuts it.
    osc("floating", "ip", "unset", "--port", fip["id"], env=env, json_output=False)
    wait_for("floating IP gone", lambda: not lab.pings(ns["out"], address))


def test_security_groups_filter_instances(lab):
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    net, _ = network_with_subnet(env, "10.65.0.0/24")
    a = wait_active(env, bound_port(env, net, "h1", "a")["id"])
    c = wait_active(env, bound_port(env, net, "h2", "c")["id"])
    web = osc("security", "group", "create", f"dp-web-{tag}", env=env)["id"]
    rule = osc("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
               "--dst-port", "22", "--remote-ip", f"{ip_of(a)}/32", web, env=env)["id"]
    b = bound_port(env, net, "h2", "b", "--security-group", web)
    b = wait_active(env, b["id"])
    ns = {"a": lab.instance("h1", "a"), "b": lab.instance("h2", "b"),
          "c": lab.instance("h2", "c")}
    # Default group: members reach each other.
    assert lab.pings(ns["a"], ip_of(c))
    # Only TCP/22 from a's address gets to b.
    assert wait_for("the rule to apply",
                    lambda: tcp_peer(lab, ns["b"], ns["a"], ip_of(b), port=22) == ip_of(a))
    assert tcp_peer(lab, ns["b"], ns["a"], ip_of(b), port=80) == ""
    assert tcp_peer(lab, ns["b"], ns["c"], ip_of(b), port=22) == ""
    assert not lab.pings(ns["a"], ip_of(b))
    # A spoofed source address from an instance is dropped.
    lab.exec(ns["c"], "ip", "addr", "add", f"{ip_of(a)}/32", "dev", "eth0")
    spoofed = subprocess.run(
        ["ip", "netns", "exec", ns["c"], "python3", "-c",
         "import socket\n"
         "s=socket.socket(); s.settimeout(3)\n"
         f"s.bind(('{ip_of(a)}', 0))\n"
         "try:\n"
         f"    s.connect(('{ip_of(b)}', 22)); print('through')\n"
         "except OSError:\n"
         "    print('blocked')"], capture_output=True, text=True, timeout=20).stdout.strip()
    assert spoofed == "blocked"
    # Removing the rule cuts new connections.
    osc("security", "group", "rule", "delete", rule, env=env, json_output=False)
    wait_for("the rule to go",
             lambda: tcp_peer(lab, ns["b"], ns["a"], ip_of(b), port=22) == "")


UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with the lease in the environment: record it, configure the address.
if [ "$1" = bound ]; then
    env > "$(dirname "$0")/lease-$interface-$(ip netns identify)"
    ip addr add "$ip/$mask" dev "$interface"
fi
"""


def dhcp_lease(lab: Lab, ns: str) -> dict:
    """Runs busybox udhcpc once in an instance namespace; returns the lease's variables."""
    script = lab.tmp / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    lab.exec(ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1",
             "-O", "mtu", "-O", "staticroutes", "-s", str(script), timeout=60)
    lease = lab.tmp / f"lease-eth0-{ns}"
    return dict(line.split("=", 1) for line in lease.read_text().splitlines() if "=" in line)


def ipv4_addrs(lab: Lab, ns: str) -> list[str]:
    return [a["local"] for link in json.loads(lab.exec(ns, "ip", "-j", "-4", "addr").stdout)
            for a in link.get("addr_info", []) if link["ifname"] != "lo"]


@pytest.mark.skipif(not shutil.which("dnsmasq") or not shutil.which("busybox"),
                    reason="needs dnsmasq and busybox (udhcpc)")
def test_dhcp_serves_instances_that_ask(lab):
    env = lab.server.env
    net = osc("network", "create", f"dp-{uuid.uuid4().hex[:6]}", env=env)["id"]
    sub = osc("subnet", "create", "--network", net, "--subnet-range", "10.66.0.0/24",
              "--host-route", "destination=172.31.0.0/16,gateway=10.66.0.254",
              "--dns-nameserver", "192.0.2.53", f"dp-{uuid.uuid4().hex[:6]}", env=env)["id"]
    dhcp = wait_for("the DHCP port", lambda: osc(
        "port", "list", "--network", net, "--device-owner", "network:dhcp", "--long",
        env=env))
    assert len(dhcp) == 1
    dhcp = wait_active(env, dhcp[0]["ID"])
    dhcp_host = dhcp["binding_host_id"]
    assert dhcp_host in lab.hosts and dhcp["device_id"].startswith("dhcp")
    server_ns = f"{lab.prefix(dhcp_host)}qdhcp-{net}"
    assert ip_of(dhcp) in ipv4_addrs(lab, server_ns)
    assert server_ns in lab.dnsmasq_pids(dhcp_host)

    # An instance that asks for DHCP: the agent plugs it but leaves its addresses alone.
    a = bound_port(env, net, "h1", "dhcpa", "--binding-profile", "neutrino_dhcp=true",
                   "--dns-name", "web-a")
    assert a["dns_assignment"][0]["fqdn"] == "web-a.openstacklocal."
    wait_active(env, a["id"])
    ns_a = lab.instance("h1", "dhcpa")
    assert ipv4_addrs(lab, ns_a) == []
    lease = dhcp_lease(lab, ns_a)
    assert lease["ip"] == ip_of(a)
    assert lease["mask"] == "24"
    assert lease["router"] == "10.66.0.1"
    assert lease["mtu"] == "1450"
    assert lease["dns"] == "192.0.2.53"
    assert lease["staticroutes"] == "172.31.0.0/16 10.66.0.254 0.0.0.0/0 10.66.0.1"
    # The port's DNS name and the server's domain (dns-integration) come with the lease.
    assert (lease.get("hostname"), lease.get("domain")) == ("web-a", "openstacklocal"), lease
    assert lab.pings(ns_a, ip_of(dhcp), count=2)

    # A port created while the server runs is served too (hosts file re-read on SIGHUP),
    # and the server is not restarted for it.
    pid = lab.dnsmasq_pids(dhcp_host)[server_ns]
    b = bound_port(env, net, "h2", "dhcpb", "--binding-profile", "neutrino_dhcp=true")
    wait_active(env, b["id"])
    lease_b = dhcp_lease(lab, lab.instance("h2", "dhcpb"))
    assert lease_b["ip"] == ip_of(b)
    assert lease_b.get("hostname") == "host-" + ip_of(b).replace(".", "-"), lease_b
    assert lab.dnsmasq_pids(dhcp_host)[server_ns] == pid

    # A restarted agent adopts the running server; the DHCP-configured address stays.
    lab.stop_agent(dhcp_host)
    lab.start_agent(dhcp_host)
    wait_for("a reconcile with nothing to do", lambda: lab.status(dhcp_host).get("last_ops") == 0
             and lab.status(dhcp_host).get("reconciles", 0) >= 1)
    assert lab.dnsmasq_pids(dhcp_host)[server_ns] == pid
    assert os.path.exists(f"/proc/{pid}")
    assert ipv4_addrs(lab, ns_a) == [ip_of(a)]

    # Without DHCP on the subnet the port, the namespace and the server go.
    osc("subnet", "set", "--no-dhcp", sub, env=env, json_output=False)
    wait_for("the DHCP server to stop", lambda: not os.path.exists(f"/proc/{pid}"))
    wait_for("the DHCP namespace to go",
             lambda: server_ns not in sh("ip", "netns", "list").stdout)
    assert osc("port", "list", "--network", net, "--device-owner", "network:dhcp",
               env=env) == []
