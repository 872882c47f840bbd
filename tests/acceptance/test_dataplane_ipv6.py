"""IPv6 in the dataplane, as Neutron's agents make it work: router advertisements from the
router namespaces (radvd, by ``ipv6_ra_mode``) and DHCPv6 from the network's dnsmasq (by
``ipv6_address_mode``), with real packets between instance namespaces on two "hosts" (see
``dataplane_lab``). The instances here are plugged with ``neutrino_dhcp=true``, so the agent
leaves their addresses alone and they configure themselves: the kernel's SLAAC from the
router's advertisements, or ISC ``dhclient -6`` for DHCPv6. Needs root, iproute2, ping,
radvd, dnsmasq and dhclient; every namespace and process a test creates goes afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    Lab, bound_port, ip_of, lab, needs_root, wait_active, wait_for)

pytestmark = [
    needs_root,
    pytest.mark.skipif(not shutil.which("radvd"), reason="needs radvd (router advertisements)"),
    pytest.mark.skipif(not shutil.which("dnsmasq"), reason="needs dnsmasq (DHCPv6)"),
]

needs_dhclient = pytest.mark.skipif(
    not shutil.which("dhclient"), reason="needs dhclient (isc-dhcp-client) as the DHCPv6 client")

# Long enough for the first unsolicited advertisements and a router solicitation or two.
RA_WAIT = 60.0


def link_local(mac: str) -> str:
    """The EUI-64 link-local address the kernel gives an interface with this MAC."""
    b = bytearray(int(x, 16) for x in mac.split(":"))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def v6_network(env, cidr: str, mode: str, *extra: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    net = osc("network", "create", f"dp6-{tag}", env=env)["id"]
    sub = osc("subnet", "create", "--network", net, "--ip-version", "6", "--subnet-range", cidr,
              "--ipv6-ra-mode", mode, "--ipv6-address-mode", mode, *extra, f"dp6-{tag}",
              env=env)["id"]
    return net, sub


def global_v6(lab: Lab, ns: str) -> list[str]:
    out = json.loads(lab.exec(ns, "ip", "-j", "-6", "addr", "show", "dev", "eth0",
                              "scope", "global").stdout)
    # iproute2 lists the filtered-out addresses as empty objects.
    return sorted(a["local"] for link in out for a in link.get("addr_info", []) if "local" in a)


def link_local_ready(lab: Lab, ns: str) -> bool:
    """The interface's link-local address has passed duplicate address detection."""
    out = json.loads(lab.exec(ns, "ip", "-j", "-6", "addr", "show", "dev", "eth0",
                              "scope", "link").stdout)
    infos = [a for link in out for a in link.get("addr_info", []) if "local" in a]
    return bool(infos) and not any(a.get("tentative") for a in infos)


def self_configuring(lab: Lab, ns: str) -> None:
    """Makes an instance accept router advertisements and autoconfigure, then solicits."""
    lab.exec(ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2",
             "net.ipv6.conf.eth0.autoconf=1")
    lab.exec(ns, "ip", "link", "set", "eth0", "down")
    lab.exec(ns, "ip", "link", "set", "eth0", "up")


def router_port_on(env, router: str, subnet: str) -> dict:
    ports = osc("port", "list", "--router", router, "--long", env=env)
    rp = next(p for p in ports
              if any(ip["subnet_id"] == subnet for ip in p["Fixed IP Addresses"]))
    return wait_active(env, rp["ID"])


