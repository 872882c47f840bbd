"""Hours of churn, in short: ports, security group rules and routers come and go on two hosts.

Two lab hosts, one agent each. Four clients churn for ``NEUTRINO_SOAK_SECONDS`` (60 in CI; the
figure in docs/BENCHMARKS.md is a 30-minute run): ports bound to either host are created and
deleted (about 40 alive at a time), rules are added to and removed from security groups that
name each other as remote groups, and routers are created, given interfaces on the two
networks, stripped and deleted. Every answer must be a success. The resident memory and open
file descriptors of the server and both agents are sampled every few seconds: after the first
third (warm-up) they must stay flat. Finally everything is deleted and both hosts must be
exactly as their idle agents had them. The samples are written to ``soak.csv`` in the test's
temporary directory (``NEUTRINO_SOAK_CSV`` names another place).
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

from conftest import NeutrinoServer, _server_binary, unique
from dataplane_lab import Lab, needs_root, wait_for
from test_crash import _admin_token, _call, _host_snapshot

pytestmark = needs_root

SECONDS = float(os.environ.get("NEUTRINO_SOAK_SECONDS", "60"))
SAMPLE_EVERY = max(1.0, min(10.0, SECONDS / 30))
CLIENTS = 4
LIVE_PORTS = 40


def _usage(pid: int) -> tuple[float, int]:
    """(resident memory in MiB, open file descriptors) of a process."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


class Churn:
    def __init__(self, server: NeutrinoServer, token: str, networks, subnets, groups):
        self.server = server
        self.token = token
        self.networks = networks
        self.subnets = subnets
        self.groups = groups
        self.errors: list[str] = []
        self.operations = 0
        self.lock = threading.Lock()
        self.ports: list[str] = []

    def call(self, method: str, path: str, body=None, want=(200, 201, 204)):
        status, doc, _ = _call(self.server, self.token, method, path, body, timeout=60)
        with self.lock:
            self.operations += 1
            if status not in want:
                self.errors.append(f"{method} {path}: {status} {doc}")
        return status, doc

    def port_step(self, rng: random.Random) -> None:
        with self.lock:
            victim = self.ports.pop(0) if len(self.ports) >= LIVE_PORTS else None
        if victim:
            self.call("DELETE", f"/v2.0/ports/{victim}")
            return
        i = rng.randrange(len(self.networks))
        status, doc = self.call("POST", "/v2.0/ports", {"port": {
            "network_id": self.networks[i], "device_id": f"soak{rng.randrange(10)}",
            "device_owner": "compute:nova", "binding:host_id": rng.choice(("h1", "h2")),
            "security_groups": [rng.choice(self.groups)]}})
        if status == 201:
            with self.lock:
                self.ports.append(doc["port"]["id"])

    def rule_step(self, rng: random.Random, client: int) -> None:
        group, remote = rng.sample(self.groups, 2)
        # Each client's rules take their own ports: two clients drawing the same group, remote
        # and port at once would be refused (409 SecurityGroupRuleExists).
        port = 1024 + (client % CLIENTS) * 14000 + rng.randrange(14000)
        status, doc = self.call("POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": group, "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": port, "port_range_max": port,
            "remote_group_id": remote}})
        if status == 201:
            self.call("DELETE", f"/v2.0/security-group-rules/{doc['security_group_rule']['id']}")

    def router_step(self, rng: random.Random) -> None:
        status, doc = self.call("POST", "/v2.0/routers", {"router": {"name": unique("soak")}})
        if status != 201:
            return
        rid = doc["router"]["id"]
        # Interfaces by port: routers of several clients share the subnets (the gateway
        # address can be only one router's).
        interfaces = []
        for net in self.networks:
            status, doc = self.call("POST", "/v2.0/ports", {"port": {"network_id": net}})
            if status == 201:
                interfaces.append(doc["port"]["id"])
                self.call("PUT", f"/v2.0/routers/{rid}/add_router_interface",
                          {"port_id": interfaces[-1]})
        for port in interfaces:
            self.call("PUT", f"/v2.0/routers/{rid}/remove_router_interface", {"port_id": port})
        self.call("DELETE", f"/v2.0/routers/{rid}")

    def run(self, seed: int, until: float) -> None:
        """Client ``seed``'s churn (seeds are the clients' numbers, 0 to ``CLIENTS`` - 1)."""
        rng = random.Random(seed)
        while time.monotonic() < until:
            r = rng.random()
            if r < 0.6:
                self.port_step(rng)
            elif r < 0.9:
                self.rule_step(rng, seed)
            else:
                self.router_step(rng)


