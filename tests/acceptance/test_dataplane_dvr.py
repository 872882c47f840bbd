"""Distributed routers with real packets: east-west routed on the sending host, gateway ARP
kept local, SNAT and floating IPs through the central SNAT namespace on the SNAT host.

Runs as root with the two-host lab of ``dataplane_lab``.
"""

from __future__ import annotations

import json
import uuid

from conftest import osc
from dataplane_lab import (bound_port, ip_of, lab, needs_root, sh, tcp_peer,  # noqa: F401
                           upper_pool, wait_active, wait_for)

pytestmark = needs_root


def vxlan_tx_packets(lab, host: str) -> int:
    """Packets the host's VXLAN devices sent (the overlay's traffic, all networks)."""
    links = json.loads(sh("ip", "-n", lab.host_ns(host), "-s", "-j", "link", "show").stdout)
    return sum(link["stats64"]["tx"]["packets"] for link in links
               if link["ifname"].startswith("vxlan-"))


def link_of(lab, ns: str, ifname: str) -> dict:
    return json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", ifname).stdout)[0]


def test_distributed_router_routes_locally_snat_and_floating_ip(lab):
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    nets, subnets = {}, {}
    for name, cidr in (("a", "10.91.1.0/24"), ("b", "10.91.2.0/24")):
        nets[name] = osc("network", "create", f"dvr-{name}-{tag}", env=env)["id"]
        subnets[name] = osc("subnet", "create", "--network", nets[name], "--subnet-range", cidr,
                            f"dvr-{name}-{tag}", env=env)["id"]
    ext = osc("network", "create", "--external", f"dvr-ext-{tag}", env=env)["id"]
    ext_sub = osc("subnet", "create", "--network", ext, "--subnet-range", "198.51.100.0/24",
                  *upper_pool("198.51.100.0/24"), f"dvr-ext-{tag}", env=env)["id"]
    router = osc("router", "create", "--distributed", f"dvr-r-{tag}", env=env)
    assert router["distributed"] is True
    router = router["id"]
    for name in ("a", "b"):
        osc("router", "add", "subnet", router, subnets[name], env=env, json_output=False)
    osc("router", "set", "--external-gateway", ext, router, env=env, json_output=False)
    open_sg = osc("security", "group", "create", f"dvr-open-{tag}", env=env)["id"]
    for proto in ("tcp", "icmp"):
        osc("security", "group", "rule", "create", "--ingress", "--protocol", proto,
            "--remote-ip", "0.0.0.0/0", open_sg, env=env)
    sg = ("--security-group", open_sg)
    ports = {
        "a1": bound_port(env, nets["a"], "h1", "a1", *sg),
        "a2": bound_port(env, nets["b"], "h1", "a2", *sg),
        "b1": bound_port(env, nets["b"], "h2", "b1", *sg),
        "out": bound_port(env, ext, "h2", "out", *sg, "--fixed-ip",
                          f"subnet={ext_sub},ip-address=198.51.100.50"),
    }
    for p in ports.values():
        wait_active(env, p["id"])
    # Port layout: two distributed interfaces, a SNAT port per subnet, the gateway; the
    # SNAT ports and the gateway share the SNAT host, the interfaces are bound to no host.
    router_ports = [osc("port", "show", rp["ID"], env=env)
                    for rp in osc("port", "list", "--router", router, env=env)]
    owners = sorted(p["device_owner"] for p in router_ports)
    assert owners == ["network:router_centralized_snat"] * 2 + ["network:router_gateway"] + \
        ["network:router_interface_distributed"] * 2
    central = {p["binding_host_id"] for p in router_ports
               if p["device_owner"] != "network:router_interface_distributed"}
    assert len(central) == 1 and central <= {"h1", "h2"}
    assert all(p["binding_host_id"] == "" for p in router_ports
               if p["device_owner"] == "network:router_interface_distributed")
    for rp in router_ports:
        wait_active(env, rp["id"])
    gateway_ip = next(ip["ip_address"] for rp in router_ports for ip in rp["fixed_ips"]
                      if ip["subnet_id"] == ext_sub)
    interface = {p["fixed_ips"][0]["subnet_id"]: p for p in router_ports
                 if p["device_owner"] == "network:router_interface_distributed"}
    ns = {name: lab.instance(h, name) for name, h in
          (("a1", "h1"), ("a2", "h1"), ("b1", "h2"), ("out", "h2"))}
    ip = {name: ip_of(p) for name, p in ports.items()}
    qrouter = {h: f"{lab.prefix(h)}qrouter-{router}" for h in ("h1", "h2")}

    # Each host has its own copy of the router: the gateway addresses with MACs of its own.
    def qr(host: str, subnet: str) -> dict:
        return link_of(lab, qrouter[host], "qr-" + interface[subnet]["id"][:11])
    mac = {(h, s): qr(h, subnets[s])["address"] for h in ("h1", "h2") for s in ("a", "b")}
    assert mac[("h1", "a")] != mac[("h2", "a")] and mac[("h1", "b")] != mac[("h2", "b")]

    # East-west on one host (a1 on A, a2 on B, both on h1): routed by h1's copy, and the
    # overlay carries none of it.
    assert lab.pings(ns["a1"], ip["a2"])
    before_tx = vxlan_tx_packets(lab, "h1")
    before_routed = qr("h1", subnets["b"])["stats64"]["tx"]["packets"]
    lab.exec(ns["a1"], "ping", "-q", "-c", "100", "-i", "0.01", "-W", "1", ip["a2"])
    routed = qr("h1", subnets["b"])["stats64"]["tx"]["packets"] - before_routed
    overlay = vxlan_tx_packets(lab, "h1") - before_tx
    # 100 requests went through h1's router; the overlay saw at most background chatter
    # (IPv6 router solicitations and the like), nowhere near one packet per request.
    assert routed >= 100, routed
    assert overlay < 20, overlay
    # Gateway ARP stays local: each instance knows its gateway by its own host's MAC.
    gw = {s: interface[subnets[s]]["fixed_ips"][0]["ip_address"] for s in ("a", "b")}
    assert lab.pings(ns["b1"], ip["a1"])

    def neighbour(instance: str, address: str) -> str:
        out = sh("ip", "-n", ns[instance], "-j", "neigh", "show", address).stdout
        entries = json.loads(out or "[]")
        return entries[0].get("lladdr", "") if entries else ""
    assert neighbour("a1", gw["a"]) == mac[("h1", "a")]
    assert neighbour("a2", gw["b"]) == mac[("h1", "b")]
    assert neighbour("b1", gw["b"]) == mac[("h2", "b")]

    # Across hosts: routed, and the receiver sees the sender's own address.
    assert tcp_peer(lab, ns["b1"], ns["a1"], ip["b1"]) == ip["a1"]
    assert tcp_peer(lab, ns["a1"], ns["b1"], ip["a1"]) == ip["b1"]

    # North-south: SNAT to the router's gateway address, from both hosts.
    assert tcp_peer(lab, ns["out"], ns["a1"], "198.51.100.50") == gateway_ip
    assert tcp_peer(lab, ns["out"], ns["b1"], "198.51.100.50") == gateway_ip
    # Without a floating IP nothing outside reaches an instance.
    lab.exec(ns["out"], "ip", "route", "replace", "10.91.0.0/16", "via", gateway_ip)
    assert tcp_peer(lab, ns["b1"], ns["out"], ip["b1"]) == ""
    # A floating IP (centralized on the SNAT host) maps to the instance both ways.
    fip = osc("floating", "ip", "create", "--port", ports["b1"]["id"], ext, env=env)
    address = fip["floating_ip_address"]
    wait_for("floating IP reachable", lambda: lab.pings(ns["out"], address))
    assert tcp_peer(lab, ns["b1"], ns["out"], address) == "198.51.100.50"
    assert tcp_peer(lab, ns["out"], ns["b1"], "198.51.100.50") == address
    osc("floating", "ip", "unset", "--port", fip["id"], env=env, json_output=False)
    wait_for("floating IP gone", lambda: not lab.pings(ns["out"], address))

    # Converted back to a centralized router (while down): one router namespace on the
    # router host, and the same traffic still flows.
    osc("router", "set", "--disable", router, env=env, json_output=False)
    osc("router", "set", "--centralized", router, env=env, json_output=False)
    osc("router", "set", "--enable", router, env=env, json_output=False)
    router_ports = [osc("port", "show", rp["ID"], env=env)
                    for rp in osc("port", "list", "--router", router, env=env)]
    assert sorted(p["device_owner"] for p in router_ports) == \
        ["network:router_gateway"] + ["network:router_interface"] * 2
    assert {p["binding_host_id"] for p in router_ports} == central
    for rp in router_ports:
        wait_active(env, rp["id"])
    wait_for("routed by the central router",
             lambda: tcp_peer(lab, ns["b1"], ns["a1"], ip["b1"]) == ip["a1"])
    assert tcp_peer(lab, ns["out"], ns["a1"], "198.51.100.50") == gateway_ip
    other = ({"h1", "h2"} - central).pop()
    assert not sh("ip", "netns", "list").stdout.count(f"{lab.prefix(other)}qrouter-{router}")