def test_slaac_instance_gets_its_address_and_routes_across_hosts(lab):
    env = lab.server.env
    net_a, sub_a = v6_network(env, "2001:db8:61::/64", "slaac")
    net_b, sub_b = v6_network(env, "2001:db8:62::/64", "slaac")
    router = osc("router", "create", f"dp6-r-{uuid.uuid4().hex[:6]}", env=env)["id"]
    for sub in (sub_a, sub_b):
        osc("router", "add", "subnet", router, sub, env=env, json_output=False)
    a = wait_active(env, bound_port(env, net_a, "h1", "a6", "--binding-profile",
                                    "neutrino_dhcp=true")["id"])
    b = wait_active(env, bound_port(env, net_b, "h2", "b6")["id"])
    gw_a = router_port_on(env, router, sub_a)
    router_host = gw_a["binding_host_id"]
    router_ns = f"{lab.prefix(router_host)}qrouter-{router}"
    radvd = wait_for("radvd in the router namespace",
                     lambda: lab.daemon_pids(router_host, "ra").get(router_ns))
    assert os.path.exists(f"/proc/{radvd}")

    # The instance that configures itself gets exactly the port's EUI-64 address (the
    # server's fixed IP) and a default route through the router's link-local address.
    ns_a, ns_b = lab.instance("h1", "a6"), lab.instance("h2", "b6")
    self_configuring(lab, ns_a)
    wait_for("a SLAAC address", lambda: global_v6(lab, ns_a), timeout=RA_WAIT)
    assert global_v6(lab, ns_a) == [ip_of(a)]
    assert ipaddress.IPv6Address(ip_of(a)) in ipaddress.IPv6Network("2001:db8:61::/64")
    router_lla = link_local(gw_a["mac_address"])
    routes = wait_for("the default route from the advertisement", lambda: json.loads(
        lab.exec(ns_a, "ip", "-j", "-6", "route", "show", "default").stdout), timeout=RA_WAIT)
    assert [(r["gateway"], r["dev"]) for r in routes] == [(router_lla, "eth0")]

    # Routed to an instance on another IPv6 subnet behind the same router, on the other host.
    assert wait_for("ping across the router",
                    lambda: lab.pings(ns_a, ip_of(b), count=2), timeout=RA_WAIT)
    assert lab.pings(ns_b, ip_of(a))

    # A change to the advertisements reloads radvd in place (no restart).
    osc("subnet", "set", "--dns-nameserver", "2001:db8::53", sub_a, env=env,
        json_output=False)
    conf = lab.state_dir(router_host) / "ra" / router_ns / "radvd.conf"
    wait_for("RDNSS in radvd.conf", lambda: "RDNSS 2001:db8::53" in conf.read_text())
    assert lab.daemon_pids(router_host, "ra")[router_ns] == radvd

    # A restarted agent adopts the running radvd; the instance keeps its configuration.
    lab.stop_agent(router_host)
    lab.start_agent(router_host)
    wait_for("a reconcile with nothing to do",
             lambda: lab.status(router_host).get("last_ops") == 0)
    assert lab.status(router_host)["ra_ops"] == 0
    assert lab.daemon_pids(router_host, "ra")[router_ns] == radvd
    assert os.path.exists(f"/proc/{radvd}")
    assert lab.pings(ns_a, ip_of(b))

    # Without IPv6 interfaces the router's radvd goes.
    for sub in (sub_a, sub_b):
        osc("router", "remove", "subnet", router, sub, env=env, json_output=False)
    wait_for("radvd to stop", lambda: not os.path.exists(f"/proc/{radvd}"))
    assert router_ns not in lab.daemon_pids(router_host, "ra")


DHCLIENT_SCRIPT = """#!/bin/sh
# dhclient -6 calls this with the lease in the environment: record it, configure the address.
env > "$(dirname "$0")/dhclient6-$reason-$(ip netns identify)"
if [ "$reason" = BOUND6 ]; then
    ip -6 addr add "$new_ip6_address/64" dev "$interface" nodad
fi
"""


