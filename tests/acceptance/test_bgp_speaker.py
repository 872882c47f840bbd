"""A BGP speaker announces tenant prefixes to a router: ``neutrino agent --bgp`` runs BIRD.

One lab host runs its agent with ``--bgp`` (the server schedules the speaker there); a second
BIRD, in a namespace of its own on the lab's underlay, plays the physical router the speaker
peers with. Through the ``openstack`` CLI: an address scope with two subnet pools, an external
network and a tenant subnet in the scope, a router between them, a speaker with the external
network and a peer pointing at the router-BIRD. The router-BIRD must learn the tenant prefix
with the router's gateway address as BGP next hop (``birdc show route all``), and lose it
when the peer or the network is removed from the speaker. A second case uses an MD5
password on both sides.

Underlay addresses are from 198.18.0.0/15 (the lab's hosts: 198.18.0.x; the router-BIRD:
198.18.0.100; the external network: 198.19.0.0/24). Everything created is deleted: the lab's
namespaces (the router's with them), and the router-BIRD is stopped first.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid

import pytest

from conftest import NeutrinoServer, _server_binary, osc, osc_run
from dataplane_lab import Lab, needs_root, sh, wait_for

pytestmark = [needs_root]

ROUTER_IP = "198.18.0.100"
ROUTER_AS = 64513
SPEAKER_AS = 64512
EXT_CIDR = "198.19.0.0/24"
TENANT_POOL = "10.66.0.0/16"


@pytest.fixture(autouse=True)
def _bird_installed():
    missing = [p for p in ("bird", "birdc") if not shutil.which(p)]
    if missing:
        reason = f"BIRD 2 is not installed ({', '.join(missing)} missing: apt-get install bird2)"
        print(reason)
        pytest.skip(reason)


class RouterBird:
    """The "physical router": a BIRD in its own namespace on the lab's underlay bridge."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.ns = f"nt{lab.tag}-rtr"
        self.dir = lab.tmp / "router-bird"
        self.dir.mkdir()
        self.sock = str(self.dir / "bird.ctl")
        self.conf = self.dir / "bird.conf"
        self.pid_file = self.dir / "pid"

    def setup(self) -> "RouterBird":
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", "ulrtr", "netns", self.lab.underlay, "type", "veth",
           "peer", "name", "eth0", "netns", self.ns)
        sh("ip", "-n", self.lab.underlay, "link", "set", "ulrtr", "master", "br0", "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{ROUTER_IP}/24", "dev", "eth0")
        sh("ip", "-n", self.ns, "link", "set", "eth0", "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        return self

    def configure(self, speaker_ip: str, password: str | None = None) -> None:
        auth = f'  password "{password}";\n' if password else ""
        self.conf.write_text(
            f"router id {ROUTER_IP};\n"
            f'log "{self.dir / "bird.log"}" all;\n'
            "protocol device { }\n"
            # The external network lies behind the speaker's host: BGP next hops there resolve.
            f"protocol static {{ ipv4; route {EXT_CIDR} via {speaker_ip}; }}\n"
            "protocol bgp speaker {\n"
            f"  local {ROUTER_IP} as {ROUTER_AS};\n"
            f"  neighbor {speaker_ip} as {SPEAKER_AS};\n"
            "  multihop;\n"
            f"{auth}"
            "  ipv4 { import all; export none; };\n"
            "}\n")
        if self.pid_file.exists():
            out = self.birdc("configure")
            assert "Reconfigur" in out, out
        else:
            sh("ip", "netns", "exec", self.ns, "bird", "-c", str(self.conf), "-s", self.sock,
               "-P", str(self.pid_file))

    def birdc(self, *args: str) -> str:
        return sh("ip", "netns", "exec", self.ns, "birdc", "-s", self.sock, *args,
                  check=False).stdout

    def next_hop_of(self, prefix: str) -> str | None:
        """The BGP next hop the router learned for ``prefix`` (None: no such route)."""
        out = self.birdc("show", "route", "all", prefix)
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("BGP.next_hop:"):
                return line.split(":", 1)[1].strip()
        return None

    def session(self) -> str:
        return self.birdc("show", "protocols", "speaker")

    def stop(self) -> None:
        try:
            os.kill(int(self.pid_file.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


@pytest.fixture
def bgp_lab(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1",))
    lab.agent_args["h1"] = ["--bgp"]
    router = None
    try:
        lab.setup()
        router = RouterBird(lab).setup()
        yield lab, router
    finally:
        if router is not None:
            router.stop()
        lab.teardown()
        server.stop()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _scoped_topology(env) -> tuple[str, str, str]:
    """External network and tenant subnet in one address scope, a router between them.
    Returns (external network id, tenant subnet CIDR, router gateway address)."""
    scope = osc("address", "scope", "create", "--share", "--ip-version", "4", _name("scope"),
                env=env)["id"]
    ext_pool = osc("subnet", "pool", "create", "--pool-prefix", EXT_CIDR, "--address-scope",
                   scope, _name("extpool"), env=env)["id"]
    pool = osc("subnet", "pool", "create", "--pool-prefix", TENANT_POOL, "--address-scope",
               scope, _name("pool"), env=env)["id"]
    ext = osc("network", "create", "--external", _name("ext"), env=env)["id"]
    osc("subnet", "create", "--network", ext, "--subnet-pool", ext_pool, "--subnet-range",
        EXT_CIDR, _name("extsub"), env=env)
    net = osc("network", "create", _name("tenant"), env=env)["id"]
    sub = osc("subnet", "create", "--network", net, "--subnet-pool", pool, "--subnet-range",
              "10.66.1.0/24", _name("sub"), env=env)
    router = osc("router", "create", _name("router"), env=env)["id"]
    osc_run("router", "set", router, "--external-gateway", ext, env=env)
    osc_run("router", "add", "subnet", router, sub["id"], env=env)
    info = osc("router", "show", router, env=env)["external_gateway_info"]
    gw_ip = info["external_fixed_ips"][0]["ip_address"]
    return ext, sub["cidr"], gw_ip


def _speaker_with_peer(env, password: str | None = None) -> tuple[str, str]:
    speaker = osc("bgp", "speaker", "create", "--local-as", str(SPEAKER_AS), _name("speaker"),
                  env=env)["id"]
    auth = ["--auth-type", "md5", "--password", password] if password else []
    peer = osc("bgp", "peer", "create", "--peer-ip", ROUTER_IP, "--remote-as", str(ROUTER_AS),
               *auth, _name("peer"), env=env)["id"]
    return speaker, peer


def _dump(lab: Lab, router: RouterBird) -> str:
    agent_log = (lab.tmp / "agent-h1.log").read_text(errors="replace")[-4000:]
    conf = lab.state_dir("h1") / "bgp" / "bird.conf"
    return (f"\n-- speaker bird.conf:\n{conf.read_text() if conf.exists() else '(none)'}"
            f"\n-- router session:\n{router.session()}\n-- agent log tail:\n{agent_log}")


def _announced(lab, router, cidr, gw_ip):
    try:
        wait_for(f"{cidr} via {gw_ip} at the router",
                 lambda: router.next_hop_of(cidr) == gw_ip, timeout=60, interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}{_dump(lab, router)}") from None


def _withdrawn(lab, router, cidr):
    try:
        wait_for(f"{cidr} withdrawn at the router",
                 lambda: router.next_hop_of(cidr) is None, timeout=60, interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}{_dump(lab, router)}") from None


def test_speaker_announces_tenant_prefix_and_withdraws_it(bgp_lab):
    lab, router = bgp_lab
    env = lab.server.env
    speaker_ip = lab.tunnel_ip("h1")
    router.configure(speaker_ip)
    ext, cidr, gw_ip = _scoped_topology(env)
    speaker, peer = _speaker_with_peer(env)
    # The only BGP agent hosts it.
    wait_for("the speaker on h1's BGP agent", lambda: [
        a for a in osc("bgp", "dragent", "list", "--bgp-speaker", speaker, env=env)
        if a.get("Host") == "h1"])
    osc_run("bgp", "speaker", "add", "network", speaker, ext, env=env)
    osc_run("bgp", "speaker", "add", "peer", speaker, peer, env=env)
    routes = osc("bgp", "speaker", "list", "advertised", "routes", speaker, env=env)
    assert [(r["Destination"], r["Nexthop"]) for r in routes] == [(cidr, gw_ip)], routes
    _announced(lab, router, cidr, gw_ip)
    assert "Established" in router.session()
    # The agent sees the session up too (its status file; its log says so).
    wait_for("the agent's session up", lambda: any(
        s.startswith("up Established")
        for s in lab.status("h1").get("bgp_sessions", {}).values()))

    # Unbinding the gateway network withdraws the prefix; the session stays up.
    osc_run("bgp", "speaker", "remove", "network", speaker, ext, env=env)
    _withdrawn(lab, router, cidr)
    assert "Established" in router.session()
    osc_run("bgp", "speaker", "add", "network", speaker, ext, env=env)
    _announced(lab, router, cidr, gw_ip)

    # Removing the peer ends the session: the router forgets the prefix.
    osc_run("bgp", "speaker", "remove", "peer", speaker, peer, env=env)
    _withdrawn(lab, router, cidr)

    # Deleting the speaker stops the agent's bird.
    osc_run("bgp", "speaker", "delete", speaker, env=env)
    wait_for("bird stopped", lambda: not (lab.state_dir("h1") / "bgp").exists())


def test_md5_session(bgp_lab):
    lab, router = bgp_lab
    env = lab.server.env
    router.configure(lab.tunnel_ip("h1"), password="s3cret-md5")
    ext, cidr, gw_ip = _scoped_topology(env)
    speaker, peer = _speaker_with_peer(env, password="s3cret-md5")
    osc_run("bgp", "speaker", "add", "network", speaker, ext, env=env)
    osc_run("bgp", "speaker", "add", "peer", speaker, peer, env=env)
    _announced(lab, router, cidr, gw_ip)
    conf = (lab.state_dir("h1") / "bgp" / "bird.conf").read_text()
    assert 'password "s3cret-md5";' in conf
    # The wrong password on the router's side: no session, no route.
    router.configure(lab.tunnel_ip("h1"), password="wrong")
    router.birdc("restart", "speaker")
    _withdrawn(lab, router, cidr)
    assert "Established" not in router.session()


def test_agent_restarts_a_dead_bird_and_stops_it_on_shutdown(bgp_lab):
    lab, router = bgp_lab
    env = lab.server.env
    router.configure(lab.tunnel_ip("h1"))
    ext, cidr, gw_ip = _scoped_topology(env)
    speaker, peer = _speaker_with_peer(env)
    osc_run("bgp", "speaker", "add", "network", speaker, ext, env=env)
    osc_run("bgp", "speaker", "add", "peer", speaker, peer, env=env)
    _announced(lab, router, cidr, gw_ip)
    pid_file = lab.state_dir("h1") / "bgp" / "pid"
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    wait_for("a new bird", lambda: pid_file.exists() and pid_file.read_text().strip()
             and int(pid_file.read_text().strip()) != pid, timeout=30)
    _announced(lab, router, cidr, gw_ip)
    new_pid = int(pid_file.read_text().strip())
    lab.stop_agent("h1")
    assert not os.path.exists(f"/proc/{new_pid}"), "bird outlived the agent"
    _withdrawn(lab, router, cidr)