def _flat(samples: list[float], slack: float) -> bool:
    """After the warm-up third, the last third's peak exceeds the middle third's by less than
    ``slack``."""
    third = max(1, len(samples) // 3)
    middle, last = samples[third:2 * third], samples[2 * third:]
    return not middle or not last or max(last) <= max(middle) + slack


def test_churn_keeps_memory_and_descriptors_flat_and_leaves_nothing(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1", "h2"))
    try:
        lab.setup()
        idle = {h: _host_snapshot(lab, h) for h in lab.hosts}
        token, project = _admin_token(server)
        _call(server, token, "PUT", f"/v2.0/quotas/{project}",
              {"quota": {"port": -1, "security_group_rule": -1, "router": -1}})
        networks, subnets, groups = [], [], []
        for i in range(2):
            _, net, _ = _call(server, token, "POST", "/v2.0/networks",
                              {"network": {"name": unique("soak")}})
            networks.append(net["network"]["id"])
            _, sub, _ = _call(server, token, "POST", "/v2.0/subnets", {"subnet": {
                "network_id": networks[-1], "ip_version": 4, "cidr": f"10.93.{i}.0/24"}})
            subnets.append(sub["subnet"]["id"])
        for _ in range(3):
            _, sg, _ = _call(server, token, "POST", "/v2.0/security-groups",
                             {"security_group": {"name": unique("soak")}})
            groups.append(sg["security_group"]["id"])

        churn = Churn(server, token, networks, subnets, groups)
        until = time.monotonic() + SECONDS
        threads = [threading.Thread(target=churn.run, args=(i, until)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        processes = {"server": server.proc.pid,
                     **{f"agent {h}": lab.agents[h].pid for h in lab.hosts}}
        samples: list[tuple[float, dict[str, tuple[float, int]]]] = []
        begun = time.monotonic()
        while any(t.is_alive() for t in threads):
            samples.append((time.monotonic() - begun,
                            {name: _usage(pid) for name, pid in processes.items()}))
            time.sleep(SAMPLE_EVERY)
        for t in threads:
            t.join()
        assert not churn.errors, churn.errors[:5]
        for name in processes:
            assert lab.agents.get(name.removeprefix("agent "), server.proc).poll() is None, \
                f"{name} died"

        csv = Path(os.environ.get("NEUTRINO_SOAK_CSV", tmp_path / "soak.csv"))
        names = list(processes)
        lines = ["seconds," + ",".join(f"{n} rss MiB,{n} fds" for n in names)]
        for at, usage in samples:
            lines.append(f"{at:.0f}," + ",".join(f"{usage[n][0]:.1f},{usage[n][1]}"
                                                  for n in names))
        csv.write_text("\n".join(lines) + "\n")
        for name in names:
            rss = [u[name][0] for _, u in samples]
            fds = [u[name][1] for _, u in samples]
            # Memory: within 10 % (and 4 MiB) of the middle third's peak; descriptors: 8.
            assert _flat(rss, 4 + 0.1 * max(rss)), (name, "RSS grows", rss)
            assert _flat(fds, 8), (name, "descriptors grow", fds)

        # Everything away: both hosts back to what their idle agents had.
        for port in churn.ports:
            _call(server, token, "DELETE", f"/v2.0/ports/{port}")
        for sg in groups:
            status, doc, _ = _call(server, token, "DELETE", f"/v2.0/security-groups/{sg}")
            assert status == 204, doc
        for net in networks:
            status, doc, _ = _call(server, token, "DELETE", f"/v2.0/networks/{net}")
            assert status == 204, doc
        for host in lab.hosts:
            wait_for(f"{host} back to idle", lambda h=host: _host_snapshot(lab, h) == idle[h],
                     timeout=120, interval=1)
        first, last = samples[0][1], samples[-1][1]
        print(f"\nsoak {SECONDS:.0f} s, {churn.operations} operations, 0 errors; "
              + "; ".join(f"{n} RSS {first[n][0]:.1f}->{last[n][0]:.1f} MiB, "
                          f"fds {first[n][1]}->{last[n][1]}" for n in names)
              + f"; samples in {csv}")
    finally:
        lab.teardown()
        server.stop()
