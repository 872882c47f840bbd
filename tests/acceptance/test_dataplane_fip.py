"""Floating IPs beyond the gateway, with real packets: through a router *interface* on an
external network (``router-interface-fip``) and hosted by a router named at association
(``floating-ip-router-writable``), with the fixed IP one router further in; port forwardings;
router conntrack helpers letting TFTP and FTP through the router's NAT.

Uses the lab of ``dataplane_lab`` (hosts = namespaces on one underlay, one agent each); needs
root, iproute2, ping and python3. Every namespace is deleted by the lab's teardown.
"""

from __future__ import annotations

import subprocess
import time
import uuid

from conftest import osc, osc_run
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, needs_root, sh, tcp_peer, upper_pool, wait_active, wait_for)

pytestmark = needs_root


def subnet(env, net: str, cidr: str, tag: str) -> str:
    return osc("subnet", "create", "--network", net, "--subnet-range", cidr, *upper_pool(cidr),
               f"dp-{tag}-{uuid.uuid4().hex[:4]}", env=env)["id"]


def open_group(env, tag: str, protocols: tuple[str, ...] = ("tcp", "icmp")) -> tuple[str, str]:
    """A security group letting TCP and ICMP (or ``protocols``) in from anywhere (NATed peers
    are no members)."""
    sg = osc("security", "group", "create", f"dp-open-{tag}", env=env)["id"]
    for proto in protocols:
        osc("security", "group", "rule", "create", "--ingress", "--protocol", proto,
            "--remote-ip", "0.0.0.0/0", sg, env=env)
    return ("--security-group", sg)


def wait_router_ports(env, router: str, count: int) -> None:
    ports = osc("port", "list", "--router", router, env=env)
    assert len(ports) == count
    for rp in ports:
        wait_active(env, rp["ID"])


def test_floating_ip_through_a_router_interface(lab):
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    # router1 joins a private network and a second external network by interfaces only.
    private = osc("network", "create", f"dp-priv-{tag}", env=env)["id"]
    private_sub = subnet(env, private, "192.2.1.0/24", "priv")
    ext2 = osc("network", "create", "--external", f"dp-ext2-{tag}", env=env)["id"]
    ext2_sub = subnet(env, ext2, "192.2.2.0/24", "ext2")
    router = osc("router", "create", f"dp-r1-{tag}", env=env)["id"]
    for sub in (private_sub, ext2_sub):
        osc("router", "add", "subnet", router, sub, env=env, json_output=False)
    sg = open_group(env, tag)
    a = bound_port(env, private, "h1", "a", *sg)
    out = bound_port(env, ext2, "h2", "out", *sg, "--fixed-ip",
                     f"subnet={ext2_sub},ip-address=192.2.2.50")
    for p in (a, out):
        wait_active(env, p["id"])
    wait_router_ports(env, router, 2)
    ns_a, ns_out = lab.instance("h1", "a"), lab.instance("h2", "out")

    fip = osc("floating", "ip", "create", ext2, env=env)
    address = fip["floating_ip_address"]
    assert address.startswith("192.2.2.")
    assert not lab.pings(ns_out, address)
    osc("floating", "ip", "set", "--port", a["id"], fip["id"], env=env, json_output=False)
    shown = osc("floating", "ip", "show", fip["id"], env=env)
    assert shown["router_id"] == router
    assert shown["port_details"]["device_id"] == "a"

    # From the external network to the floating IP: DNATed on the interface, source kept.
    wait_for("floating IP reachable", lambda: lab.pings(ns_out, address))
    assert tcp_peer(lab, ns_a, ns_out, address) == "192.2.2.50"
    # From the instance out of that interface: SNATed to the floating IP.
    assert tcp_peer(lab, ns_out, ns_a, "192.2.2.50") == address

    osc("floating", "ip", "unset", "--port", fip["id"], env=env, json_output=False)
    wait_for("floating IP gone", lambda: not lab.pings(ns_out, address))
    # Without the floating IP the instance's own address goes out (the networks route).
    assert tcp_peer(lab, ns_out, ns_a, "192.2.2.50") == ip_of(a)


