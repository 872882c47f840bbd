"""A BGP speaker announces tenant prefixes to a router: ``neutrino agent --bgp`` runs BIRD.

One lab host runs its agent with ``--bgp`` (the server schedules the speaker there); a second
BIRD, in a namespace of its own on the lab's underlay, plays the physical router the speaker
peers with. Through the ``openstack`` CLI: an address scope with two subnet pools, an external
network and a tenant subnet in the scope, a router between them, a speaker with the external
network and a peer pointing at the router-BIRD. The router-BIRD must learn the tenant prefix
with the router's gateway address as BGP next hop (``birdc show route all``), lose it when
the router's interface or gateway goes (and learn it again when they come back), and when
the peer or the network is removed from the speaker; and the agent must report the
peer ``Established`` in its BGP agent entry. A second case uses an MD5 password on both
sides. ``bird`` outlives its agent: a killed one comes back, the agent's shutdown leaves
it running, a restarted agent adopts it (the router's session keeps its ``since`` and the
route never disappears), deleting the speaker stops it. With two BGP hosts, killing the
speaker's host moves the speaker to the other one and the router learns the prefix again
through the other host's session.

Underlay addresses are from 198.18.0.0/15 (the lab's hosts: 198.18.0.x; the router-BIRD:
198.18.0.100; the external network: 198.19.0.0/24). Everything created is deleted: the lab's
namespaces (the router's with them), and the router-BIRD is stopped first.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import threading
import time
import uuid

import pytest

from conftest import NeutrinoServer, _server_binary, osc, osc_run
from dataplane_lab import Lab, needs_root, sh, stop_bird, wait_for

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

    def configure(self, speaker_ip: str | list[str], password: str | None = None) -> None:
        """A session to each of the speaker addresses: ``speaker`` for the first, then
        ``speaker2``, ``speaker3`` ..."""
        ips = [speaker_ip] if isinstance(speaker_ip, str) else list(speaker_ip)
        auth = f'  password "{password}";\n' if password else ""
        vias = " ".join(f"via {ip}" for ip in ips)
        sessions = "".join(
            f"protocol bgp {self.protocol(i)} {{\n"
            f"  local {ROUTER_IP} as {ROUTER_AS};\n"
            f"  neighbor {ip} as {SPEAKER_AS};\n"
            "  multihop;\n"
            # A lab router retries within a second or two, not BIRD's default two minutes.
            "  connect delay time 1; connect retry time 2; error wait time 1, 5;\n"
            f"{auth}"
            "  ipv4 { import all; export none; };\n"
            "}\n" for i, ip in enumerate(ips))
        self.conf.write_text(
            f"router id {ROUTER_IP};\n"
            f'log "{self.dir / "bird.log"}" all;\n'
            "protocol device { }\n"
            # The external network lies behind the speakers' hosts: BGP next hops there
            # resolve.
            f"protocol static {{ ipv4; route {EXT_CIDR} {vias}; }}\n"
            f"{sessions}")
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

    @staticmethod
    def protocol(index: int) -> str:
        return "speaker" if index == 0 else f"speaker{index + 1}"

    def session(self, name: str = "speaker") -> str:
        return self.birdc("show", "protocols", name)

    def session_since(self, name: str = "speaker") -> tuple[str, str] | None:
        """(state, since) of an Established session, else None."""
        for line in self.session(name).splitlines():
            cols = line.split()
            if cols and cols[0] == name and "Established" in cols:
                return cols[3], " ".join(cols[4:cols.index("Established")])
        return None

    def learned_from(self, prefix: str) -> list[str]:
        """The sessions the router has a route for ``prefix`` from (``[speaker2 ...]``)."""
        out = self.birdc("show", "route", "all", prefix)
        return re.findall(r"\[(speaker\d*) ", out)

    def stop(self) -> None:
        stop_bird(self.pid_file)


@contextlib.contextmanager
def _bgp_hosts(tmp_path, hosts: tuple[str, ...], server_args: list[str] | None = None):
    """A lab whose hosts all run ``--bgp``, and the router-BIRD; everything stopped after."""
    server = NeutrinoServer(_server_binary(), tmp_path / "server",
                            extra_args=server_args).start()
    lab = Lab(server, tmp_path, hosts)
    for host in hosts:
        lab.agent_args[host] = ["--bgp"]
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


@pytest.fixture
def bgp_lab(tmp_path):
    with _bgp_hosts(tmp_path, ("h1",)) as lab_and_router:
        yield lab_and_router


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _scoped_topology(env, details: bool = False) -> tuple[str, ...]:
    """External network and tenant subnet in one address scope, a router between them.
    Returns (external network id, tenant subnet CIDR, router gateway address), and with
    ``details`` the router's and the subnet's ids too."""
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
    if details:
        return ext, sub["cidr"], gw_ip, router, sub["id"]
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


def _bgp_agent_conf(env, host: str) -> dict:
    """The ``configuration`` of the host's BGP dynamic routing agent entry."""
    agents = osc("network", "agent", "list", "--host", host, env=env)
    bgp = [a["ID"] for a in agents if a["Agent Type"] == "BGP dynamic routing agent"]
    assert len(bgp) == 1, agents
    return osc("network", "agent", "show", bgp[0], env=env)["configuration"]


