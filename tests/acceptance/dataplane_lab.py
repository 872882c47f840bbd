"""A lab of "hosts" for kernel dataplane tests: namespaces on one underlay bridge, one agent each.

Each host is a network namespace on one underlay bridge (its own namespace too), with its own
``neutrino agent`` (``--dataplane-netns`` puts the host's bridges, VXLAN devices and taps in
that namespace; the agent process talks to the server on 127.0.0.1). Instances are the
namespaces the agents create for the ports bound to their host. Every namespace a lab creates
is deleted by its teardown, and traffic never leaves them. Test modules import the ``lab``
fixture and the helpers from here.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import NeutrinoServer, _server_binary, osc

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("ping"),
    reason="needs root, iproute2 and ping (kernel dataplane tests)")

WAIT = 30.0


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


def wait_for(what: str, predicate, timeout: float = WAIT, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Lab:
    """An underlay, hosts on it, one agent per host, all against one server."""

    def __init__(self, server: NeutrinoServer, tmp: Path, hosts: tuple[str, ...],
                 beside: "Lab | None" = None):
        """``beside``: another lab whose underlay this one joins (another deployment on the
        same physical network); its hosts' tunnel addresses follow that lab's."""
        self.server = server
        self.tmp = tmp
        self.tag = uuid.uuid4().hex[:5]
        self.shared_underlay = beside is not None
        self.underlay = beside.underlay if beside else f"nt{self.tag}-ul"
        self.first = beside.first + len(beside.hosts) if beside else 0
        self.hosts = hosts
        self.agents: dict[str, subprocess.Popen] = {}
        # Extra `neutrino agent` arguments per host (e.g. interface mappings).
        self.agent_args: dict[str, list[str]] = {}

    def host_ns(self, host: str) -> str:
        return f"nt{self.tag}-{host}"

    def prefix(self, host: str) -> str:
        return f"nt{self.tag}{host}-"

    def tunnel_ip(self, host: str) -> str:
        return f"198.18.0.{self.first + self.hosts.index(host) + 1}"

    def instance(self, host: str, device: str) -> str:
        return f"{self.prefix(host)}vm-{device}"

    def setup(self) -> "Lab":
        if not self.shared_underlay:
            sh("ip", "netns", "add", self.underlay)
            sh("ip", "-n", self.underlay, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.underlay, "link", "set", "br0", "up")
        for i, host in enumerate(self.hosts, start=self.first):
            ns = self.host_ns(host)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"ul{i}", "netns", self.underlay, "type", "veth",
               "peer", "name", "uplink", "netns", ns)
            sh("ip", "-n", self.underlay, "link", "set", f"ul{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.tunnel_ip(host)}/24", "dev", "uplink")
            sh("ip", "-n", ns, "link", "set", "uplink", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for host in self.hosts:
            self.start_agent(host)
        return self

    def status_path(self, host: str) -> Path:
        return self.tmp / f"agent-{host}.json"

    def status(self, host: str) -> dict:
        try:
            return json.loads(self.status_path(host).read_text())
        except (OSError, ValueError):
            return {}

    def start_agent(self, host: str, timeout: float = WAIT) -> None:
        self.status_path(host).unlink(missing_ok=True)
        log = open(self.tmp / f"agent-{host}.log", "ab")
        env = dict(self.server.env)
        env["RUST_LOG"] = os.environ.get("NEUTRINO_LAB_LOG", "info")
        self.agents[host] = subprocess.Popen(
            [_server_binary(), "agent", "--host", host, "--tunnel-ip", self.tunnel_ip(host),
             "--netns-prefix", self.prefix(host), "--dataplane-netns", self.host_ns(host),
             "--status-file", str(self.status_path(host)), "--report-interval", "2",
             "--state-dir", str(self.state_dir(host)),
             "--server", self.server.url, *self.agent_args.get(host, [])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        log.close()
        wait_for(f"agent {host} to reconcile", lambda: self.status(host).get("reconciles"),
                 timeout=timeout)

    def state_dir(self, host: str) -> Path:
        return self.tmp / f"state-{host}"

    def dnsmasq_pids(self, host: str) -> dict[str, int]:
        """The DHCP servers an agent started, by namespace, from their pid files."""
        return self.daemon_pids(host, "dhcp")

    def daemon_pids(self, host: str, kind: str) -> dict[str, int]:
        """The daemons of one kind (``dhcp``: dnsmasq, ``ra``: radvd) an agent started, by
        namespace, from their pid files."""
        pids = {}
        for pid_file in (self.state_dir(host) / kind).glob("*/pid"):
            try:
                pids[pid_file.parent.name] = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                pass
        return pids

    def stop_agent(self, host: str) -> None:
        proc = self.agents.pop(host)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def teardown(self) -> None:
        for host in list(self.agents):
            self.stop_agent(host)
        for host in self.hosts:
            # The BGP agents' bird outlives its agent (it keeps the sessions over a restart).
            stop_bird(self.state_dir(host) / "bgp" / "pid")
            # So does the encrypted overlay's WireGuard device (--encrypt-overlay).
            for pid in [*self.dnsmasq_pids(host).values(), *self.daemon_pids(host, "ra").values(),
                        *self.daemon_pids(host, "overlay").values()]:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        names = sh("ip", "netns", "list", check=False).stdout.split()
        for name in names:
            if name.startswith(f"nt{self.tag}"):
                sh("ip", "netns", "del", name, check=False)

    def exec(self, ns: str, *cmd: str, check: bool = True, timeout: float = 30):
        return sh("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout)

    def pings(self, ns: str, address: str, count: int = 1) -> bool:
        r = self.exec(ns, "ping", "-c", str(count), "-W", "1", address, check=False)
        return r.returncode == 0

    def kernel_dump(self, host: str) -> str:
        """Links, addresses, routes and forwarding entries of a host and its instances."""
        out = []
        ns = self.host_ns(host)
        out.append(sh("ip", "-n", ns, "-d", "link", "show").stdout)
        # Entries the bridges learn from traffic come and go by themselves.
        out.extend(line for line in sh("bridge", "-n", ns, "fdb", "show").stdout.splitlines()
                   if "permanent" in line or "static" in line)
        for name in sorted(sh("ip", "netns", "list").stdout.split()):
            if name.startswith(self.prefix(host)):
                out.append(f"== {name}")
                for what in (["-d", "link", "show"], ["addr", "show"], ["route", "show"],
                             ["-6", "route", "show"]):
                    out.append(sh("ip", "-n", name, *what).stdout)
        out.append(sh("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout)
        # Timers, counters and duplicate address detection move by themselves; everything
        # else must stay as it was.
        text = re.sub(r"(\w*timer)\s+[\d.]+", r"\1 -", "\n".join(out))
        text = re.sub(r"packets \d+ bytes \d+", "counter", text)
        return text.replace(" tentative", "")


@pytest.fixture
def lab(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1", "h2"))
    try:
        yield lab.setup()
    finally:
        lab.teardown()
        server.stop()


def upper_pool(cidr: str) -> list[str]:
    """``--allocation-pool`` arguments keeping the addresses below ``.100`` of an IPv4 ``/24``
    (or larger) subnet out of the pool.  Neutron picks pool addresses at random, so a test that
    later asks for a fixed address (``.10``, ``.50``, ``.99``) takes it from below ``.100``,
    where no DHCP port or router gateway can have landed first."""
    net = ipaddress.ip_network(cidr)
    start, end = net.network_address + 100, net.broadcast_address - 1
    return ["--allocation-pool", f"start={start},end={end}"]


def network_with_subnet(env, cidr: str) -> tuple[str, str]:
    net = osc("network", "create", f"dp-{uuid.uuid4().hex[:6]}", env=env)["id"]
    sub = osc("subnet", "create", "--network", net, "--subnet-range", cidr, *upper_pool(cidr),
              f"dp-{uuid.uuid4().hex[:6]}", env=env)["id"]
    return net, sub


def bound_port(env, net: str, host: str, device: str, *extra: str) -> dict:
    return osc("port", "create", "--network", net, "--host", host, "--device", device,
               *extra, f"dp-{device}", env=env)


def wait_active(env, port_id: str) -> dict:
    def active():
        p = osc("port", "show", port_id, env=env)
        return p if p["status"] == "ACTIVE" else None
    return wait_for(f"port {port_id} ACTIVE", active)


def ip_of(port: dict) -> str:
    return port["fixed_ips"][0]["ip_address"]


def stop_bird(pid_file: Path) -> None:
    """Stops the ``bird`` a pid file names (if any)."""
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def tcp_exchange(lab: Lab, server_ns: str, server_ip: str, client_ns: str) -> str:
    """Sends a line over TCP from one instance to another; returns what the server got."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "python3", "-c",
         "import socket,sys\n"
         "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('{server_ip}', 5001)); s.listen(1); s.settimeout(15)\n"
         "c,_=s.accept(); print(c.recv(100).decode(), flush=True)"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    lab.exec(client_ns, "python3", "-c",
             "import socket\n"
             f"s=socket.create_connection(('{server_ip}', 5001), timeout=5); s.sendall(b'hello-tcp')")
    out, _ = listener.communicate(timeout=20)
    return out.strip()


def tcp_peer(lab: Lab, server_ns: str, client_ns: str, target: str, port: int = 5003,
             target_port: int | None = None) -> str:
    """Connects from one namespace to ``target`` (IPv4 or IPv6) on ``target_port`` (default:
    the port the server listens on, ``port``); returns the source address the server saw
    (empty when the connection did not get through)."""
    family, anywhere = ("AF_INET6", "::") if ":" in target else ("AF_INET", "0.0.0.0")
    listener = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "python3", "-c",
         "import socket\n"
         f"s=socket.socket(socket.{family}); "
         "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('{anywhere}', {port})); s.listen(1); s.settimeout(6)\n"
         "try:\n"
         "    c,peer=s.accept(); print(peer[0], flush=True)\n"
         "except OSError:\n"
         "    pass"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    lab.exec(client_ns, "python3", "-c",
             "import socket\n"
             "try:\n"
             f"    socket.create_connection(('{target}', {target_port or port}), timeout=3).close()\n"
             "except OSError:\n"
             "    pass", check=False)
    out, _ = listener.communicate(timeout=20)
    return out.strip()