def dhcpv6(lab: Lab, ns: str, *flags: str) -> dict:
    """Runs ``dhclient -6`` once in an instance namespace (``-S``: information request only);
    returns the variables of the reply it got, and stops the client."""
    script = lab.tmp / "dhclient6.sh"
    script.write_text(DHCLIENT_SCRIPT)
    script.chmod(0o755)
    conf = lab.tmp / "dhclient6.conf"
    conf.write_text("request dhcp6.name-servers;\n")
    name = ns.rsplit("-", 1)[-1]
    lease, pid = lab.tmp / f"dhclient6-{name}.leases", lab.tmp / f"dhclient6-{name}.pid"
    wait_for("the link-local address", lambda: link_local_ready(lab, ns))
    try:
        lab.exec(ns, "dhclient", "-6", "-1", *flags, "-cf", str(conf), "-sf", str(script),
                 "-lf", str(lease), "-pf", str(pid), "eth0", timeout=90)
    finally:
        try:
            os.kill(int(pid.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
    # dhclient reports an information reply as INFORM6 or (4.4) RENEW6.
    reasons = ("INFORM6", "RENEW6") if "-S" in flags else ("BOUND6",)
    reply = next(p for r in reasons if (p := Path(lab.tmp / f"dhclient6-{r}-{ns}")).exists())
    return dict(line.split("=", 1) for line in reply.read_text().splitlines() if "=" in line)


def dhcp_server(lab: Lab, env, net: str) -> tuple[str, str]:
    """Waits for the network's DHCP port and dnsmasq; returns (host, namespace)."""
    ports = wait_for("the DHCP port", lambda: osc(
        "port", "list", "--network", net, "--device-owner", "network:dhcp", env=env))
    port = wait_active(env, ports[0]["ID"])
    host = port["binding_host_id"]
    ns = f"{lab.prefix(host)}qdhcp-{net}"
    wait_for("dnsmasq", lambda: ns in lab.dnsmasq_pids(host))
    return host, ns


@needs_dhclient
def test_dhcpv6_stateful_and_stateless(lab):
    env = lab.server.env
    net_s, sub_s = v6_network(env, "2001:db8:63::/64", "dhcpv6-stateful",
                              "--dns-nameserver", "2001:db8::5a")
    net_l, sub_l = v6_network(env, "2001:db8:64::/64", "dhcpv6-stateless",
                              "--dns-nameserver", "2001:db8::53")
    dhcp_server(lab, env, net_s)
    dhcp_server(lab, env, net_l)
    c = wait_active(env, bound_port(env, net_s, "h1", "c6", "--binding-profile",
                                    "neutrino_dhcp=true")["id"])
    d = wait_active(env, bound_port(env, net_l, "h2", "d6", "--binding-profile",
                                    "neutrino_dhcp=true")["id"])
    ns_c, ns_d = lab.instance("h1", "c6"), lab.instance("h2", "d6")

    # Stateful: the client gets the port's fixed IP (by its MAC) and the DNS servers.
    lease = dhcpv6(lab, ns_c)
    assert lease["new_ip6_address"] == ip_of(c)
    assert lease["new_dhcp6_name_servers"].split() == ["2001:db8::5a"]
    assert global_v6(lab, ns_c) == [ip_of(c)]

    # Stateless: options only (the address comes from SLAAC, not from DHCP).
    info = dhcpv6(lab, ns_d, "-S")
    assert info["new_dhcp6_name_servers"].split() == ["2001:db8::53"]
    assert "new_ip6_address" not in info
    assert global_v6(lab, ns_d) == []
    assert ip_of(d).startswith("2001:db8:64:")


def test_ndp_proxy_makes_an_internal_address_reachable_from_outside(lab):
    """An internal IPv6 address of a subnet in the external network's address scope: a host
    on the external network that takes the whole scope's prefix as on-link gets no answer to
    its neighbour solicitation until an NDP proxy (made with the ``openstack`` CLI) has the
    router answer for that address on its gateway; then packets are routed, never NATed.
    Deleting the proxy stops it again."""
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    scope = osc("address", "scope", "create", "--ip-version", "6", "--share", f"as6-{tag}",
                env=env)["id"]
    pool = osc("subnet", "pool", "create", "--pool-prefix", "2001:db8:77::/96",
               "--default-prefix-length", "112", "--address-scope", scope, "--share",
               f"sp6-{tag}", env=env)["id"]
    ext = osc("network", "create", "--external", f"ndp-ext-{tag}", env=env)["id"]
    osc("subnet", "create", "--network", ext, "--ip-version", "6", "--subnet-pool", pool,
        "--subnet-range", "2001:db8:77::1:0/112", f"ndp-ext-{tag}", env=env)
    internal = osc("network", "create", f"ndp-int-{tag}", env=env)["id"]
    int_sub = osc("subnet", "create", "--network", internal, "--ip-version", "6",
                  "--subnet-pool", pool, "--subnet-range", "2001:db8:77::2:0/112",
                  f"ndp-int-{tag}", env=env)["id"]
    router = osc("router", "create", f"ndp-r-{tag}", env=env)["id"]
    osc("router", "set", "--external-gateway", ext, router, env=env, json_output=False)
    osc("router", "add", "subnet", router, int_sub, env=env, json_output=False)
    sg = osc("security", "group", "create", f"ndp-open-{tag}", env=env)["id"]
    osc("security", "group", "rule", "create", "--ingress", "--ethertype", "IPv6",
        "--protocol", "ipv6-icmp", "--remote-ip", "::/0", sg, env=env)
    a = bound_port(env, internal, "h1", "a", "--security-group", sg)
    out = bound_port(env, ext, "h2", "out", "--security-group", sg)
    for p in (a, out):
        wait_active(env, p["id"])
    for rp in osc("port", "list", "--router", router, env=env):
        wait_active(env, rp["ID"])
    ns_a, ns_out = lab.instance("h1", "a"), lab.instance("h2", "out")
    address = ip_of(a)
    assert ":" in address, a
    # The outside host takes the whole prefix of the scope as on-link.
    lab.exec(ns_out, "ip", "-6", "route", "replace", "2001:db8:77::/96", "dev", "eth0")
    assert not lab.pings(ns_out, address, count=2)

    osc("router", "set", "--enable-ndp-proxy", router, env=env, json_output=False)
    assert osc("router", "show", router, env=env)["enable_ndp_proxy"] is True
    proxy = osc("router", "ndp", "proxy", "create", "--port", a["id"], "--name", f"np-{tag}",
                router, env=env)
    assert proxy["ip_address"] == address
    routers = [f"{lab.prefix(h)}qrouter-{router}" for h in lab.hosts]
    hosting = [ns for ns in routers if lab.exec(ns, "true", check=False).returncode == 0]
    assert len(hosting) == 1, hosting
    wait_for("the router answers for the proxied address",
             lambda: address in lab.exec(hosting[0], "ip", "-6", "neigh", "show", "proxy").stdout)
    wait_for("the internal address reachable from outside", lambda: lab.pings(ns_out, address))

    osc("router", "ndp", "proxy", "delete", proxy["id"], env=env, json_output=False)
    wait_for("the proxy gone from the router",
             lambda: address not in lab.exec(hosting[0], "ip", "-6", "neigh", "show",
                                              "proxy").stdout)
    lab.exec(ns_out, "ip", "-6", "neigh", "flush", "dev", "eth0", check=False)
    wait_for("the internal address unreachable again",
             lambda: not lab.pings(ns_out, address, count=2))