def test_floating_ip_hosted_by_a_named_router(lab):
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    # public <- outer router <- transit <- inner router <- project network
    public = osc("network", "create", "--external", f"dp-pub-{tag}", env=env)["id"]
    public_sub = subnet(env, public, "198.51.100.0/24", "pub")
    project = osc("network", "create", f"dp-proj-{tag}", env=env)["id"]
    project_sub = subnet(env, project, "10.10.250.0/24", "proj")
    transit = osc("network", "create", f"dp-transit-{tag}", env=env)["id"]
    subnet(env, transit, "10.10.230.0/24", "transit")
    outer = osc("router", "create", f"dp-outer-{tag}", env=env)["id"]
    osc("router", "set", "--external-gateway", public, outer, env=env, json_output=False)
    inner = osc("router", "create", f"dp-inner-{tag}", env=env)["id"]
    osc("router", "add", "subnet", inner, project_sub, env=env, json_output=False)
    hops = {}
    for name, router in (("outer", outer), ("inner", inner)):
        port = osc("port", "create", "--network", transit, f"dp-{name}-transit", env=env)
        osc("router", "add", "port", router, port["id"], env=env, json_output=False)
        hops[name] = ip_of(port)
    osc("router", "set", "--route", f"destination=10.10.250.0/24,gateway={hops['inner']}",
        outer, env=env, json_output=False)
    osc("router", "set", "--route", f"destination=0.0.0.0/0,gateway={hops['outer']}",
        inner, env=env, json_output=False)
    sg = open_group(env, tag)
    a = bound_port(env, project, "h1", "a", *sg)
    out = bound_port(env, public, "h2", "out", *sg, "--fixed-ip",
                     f"subnet={public_sub},ip-address=198.51.100.50")
    for p in (a, out):
        wait_active(env, p["id"])
    wait_router_ports(env, outer, 2)
    wait_router_ports(env, inner, 2)
    ns_a, ns_out = lab.instance("h1", "a"), lab.instance("h2", "out")
    gateway_ip = next(ip["ip_address"] for rp in osc("port", "list", "--router", outer,
                                                     "--long", env=env)
                      for ip in rp["Fixed IP Addresses"] if ip["subnet_id"] == public_sub)
    lab.exec(ns_out, "ip", "route", "replace", "10.0.0.0/8", "via", gateway_ip)

    # The CLI has no --router yet; openstacksdk sends router_id (floating-ip-router-writable).
    conn = lab.server.connect()
    fip = conn.network.create_ip(floating_network_id=public, port_id=a["id"], router_id=outer)
    assert fip.router_id == outer
    address = fip.floating_ip_address
    wait_for("indirect floating IP reachable", lambda: lab.pings(ns_out, address))
    assert tcp_peer(lab, ns_a, ns_out, address) == "198.51.100.50"
    assert tcp_peer(lab, ns_out, ns_a, "198.51.100.50") == address
    conn.network.delete_ip(fip)
    wait_for("indirect floating IP gone", lambda: not lab.pings(ns_out, address))