def _peer_states(env, host: str) -> dict:
    """``neutrino:peer_states`` of the host's BGP dynamic routing agent entry."""
    return _bgp_agent_conf(env, host).get("neutrino:peer_states") or {}


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
    ext, cidr, gw_ip, project_router, subnet = _scoped_topology(env, details=True)
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
    # ... and reports it to the server, in its BGP agent entry.
    wait_for("the peer Established at the server",
             lambda: _peer_states(env, "h1").get(peer) == "Established", interval=1)
    conf = _bgp_agent_conf(env, "h1")
    assert (conf["bgp_speakers"], conf["bgp_peers"], conf["advertise_routes"]) == (1, 1, 1), conf

    # The router's interface on the subnet goes: withdrawn; back: announced again.
    osc("router", "remove", "subnet", project_router, subnet, env=env, json_output=False)
    _withdrawn(lab, router, cidr)
    osc("router", "add", "subnet", project_router, subnet, env=env, json_output=False)
    _announced(lab, router, cidr, gw_ip)
    # The router's gateway goes: withdrawn; back (same scope): announced via its new address.
    osc("router", "unset", "--external-gateway", project_router, env=env, json_output=False)
    _withdrawn(lab, router, cidr)
    osc("router", "set", "--external-gateway", ext, project_router, env=env, json_output=False)
    info = osc("router", "show", project_router, env=env)["external_gateway_info"]
    gw_ip = info["external_fixed_ips"][0]["ip_address"]
    _announced(lab, router, cidr, gw_ip)

    # Unbinding the gateway network withdraws the prefix; the session stays up.
    osc_run("bgp", "speaker", "remove", "network", speaker, ext, env=env)
    _withdrawn(lab, router, cidr)
    assert "Established" in router.session()
    osc_run("bgp", "speaker", "add", "network", speaker, ext, env=env)
    _announced(lab, router, cidr, gw_ip)

    # Removing the peer ends the session: the router forgets the prefix.
    osc_run("bgp", "speaker", "remove", "peer", speaker, peer, env=env)
    _withdrawn(lab, router, cidr)
    wait_for("the peer gone from the agent entry",
             lambda: peer not in _peer_states(env, "h1"), interval=1)

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


def _speaker_on_router(env, ext):
    speaker, peer = _speaker_with_peer(env)
    osc_run("bgp", "speaker", "add", "network", speaker, ext, env=env)
    osc_run("bgp", "speaker", "add", "peer", speaker, peer, env=env)
    return speaker, peer


def _bird_pid(lab: Lab, host: str) -> int | None:
    try:
        return int((lab.state_dir(host) / "bgp" / "pid").read_text().strip())
    except (OSError, ValueError):
        return None


def test_agent_restarts_a_dead_bird_and_bird_outlives_the_agent(bgp_lab):
    lab, router = bgp_lab
    env = lab.server.env
    router.configure(lab.tunnel_ip("h1"))
    ext, cidr, gw_ip = _scoped_topology(env)
    speaker, _ = _speaker_on_router(env, ext)
    _announced(lab, router, cidr, gw_ip)
    pid = _bird_pid(lab, "h1")
    os.kill(pid, signal.SIGKILL)
    wait_for("a new bird", lambda: _bird_pid(lab, "h1") not in (None, pid), timeout=30)
    _announced(lab, router, cidr, gw_ip)
    new_pid = _bird_pid(lab, "h1")
    # The agent's shutdown leaves bird running: the router keeps the route.
    lab.stop_agent("h1")
    assert os.path.exists(f"/proc/{new_pid}"), "bird ended with the agent"
    assert router.next_hop_of(cidr) == gw_ip
    # The agent comes back and adopts it; deleting the speaker stops it.
    lab.start_agent("h1")
    assert _bird_pid(lab, "h1") == new_pid
    osc_run("bgp", "speaker", "delete", speaker, env=env)
    wait_for("bird stopped", lambda: not os.path.exists(f"/proc/{new_pid}"), timeout=30)
    # The agent removes bird's files after the process is gone: wait for that too.
    wait_for("bird's files removed", lambda: not (lab.state_dir("h1") / "bgp").exists(),
             timeout=30)
    _withdrawn(lab, router, cidr)


