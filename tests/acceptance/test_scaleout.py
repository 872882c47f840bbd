"""Several servers on one PostgreSQL behind HAProxy: throughput with 1, 2 and 3 servers, and a
server killed under load.

Three ``neutrino server`` processes share a fresh PostgreSQL database (``NEUTRINO_TEST_PG_URL``;
the test skips without it, or without ``haproxy``). HAProxy, started by the test, balances
three front ends over the first one, two and three servers (round robin, health checks on
``GET /``, a failed connection retried on another server).

- Throughput: eight clients of mixed writes (ports, networks, rules, renames, deletes) for
  ``NEUTRINO_SCALEOUT_SECONDS`` (5 in CI) through each front end; every answer a success; the
  writes per second are printed (the figures in docs/BENCHMARKS.md).
- A server killed: an agent (a lab host, root only) and the eight clients work through the
  three-server front end; the server holding the agent's watch is killed with SIGKILL part-way.
  Clients see only failures on the way (no answer, 502/503/504), which they retry; every write
  answered with a success is there afterwards; the agent resumes its watch on another server
  from its revision (no new snapshot) and a port bound to it after the kill turns ACTIVE.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import (NeutrinoServer, _psql, _server_binary, _with_database, client_env,
                      free_port, unique)
from test_crash import CLIENTS, Ledger, _call, _client, _verify_ledgers

SECONDS = float(os.environ.get("NEUTRINO_SCALEOUT_SECONDS", "5"))


class Endpoint:
    """A URL the test clients and agents talk to (a HAProxy front end)."""

    def __init__(self, url: str, openrc: dict[str, str]):
        self.url = url
        self.openrc = dict(openrc, OS_AUTH_URL=f"{url}/v3")

    @property
    def env(self) -> dict[str, str]:
        return client_env(self.openrc)


class HaProxy:
    def __init__(self, tmp: Path, servers: list[NeutrinoServer]):
        self.cfg = tmp / "haproxy.cfg"
        self.ports = [free_port() for _ in servers]
        lines = [
            "global", "  maxconn 2000",
            "defaults", "  mode http", "  timeout connect 2s", "  timeout client 120s",
            "  timeout server 120s", "  timeout tunnel 1h", "  retries 3", "  option redispatch",
            "  retry-on conn-failure empty-response", "  timeout check 5s",
        ]
        for n, port in enumerate(self.ports, start=1):
            lines += [f"frontend fe{n}", f"  bind 127.0.0.1:{port}", f"  default_backend be{n}",
                      f"backend be{n}", "  balance roundrobin", "  option httpchk",
                      "  http-check send meth GET uri / ver HTTP/1.1 hdr Host localhost"]
            lines += [f"  server s{i} 127.0.0.1:{s.port} check inter 1s fall 2 rise 1"
                      for i, s in enumerate(servers[:n], start=1)]
        self.cfg.write_text("\n".join(lines) + "\n")
        self.log = tmp / "haproxy.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HaProxy":
        check = subprocess.run(["haproxy", "-c", "-f", str(self.cfg)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        for port in self.ports:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, self.log.read_text(errors="replace")
                time.sleep(0.2)
        return self

    def url(self, servers: int) -> str:
        return f"http://127.0.0.1:{self.ports[servers - 1]}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def cluster(tmp_path):
    base_url = os.environ.get("NEUTRINO_TEST_PG_URL")
    if not base_url:
        pytest.skip("NEUTRINO_TEST_PG_URL is not set")
    if not shutil.which("haproxy"):
        pytest.skip("HAProxy is not installed (apt-get install haproxy)")
    dbname = f"neutrino_scale_{uuid.uuid4().hex[:12]}"
    _psql(base_url, f'CREATE DATABASE "{dbname}"')
    url = _with_database(base_url, dbname)
    password = "scale-" + secrets.token_hex(8)
    servers = [NeutrinoServer(_server_binary(), tmp_path / f"s{i}", database_url=url,
                              admin_password=password, name=f"neutrino-{i}")
               for i in range(1, 4)]
    proxy = None
    try:
        for s in servers:
            s.start()
        proxy = HaProxy(tmp_path, servers).start()
        yield servers, proxy
    finally:
        if proxy:
            proxy.stop()
        for s in servers:
            s.stop()
        _psql(base_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def _token(endpoint: Endpoint) -> tuple[str, str]:
    o = endpoint.openrc
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": o["OS_USERNAME"], "domain": {"name": "Default"}, "password": o["OS_PASSWORD"]}}},
        "scope": {"project": {"name": o["OS_PROJECT_NAME"], "domain": {"name": "Default"}}}}}
    status, doc, headers = _call(endpoint, None, "POST", "/v3/auth/tokens", body)
    assert status == 201, doc
    return headers["X-Subject-Token"], doc["token"]["project"]["id"]


def _workspace(endpoint: Endpoint, token: str, project: str, cidr: str) -> tuple[str, str]:
    """A network with a subnet and a security group for the writers; quotas lifted."""
    status, doc, _ = _call(endpoint, token, "PUT", f"/v2.0/quotas/{project}", {"quota": {
        "port": -1, "network": -1, "security_group_rule": -1, "subnet": -1}})
    assert status == 200, doc
    status, net, _ = _call(endpoint, token, "POST", "/v2.0/networks",
                           {"network": {"name": unique("scale")}})
    assert status == 201, net
    status, sub, _ = _call(endpoint, token, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net["network"]["id"], "ip_version": 4, "cidr": cidr}})
    assert status == 201, sub
    status, sg, _ = _call(endpoint, token, "POST", "/v2.0/security-groups",
                          {"security_group": {"name": unique("scale")}})
    assert status == 201, sg
    return net["network"]["id"], sg["security_group"]["id"]


def _writers(endpoint, token, net, sg, seed_base: int, retry: bool):
    ledgers = [Ledger() for _ in range(CLIENTS)]
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(endpoint, token, net, sg, seed_base + i,
                                                      ledgers[i], stop, retry))
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    return ledgers, stop, threads


def test_throughput_with_one_two_and_three_servers(cluster):
    servers, proxy = cluster
    figures = []
    for n in (1, 2, 3):
        endpoint = Endpoint(proxy.url(n), servers[0].openrc)
        token, project = _token(endpoint)
        net, sg = _workspace(endpoint, token, project, f"10.{100 + n}.0.0/16")
        ledgers, stop, threads = _writers(endpoint, token, net, sg, 100 * n, retry=False)
        time.sleep(SECONDS)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        errors = [e for ledger in ledgers for e in ledger.errors]
        assert not errors, errors[:5]
        acks = sum(ledger.acks for ledger in ledgers)
        assert acks > 0
        _verify_ledgers(endpoint, token, ledgers)
        figures.append((n, acks / SECONDS))
    print("\n" + "; ".join(f"{n} server{'s' if n > 1 else ''}: {rate:.0f} writes/s"
                            for n, rate in figures)
          + f" ({CLIENTS} clients, {SECONDS:.0f} s each, one PostgreSQL, HAProxy)")


def _watchers(server: NeutrinoServer, token: str) -> float:
    req = urllib.request.Request(server.url + "/metrics", headers={"X-Auth-Token": token})
    with urllib.request.urlopen(req, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("neutrino_feed_watchers "):
                return float(line.split()[1])
    return 0.0


def test_a_server_killed_under_load_loses_no_write_and_the_agent_resumes(cluster, tmp_path):
    from dataplane_lab import Lab, needs_root, wait_for

    if needs_root.args[0]:
        pytest.skip(needs_root.kwargs["reason"])
    servers, proxy = cluster
    endpoint = Endpoint(proxy.url(3), servers[0].openrc)
    token, project = _token(endpoint)
    net, sg = _workspace(endpoint, token, project, "10.104.0.0/16")
    lab = Lab(endpoint, tmp_path, ("h1",))
    try:
        lab.setup()

        def bound_port_active(name: str) -> None:
            status, doc, _ = _call(endpoint, token, "POST", "/v2.0/ports", {"port": {
                "network_id": net, "name": name, "device_id": name,
                "device_owner": "compute:nova", "binding:host_id": "h1"}})
            assert status == 201, doc
            pid = doc["port"]["id"]

            def active():
                status, doc, _ = _call(endpoint, token, "GET", f"/v2.0/ports/{pid}")
                return status == 200 and doc["port"]["status"] == "ACTIVE"
            wait_for(f"port {name} ACTIVE", active, timeout=60)

        bound_port_active("before")
        # The server the agent watches: the one with a feed watcher.
        holding = wait_for("the agent's watch on one server", lambda: [
            s for s in servers if _watchers(s, token) >= 1], timeout=30)
        victim = holding[0]
        assert lab.status("h1").get("snapshots") == 1, lab.status("h1")
        streams_before = lab.status("h1")["watch_streams"]

        ledgers, stop, threads = _writers(endpoint, token, net, sg, 0, retry=True)
        time.sleep(SECONDS / 2)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        time.sleep(SECONDS / 2)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        errors = [e for ledger in ledgers for e in ledger.errors]
        assert not errors, errors[:5]
        acks = sum(ledger.acks for ledger in ledgers)
        retried = sum(ledger.retried for ledger in ledgers)
        _verify_ledgers(endpoint, token, ledgers)

        bound_port_active("after")
        status = lab.status("h1")
        assert status["snapshots"] == 1, f"the agent fetched a new snapshot: {status}"
        assert status["watch_streams"] > streams_before, status
        print(f"\nkilled {victim.name} under {CLIENTS} clients: {acks} writes acknowledged, "
              f"{retried} requests retried, none lost; the agent resumed its watch "
              f"({status['watch_streams']} streams, 1 snapshot)")
    finally:
        lab.teardown()
