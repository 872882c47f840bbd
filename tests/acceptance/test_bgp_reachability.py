"""What a BGP speaker announces is reachable: a machine behind the peer router gets to the
instances by their own addresses, in the external network's address scope only, and to
floating IPs through the /32 host routes; IPv6 prefixes are learned with the gateway's IPv6
address as next hop.

The lab (see ``dataplane_lab``): one host h1 whose agent runs with ``--bgp`` and maps
``physnet1`` to its ``eth1``, a veth into a "physical" namespace holding one bridge. The
external network is a flat network on ``physnet1``. The peer router is a namespace of its own
with three legs: ``eth0`` on the lab's underlay (the BGP session with h1's BIRD), ``eth1`` on
the physical segment (the external network: it is the external subnet's gateway, so the
project router's return traffic comes back through it) and ``eth2`` toward a "remote host"
namespace (its own subnet, default route via the peer router). Its BIRD imports what the
speaker announces and installs it into its kernel table (``protocol kernel``); it forwards.

Addresses: underlay 198.18.0.0/24 (h1 198.18.0.1, peer router 198.18.0.100; IPv6
2001:db8:ff::/64), external network 198.19.0.0/24 (IPv6 2001:db8:e::/64; the peer router
is .254 / ::fffe) with a floating-IP-only subnet 198.19.100.0/24 the peer router is not on,
remote host 198.18.77.0/24 (2001:db8:77::/64), tenant pools 10.66.0.0/16 (the external
network's scope), 10.67.0.0/16 (another scope) and 2001:db8:100::/48. Everything created is
deleted: BIRD is stopped, the lab's teardown deletes every namespace named with its tag (the
peer router's, the remote host's and the physical one included; veths go with them).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import uuid

import pytest

from conftest import NeutrinoServer, _server_binary, osc
from dataplane_lab import Lab, bound_port, ip_of, needs_root, sh, stop_bird, tcp_peer, wait_active, wait_for

pytestmark = [needs_root]

SPEAKER_AS = 64512
ROUTER_AS = 64513
ROUTER_UL = "198.18.0.100"
ROUTER_UL6 = "2001:db8:ff::100"
H1_UL6 = "2001:db8:ff::1"
EXT_CIDR = "198.19.0.0/24"
EXT_GW = "198.19.0.254"
EXT6_CIDR = "2001:db8:e::/64"
EXT6_GW = "2001:db8:e::fffe"
FIP_CIDR = "198.19.100.0/24"
REMOTE_GW = "198.18.77.1"
REMOTE_IP = "198.18.77.2"
REMOTE6_GW = "2001:db8:77::1"
REMOTE6_IP = "2001:db8:77::2"
SCOPED_POOL = "10.66.0.0/16"
OTHER_POOL = "10.67.0.0/16"
V6_POOL = "2001:db8:100::/48"
MAPPING = ["--physical-interface-mappings", "physnet1:eth1"]


@pytest.fixture(autouse=True)
def _bird_installed():
    missing = [p for p in ("bird", "birdc") if not shutil.which(p)]
    if missing:
        reason = f"BIRD 2 is not installed ({', '.join(missing)} missing: apt-get install bird2)"
        print(reason)
        pytest.skip(reason)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class PeerRouter:
    """The physical router: BIRD in a namespace on the underlay, the external network's
    segment and the remote host's subnet; it installs what it learns and forwards."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.ns = f"nt{lab.tag}-rtr"
        self.phys = f"nt{lab.tag}-phys"
        self.remote = f"nt{lab.tag}-remote"
        self.dir = lab.tmp / "peer-router"
        self.dir.mkdir()
        self.sock = str(self.dir / "bird.ctl")
        self.conf = self.dir / "bird.conf"
        self.pid_file = self.dir / "pid"
        self.phys_ports = 0

    def _to_phys(self, ns: str, name: str) -> None:
        self.phys_ports += 1
        end = f"ph{self.phys_ports}"
        sh("ip", "link", "add", end, "netns", self.phys, "type", "veth",
           "peer", "name", name, "netns", ns)
        sh("ip", "-n", self.phys, "link", "set", end, "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", name, "up")

    def setup(self) -> "PeerRouter":
        """The physical segment with h1 on it, the router and the remote host."""
        sh("ip", "netns", "add", self.phys)
        sh("ip", "-n", self.phys, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.phys, "link", "set", "br0", "up")
        self._to_phys(self.lab.host_ns("h1"), "eth1")
        sh("ip", "netns", "add", self.ns)
        sh("ip", "netns", "add", self.remote)
        sh("ip", "link", "add", "ulrtr", "netns", self.lab.underlay, "type", "veth",
           "peer", "name", "eth0", "netns", self.ns)
        sh("ip", "-n", self.lab.underlay, "link", "set", "ulrtr", "master", "br0", "up")
        self._to_phys(self.ns, "eth1")
        sh("ip", "link", "add", "eth2", "netns", self.ns, "type", "veth",
           "peer", "name", "eth0", "netns", self.remote)
        for ns in (self.ns, self.remote):
            # No duplicate address detection delays on these links.
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
               "net.ipv6.conf.default.accept_dad=0")
        r = self.ns
        sh("ip", "-n", r, "addr", "add", f"{ROUTER_UL}/24", "dev", "eth0")
        sh("ip", "-n", r, "addr", "add", f"{ROUTER_UL6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", r, "addr", "add", f"{EXT_GW}/24", "dev", "eth1")
        sh("ip", "-n", r, "addr", "add", f"{EXT6_GW}/64", "dev", "eth1", "nodad")
        sh("ip", "-n", r, "addr", "add", f"{REMOTE_GW}/24", "dev", "eth2")
        sh("ip", "-n", r, "addr", "add", f"{REMOTE6_GW}/64", "dev", "eth2", "nodad")
        for dev in ("lo", "eth0", "eth2"):
            sh("ip", "-n", r, "link", "set", dev, "up")
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1",
           "net.ipv6.conf.all.forwarding=1")
        m = self.remote
        sh("ip", "-n", m, "addr", "add", f"{REMOTE_IP}/24", "dev", "eth0")
        sh("ip", "-n", m, "addr", "add", f"{REMOTE6_IP}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", m, "link", "set", "lo", "up")
        sh("ip", "-n", m, "link", "set", "eth0", "up")
        sh("ip", "-n", m, "route", "add", "default", "via", REMOTE_GW)
        sh("ip", "-n", m, "-6", "route", "add", "default", "via", REMOTE6_GW)
        # The speaker's IPv6 address on the underlay (for the IPv6 session).
        sh("ip", "-n", self.lab.host_ns("h1"), "addr", "add", f"{H1_UL6}/64", "dev", "uplink",
           "nodad")
        return self

    def start(self, ipv6: bool = False) -> None:
        speaker_ip = H1_UL6 if ipv6 else self.lab.tunnel_ip("h1")
        local = ROUTER_UL6 if ipv6 else ROUTER_UL
        family = "ipv6" if ipv6 else "ipv4"
        self.conf.write_text(
            f"router id {ROUTER_UL};\n"
            f'log "{self.dir / "bird.log"}" all;\n'
            "protocol device { }\n"
            # The connected subnets: BGP next hops on the external segment resolve here.
            "protocol direct { ipv4; ipv6; }\n"
            # What BGP learned goes into the kernel: the router forwards by it.
            f"protocol kernel {{ {family} {{ export where source = RTS_BGP; }}; }}\n"
            "protocol bgp speaker {\n"
            f"  local {local} as {ROUTER_AS};\n"
            f"  neighbor {speaker_ip} as {SPEAKER_AS};\n"
            "  multihop;\n"
            "  connect delay time 1; connect retry time 2; error wait time 1, 5;\n"
            f"  {family} {{ import all; export none; }};\n"
            "}\n")
        sh("ip", "netns", "exec", self.ns, "bird", "-c", str(self.conf), "-s", self.sock,
           "-P", str(self.pid_file))

    def birdc(self, *args: str) -> str:
        return sh("ip", "netns", "exec", self.ns, "birdc", "-s", self.sock, *args,
                  check=False).stdout

    def next_hop_of(self, prefix: str) -> str | None:
        """The BGP next hop learned for exactly ``prefix`` (None: no such route). An IPv6
        next hop may carry a link-local address after the global one."""
        out = self.birdc("show", "route", "all", prefix)
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("BGP.next_hop:"):
                return line.split(":", 1)[1].split()[0].strip()
        return None

    def kernel_route(self, prefix: str) -> dict | None:
        """The kernel route for exactly ``prefix`` in the router's main table."""
        v = "-6" if ":" in prefix else "-4"
        routes = json.loads(sh("ip", "-n", self.ns, "-j", v, "route", "show", "exact",
                               prefix).stdout or "[]")
        return routes[0] if routes else None

    def stop(self) -> None:
        stop_bird(self.pid_file)


