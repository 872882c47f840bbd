"""Two servers on one PostgreSQL database share everything (skips without NEUTRINO_TEST_PG_URL)."""

from __future__ import annotations

import pytest
import openstack.exceptions as exc

from conftest import osc, unique


def test_pair_shares_admin_and_networks(neutrino_pg_pair, cleanup):
    a, b = neutrino_pg_pair.a, neutrino_pg_pair.b
    for server in (a, b):
        assert server.openrc["OS_PASSWORD"] == neutrino_pg_pair.admin_password
        assert server.openrc["OS_USERNAME"] == "admin"
        assert server.openrc["OS_AUTH_URL"] == server.url + "/v3"

    conn_a, conn_b = a.connect(), b.connect()
    cleanup.add(conn_a.close)
    cleanup.add(conn_b.close)
    assert conn_a.current_project_id == conn_b.current_project_id

    name = unique("pg-net")
    net = conn_a.network.create_network(name=name)
    cleanup.add(conn_a.network.delete_network, net.id, ignore_missing=True)
    sub = conn_a.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.50.0.0/24")
    seen = conn_b.network.get_network(net.id)
    assert seen.name == name and seen.subnet_ids == [sub.id]

    # An address taken through one server is taken for the other.
    port = conn_b.network.create_port(network_id=net.id,
                                      fixed_ips=[{"subnet_id": sub.id, "ip_address": "10.50.0.10"}])
    with pytest.raises(exc.ConflictException):
        conn_a.network.create_port(network_id=net.id,
                                   fixed_ips=[{"subnet_id": sub.id, "ip_address": "10.50.0.10"}])

    # The CLI through server b sees what server a made.
    assert osc("network", "show", net.id, env=b.env)["name"] == name

    conn_b.network.delete_port(port, ignore_missing=False)
    conn_b.network.delete_network(net.id, ignore_missing=False)
    with pytest.raises(exc.NotFoundException):
        conn_a.network.get_network(net.id)


def _race(calls):
    """Runs the calls at the same time; returns (results, exceptions) in call order."""
    from concurrent.futures import ThreadPoolExecutor

    def run(call):
        try:
            return call(), None
        except Exception as e:  # noqa: BLE001 - the outcome is what the test checks
            return None, e

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        outcomes = list(pool.map(run, calls))
    return [o[0] for o in outcomes], [o[1] for o in outcomes]


def test_pair_trunk_vlans_and_ports_are_taken_once(neutrino_pg_pair, cleanup):
    conn_a, conn_b = neutrino_pg_pair.a.connect(), neutrino_pg_pair.b.connect()
    cleanup.add(conn_a.close)
    cleanup.add(conn_b.close)
    net = conn_a.network.create_network(name=unique("pg-trunk"))
    cleanup.add(conn_a.network.delete_network, net.id, ignore_missing=True)
    parent = conn_a.network.create_port(network_id=net.id)
    cleanup.add(conn_a.network.delete_port, parent.id, ignore_missing=True)
    trunk = conn_a.network.create_trunk(port_id=parent.id)
    cleanup.add(conn_a.network.delete_trunk, trunk.id, ignore_missing=True)
    ports = [conn_a.network.create_port(network_id=net.id) for _ in range(8)]
    for p in ports:
        cleanup.add(conn_a.network.delete_port, p.id, ignore_missing=True)

    # Four rounds: two ports want one VLAN id of the trunk, one through each server.
    for round_, (p, q) in enumerate(zip(ports[::2], ports[1::2])):
        vlan = 100 + round_
        _, errors = _race([
            lambda p=p: conn_a.network.add_trunk_subports(trunk, [
                {"port_id": p.id, "segmentation_type": "vlan", "segmentation_id": vlan}]),
            lambda q=q: conn_b.network.add_trunk_subports(trunk, [
                {"port_id": q.id, "segmentation_type": "vlan", "segmentation_id": vlan}]),
        ])
        assert sum(e is None for e in errors) == 1, errors
        assert all(isinstance(e, exc.ConflictException) for e in errors if e), errors
    seen = conn_b.network.get_trunk(trunk.id)
    assert sorted(s["segmentation_id"] for s in seen.sub_ports) == [100, 101, 102, 103]

    # Two new trunks want the same parent at once: one gets it.
    spare = conn_a.network.create_port(network_id=net.id)
    cleanup.add(conn_a.network.delete_port, spare.id, ignore_missing=True)
    made, errors = _race([lambda: conn_a.network.create_trunk(port_id=spare.id),
                          lambda: conn_b.network.create_trunk(port_id=spare.id)])
    for t in made:
        if t is not None:
            cleanup.add(conn_a.network.delete_trunk, t.id, ignore_missing=True)
    assert sum(e is None for e in errors) == 1, errors


