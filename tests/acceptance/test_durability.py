"""Durability and concurrency: restarts keep everything, a SIGKILL during a bulk create leaves
all or nothing, and two servers on one PostgreSQL never hand out the same address or MAC."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import NeutrinoServer, _server_binary, unique


def _token_and_project(server: NeutrinoServer) -> tuple[str, str]:
    o = server.openrc
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": o["OS_USERNAME"], "domain": {"name": "Default"}, "password": o["OS_PASSWORD"]}}},
        "scope": {"project": {"name": o["OS_PROJECT_NAME"], "domain": {"name": "Default"}}}}}
    req = urllib.request.Request(server.url + "/v3/auth/tokens", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        token = r.headers["X-Subject-Token"]
        project = json.load(r)["token"]["project"]["id"]
    return token, project


def _call(server: NeutrinoServer, token: str, method: str, path: str, body=None,
          timeout: float = 120) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"X-Auth-Token": token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else {})
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else {})


def _network_with_subnet(server, token, cidr):
    status, net = _call(server, token, "POST", "/v2.0/networks", {"network": {"name": unique("dur")}})
    assert status == 201, net
    net_id = net["network"]["id"]
    status, sub = _call(server, token, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net_id, "ip_version": 4, "cidr": cidr}})
    assert status == 201, sub
    return net_id, sub["subnet"]["id"]


def test_restart_keeps_everything(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "d").start()
    try:
        token, _ = _token_and_project(server)
        net_id, sub_id = _network_with_subnet(server, token, "10.77.0.0/24")
        status, port = _call(server, token, "POST", "/v2.0/ports", {"port": {"network_id": net_id}})
        assert status == 201
        before = _call(server, token, "GET", f"/v2.0/ports/{port['port']['id']}")[1]
        password = server.openrc["OS_PASSWORD"]
    finally:
        server.stop()
    server = NeutrinoServer(_server_binary(), tmp_path / "d").start()
    try:
        assert server.openrc["OS_PASSWORD"] == password, "the admin keeps its password"
        token, _ = _token_and_project(server)
        after = _call(server, token, "GET", f"/v2.0/ports/{port['port']['id']}")[1]
        assert after == before
        status, sub = _call(server, token, "GET", f"/v2.0/subnets/{sub_id}")
        assert status == 200 and sub["subnet"]["cidr"] == "10.77.0.0/24"
        # The address is still taken after the restart.
        ip = before["port"]["fixed_ips"][0]["ip_address"]
        status, err = _call(server, token, "POST", "/v2.0/ports", {"port": {
            "network_id": net_id, "fixed_ips": [{"ip_address": ip}]}})
        assert status == 409 and err["NeutronError"]["type"] == "IpAddressInUse"
    finally:
        server.stop()


def test_sigkill_during_bulk_create_leaves_all_or_nothing(tmp_path):
    bulk = 6000
    server = NeutrinoServer(_server_binary(), tmp_path / "k").start()
    try:
        token, project = _token_and_project(server)
        _call(server, token, "PUT", f"/v2.0/quotas/{project}", {"quota": {"port": -1}})
        net_id, _ = _network_with_subnet(server, token, "10.78.0.0/19")
        outcome = {}

        def send():
            try:
                outcome["status"] = _call(server, token, "POST", "/v2.0/ports", {"ports": [
                    {"network_id": net_id, "name": f"bulk-{i}"} for i in range(bulk)]})[0]
            except (OSError, urllib.error.URLError) as e:
                outcome["error"] = str(e)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
        sender.join(timeout=60)
    finally:
        server.stop()
    server = NeutrinoServer(_server_binary(), tmp_path / "k").start()
    try:
        token, _ = _token_and_project(server)
        status, ports = _call(server, token, "GET", f"/v2.0/ports?network_id={net_id}&fields=id")
        assert status == 200
        count = len(ports["ports"])
        assert count in (0, bulk), f"partial bulk after SIGKILL: {count} of {bulk} ports ({outcome})"
        print(f"bulk of {bulk} after SIGKILL: {count} ports, client saw {outcome}")
        if outcome.get("status") == 201:
            assert count == bulk, "a bulk acknowledged with 201 must survive"
    finally:
        server.stop()


def test_two_servers_never_hand_out_the_same_address(neutrino_pg_pair):
    """8 clients through two servers on one PostgreSQL create 2,000 ports in one /22."""
    servers = neutrino_pg_pair.servers
    token, project = _token_and_project(servers[0])
    status, _ = _call(servers[0], token, "PUT", f"/v2.0/quotas/{project}", {"quota": {"port": -1}})
    assert status == 200
    net_id, sub_id = _network_with_subnet(servers[0], token, "10.90.0.0/22")
    attempts = 2000
    counter = iter(range(attempts))
    lock = threading.Lock()
    statuses = collections.Counter()
    errors = collections.Counter()
    ports = []

    def client(n: int):
        server = servers[n % 2]
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            status, body = _call(server, token, "POST", "/v2.0/ports",
                                 {"port": {"network_id": net_id, "name": f"c{n}-{i}"}})
            with lock:
                statuses[status] += 1
                if status == 201:
                    ports.append(body["port"])
                else:
                    errors[body.get("NeutronError", {}).get("type")] += 1

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(client, range(8)))

    usable = 1024 - 3  # network, broadcast and gateway addresses
    assert statuses[500] == 0 and not any(s >= 500 for s in statuses), statuses
    assert statuses[201] == usable, statuses
    assert statuses[409] == attempts - usable, statuses
    assert set(errors) == {"IpAddressGenerationFailure"}, errors
    ips = [p["fixed_ips"][0]["ip_address"] for p in ports]
    macs = [p["mac_address"] for p in ports]
    assert len(set(ips)) == len(ips), "duplicate IP address handed out"
    assert len(set(macs)) == len(macs), "duplicate MAC address handed out"
    # Both servers agree on the result.
    for server in servers:
        status, listed = _call(server, token, "GET", f"/v2.0/ports?network_id={net_id}&fields=id")
        assert status == 200 and len(listed["ports"]) == usable
    for p in ports:
        _call(servers[0], token, "DELETE", f"/v2.0/ports/{p['id']}")
    _call(servers[0], token, "DELETE", f"/v2.0/networks/{net_id}")


def test_two_servers_allocate_pool_prefixes_without_overlap(neutrino_pg_pair):
    """8 clients through two servers allocate /28s from one pool until it is exhausted."""
    import ipaddress

    servers = neutrino_pg_pair.servers
    token, _ = _token_and_project(servers[0])
    status, pool = _call(servers[0], token, "POST", "/v2.0/subnetpools", {"subnetpool": {
        "name": unique("pgpool"), "prefixes": ["10.95.0.0/24"], "default_prefixlen": 28}})
    assert status == 201, pool
    pool_id = pool["subnetpool"]["id"]
    status, net = _call(servers[1], token, "POST", "/v2.0/networks", {"network": {"name": unique("pgpn")}})
    net_id = net["network"]["id"]
    attempts = 40
    counter = iter(range(attempts))
    lock = threading.Lock()
    statuses = collections.Counter()
    kinds = collections.Counter()
    cidrs = []

    def client(n: int):
        server = servers[n % 2]
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            status, body = _call(server, token, "POST", "/v2.0/subnets", {"subnet": {
                "network_id": net_id, "ip_version": 4, "subnetpool_id": pool_id, "prefixlen": 28}})
            with lock:
                statuses[status] += 1
                if status == 201:
                    cidrs.append(ipaddress.ip_network(body["subnet"]["cidr"]))
                else:
                    kinds[body.get("NeutronError", {}).get("type")] += 1

    with concurrent.futures.ThreadPoolExecutor(8) as pool_exec:
        list(pool_exec.map(client, range(8)))
    assert not any(s >= 500 for s in statuses), statuses
    assert statuses[201] == 16 and statuses[409] == attempts - 16, (statuses, kinds)
    assert set(kinds) == {"SubnetAllocationError"}, kinds
    for i, a in enumerate(cidrs):
        assert a.subnet_of(ipaddress.ip_network("10.95.0.0/24"))
        for b in cidrs[i + 1:]:
            assert not a.overlaps(b), f"{a} overlaps {b}"
    _call(servers[0], token, "DELETE", f"/v2.0/networks/{net_id}")
    assert _call(servers[0], token, "DELETE", f"/v2.0/subnetpools/{pool_id}")[0] == 204