def test_agent_restart_keeps_the_session_and_the_route(bgp_lab):
    lab, router = bgp_lab
    env = lab.server.env
    router.configure(lab.tunnel_ip("h1"))
    ext, cidr, gw_ip = _scoped_topology(env)
    _speaker_on_router(env, ext)
    _announced(lab, router, cidr, gw_ip)
    before = wait_for("the router's session Established", router.session_since)
    pid = _bird_pid(lab, "h1")
    conf = (lab.state_dir("h1") / "bgp" / "bird.conf").read_text()

    # Poll the route at the router all through the restart.
    missing: list[str] = []
    polls = [0]
    done = threading.Event()

    def poll():
        while not done.is_set():
            hop = router.next_hop_of(cidr)
            polls[0] += 1
            if hop != gw_ip:
                missing.append(f"{time.monotonic():.1f}: {hop!r}")
            time.sleep(0.2)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        lab.stop_agent("h1")
        time.sleep(3)  # a few of the agent's 5 s BGP passes would have happened
        lab.start_agent("h1")
        # The new agent looked at its speakers (its status lists the session again).
        wait_for("the restarted agent's session up", lambda: any(
            s.startswith("up Established")
            for s in lab.status("h1").get("bgp_sessions", {}).values()), timeout=60)
        time.sleep(2)
    finally:
        done.set()
        poller.join()
    assert polls[0] > 10, polls
    assert not missing, f"the route disappeared during the agent restart: {missing}{_dump(lab, router)}"
    assert router.session_since() == before, f"{router.session()}{_dump(lab, router)}"
    assert _bird_pid(lab, "h1") == pid
    assert (lab.state_dir("h1") / "bgp" / "bird.conf").read_text() == conf
    log = (lab.tmp / "agent-h1.log").read_text(errors="replace")
    assert "adopting the running bird" in log, log[-3000:]


@pytest.fixture
def bgp_lab2(tmp_path):
    """Two BGP agents; the server declares an agent dead after 6 s without heartbeat."""
    with _bgp_hosts(tmp_path, ("h1", "h2"), ["--agent-down-time", "6"]) as lab_and_router:
        yield lab_and_router


def _hosting(env, speaker) -> list[str]:
    return sorted(a["Host"] for a in osc("bgp", "dragent", "list", "--bgp-speaker", speaker,
                                         env=env))


def test_speaker_moves_off_a_dead_host_and_routes_come_back(bgp_lab2):
    lab, router = bgp_lab2
    env = lab.server.env
    router.configure([lab.tunnel_ip("h1"), lab.tunnel_ip("h2")])
    ext, cidr, gw_ip = _scoped_topology(env)
    speaker, peer = _speaker_on_router(env, ext)
    hosts = wait_for("the speaker scheduled", lambda: _hosting(env, speaker))
    assert len(hosts) == 1, hosts
    dead = hosts[0]
    alive = "h2" if dead == "h1" else "h1"
    session = {h: router.protocol(lab.hosts.index(h)) for h in lab.hosts}
    _announced(lab, router, cidr, gw_ip)
    assert router.learned_from(cidr) == [session[dead]], router.birdc("show", "route", "all")
    assert _bird_pid(lab, alive) is None

    # The host dies: its agent and its bird are killed.
    proc = lab.agents.pop(dead)
    proc.kill()
    proc.wait(timeout=10)
    os.kill(_bird_pid(lab, dead), signal.SIGKILL)
    _withdrawn(lab, router, cidr)

    wait_for(f"the speaker moved to {alive}", lambda: _hosting(env, speaker) == [alive],
             timeout=90, interval=1)
    _announced(lab, router, cidr, gw_ip)
    assert router.learned_from(cidr) == [session[alive]], router.birdc("show", "route", "all")
    assert router.session_since(session[alive]) is not None
    wait_for(f"{alive} reports the peer Established",
             lambda: _peer_states(env, alive).get(peer) == "Established", interval=1)