def test_port_forwarding_reaches_the_right_instance_port(lab):
    """Two forwardings of one floating IP (made, changed and deleted with the ``openstack``
    CLI) lead each external port to its own instance's port and nowhere else; a port nobody
    forwards is not reached; a change of the internal port applies live."""
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    public = osc("network", "create", "--external", f"dp-pfpub-{tag}", env=env)["id"]
    public_sub = subnet(env, public, "192.2.3.0/24", "pfpub")
    project = osc("network", "create", f"dp-pfproj-{tag}", env=env)["id"]
    project_sub = subnet(env, project, "10.10.240.0/24", "pfproj")
    router = osc("router", "create", f"dp-pfr-{tag}", env=env)["id"]
    osc("router", "set", "--external-gateway", public, router, env=env, json_output=False)
    osc("router", "add", "subnet", router, project_sub, env=env, json_output=False)
    sg = open_group(env, tag)
    a = bound_port(env, project, "h1", "a", *sg)
    b = bound_port(env, project, "h2", "b", *sg)
    out = bound_port(env, public, "h2", "out", *sg, "--fixed-ip",
                     f"subnet={public_sub},ip-address=192.2.3.50")
    for p in (a, b, out):
        wait_active(env, p["id"])
    wait_router_ports(env, router, 2)
    ns_a, ns_b, ns_out = (lab.instance("h1", "a"), lab.instance("h2", "b"),
                          lab.instance("h2", "out"))

    fip = osc("floating", "ip", "create", public, env=env)
    address = fip["floating_ip_address"]
    made = {}
    for name, port, inside, outside in (("a", a, 7001, 2201), ("b", b, 7002, 2202)):
        made[name] = osc("floating", "ip", "port", "forwarding", "create",
                         "--internal-ip-address", ip_of(port), "--port", port["id"],
                         "--internal-protocol-port", str(inside),
                         "--external-protocol-port", str(outside), "--protocol", "tcp",
                         "--description", f"to {name}", fip["id"], env=env)
    listed = osc("floating", "ip", "port", "forwarding", "list", fip["id"], env=env)
    assert sorted(pf["ID"] for pf in listed) == sorted(pf["id"] for pf in made.values())
    shown = osc("floating", "ip", "show", fip["id"], env=env)
    assert shown["router_id"] == router
    assert sorted(pf["external_port"] for pf in shown["port_forwardings"]) == [2201, 2202]

    # Each external port reaches its own instance (the source is kept), and only it.
    wait_for("forwarding to a", lambda: tcp_peer(lab, ns_a, ns_out, address, 7001, 2201)
             == "192.2.3.50")
    assert tcp_peer(lab, ns_b, ns_out, address, 7002, 2202) == "192.2.3.50"
    assert tcp_peer(lab, ns_b, ns_out, address, 7001, 2201) == ""
    assert tcp_peer(lab, ns_a, ns_out, address, 7002, 2202) == ""
    assert tcp_peer(lab, ns_a, ns_out, address, 2203) == ""
    assert tcp_peer(lab, ns_a, ns_out, address, 7001) == ""

    # A new internal port applies live; a deleted forwarding stops.
    osc("floating", "ip", "port", "forwarding", "set", "--internal-protocol-port", "7011",
        fip["id"], made["a"]["id"], env=env, json_output=False)
    shown = osc("floating", "ip", "port", "forwarding", "show", fip["id"], made["a"]["id"],
                env=env)
    assert shown["internal_port"] == 7011
    wait_for("changed forwarding", lambda: tcp_peer(lab, ns_a, ns_out, address, 7011, 2201)
             == "192.2.3.50")
    osc("floating", "ip", "port", "forwarding", "delete", fip["id"], made["a"]["id"],
        env=env, json_output=False)
    wait_for("forwarding gone", lambda: tcp_peer(lab, ns_a, ns_out, address, 7011, 2201) == "")
    assert tcp_peer(lab, ns_b, ns_out, address, 7002, 2202) == "192.2.3.50"
    # The floating IP cannot go while it still forwards.
    _, refused = osc_run("floating", "ip", "delete", fip["id"], env=env, json_output=False)
    assert refused.returncode != 0, refused.stdout


def _helper_tables(router: str) -> dict[str, str]:
    """The `inet neutrino_cthelper` table of each namespace of the router, by namespace."""
    out = {}
    for name in sh("ip", "netns", "list").stdout.split():
        if f"qrouter-{router}" not in name:
            continue
        listed = sh("ip", "netns", "exec", name, "nft", "list", "table", "inet",
                    "neutrino_cthelper", check=False)
        if listed.returncode == 0:
            out[name] = listed.stdout
    return out


