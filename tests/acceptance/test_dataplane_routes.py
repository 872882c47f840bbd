"""Router extra routes (`openstack router set --route`), with real packets.

An instance ``n`` forwards to a "far" namespace (a network behind it, not known to Neutron);
a router route sends that network's traffic through ``n``. The far namespace is named with the
lab's tag, so the lab's teardown deletes it.
"""

from __future__ import annotations

import uuid

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, needs_root, network_with_subnet, sh, tcp_peer, wait_active,
    wait_for)

pytestmark = needs_root

FAR_NET = "198.51.100.0/24"
FAR_IP = "198.51.100.5"


def test_extra_route_goes_through_the_nexthop_instance(lab):
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    net_s, sub_s = network_with_subnet(env, "10.68.1.0/24")
    net_n, sub_n = network_with_subnet(env, "10.68.2.0/24")
    router = osc("router", "create", f"dp-r-{tag}", env=env)["id"]
    for sub in (sub_s, sub_n):
        osc("router", "add", "subnet", router, sub, env=env, json_output=False)
    s = wait_active(env, bound_port(env, net_s, "h1", "s")["id"])
    # n answers for the far network: it needs that range as an allowed address pair.
    n = bound_port(env, net_n, "h2", "n", "--allowed-address", f"ip-address={FAR_NET}")
    n = wait_active(env, n["id"])
    for rp in osc("port", "list", "--router", router, "--long", env=env):
        wait_active(env, rp["ID"])
    ns_s, ns_n = lab.instance("h1", "s"), lab.instance("h2", "n")
    # Behind n: a namespace on a veth, n forwards for it.
    far = f"nt{lab.tag}-far"
    sh("ip", "netns", "add", far)
    sh("ip", "link", "add", "far0", "netns", ns_n, "type", "veth", "peer", "name", "eth0",
       "netns", far)
    sh("ip", "-n", ns_n, "addr", "add", "198.51.100.1/24", "dev", "far0")
    sh("ip", "-n", ns_n, "link", "set", "far0", "up")
    lab.exec(ns_n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "-n", far, "addr", "add", f"{FAR_IP}/24", "dev", "eth0")
    sh("ip", "-n", far, "link", "set", "eth0", "up")
    sh("ip", "-n", far, "link", "set", "lo", "up")
    sh("ip", "-n", far, "route", "add", "default", "via", "198.51.100.1")
    assert lab.pings(ns_n, FAR_IP)
    # Without a route the router does not know the far network.
    assert not lab.pings(ns_s, FAR_IP)

    route = f"destination={FAR_NET},gateway={ip_of(n)}"
    osc("router", "set", "--route", route, router, env=env, json_output=False)
    routes = osc("router", "show", router, env=env)["routes"]
    assert {"destination": FAR_NET, "nexthop": ip_of(n)} in routes
    wait_for("the far network through n", lambda: lab.pings(ns_s, FAR_IP))
    # The far side sees s's own address: routed through n, not NATed.
    assert tcp_peer(lab, far, ns_s, FAR_IP) == ip_of(s)
    # The router's namespace holds the route via n.
    router_ns = next(name for host in lab.hosts
                     for name in sh("ip", "netns", "list").stdout.split()
                     if name == f"{lab.prefix(host)}qrouter-{router}")
    assert f"{FAR_NET} via {ip_of(n)}" in sh("ip", "-n", router_ns, "route", "show").stdout

    # Removing the route stops it.
    osc("router", "unset", "--route", route, router, env=env, json_output=False)
    wait_for("the route to go", lambda: f"{FAR_NET} via" not in sh(
        "ip", "-n", router_ns, "route", "show").stdout)
    assert not lab.pings(ns_s, FAR_IP, count=2)
    assert tcp_peer(lab, far, ns_s, FAR_IP) == ""
