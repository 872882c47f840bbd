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