def test_conntrack_helpers_in_the_router_namespace(lab):
    """A router's conntrack helpers (made, changed and deleted with the ``openstack`` CLI)
    become nftables ``ct helper`` objects and the rules assigning them in its namespace."""
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    public = osc("network", "create", "--external", f"dp-cthpub-{tag}", env=env)["id"]
    subnet(env, public, "192.2.4.0/24", "cthpub")
    project = osc("network", "create", f"dp-cthproj-{tag}", env=env)["id"]
    project_sub = subnet(env, project, "10.10.241.0/24", "cthproj")
    router = osc("router", "create", f"dp-cthr-{tag}", env=env)["id"]
    osc("router", "set", "--external-gateway", public, router, env=env, json_output=False)
    osc("router", "add", "subnet", router, project_sub, env=env, json_output=False)
    a = bound_port(env, project, "h1", "a")
    wait_active(env, a["id"])
    wait_router_ports(env, router, 2)

    tftp = osc("network", "l3", "conntrack", "helper", "create", "--helper", "tftp",
               "--protocol", "udp", "--port", "69", router, env=env)
    osc("network", "l3", "conntrack", "helper", "create", "--helper", "ftp", "--protocol",
        "tcp", "--port", "21", router, env=env)

    def rules() -> list[str]:
        tables = _helper_tables(router)
        if len(tables) != 1:
            return []
        text = next(iter(tables.values()))
        return sorted(line.strip() for line in text.splitlines()
                      if "ct helper set" in line or line.strip().startswith("type \""))

    wait_for("helpers in the namespace", lambda: rules() == [
        'tcp dport 21 ct helper set "h0"', 'type "ftp" protocol tcp',
        'type "tftp" protocol udp', 'udp dport 69 ct helper set "h1"'])
    osc("network", "l3", "conntrack", "helper", "set", "--port", "6969", router, tftp["id"],
        env=env, json_output=False)
    wait_for("changed helper", lambda: 'udp dport 6969 ct helper set "h1"' in rules())
    for helper in osc("network", "l3", "conntrack", "helper", "list", router, env=env):
        osc("network", "l3", "conntrack", "helper", "delete", router, helper["ID"], env=env,
            json_output=False)
    wait_for("helpers table gone", lambda: _helper_tables(router) == {})


# A TFTP-like server: echoes anything but a read request from port 69, and answers a read
# request (opcode 1) with a DATA packet (opcode 3, block 1) from a new socket, as TFTP does.
TFTP_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 69)); s.settimeout(8)
while True:
    try:
        data, peer = s.recvfrom(600)
    except OSError:
        break
    if not data.startswith(b'\\x00\\x01'):
        s.sendto(data, peer)
        continue
    t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.sendto(b'\\x00\\x03\\x00\\x01hello-tftp', peer)
    print(peer[0], flush=True)
    break
"""

# From one socket: an echo through port 69, then a read request; prints what came back
# (``-`` for nothing) and, for the DATA packet, the port it came from.
TFTP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
target = (sys.argv[1], 69)
s.sendto(b'ping', target)
try:
    print(s.recvfrom(600)[0].decode())
except OSError:
    print('-')
    sys.exit()
s.settimeout(3)
s.sendto(b'\\x00\\x01file\\x00octet\\x00', target)
try:
    data, peer = s.recvfrom(600)
    print(data.hex(), peer[1])
except OSError:
    print('-')
"""


