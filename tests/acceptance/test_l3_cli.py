"""The `openstack` CLI on subnet pools, address scopes, routers and floating IPs."""

from __future__ import annotations

import ipaddress

from conftest import osc, osc_fails, osc_run, unique


def test_address_scope_and_subnet_pool(admin_env, cleanup):
    scope = osc("address", "scope", "create", "--ip-version", "4", unique("scope"), env=admin_env)
    cleanup.add(osc_run, "address", "scope", "delete", scope["id"], env=admin_env)
    assert scope["ip_version"] == 4 and scope["shared"] is False

    renamed = unique("scope2")
    osc("address", "scope", "set", "--name", renamed, scope["id"], env=admin_env)
    assert osc("address", "scope", "show", scope["id"], env=admin_env)["name"] == renamed

    pool = osc("subnet", "pool", "create", "--pool-prefix", "10.60.0.0/24", "--pool-prefix",
               "10.60.1.0/24", "--default-prefix-length", "26", "--default-quota", "256",
               "--address-scope", scope["id"], unique("pool"), env=admin_env)
    cleanup.add(osc_run, "subnet", "pool", "delete", pool["id"], env=admin_env)
    assert pool["prefixes"] == ["10.60.0.0/23"], "adjacent prefixes are merged"
    assert pool["default_prefixlen"] == 26 and pool["default_quota"] == 256
    assert pool["address_scope_id"] == scope["id"] and pool["ip_version"] == 4

    # A second pool overlapping the first cannot join the scope.
    other = osc("subnet", "pool", "create", "--pool-prefix", "10.60.1.0/25", unique("pool"), env=admin_env)
    cleanup.add(osc_run, "subnet", "pool", "delete", other["id"], env=admin_env)
    failed = osc_fails("subnet", "pool", "set", "--address-scope", scope["id"], other["id"], env=admin_env)
    assert "AddressScopePrefixConflict" in failed.stderr or "409" in failed.stderr, failed.stderr

    osc("subnet", "pool", "set", "--pool-prefix", "10.60.2.0/24", "--description", "grown",
        pool["id"], env=admin_env)
    shown = osc("subnet", "pool", "show", pool["id"], env=admin_env)
    assert shown["prefixes"] == ["10.60.0.0/23", "10.60.2.0/24"] and shown["description"] == "grown"

    net = osc("network", "create", unique("poolnet"), env=admin_env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=admin_env)
    first = osc("subnet", "create", "--network", net["id"], "--subnet-pool", pool["id"],
                "--prefix-length", "28", unique("s"), env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", first["id"], env=admin_env)
    assert first["cidr"] == "10.60.0.0/28" and first["subnetpool_id"] == pool["id"]
    second = osc("subnet", "create", "--network", net["id"], "--subnet-pool", pool["id"],
                 unique("s"), env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", second["id"], env=admin_env)
    assert second["cidr"] == "10.60.0.64/26", "default prefix length, lowest free block"
    assert osc("network", "show", net["id"], env=admin_env)["ipv4_address_scope"] == scope["id"]

    # Quota of 256 addresses: 16 + 64 used, a /25 (128) still fits, another /26 does not.
    third = osc("subnet", "create", "--network", net["id"], "--subnet-pool", pool["id"],
                "--prefix-length", "25", unique("s"), env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", third["id"], env=admin_env)
    failed = osc_fails("subnet", "create", "--network", net["id"], "--subnet-pool", pool["id"],
                       unique("s"), env=admin_env)
    assert "quota" in failed.stderr.lower(), failed.stderr

    # A scope in use and a pool in use cannot be deleted.
    assert osc_fails("address", "scope", "delete", scope["id"], env=admin_env).returncode != 0
    assert osc_fails("subnet", "pool", "delete", pool["id"], env=admin_env).returncode != 0


def test_router_interfaces_gateway_and_floating_ip(admin_env, cleanup):
    ext = osc("network", "create", "--external", unique("ext"), env=admin_env)
    cleanup.add(osc_run, "network", "delete", ext["id"], env=admin_env)
    assert ext["router:external"] is True
    ext_sub = osc("subnet", "create", "--network", ext["id"], "--subnet-range", "172.31.9.0/24",
                  "--no-dhcp", unique("extsub"), env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", ext_sub["id"], env=admin_env)

    net = osc("network", "create", unique("inner"), env=admin_env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=admin_env)
    sub = osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.61.0.0/24",
              unique("innersub"), env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", sub["id"], env=admin_env)

    router = osc("router", "create", unique("r"), env=admin_env)
    cleanup.add(osc_run, "router", "delete", router["id"], env=admin_env)
    assert router["status"] == "ACTIVE" and router["external_gateway_info"] is None

    osc_run("router", "set", "--external-gateway", ext["id"], router["id"], env=admin_env)
    shown = osc("router", "show", router["id"], env=admin_env)
    gw = shown["external_gateway_info"]
    assert gw["network_id"] == ext["id"] and gw["enable_snat"] is True
    gw_ip = gw["external_fixed_ips"][0]["ip_address"]
    assert ipaddress.ip_address(gw_ip) in ipaddress.ip_network("172.31.9.0/24")

    osc_run("router", "add", "subnet", router["id"], sub["id"], env=admin_env)
    cleanup.add(osc_run, "router", "remove", "subnet", router["id"], sub["id"], env=admin_env)
    ports = osc("port", "list", "--router", router["id"], "--long", env=admin_env)
    owners = sorted(p["Device Owner"] for p in ports)
    assert owners == ["network:router_gateway", "network:router_interface"], ports
    iface = [p for p in ports if p["Device Owner"] == "network:router_interface"][0]
    assert iface["Fixed IP Addresses"][0]["ip_address"] == "10.61.0.1"

    # A router with an interface cannot be deleted; the same subnet cannot be added twice.
    assert osc_fails("router", "delete", router["id"], env=admin_env).returncode != 0
    assert osc_fails("router", "add", "subnet", router["id"], sub["id"], env=admin_env).returncode != 0

    osc_run("router", "set", "--route", "destination=10.99.0.0/16,gateway=10.61.0.50",
            router["id"], env=admin_env)
    routes = osc("router", "show", router["id"], env=admin_env)["routes"]
    assert routes == [{"destination": "10.99.0.0/16", "nexthop": "10.61.0.50"}], routes
    assert osc_fails("router", "set", "--route", "destination=10.98.0.0/16,gateway=192.0.2.1",
                     router["id"], env=admin_env).returncode != 0, "nexthop must be connected"
    osc_run("router", "unset", "--route", "destination=10.99.0.0/16,gateway=10.61.0.50",
            router["id"], env=admin_env)

    port = osc("port", "create", "--network", net["id"], unique("vm"), env=admin_env)
    cleanup.add(osc_run, "port", "delete", port["id"], env=admin_env)
    fip = osc("floating", "ip", "create", ext["id"], env=admin_env)
    cleanup.add(osc_run, "floating", "ip", "delete", fip["id"], env=admin_env)
    assert ipaddress.ip_address(fip["floating_ip_address"]) in ipaddress.ip_network("172.31.9.0/24")
    assert fip["port_id"] is None and fip["router_id"] is None

    osc_run("floating", "ip", "set", "--port", port["id"], fip["id"], env=admin_env)
    shown = osc("floating", "ip", "show", fip["id"], env=admin_env)
    assert shown["port_id"] == port["id"] and shown["router_id"] == router["id"]
    assert shown["fixed_ip_address"] == port["fixed_ips"][0]["ip_address"]

    # The subnet cannot leave the router while the floating IP depends on it.
    assert osc_fails("router", "remove", "subnet", router["id"], sub["id"], env=admin_env).returncode != 0

    osc_run("floating", "ip", "unset", "--port", fip["id"], env=admin_env)
    shown = osc("floating", "ip", "show", fip["id"], env=admin_env)
    assert shown["port_id"] is None and shown["fixed_ip_address"] is None
    osc_run("floating", "ip", "delete", fip["id"], env=admin_env)
    assert osc_fails("floating", "ip", "show", fip["id"], env=admin_env).returncode != 0

    osc_run("router", "unset", "--external-gateway", router["id"], env=admin_env)
    assert osc("router", "show", router["id"], env=admin_env)["external_gateway_info"] is None