@pytest.fixture
def reach(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1",))
    lab.agent_args["h1"] = ["--bgp", *MAPPING]
    router = PeerRouter(lab)
    try:
        # h1's eth1 is plugged after its agent starts, before its first flat network.
        lab.setup()
        router.setup()
        yield lab, router
    finally:
        router.stop()
        lab.teardown()
        server.stop()


def _dump(lab: Lab, router: PeerRouter) -> str:
    agent_log = (lab.tmp / "agent-h1.log").read_text(errors="replace")[-3000:]
    conf = lab.state_dir("h1") / "bgp" / "bird.conf"
    return (f"\n-- speaker bird.conf:\n{conf.read_text() if conf.exists() else '(none)'}"
            f"\n-- peer router:\n{router.birdc('show', 'protocols', 'all', 'speaker')}"
            f"{router.birdc('show', 'route', 'all')}"
            f"{sh('ip', '-n', router.ns, 'route').stdout}"
            f"{sh('ip', '-n', router.ns, '-6', 'route').stdout}"
            f"\n-- agent log tail:\n{agent_log}")


def _learned(lab, router, prefix, hop):
    """The peer router learned ``prefix`` via ``hop`` and installed it into its kernel."""
    def there():
        k = router.kernel_route(prefix)
        return router.next_hop_of(prefix) == hop and k is not None and k.get("gateway") == hop
    try:
        wait_for(f"{prefix} via {hop} at the peer router", there, timeout=60, interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}{_dump(lab, router)}") from None


def _gone(lab, router, prefix):
    try:
        wait_for(f"{prefix} gone at the peer router",
                 lambda: router.next_hop_of(prefix) is None
                 and router.kernel_route(prefix) is None, timeout=60, interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}{_dump(lab, router)}") from None


def _open_group(env) -> tuple[str, str]:
    """Lets TCP and ICMP in from anywhere: what is blocked below, the router blocks."""
    sg = osc("security", "group", "create", _name("open"), env=env)["id"]
    for proto in ("tcp", "icmp"):
        osc("security", "group", "rule", "create", "--ingress", "--protocol", proto,
            "--remote-ip", "0.0.0.0/0", sg, env=env)
    osc("security", "group", "rule", "create", "--ingress", "--ethertype", "IPv6",
        "--protocol", "tcp", "--remote-ip", "::/0", sg, env=env)
    return ("--security-group", sg)


def _topology(env) -> dict:
    """A flat external network in scope S (198.19.0.0/24, gateway = the peer router), a
    router with its gateway there and two tenant subnets: one from S's pool, one from
    another scope's. Returns the ids and the router's gateway address."""
    scope = osc("address", "scope", "create", "--share", "--ip-version", "4", _name("s"),
                env=env)["id"]
    other = osc("address", "scope", "create", "--share", "--ip-version", "4", _name("o"),
                env=env)["id"]
    # The external network's subnets share a pool (upstream's rule): the gateway subnet and
    # the floating-IP-only one.
    ext_pool = osc("subnet", "pool", "create", "--pool-prefix", EXT_CIDR, "--pool-prefix",
                   FIP_CIDR, "--address-scope", scope, _name("extpool"), env=env)["id"]
    pool = osc("subnet", "pool", "create", "--pool-prefix", SCOPED_POOL, "--address-scope",
               scope, _name("pool"), env=env)["id"]
    other_pool = osc("subnet", "pool", "create", "--pool-prefix", OTHER_POOL,
                     "--address-scope", other, _name("opool"), env=env)["id"]
    ext = osc("network", "create", "--external", "--provider-network-type", "flat",
              "--provider-physical-network", "physnet1", _name("ext"), env=env)["id"]
    ext_sub = osc("subnet", "create", "--network", ext, "--subnet-pool", ext_pool,
                  "--subnet-range", EXT_CIDR, "--gateway", EXT_GW, "--no-dhcp",
                  "--allocation-pool", "start=198.19.0.10,end=198.19.0.200", _name("extsub"),
                  env=env)["id"]
    nets, subs = {}, {}
    for key, p, cidr in (("in", pool, "10.66.1.0/24"), ("out", other_pool, "10.67.1.0/24")):
        nets[key] = osc("network", "create", _name(key), env=env)["id"]
        subs[key] = osc("subnet", "create", "--network", nets[key], "--subnet-pool", p,
                        "--subnet-range", cidr, _name(key), env=env)["id"]
    router = osc("router", "create", _name("router"), env=env)["id"]
    osc("router", "set", router, "--external-gateway", ext, env=env, json_output=False)
    for sub in subs.values():
        osc("router", "add", "subnet", router, sub, env=env, json_output=False)
    info = osc("router", "show", router, env=env)["external_gateway_info"]
    gw_ip = next(ip["ip_address"] for ip in info["external_fixed_ips"]
                 if ip["subnet_id"] == ext_sub)
    for rp in osc("port", "list", "--router", router, env=env):
        wait_active(env, rp["ID"])
    return {"ext": ext, "ext_pool": ext_pool, "nets": nets, "router": router, "gw_ip": gw_ip}


def _speaker(env, ext: str, ip_version: int = 4, fips: bool = False,
             peer_ip: str = ROUTER_UL) -> str:
    flag = "--advertise-floating-ip-host-routes" if fips else \
        "--no-advertise-floating-ip-host-routes"
    speaker = osc("bgp", "speaker", "create", "--local-as", str(SPEAKER_AS), "--ip-version",
                  str(ip_version), flag, _name("speaker"), env=env)["id"]
    peer = osc("bgp", "peer", "create", "--peer-ip", peer_ip, "--remote-as", str(ROUTER_AS),
               _name("peer"), env=env)["id"]
    osc("bgp", "speaker", "add", "network", speaker, ext, env=env, json_output=False)
    osc("bgp", "speaker", "add", "peer", speaker, peer, env=env, json_output=False)
    return speaker


def test_remote_host_reaches_the_scoped_subnet_by_its_own_address(reach):
    lab, router = reach
    env = lab.server.env
    router.start()
    topo = _topology(env)
    gw_ip = topo["gw_ip"]
    sg = _open_group(env)
    a = wait_active(env, bound_port(env, topo["nets"]["in"], "h1", "a", *sg)["id"])
    b = wait_active(env, bound_port(env, topo["nets"]["out"], "h1", "b", *sg)["id"])
    ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h1", "b")
    _speaker(env, topo["ext"])

    # The scoped subnet is learned, via the router's gateway, and in the peer's kernel; the
    # other scope's is not announced at all.
    _learned(lab, router, "10.66.1.0/24", gw_ip)
    assert router.next_hop_of("10.67.1.0/24") is None
    assert router.kernel_route("10.67.1.0/24") is None

    # The remote host reaches a by a's own address, and a sees the remote host's address
    # (routed, no NAT either way).
    seen = wait_for("the remote host reaching a",
                    lambda: tcp_peer(lab, ns_a, router.remote, ip_of(a)), timeout=30)
    assert seen == REMOTE_IP, _dump(lab, router)
    assert lab.pings(router.remote, ip_of(a))
    # a's own connections leave with its own address too.
    assert tcp_peer(lab, router.remote, ns_a, REMOTE_IP) == ip_of(a)

    # The other scope: not reachable even with a static route toward the gateway (the
    # project router drops what comes in for a NATed subnet).
    sh("ip", "-n", router.ns, "route", "add", "10.67.1.0/24", "via", gw_ip)
    try:
        assert tcp_peer(lab, ns_b, router.remote, ip_of(b)) == ""
        assert not lab.pings(router.remote, ip_of(b))
    finally:
        sh("ip", "-n", router.ns, "route", "del", "10.67.1.0/24", "via", gw_ip, check=False)
    # b gets out only SNATed to the router's gateway address.
    assert tcp_peer(lab, router.remote, ns_b, REMOTE_IP) == gw_ip


def test_floating_ip_host_route(reach):
    lab, router = reach
    env = lab.server.env
    router.start()
    topo = _topology(env)
    gw_ip = topo["gw_ip"]
    sg = _open_group(env)
    # An instance in the other scope: only its floating IP makes it reachable.
    b = wait_active(env, bound_port(env, topo["nets"]["out"], "h1", "b", *sg)["id"])
    ns_b = lab.instance("h1", "b")
    speaker = _speaker(env, topo["ext"], fips=True)
    _learned(lab, router, "10.66.1.0/24", gw_ip)

    # The floating IP comes from a subnet of the external network that only floating IPs
    # use: the peer router has no route to it but the announced host route.
    fip_sub = osc("subnet", "create", "--network", topo["ext"], "--subnet-pool",
                  topo["ext_pool"], "--subnet-range", FIP_CIDR,
                  "--gateway", "none", "--no-dhcp", "--service-type", "network:floatingip",
                  _name("fipsub"), env=env)["id"]
    fip = osc("floating", "ip", "create", "--subnet", fip_sub, "--port", b["id"], topo["ext"],
              env=env)
    address = fip["floating_ip_address"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(FIP_CIDR)
    assert router.kernel_route(FIP_CIDR) is None
    host_route = f"{address}/32"
    routes = osc("bgp", "speaker", "list", "advertised", "routes", speaker, env=env)
    assert (host_route, gw_ip) in [(r["Destination"], r["Nexthop"]) for r in routes], routes
    _learned(lab, router, host_route, gw_ip)
    # The remote host reaches the instance through the floating IP; the instance sees the
    # remote host's own address, and its connections leave as the floating IP.
    seen = wait_for("the remote host reaching the floating IP",
                    lambda: tcp_peer(lab, ns_b, router.remote, address), timeout=30)
    assert seen == REMOTE_IP, _dump(lab, router)
    assert tcp_peer(lab, router.remote, ns_b, REMOTE_IP) == address

    # Disassociating withdraws the host route (the tenant prefix stays).
    osc("floating", "ip", "unset", "--port", fip["id"], env=env, json_output=False)
    _gone(lab, router, host_route)
    assert router.next_hop_of("10.66.1.0/24") == gw_ip
    assert tcp_peer(lab, ns_b, router.remote, address) == ""
    # Associated again, then deleted: announced, then withdrawn.
    osc("floating", "ip", "set", "--port", b["id"], fip["id"], env=env, json_output=False)
    _learned(lab, router, host_route, gw_ip)
    osc("floating", "ip", "delete", fip["id"], env=env, json_output=False)
    _gone(lab, router, host_route)


def test_ipv6_speaker_announces_the_scoped_prefix(reach):
    lab, router = reach
    env = lab.server.env
    router.start(ipv6=True)
    scope = osc("address", "scope", "create", "--share", "--ip-version", "6", _name("s6"),
                env=env)["id"]
    ext_pool = osc("subnet", "pool", "create", "--pool-prefix", EXT6_CIDR, "--address-scope",
                   scope, _name("extpool6"), env=env)["id"]
    pool = osc("subnet", "pool", "create", "--pool-prefix", V6_POOL, "--address-scope",
               scope, "--default-prefix-length", "64", _name("pool6"), env=env)["id"]
    ext = osc("network", "create", "--external", "--provider-network-type", "flat",
              "--provider-physical-network", "physnet1", _name("ext6"), env=env)["id"]
    ext_sub = osc("subnet", "create", "--network", ext, "--ip-version", "6", "--subnet-pool",
                  ext_pool, "--subnet-range", EXT6_CIDR, "--gateway", EXT6_GW, "--no-dhcp",
                  _name("extsub6"), env=env)["id"]
    net = osc("network", "create", _name("in6"), env=env)["id"]
    sub = osc("subnet", "create", "--network", net, "--ip-version", "6", "--subnet-pool", pool,
              "--subnet-range", "2001:db8:100:1::/64", _name("in6"), env=env)
    # A subnet without a pool (no scope): neither announced nor reachable from outside.
    loose = osc("network", "create", _name("loose6"), env=env)["id"]
    loose_sub = osc("subnet", "create", "--network", loose, "--ip-version", "6",
                    "--subnet-range", "2001:db8:200:1::/64", _name("loose6"), env=env)
    router_id = osc("router", "create", _name("router6"), env=env)["id"]
    osc("router", "set", router_id, "--external-gateway", ext, env=env, json_output=False)
    for s in (sub, loose_sub):
        osc("router", "add", "subnet", router_id, s["id"], env=env, json_output=False)
    for rp in osc("port", "list", "--router", router_id, env=env):
        wait_active(env, rp["ID"])
    info = osc("router", "show", router_id, env=env)["external_gateway_info"]
    gw6 = next(ip["ip_address"] for ip in info["external_fixed_ips"]
               if ip["subnet_id"] == ext_sub)
    assert ipaddress.ip_address(gw6) in ipaddress.ip_network(EXT6_CIDR)
    speaker = _speaker(env, ext, ip_version=6, peer_ip=ROUTER_UL6)
    routes = osc("bgp", "speaker", "list", "advertised", "routes", speaker, env=env)
    assert [(r["Destination"], r["Nexthop"]) for r in routes] == [(sub["cidr"], gw6)], routes
    _learned(lab, router, sub["cidr"], gw6)
    assert router.next_hop_of(loose_sub["cidr"]) is None

    # The remote host reaches an instance on the scoped subnet by its own IPv6 address, and
    # the instance sees the remote host's.
    sg = _open_group(env)
    a = wait_active(env, bound_port(env, net, "h1", "a6", *sg)["id"])
    c = wait_active(env, bound_port(env, loose, "h1", "c6", *sg)["id"])
    ns_a, ns_c = lab.instance("h1", "a6"), lab.instance("h1", "c6")
    seen = wait_for("the remote host reaching a over IPv6",
                    lambda: tcp_peer(lab, ns_a, router.remote, ip_of(a)), timeout=30)
    assert seen == REMOTE6_IP, _dump(lab, router)
    assert tcp_peer(lab, router.remote, ns_a, REMOTE6_IP) == ip_of(a)
    # The unscoped subnet: blocked at the project router even with a static route to it.
    sh("ip", "-n", router.ns, "-6", "route", "add", loose_sub["cidr"], "via", gw6)
    assert tcp_peer(lab, ns_c, router.remote, ip_of(c)) == ""
    assert tcp_peer(lab, router.remote, ns_c, REMOTE6_IP) == ""