def tftp_read(lab, server_ns: str, client_ns: str, target: str) -> tuple[list[str], str]:
    """A TFTP read from ``client_ns`` to the server in ``server_ns`` at ``target``: what the
    client printed (echo, then DATA and its source port) and the source the server saw."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "python3", "-c", TFTP_SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        client = lab.exec(client_ns, "python3", "-c", TFTP_CLIENT, target, check=False)
    finally:
        server.kill()
    seen, _ = server.communicate(timeout=10)
    return client.stdout.split(), seen.strip()


def test_conntrack_helper_lets_tftp_through_snat(lab):
    """TFTP answers a read request from a new port: through the router's SNAT the DATA
    packet reaches the instance only once the router has a ``tftp`` helper on udp/69."""
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    public = osc("network", "create", "--external", f"dp-tftppub-{tag}", env=env)["id"]
    public_sub = subnet(env, public, "192.2.5.0/24", "tftppub")
    project = osc("network", "create", f"dp-tftpproj-{tag}", env=env)["id"]
    project_sub = subnet(env, project, "10.10.242.0/24", "tftpproj")
    router = osc("router", "create", f"dp-tftpr-{tag}", env=env)["id"]
    osc("router", "set", "--external-gateway", public, router, env=env, json_output=False)
    osc("router", "add", "subnet", router, project_sub, env=env, json_output=False)
    sg = open_group(env, tag, ("udp", "icmp"))
    a = bound_port(env, project, "h1", "a", *sg)
    out = bound_port(env, public, "h2", "out", *sg, "--fixed-ip",
                     f"subnet={public_sub},ip-address=192.2.5.50")
    for p in (a, out):
        wait_active(env, p["id"])
    wait_router_ports(env, router, 2)
    ns_a, ns_out = lab.instance("h1", "a"), lab.instance("h2", "out")
    gateway_ip = next(ip["ip_address"] for rp in osc("port", "list", "--router", router,
                                                     "--long", env=env)
                      for ip in rp["Fixed IP Addresses"] if ip["subnet_id"] == public_sub)

    def echoed():
        got, seen = tftp_read(lab, ns_out, ns_a, "192.2.5.50")
        return (got, seen) if got[:1] == ["ping"] else None

    # Without a helper the echo from port 69 comes back, the DATA from a new port does not.
    got, seen = wait_for("UDP echo through SNAT", echoed)
    assert got == ["ping", "-"]
    assert seen == gateway_ip
    assert _helper_tables(router) == {}

    osc("network", "l3", "conntrack", "helper", "create", "--helper", "tftp",
        "--protocol", "udp", "--port", "69", router, env=env)
    wait_for("tftp helper in the namespace", lambda: len(_helper_tables(router)) == 1)
    got, seen = tftp_read(lab, ns_out, ns_a, "192.2.5.50")
    assert got[:2] == ["ping", b"\x00\x03\x00\x01hello-tftp".hex()], got
    assert int(got[2]) != 69
    assert seen == gateway_ip


# A one-file FTP server on port 21: sends the file over a data connection to the address of
# PORT (active) or from the address it announces in its PASV answer (passive, its own); prints
# the address PORT gave.
FTP_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 21)); s.listen(1); s.settimeout(15)
c, _ = s.accept(); c.settimeout(15)
say = lambda line: c.sendall(line.encode() + b'\\r\\n')
say('220 ready')


def serve():
    active = passive = None
    for line in c.makefile('rb'):
        cmd, _, arg = line.decode().strip().partition(' ')
        if cmd == 'PORT':
            n = arg.split(',')
            active = ('.'.join(n[:4]), int(n[4]) * 256 + int(n[5]))
            print(active[0], flush=True)
            say('200 ok')
        elif cmd == 'PASV':
            passive = socket.socket(); passive.bind((c.getsockname()[0], 0))
            passive.listen(1); passive.settimeout(5)
            host, port = passive.getsockname()
            say(f"227 Entering Passive Mode ({host.replace('.', ',')},{port >> 8},{port & 255})")
        elif cmd == 'RETR':
            say('150 sending')
            try:
                data = (socket.create_connection(active, timeout=3) if active
                        else passive.accept()[0])
                data.sendall(b'hello-ftp'); data.close()
                say('226 done')
            except OSError:
                say('425 no data connection')
        else:
            say({'USER': '331 ok', 'PASS': '230 ok', 'TYPE': '200 ok', 'QUIT': '221 bye'}
                .get(cmd, '502 no'))


try:
    serve()
except ConnectionResetError:
    pass
"""

