"""Local IPs on real packets (root, lab namespaces): a port associated with a Local IP serves
the address to the other ports of its network on its host. The bridge answers ARP for it with
the port's MAC; requests are translated to the port's fixed IP and its replies back, while
traffic to the fixed IP itself stays untranslated; other hosts do not serve it; removing the
association removes everything."""

from __future__ import annotations

import json
import subprocess
import time

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, needs_root, network_with_subnet, sh, tcp_peer, wait_active,
    wait_for)

pytestmark = needs_root

LIP = "10.74.0.50"


def udp_reply_source(lab, server_ns: str, client_ns: str, target: str) -> str:
    """Sends a UDP datagram to ``target``:5004 from ``client_ns``; the server in ``server_ns``
    echoes it; returns the source address of the echo as the client saw it (empty: none)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "python3", "-c",
         "import socket\n"
         "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5004))\n"
         "s.settimeout(8)\n"
         "try:\n"
         "    data, peer = s.recvfrom(100); s.sendto(data, peer)\n"
         "except OSError:\n"
         "    pass"])
    time.sleep(0.3)
    out = lab.exec(client_ns, "python3", "-c",
                   "import socket\n"
                   "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n"
                   f"s.sendto(b'hi', ('{target}', 5004))\n"
                   "try:\n"
                   "    print(s.recvfrom(100)[1][0])\n"
                   "except OSError:\n"
                   "    pass", check=False).stdout.strip()
    server.wait(timeout=15)
    return out


def table_exists(lab, host: str) -> bool:
    return sh("ip", "netns", "exec", lab.host_ns(host), "nft", "list", "table", "bridge",
              "neutrino_localip", check=False).returncode == 0


def test_local_ip_is_served_on_the_associated_ports_host(lab):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.74.0.0/24")
    a = wait_active(env, bound_port(env, net, "h1", "a")["id"])
    b = wait_active(env, bound_port(env, net, "h1", "b")["id"])
    f = wait_active(env, bound_port(env, net, "h1", "f")["id"])
    c = wait_active(env, bound_port(env, net, "h2", "c")["id"])
    ns_a, ns_b, ns_f, ns_c = (lab.instance(h, d) for h, d in
                              (("h1", "a"), ("h1", "b"), ("h1", "f"), ("h2", "c")))
    lip = osc("local", "ip", "create", "--network", net, "--local-ip-address", LIP, env=env)
    osc("local", "ip", "association", "create", lip["id"], f["id"], env=env)
    wait_for("a to reach the Local IP", lambda: lab.pings(ns_a, LIP))
    # ARP for the Local IP answered with f's MAC.
    neigh = json.loads(lab.exec(ns_a, "ip", "-j", "neigh", "show", LIP).stdout)
    assert [n["lladdr"] for n in neigh] == [f["mac_address"]]
    # TCP through the Local IP reaches f, which sees a's own address.
    assert tcp_peer(lab, ns_f, ns_a, LIP) == ip_of(a)
    # UDP replies come back from the Local IP, not from f's fixed IP.
    assert udp_reply_source(lab, ns_f, ns_b, LIP) == LIP
    # Traffic to f's fixed IP is not translated.
    assert udp_reply_source(lab, ns_f, ns_b, ip_of(f)) == ip_of(f)
    assert tcp_peer(lab, ns_f, ns_b, ip_of(f)) == ip_of(b)
    # f itself and ports on other hosts are not served.
    assert not lab.pings(ns_c, LIP, count=2), "h2 has no associated port"
    assert not lab.pings(ns_f, LIP, count=1), "the associated port is not translated to itself"
    assert table_exists(lab, "h1") and not table_exists(lab, "h2")
    # The association gone: no answer, no table, no neighbour entry left.
    osc("local", "ip", "association", "delete", lip["id"], f["id"], env=env,
        json_output=False)
    wait_for("the table to go", lambda: not table_exists(lab, "h1"))
    neighbours = sh("ip", "-n", lab.host_ns("h1"), "neigh", "show", "nud", "permanent").stdout
    assert LIP not in neighbours
    lab.exec(ns_a, "ip", "neigh", "flush", "all")
    assert not lab.pings(ns_a, LIP, count=2)
    assert lab.pings(ns_a, ip_of(f))
    osc("local", "ip", "delete", lip["id"], env=env, json_output=False)
