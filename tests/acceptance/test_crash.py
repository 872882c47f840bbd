"""A server killed with SIGKILL in the middle of a mixed write load loses nothing it answered.

Eight clients create networks, ports and security group rules, rename their ports and delete
some of them, each keeping a ledger of what the server acknowledged (2xx) and what was sent
but not answered when the server died. After SIGKILL and a restart on the same store (SQLite,
and PostgreSQL when ``NEUTRINO_TEST_PG_URL`` is set):

- every acknowledged create is there, unless its own client deleted it afterwards;
- every acknowledged delete is gone;
- every acknowledged rename holds, or the one rename in flight when the server died does;
- what was in flight is wholly there or wholly absent: ``neutrino check-store`` (the store's
  consistency check: allocations, owners, references) finds nothing.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import NeutrinoServer, _psql, _server_binary, _with_database, unique

CLIENTS = 8
LOAD_SECONDS = float(os.environ.get("NEUTRINO_CRASH_LOAD_SECONDS", "3"))


class Gone(Exception):
    """The server did not answer (it was killed)."""


def _call(server: NeutrinoServer, token: str | None, method: str, path: str, body=None,
          timeout: float = 30) -> tuple[int, dict, object]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    req = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else {}), r.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {"raw": raw.decode(errors="replace")}
        return e.code, doc, e.headers
    except (OSError, urllib.error.URLError) as e:
        raise Gone(str(e)) from None


def _admin_token(server: NeutrinoServer) -> tuple[str, str]:
    o = server.openrc
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": o["OS_USERNAME"], "domain": {"name": "Default"}, "password": o["OS_PASSWORD"]}}},
        "scope": {"project": {"name": o["OS_PROJECT_NAME"], "domain": {"name": "Default"}}}}}
    status, doc, headers = _call(server, None, "POST", "/v3/auth/tokens", body)
    assert status == 201, doc
    return headers["X-Subject-Token"], doc["token"]["project"]["id"]


class Ledger:
    """What one client sent, and what the server acknowledged of it."""

    def __init__(self):
        self.created: dict[str, str] = {}  # id -> collection
        self.deleted: set[str] = set()
        self.renamed: dict[str, str] = {}  # port id -> last acknowledged name
        self.in_flight: tuple[str, str, str | None] | None = None  # (verb, id, value)
        self.errors: list[str] = []
        self.acks = 0
        self.retried = 0  # requests sent again after a failure on the way


TRANSIENT = (502, 503, 504)


def _client(server, token, net_id, sg_id, seed, ledger: Ledger, stop: threading.Event,
            retry: bool = False):
    """Mixed writes until ``stop`` or until the server is gone. With ``retry`` (a client behind
    a load balancer) a request that failed on the way (no answer, or 502/503/504) is retried
    when it is idempotent (rename, delete) and given up as unknown when it is a create."""
    rng = random.Random(seed)
    ports: list[str] = []
    rules = 0  # each client's rules take their own ports: 8 blocks of 7,000

    def send(method, path, body=None):
        while True:
            try:
                status, doc, _ = _call(server, token, method, path, body)
            except Gone:
                if not retry:
                    raise
                status, doc = None, {}
            if status is not None and status not in TRANSIENT:
                return status, doc
            if not retry:
                return status, doc
            ledger.retried += 1
            if method == "POST" or stop.is_set():
                return None, doc  # outcome unknown
            time.sleep(0.05)

    try:
        while not stop.is_set():
            choice = rng.random()
            ok = (200, 201, 204)
            if choice < 0.35 or not ports:
                ledger.in_flight = ("create", "ports", None)
                status, doc = send("POST", "/v2.0/ports", {
                    "port": {"network_id": net_id, "name": unique("crash"),
                             "security_groups": [sg_id]}})
                if status == 201:
                    ports.append(doc["port"]["id"])
                    ledger.created[doc["port"]["id"]] = "ports"
            elif choice < 0.5:
                ledger.in_flight = ("create", "networks", None)
                status, doc = send("POST", "/v2.0/networks", {"network": {"name": unique("crash")}})
                if status == 201:
                    ledger.created[doc["network"]["id"]] = "networks"
            elif choice < 0.65:
                rules += 1
                rule_port = 1024 + (seed % 8) * 7000 + rules % 7000
                ledger.in_flight = ("create", "security-group-rules", None)
                status, doc = send("POST", "/v2.0/security-group-rules", {
                    "security_group_rule": {"security_group_id": sg_id, "direction": "ingress",
                                            "ethertype": "IPv4", "protocol": "tcp",
                                            "port_range_min": rule_port,
                                            "port_range_max": rule_port}})
                if status == 201:
                    ledger.created[doc["security_group_rule"]["id"]] = "security-group-rules"
            elif choice < 0.85:
                port = rng.choice(ports)
                name = f"renamed-{uuid.uuid4().hex[:8]}"
                ledger.in_flight = ("rename", port, name)
                status, doc = send("PUT", f"/v2.0/ports/{port}", {"port": {"name": name}})
                if status == 200:
                    ledger.renamed[port] = name
            else:
                port = ports.pop(rng.randrange(len(ports)))
                ledger.in_flight = ("delete", port, None)
                before = ledger.retried
                status, doc = send("DELETE", f"/v2.0/ports/{port}")
                # An attempt that got no answer had deleted it: ours, or the load balancer's
                # own retry (`retry-on empty-response`), which the client never sees. The
                # ledger's check afterwards finds the port gone, or fails.
                if status == 404 and (ledger.retried > before or retry):
                    status = 204
                if status == 204:
                    ledger.deleted.add(port)
            if status is None:
                pass  # a create whose outcome is unknown (retried clients only)
            elif status not in ok:
                ledger.errors.append(f"{ledger.in_flight}: {status} {doc}")
            else:
                ledger.acks += 1
            ledger.in_flight = None
    except Gone:
        pass  # the server died: ledger.in_flight holds the unanswered request


def _crash_and_check(server: NeutrinoServer, check_store_args: list[str]):
    token, project = _admin_token(server)
    for quota in ("port", "network", "security_group_rule"):
        status, doc, _ = _call(server, token, "PUT", f"/v2.0/quotas/{project}",
                               {"quota": {quota: -1}})
        assert status == 200, doc
    status, net, _ = _call(server, token, "POST", "/v2.0/networks",
                           {"network": {"name": unique("crash-net")}})
    assert status == 201, net
    net_id = net["network"]["id"]
    status, sub, _ = _call(server, token, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net_id, "ip_version": 4, "cidr": "10.91.0.0/16"}})
    assert status == 201, sub
    status, sg, _ = _call(server, token, "POST", "/v2.0/security-groups",
                          {"security_group": {"name": unique("crash-sg")}})
    assert status == 201, sg
    sg_id = sg["security_group"]["id"]

    ledgers = [Ledger() for _ in range(CLIENTS)]
    stop = threading.Event()
    threads = [threading.Thread(target=_client,
                                args=(server, token, net_id, sg_id, i, ledgers[i], stop))
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_SECONDS)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    acks = sum(ledger.acks for ledger in ledgers)
    errors = [e for ledger in ledgers for e in ledger.errors]
    assert not errors, errors[:5]
    assert acks >= CLIENTS, f"only {acks} writes acknowledged before the kill"

    # The store as the killed server left it is consistent.
    check = subprocess.run(check_store_args, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("NEUTRINO_")})
    assert check.returncode == 0 and "store consistent" in check.stdout, \
        check.stdout + check.stderr

    server.start()
    token, _ = _admin_token(server)
    in_flight = _verify_ledgers(server, token, ledgers)
    print(f"\nSIGKILL after {LOAD_SECONDS:.0f} s of {CLIENTS} clients: {acks} writes acknowledged,"
          f" {in_flight} in flight; all acknowledged writes found, store consistent")


def _verify_ledgers(server, token: str, ledgers: list[Ledger]) -> int:
    """Asserts that every acknowledged write of ``ledgers`` holds; returns how many requests
    were in flight (their outcome unknown)."""
    in_flight = 0
    for ledger in ledgers:
        pending = ledger.in_flight
        in_flight += pending is not None
        for rid, collection in ledger.created.items():
            status, doc, _ = _call(server, token, "GET", f"/v2.0/{collection}/{rid}")
            if rid in ledger.deleted:
                assert status == 404, f"acknowledged delete of {collection} {rid} undone: {doc}"
            elif pending == ("delete", rid, None):
                assert status in (200, 404), doc
            else:
                assert status == 200, f"acknowledged create of {collection} {rid} lost: {doc}"
        for port, name in ledger.renamed.items():
            if port in ledger.deleted or (pending and pending[:2] == ("delete", port)):
                continue
            status, doc, _ = _call(server, token, "GET", f"/v2.0/ports/{port}")
            assert status == 200, doc
            allowed = {name}
            if pending and pending[:2] == ("rename", port):
                allowed.add(pending[2])
            assert doc["port"]["name"] in allowed, \
                f"acknowledged rename of {port} to {name} lost: {doc['port']['name']}"
    return in_flight


def test_sigkill_under_mixed_write_load_on_sqlite(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "s").start()
    try:
        _crash_and_check(server, [_server_binary(), "check-store",
                                  "--data-dir", str(server.data_dir)])
    finally:
        server.stop()


def test_sigkill_under_mixed_write_load_on_postgresql(tmp_path):
    base_url = os.environ.get("NEUTRINO_TEST_PG_URL")
    if not base_url:
        pytest.skip("NEUTRINO_TEST_PG_URL is not set")
    dbname = f"neutrino_crash_{uuid.uuid4().hex[:12]}"
    _psql(base_url, f'CREATE DATABASE "{dbname}"')
    url = _with_database(base_url, dbname)
    server = NeutrinoServer(_server_binary(), tmp_path / "p", database_url=url,
                            admin_password="crash-" + secrets.token_hex(8))
    try:
        server.start()
        _crash_and_check(server, [_server_binary(), "check-store", "--database-url", url])
    finally:
        server.stop()
        _psql(base_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


# ---- the agent -------------------------------------------------------------------------------

AGENT_PORTS = int(os.environ.get("NEUTRINO_CRASH_AGENT_PORTS", "1000"))
PORTS_PER_DEVICE = 4


def _host_snapshot(lab, host: str) -> dict[str, list[str]]:
    """What an agent keeps on its host whatever it serves: links, nft tables, namespaces with
    its prefix, and live daemons (dnsmasq, radvd) started from its state directory."""
    from dataplane_lab import sh

    ns = lab.host_ns(host)
    links = sorted(line.split(":")[1].strip().split("@")[0]
                   for line in sh("ip", "-n", ns, "-o", "link", "show").stdout.splitlines())
    tables = sorted(line.strip() for line in
                    sh("ip", "netns", "exec", ns, "nft", "list", "tables").stdout.splitlines())
    namespaces = sorted(n for n in sh("ip", "netns", "list").stdout.split()
                        if n.startswith(lab.prefix(host)))
    state = str(lab.state_dir(host))
    daemons = sorted(line for line in sh("pgrep", "-af", "dnsmasq|radvd", check=False)
                     .stdout.splitlines() if state in line)
    return {"links": links, "nft tables": tables, "namespaces": namespaces, "daemons": daemons}


def test_agent_killed_while_applying_a_large_plan_converges_and_leaks_nothing(tmp_path):
    """SIGKILL of the agent while it plugs 1,000 ports (250 instances on 4 networks with DHCP);
    while it is down one network and its ports go away. Restarted, it converges: every
    remaining port ACTIVE, one instance namespace per instance with its three ports, one
    dnsmasq per remaining network. Then everything is deleted, and the host is left exactly as
    the idle agent had it: no namespace, link, nft table or daemon more."""
    from dataplane_lab import Lab, needs_root, wait_for

    if needs_root.args[0]:
        pytest.skip(needs_root.kwargs["reason"])
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1",))
    try:
        lab.setup()
        idle = _host_snapshot(lab, "h1")
        token, project = _admin_token(server)
        _call(server, token, "PUT", f"/v2.0/quotas/{project}", {"quota": {"port": -1}})
        networks = []
        for i in range(PORTS_PER_DEVICE):
            status, net, _ = _call(server, token, "POST", "/v2.0/networks",
                                   {"network": {"name": unique("crash-agent")}})
            assert status == 201, net
            status, sub, _ = _call(server, token, "POST", "/v2.0/subnets", {"subnet": {
                "network_id": net["network"]["id"], "ip_version": 4,
                "cidr": f"10.92.{i * 8}.0/21"}})
            assert status == 201, sub
            networks.append(net["network"]["id"])
        devices = AGENT_PORTS // PORTS_PER_DEVICE
        ports_of: dict[str, list[str]] = {n: [] for n in networks}
        for start in range(0, devices, 50):
            for net in networks:
                status, doc, _ = _call(server, token, "POST", "/v2.0/ports", {"ports": [
                    {"network_id": net, "device_id": f"dev{d}", "device_owner": "compute:nova",
                     "binding:host_id": "h1"} for d in range(start, min(start + 50, devices))]},
                    timeout=120)
                assert status == 201, doc
                ports_of[net] += [p["id"] for p in doc["ports"]]

        def instances() -> int:
            return sum(1 for n in _host_snapshot(lab, "h1")["namespaces"] if "vm-dev" in n)

        # Kill it part-way: some instances plugged, most not.
        started = time.monotonic()
        wait_for("the agent to plug its first instances", lambda: instances() >= 10,
                 timeout=300, interval=0.05)
        proc = lab.agents.pop("h1")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        plugged_at_kill = instances()
        assert plugged_at_kill < devices, "the agent had finished: nothing was interrupted"

        gone = networks.pop()
        for port in ports_of.pop(gone):
            status, doc, _ = _call(server, token, "DELETE", f"/v2.0/ports/{port}")
            assert status == 204, doc
        status, doc, _ = _call(server, token, "DELETE", f"/v2.0/networks/{gone}")
        assert status == 204, doc

        # Its first reconcile plugs the 750 ports left: give it time on a busy machine.
        lab.start_agent("h1", timeout=600)

        def all_active() -> bool:
            status, doc, _ = _call(server, token, "GET",
                                   "/v2.0/ports?binding:host_id=h1&fields=id&fields=status"
                                   "&device_owner=compute:nova")
            assert status == 200, doc
            return (len(doc["ports"]) == devices * len(networks)
                    and all(p["status"] == "ACTIVE" for p in doc["ports"]))

        wait_for("every remaining port ACTIVE", all_active, timeout=600, interval=1)
        converged = time.monotonic() - started
        snap = _host_snapshot(lab, "h1")
        vms = [n for n in snap["namespaces"] if "vm-dev" in n]
        assert len(vms) == devices, len(vms)
        from dataplane_lab import sh
        for vm in vms[:20]:
            links = [line for line in sh("ip", "-n", vm, "-o", "link", "show").stdout.splitlines()
                     if not line.split(":")[1].strip().startswith("lo")]
            assert len(links) == len(networks), (vm, links)
        dhcp = [n for n in snap["namespaces"] if "qdhcp-" in n]
        assert sorted(dhcp) == sorted(f"{lab.prefix('h1')}qdhcp-{n}" for n in networks), dhcp
        assert not any(gone in n for n in snap["namespaces"]), snap["namespaces"]
        assert len([d for d in snap["daemons"] if "dnsmasq" in d]) == len(networks), \
            snap["daemons"]
        assert not any(gone in d for d in snap["daemons"]), snap["daemons"]

        # Everything away: the host is as the idle agent had it.
        for net in networks:
            for port in ports_of[net]:
                status, doc, _ = _call(server, token, "DELETE", f"/v2.0/ports/{port}")
                assert status == 204, doc
            status, doc, _ = _call(server, token, "DELETE", f"/v2.0/networks/{net}")
            assert status == 204, doc
        wait_for("the host back to idle", lambda: _host_snapshot(lab, "h1") == idle,
                 timeout=300, interval=1)
        print(f"\nagent SIGKILLed with {plugged_at_kill} of {devices} instances plugged; "
              f"restarted, it converged {converged:.0f} s after the first plug and left "
              f"nothing behind")
    finally:
        lab.teardown()
        server.stop()
