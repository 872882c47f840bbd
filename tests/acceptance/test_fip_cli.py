"""Floating IP extensions through the `openstack` CLI and openstacksdk: `port_details`
(fip-port-details), floating IP pools and `--subnet` (floatingip-pools), association through
a router interface (router-interface-fip) and `router_id` (floating-ip-router-writable)."""

from __future__ import annotations

import ipaddress

from conftest import osc, osc_fails, osc_run, unique


def network(env, cleanup, cidrs: list[str], *extra: str) -> tuple[str, list[str]]:
    net = osc("network", "create", *extra, unique("fnet"), env=env)["id"]
    cleanup.add(osc_run, "network", "delete", net, env=env)
    subs = []
    for cidr in cidrs:
        sub = osc("subnet", "create", "--network", net, "--subnet-range", cidr,
                  unique("fsub"), env=env)["id"]
        cleanup.add(osc_run, "subnet", "delete", sub, env=env)
        subs.append(sub)
    return net, subs


def test_pools_and_port_details(admin_env, admin_conn, cleanup):
    ext, ext_subs = network(admin_env, cleanup, ["172.31.20.0/24", "172.31.21.0/24"],
                            "--external")
    inner, (inner_sub,) = network(admin_env, cleanup, ["10.62.0.0/24"])
    router = osc("router", "create", unique("r"), env=admin_env)["id"]
    cleanup.add(osc_run, "router", "delete", router, env=admin_env)
    osc_run("router", "set", "--external-gateway", ext, router, env=admin_env)
    cleanup.add(osc_run, "router", "unset", "--external-gateway", router, env=admin_env)
    osc_run("router", "add", "subnet", router, inner_sub, env=admin_env)
    cleanup.add(osc_run, "router", "remove", "subnet", router, inner_sub, env=admin_env)

    # GET /v2.0/floatingip-pools (openstacksdk has no call for it): one per IPv4 subnet.
    pools = admin_conn.network.get("/floatingip-pools").json()["floatingip_pools"]
    mine = sorted((p for p in pools if p["network_id"] == ext), key=lambda p: p["cidr"])
    assert [(p["subnet_id"], p["cidr"]) for p in mine] == [
        (ext_subs[0], "172.31.20.0/24"), (ext_subs[1], "172.31.21.0/24")]
    assert {p["project_id"] for p in mine} == {admin_conn.current_project_id}
    assert all(p["subnet_name"].startswith("acc-fsub-") for p in mine)
    assert not any(p["network_id"] == inner for p in pools), "private networks are no pools"
    only = admin_conn.network.get(f"/floatingip-pools?subnet_id={ext_subs[1]}&fields=cidr")
    assert only.json() == {"floatingip_pools": [{"cidr": "172.31.21.0/24"}]}
    extensions = {e.alias for e in admin_conn.network.extensions()}
    assert {"fip-port-details", "floatingip-pools", "router-interface-fip",
            "floating-ip-router-writable"} <= extensions

    # `--subnet` takes the address from that pool.
    fip = osc("floating", "ip", "create", "--subnet", ext_subs[1], ext, env=admin_env)
    cleanup.add(osc_run, "floating", "ip", "delete", fip["id"], env=admin_env)
    assert ipaddress.ip_address(fip["floating_ip_address"]) in ipaddress.ip_network(
        "172.31.21.0/24")
    # Null on the wire (the CLI prints an empty mapping).
    assert not fip["port_details"]
    raw = admin_conn.network.get(f"/floatingips/{fip['id']}").json()["floatingip"]
    assert raw["port_details"] is None

    port = osc("port", "create", "--network", inner, "--device", "vm-1", "--device-owner",
               "compute:nova", unique("vm"), env=admin_env)
    cleanup.add(osc_run, "port", "delete", port["id"], env=admin_env)
    osc_run("floating", "ip", "set", "--port", port["id"], fip["id"], env=admin_env)
    details = osc("floating", "ip", "show", fip["id"], env=admin_env)["port_details"]
    assert details == {
        "name": port["name"], "network_id": inner, "mac_address": port["mac_address"],
        "admin_state_up": True, "status": port["status"], "device_id": "vm-1",
        "device_owner": "compute:nova"}
    listed = {f.id: f for f in admin_conn.network.ips(floating_network_id=ext)}
    assert listed[fip["id"]].port_details == details
    osc_run("floating", "ip", "unset", "--port", fip["id"], env=admin_env)
    assert not osc("floating", "ip", "show", fip["id"], env=admin_env)["port_details"]


def test_interface_fip_and_named_router(admin_env, admin_conn, cleanup):
    # router-interface-fip: a router joined to an external network by an interface.
    ext2, (ext2_sub,) = network(admin_env, cleanup, ["172.31.22.0/24"], "--external")
    inner, (inner_sub,) = network(admin_env, cleanup, ["10.63.0.0/24"])
    router = osc("router", "create", unique("r"), env=admin_env)["id"]
    cleanup.add(osc_run, "router", "delete", router, env=admin_env)
    for sub in (inner_sub, ext2_sub):
        osc_run("router", "add", "subnet", router, sub, env=admin_env)
        cleanup.add(osc_run, "router", "remove", "subnet", router, sub, env=admin_env)
    port = osc("port", "create", "--network", inner, unique("vm"), env=admin_env)
    cleanup.add(osc_run, "port", "delete", port["id"], env=admin_env)
    fip = osc("floating", "ip", "create", "--port", port["id"], ext2, env=admin_env)
    cleanup.add(osc_run, "floating", "ip", "delete", fip["id"], env=admin_env)
    assert fip["router_id"] == router
    failed = osc_fails("router", "remove", "subnet", router, ext2_sub, env=admin_env)
    assert "RouterInterfaceInUseAsGatewayByFloatingIP" in failed.stderr or "409" in failed.stderr
    osc_run("floating", "ip", "unset", "--port", fip["id"], env=admin_env)

    # floating-ip-router-writable: the router is named, the CLI has no option for it yet.
    public, _ = network(admin_env, cleanup, ["172.31.23.0/24"], "--external")
    outer = osc("router", "create", unique("outer"), env=admin_env)["id"]
    cleanup.add(osc_run, "router", "delete", outer, env=admin_env)
    osc_run("router", "set", "--external-gateway", public, outer, env=admin_env)
    cleanup.add(osc_run, "router", "unset", "--external-gateway", outer, env=admin_env)
    assert osc_fails("floating", "ip", "create", "--port", port["id"], public,
                     env=admin_env).returncode != 0, "no router connects the port's subnet"
    hosted = admin_conn.network.create_ip(floating_network_id=public, port_id=port["id"],
                                          router_id=outer)
    cleanup.add(admin_conn.network.delete_ip, hosted)
    assert hosted.router_id == outer and hosted.port_id == port["id"]
    assert osc("floating", "ip", "show", hosted.id, env=admin_env)["router_id"] == outer