def test_pair_auto_allocated_topology_is_built_once(neutrino_pg_pair, cleanup):
    conn_a, conn_b = neutrino_pg_pair.a.connect(), neutrino_pg_pair.b.connect()
    cleanup.add(conn_a.close)
    cleanup.add(conn_b.close)
    ext = conn_a.network.create_network(name=unique("pg-ext"), is_router_external=True,
                                        is_default=True)
    cleanup.add(conn_a.network.delete_network, ext.id, ignore_missing=True)
    ext_sub = conn_a.network.create_subnet(network_id=ext.id, ip_version=4,
                                           cidr="172.31.7.0/24")
    cleanup.add(conn_a.network.delete_subnet, ext_sub.id, ignore_missing=True)
    pool = conn_a.network.create_subnet_pool(name=unique("pg-pool"), prefixes=["10.240.0.0/16"],
                                             default_prefix_length=26, is_default=True,
                                             is_shared=True)
    cleanup.add(conn_a.network.delete_subnet_pool, pool.id, ignore_missing=True)
    project = conn_a.current_project_id

    got, errors = _race([lambda: conn_a.network.get_auto_allocated_topology(project),
                         lambda: conn_b.network.get_auto_allocated_topology(project)])
    cleanup.add(conn_a.network.delete_auto_allocated_topology, project)
    assert errors == [None, None], errors
    assert got[0].id == got[1].id
    nets = [n for n in conn_b.network.networks(project_id=project)
            if n.name == "auto_allocated_network"]
    assert [n.id for n in nets] == [got[0].id]
    routers = [r for r in conn_b.network.routers(project_id=project)
               if r.name == "auto_allocated_router"]
    assert len(routers) == 1


def test_watchers_on_one_server_see_commits_made_through_the_other(neutrino_pg_pair):
    """The change feed spans servers: a watch stream opened on server b delivers a network
    created through server a (PostgreSQL NOTIFY, with a poll behind it)."""
    import json
    import threading
    import time
    import urllib.request

    from test_durability import _call, _token_and_project

    a, b = neutrino_pg_pair.a, neutrino_pg_pair.b
    token, _ = _token_and_project(b)
    status, page = _call(b, token, "GET", "/neutrino/v1/changes?since=0")
    assert status == 200
    since = page["revision"]
    while page["more"]:
        status, page = _call(b, token, "GET", f"/neutrino/v1/changes?since={page['revision']}")
        since = page["revision"]
    seen: list[dict] = []

    def follow():
        req = urllib.request.Request(f"{b.url}/neutrino/v1/watch?since={since}",
                                     headers={"X-Auth-Token": token})
        with urllib.request.urlopen(req, timeout=30) as stream:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                line = stream.readline()
                if not line:
                    return
                doc = json.loads(line)
                seen.extend(doc.get("changes", []))
                if any(c["kind"] == "network" and (c.get("body") or {}).get("name") == name
                       for c in seen):
                    return

    name = unique("feed-net")
    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    time.sleep(0.5)
    token_a, _ = _token_and_project(a)
    status, net = _call(a, token_a, "POST", "/v2.0/networks", {"network": {"name": name}})
    assert status == 201
    watcher.join(timeout=25)
    got = [c for c in seen if c["kind"] == "network" and c["id"] == net["network"]["id"]]
    assert got and got[0]["body"]["name"] == name, f"server b's watch did not deliver it: {seen}"
    assert all(c["revision"] > since for c in seen)
    _call(a, token_a, "DELETE", f"/v2.0/networks/{net['network']['id']}")