# Logs in (``in``), then retrieves the file in active or passive mode (taking the address of
# the PASV answer) and prints it (``-`` for nothing).
FTP_CLIENT = """
import ftplib, sys
f = ftplib.FTP(timeout=5); f.trust_server_pasv_ipv4_address = True
f.connect(sys.argv[1], 21); f.login('user', 'pass'); print('in', flush=True)
f.set_pasv(sys.argv[2] == 'passive')
got = []
try:
    f.retrbinary('RETR file', got.append)
    print(b''.join(got).decode())
except (ftplib.Error, OSError):
    print('-')
"""


def ftp_get(lab, server_ns: str, client_ns: str, target: str, mode: str) -> tuple[list, str]:
    """An FTP retrieval (``mode``: active or passive) from ``client_ns`` to the server in
    ``server_ns`` at ``target``: what the client printed and the address PORT gave."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "python3", "-c", FTP_SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        client = lab.exec(client_ns, "python3", "-c", FTP_CLIENT, target, mode, check=False)
    finally:
        server.kill()
    seen, _ = server.communicate(timeout=10)
    return client.stdout.split(), seen.strip()


def test_conntrack_helper_lets_ftp_through_nat(lab):
    """FTP's data connection goes to an address the control connection names: in active mode
    through the router's SNAT, in passive mode to a floating IP, it gets through only once the
    router has an ``ftp`` helper on tcp/21 (which rewrites that address and expects the
    connection)."""
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    public = osc("network", "create", "--external", f"dp-ftppub-{tag}", env=env)["id"]
    public_sub = subnet(env, public, "192.2.6.0/24", "ftppub")
    project = osc("network", "create", f"dp-ftpproj-{tag}", env=env)["id"]
    project_sub = subnet(env, project, "10.10.243.0/24", "ftpproj")
    router = osc("router", "create", f"dp-ftpr-{tag}", env=env)["id"]
    osc("router", "set", "--external-gateway", public, router, env=env, json_output=False)
    osc("router", "add", "subnet", router, project_sub, env=env, json_output=False)
    sg = open_group(env, tag)
    a = bound_port(env, project, "h1", "a", *sg)
    b = bound_port(env, project, "h1", "b", *sg)
    out = bound_port(env, public, "h2", "out", *sg, "--fixed-ip",
                     f"subnet={public_sub},ip-address=192.2.6.50")
    for p in (a, b, out):
        wait_active(env, p["id"])
    wait_router_ports(env, router, 2)
    ns_a, ns_b, ns_out = (lab.instance("h1", "a"), lab.instance("h1", "b"),
                          lab.instance("h2", "out"))
    gateway_ip = next(ip["ip_address"] for rp in osc("port", "list", "--router", router,
                                                     "--long", env=env)
                      for ip in rp["Fixed IP Addresses"] if ip["subnet_id"] == public_sub)
    fip = osc("floating", "ip", "create", "--port", b["id"], public, env=env)
    address = fip["floating_ip_address"]
    wait_for("floating IP reachable", lambda: lab.pings(ns_out, address))

    # Without a helper the control connections work, the data connections do not.
    def logged_in(server_ns, client_ns, target, mode):
        got = ftp_get(lab, server_ns, client_ns, target, mode)
        return got if got[0][:1] == ["in"] else None

    assert wait_for("FTP through SNAT", lambda: logged_in(ns_out, ns_a, "192.2.6.50",
                                                         "active")) == (["in", "-"], ip_of(a))
    assert ftp_get(lab, ns_b, ns_out, address, "passive") == (["in", "-"], "")

    osc("network", "l3", "conntrack", "helper", "create", "--helper", "ftp",
        "--protocol", "tcp", "--port", "21", router, env=env)
    wait_for("ftp helper in the namespace", lambda: len(_helper_tables(router)) == 1)
    # Active: the helper rewrites PORT to the gateway and lets the server's connection in.
    assert ftp_get(lab, ns_out, ns_a, "192.2.6.50", "active") == (["in", "hello-ftp"],
                                                                  gateway_ip)
    # Passive: the helper rewrites the address of the PASV answer to the floating IP.
    assert ftp_get(lab, ns_b, ns_out, address, "passive") == (["in", "hello-ftp"], "")
