"""The `openstack` CLI on trunks, address groups, the auto-allocated topology, service
flavors and providers, network segment ranges, router conntrack helpers and Local IPs."""

from __future__ import annotations

import secrets

from conftest import NeutrinoServer, _server_binary, osc, osc_fails, osc_run, unique, user_env


def _port(env, cleanup, network: str) -> dict:
    port = osc("port", "create", "--network", network, unique("port"), env=env)
    cleanup.add(osc_run, "port", "delete", port["id"], env=env)
    return port


def _network(env, cleanup, *extra: str) -> dict:
    net = osc("network", "create", *extra, unique("net"), env=env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=env)
    return net


def _subports(trunk: dict) -> dict[str, int]:
    return {s["port_id"]: s["segmentation_id"] for s in trunk["sub_ports"]}


def test_trunk_with_subports(admin_env, cleanup):
    net = _network(admin_env, cleanup)
    parent, s1, s2, s3 = (_port(admin_env, cleanup, net["id"]) for _ in range(4))
    name = unique("trunk")
    trunk = osc("network", "trunk", "create", "--parent-port", parent["id"], "--subport",
                f"port={s1['id']},segmentation-type=vlan,segmentation-id=100", name, env=admin_env)
    cleanup.add(osc_run, "network", "trunk", "delete", trunk["id"], env=admin_env)
    assert trunk["port_id"] == parent["id"] and trunk["status"] == "DOWN"
    assert trunk["is_admin_state_up"] is True
    assert _subports(trunk) == {s1["id"]: 100}
    assert trunk["sub_ports"][0]["segmentation_type"] == "vlan"

    osc("network", "trunk", "set", "--subport",
        f"port={s2['id']},segmentation-type=vlan,segmentation-id=101", name, env=admin_env)
    shown = osc("network", "trunk", "show", name, env=admin_env)
    assert _subports(shown) == {s1["id"]: 100, s2["id"]: 101}
    assert shown["revision_number"] > trunk["revision_number"]
    listed = osc("network", "subport", "list", "--trunk", name, env=admin_env)
    assert {r["Port"]: r["Segmentation ID"] for r in listed} == _subports(shown)

    # One VLAN id once per trunk, a port in one trunk only, the parent not as a subport.
    failed = osc_fails("network", "trunk", "set", "--subport",
                       f"port={s3['id']},segmentation-type=vlan,segmentation-id=100", name,
                       env=admin_env)
    assert "already in use on trunk" in failed.stderr, failed.stderr
    failed = osc_fails("network", "trunk", "create", "--parent-port", s1["id"], unique("t"),
                       env=admin_env)
    assert "in use by another trunk" in failed.stderr, failed.stderr
    failed = osc_fails("network", "trunk", "set", "--subport",
                       f"port={parent['id']},segmentation-type=vlan,segmentation-id=7", name,
                       env=admin_env)
    assert "not eligible for use as a parent port" in failed.stderr, failed.stderr
    failed = osc_fails("network", "trunk", "set", "--subport",
                       f"port={s3['id']},segmentation-type=vlan,segmentation-id=4095", name,
                       env=admin_env)
    assert "is not in range" in failed.stderr, failed.stderr
    # `inherit` on a VXLAN network: the answer names the network type and what inherit needs.
    failed = osc_fails("network", "trunk", "set", "--subport",
                       f"port={s3['id']},segmentation-type=inherit", name, env=admin_env)
    assert "is a vxlan network, and segmentation_type 'inherit' needs a VLAN network" in \
        failed.stderr, failed.stderr
    assert "Unknown segmentation_type" not in failed.stderr, failed.stderr

    # The parent port tells about its trunk; subports are marked as such and cannot go.
    details = osc("port", "show", parent["id"], env=admin_env)["trunk_details"]
    assert details["trunk_id"] == trunk["id"]
    macs = {s["port_id"]: s["mac_address"] for s in details["sub_ports"]}
    assert macs == {s1["id"]: s1["mac_address"], s2["id"]: s2["mac_address"]}
    assert osc("port", "show", s1["id"], env=admin_env)["device_owner"] == "trunk:subport"
    failed = osc_fails("port", "delete", s1["id"], env=admin_env)
    assert "subport for trunk" in failed.stderr or "409" in failed.stderr, failed.stderr
    osc_fails("port", "delete", parent["id"], env=admin_env)

    osc("network", "trunk", "unset", "--subport", s1["id"], name, env=admin_env)
    assert _subports(osc("network", "trunk", "show", name, env=admin_env)) == {s2["id"]: 101}
    assert osc("port", "show", s1["id"], env=admin_env)["device_owner"] == ""

    # A disabled trunk is locked.
    osc("network", "trunk", "set", "--disable", "--description", "locked", name, env=admin_env)
    disabled = osc("network", "trunk", "show", name, env=admin_env)
    assert disabled["is_admin_state_up"] is False and disabled["description"] == "locked"
    failed = osc_fails("network", "trunk", "delete", name, env=admin_env)
    assert failed.returncode != 0
    osc("network", "trunk", "set", "--enable", name, env=admin_env)
    osc("network", "trunk", "delete", name, env=admin_env)
    osc_fails("network", "trunk", "show", trunk["id"], env=admin_env)
    assert osc("port", "show", s2["id"], env=admin_env)["device_owner"] == ""
    assert osc("port", "show", parent["id"], env=admin_env)["trunk_details"] is None


def test_address_group_and_rules(admin_env, cleanup):
    name = unique("ag")
    ag = osc("address", "group", "create", "--address", "192.168.0.10/24", "--address",
             "2001:db8::f00/64", "--description", "web clients", name, env=admin_env)
    cleanup.add(osc_run, "address", "group", "delete", ag["id"], env=admin_env)
    assert sorted(ag["addresses"]) == ["192.168.0.0/24", "2001:db8::/64"]
    assert ag["description"] == "web clients"

    osc("address", "group", "set", "--address", "10.20.30.40", "--address", "10.1.0.0/16",
        name, env=admin_env)
    shown = osc("address", "group", "show", name, env=admin_env)
    assert sorted(shown["addresses"]) == [
        "10.1.0.0/16", "10.20.30.40/32", "192.168.0.0/24", "2001:db8::/64"]
    osc("address", "group", "unset", "--address", "192.168.0.0/24", name, env=admin_env)
    shown = osc("address", "group", "show", name, env=admin_env)
    assert "192.168.0.0/24" not in shown["addresses"] and len(shown["addresses"]) == 3
    failed = osc_fails("address", "group", "unset", "--address", "10.99.0.0/16", name,
                       env=admin_env)
    assert "not found in the address group" in failed.stderr, failed.stderr

    sg = osc("security", "group", "create", unique("sg"), env=admin_env)
    cleanup.add(osc_run, "security", "group", "delete", sg["id"], env=admin_env)
    rule = osc("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
               "--dst-port", "443", "--remote-address-group", name, sg["id"], env=admin_env)
    assert rule["remote_address_group_id"] == ag["id"]
    assert rule["remote_ip_prefix"] is None and rule["remote_group_id"] is None
    failed = osc_fails("address", "group", "delete", name, env=admin_env)
    assert "is in use on one or more security group rules" in failed.stderr, failed.stderr

    # Shared with a project through RBAC.
    project = osc("project", "create", unique("agproj"), env=admin_env)
    cleanup.add(osc_run, "project", "delete", project["id"], env=admin_env)
    policy = osc("network", "rbac", "create", "--type", "address_group", "--action",
                 "access_as_shared", "--target-project", project["id"], ag["id"], env=admin_env)
    assert policy["object_type"] == "address_group" and policy["object_id"] == ag["id"]
    osc("network", "rbac", "delete", policy["id"], env=admin_env)

    osc("security", "group", "rule", "delete", rule["id"], env=admin_env)
    osc("address", "group", "delete", name, env=admin_env)
    osc_fails("address", "group", "show", ag["id"], env=admin_env)


def test_auto_allocated_topology(admin_env, cleanup):
    project = osc("project", "create", unique("gman"), env=admin_env)
    cleanup.add(osc_run, "project", "delete", project["id"], env=admin_env)
    pid = project["id"]

    failed = osc_fails("network", "auto", "allocated", "topology", "create", "--check-resources",
                       "--project", pid, env=admin_env)
    assert "No default router:external network" in failed.stderr, failed.stderr

    ext = _network(admin_env, cleanup, "--external", "--default")
    assert ext["is_default"] is True and ext["router:external"] is True
    sub = osc("subnet", "create", "--network", ext["id"], "--subnet-range", "172.30.9.0/24",
              unique("extsub"), env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", sub["id"], env=admin_env)
    failed = osc_fails("network", "create", "--external", "--default", unique("ext2"),
                       env=admin_env)
    assert "A default external network already exists" in failed.stderr, failed.stderr
    failed = osc_fails("network", "auto", "allocated", "topology", "create", "--check-resources",
                       "--project", pid, env=admin_env)
    assert "No default subnetpools defined" in failed.stderr, failed.stderr
    for prefix, length in (("10.210.0.0/16", "26"), ("fd00:210::/48", "64")):
        pool = osc("subnet", "pool", "create", "--default", "--share", "--pool-prefix", prefix,
                   "--default-prefix-length", length, unique("pool"), env=admin_env)
        cleanup.add(osc_run, "subnet", "pool", "delete", pool["id"], env=admin_env)

    osc("network", "auto", "allocated", "topology", "create", "--check-resources",
        "--project", pid, env=admin_env)
    topo = osc("network", "auto", "allocated", "topology", "create", "--project", pid,
               env=admin_env)
    cleanup.add(osc_run, "network", "auto", "allocated", "topology", "delete", "--project", pid,
                env=admin_env)
    assert topo["project_id"] == pid
    again = osc("network", "auto", "allocated", "topology", "create", "--project", pid,
                env=admin_env)
    assert again["id"] == topo["id"], "built once"

    net = osc("network", "show", topo["id"], env=admin_env)
    assert net["name"] == "auto_allocated_network" and net["project_id"] == pid
    assert net["admin_state_up"] is True and len(net["subnets"]) == 2
    subnets = osc("subnet", "list", "--network", topo["id"], env=admin_env)
    assert sorted(s["Name"] for s in subnets) == [
        "auto_allocated_subnet_v4", "auto_allocated_subnet_v6"]
    routers = osc("router", "list", "--project", pid, "--long", env=admin_env)
    assert [r["Name"] for r in routers] == ["auto_allocated_router"]
    router = osc("router", "show", routers[0]["ID"], env=admin_env)
    assert router["external_gateway_info"]["network_id"] == ext["id"]
    assert len(router["interfaces_info"]) == 2

    osc("network", "auto", "allocated", "topology", "delete", "--project", pid, env=admin_env)
    osc_fails("network", "show", topo["id"], env=admin_env)
    assert osc("router", "list", "--project", pid, env=admin_env) == []


def _member_env(admin_env, cleanup) -> dict[str, str]:
    """A member of a new project."""
    project = unique("proj")
    osc("project", "create", project, env=admin_env)
    cleanup.add(osc_run, "project", "delete", project, env=admin_env)
    username, password = unique("user"), "pw-" + secrets.token_hex(8)
    user = osc("user", "create", "--project", project, "--password", password, username,
               env=admin_env)
    cleanup.add(osc_run, "user", "delete", user["id"], env=admin_env)
    osc("role", "add", "--user", username, "--project", project, "member", env=admin_env)
    return user_env(admin_env, username, password, project)


def test_flavors_profiles_and_providers(admin_env, cleanup):
    env_b = _member_env(admin_env, cleanup)
    providers = osc("network", "service", "provider", "list", env=admin_env)
    assert {"Service Type": "L3_ROUTER_NAT", "Name": "ha", "Default": False} in providers

    profile = osc("network", "flavor", "profile", "create", "--driver", "neutrino.l3.ha",
                  "--description", "two hosts", "--enable", env=admin_env)
    cleanup.add(osc_run, "network", "flavor", "profile", "delete", profile["id"], env=admin_env)
    assert profile["driver"] == "neutrino.l3.ha" and profile["enabled"] is True
    failed = osc_fails("network", "flavor", "profile", "create", "--driver", "no.such.Driver",
                       env=admin_env)
    assert "could not be found" in failed.stderr

    name = unique("flavor")
    flavor = osc("network", "flavor", "create", "--service-type", "L3_ROUTER_NAT",
                 "--description", "HA routers", name, env=admin_env)
    cleanup.add(osc_run, "network", "flavor", "delete", flavor["id"], env=admin_env)
    assert flavor["service_type"] == "L3_ROUTER_NAT" and flavor["enabled"] is True

    osc("network", "flavor", "add", "profile", name, profile["id"], env=admin_env)
    shown = osc("network", "flavor", "show", name, env=admin_env)
    assert shown["service_profile_ids"] == [profile["id"]]
    # A profile in use cannot go; a project reads flavors but cannot make them.
    failed = osc_fails("network", "flavor", "profile", "delete", profile["id"], env=admin_env)
    assert "in use" in failed.stderr.lower() or "used by" in failed.stderr
    assert osc("network", "flavor", "show", name, env=env_b)["id"] == flavor["id"]
    osc_fails("network", "flavor", "create", "--service-type", "L3_ROUTER_NAT",
              unique("flavor"), env=env_b)

    osc("network", "flavor", "set", "--disable", "--description", "off", name, env=admin_env)
    assert osc("network", "flavor", "show", name, env=admin_env)["enabled"] is False
    osc("network", "flavor", "remove", "profile", name, profile["id"], env=admin_env)
    assert osc("network", "flavor", "show", name, env=admin_env)["service_profile_ids"] == []


def test_availability_zones(tmp_path):
    """Agents' zones through the CLI, on a server of its own (the fake agents registered here
    would take routers of the session's server)."""
    from test_crash import _admin_token, _call

    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    try:
        env = server.env
        token, _ = _admin_token(server)
        for host, zone in (("h1", "az1"), ("h2", "az2")):
            status, doc, _ = _call(server, token, "POST", "/neutrino/v1/agents", {"agent": {
                "host": host, "availability_zone": zone,
                "configurations": {"tunnel_ip": "198.18.0.1"}}})
            assert status in (200, 201), doc
        zones = osc("availability", "zone", "list", "--network", "--long", env=env)
        got = sorted((z["Zone Name"], z["Zone Resource"], z["Zone Status"]) for z in zones)
        assert got == [("az1", "network", "available"), ("az1", "router", "available"),
                       ("az2", "network", "available"), ("az2", "router", "available")], zones
        net = osc("network", "create", "--availability-zone-hint", "az2", unique("net"),
                  env=env)
        assert net["availability_zone_hints"] == ["az2"]
        failed = osc_fails("router", "create", "--availability-zone-hint", "nowhere",
                           unique("router"), env=env)
        assert "could not be found" in failed.stderr, failed.stderr
        router = osc("router", "create", "--availability-zone-hint", "az1", unique("router"),
                     env=env)
        assert router["availability_zone_hints"] == ["az1"]
    finally:
        server.stop()


def test_dhcp_agent_scheduling(tmp_path):
    """Networks scheduled to DHCP agents by hand with the CLI (``openstack network agent
    add/remove network --dhcp``), on a server of its own with two registered hosts."""
    from test_crash import _admin_token, _call

    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    try:
        env = server.env
        token, _ = _admin_token(server)
        for host in ("h1", "h2"):
            status, doc, _ = _call(server, token, "POST", "/neutrino/v1/agents", {"agent": {
                "host": host, "configurations": {"tunnel_ip": "198.18.0.1"}}})
            assert status in (200, 201), doc
        agents = {a["Host"]: a["ID"] for a in osc("network", "agent", "list", "--agent-type",
                                                   "dhcp", env=env)}
        assert sorted(agents) == ["h1", "h2"], agents
        net = osc("network", "create", unique("net"), env=env)["id"]
        osc("subnet", "create", "--network", net, "--subnet-range", "10.5.0.0/24",
            unique("sub"), env=env)
        hosting = osc("network", "agent", "list", "--network", net, env=env)
        assert len(hosting) == 1, hosting
        other = next(h for h in agents if h != hosting[0]["Host"])
        osc("network", "agent", "add", "network", "--dhcp", agents[other], net, env=env,
            json_output=False)
        hosts = sorted(a["Host"] for a in osc("network", "agent", "list", "--network", net,
                                              env=env))
        assert hosts == ["h1", "h2"]
        on_other = osc("network", "list", "--agent", agents[other], env=env)
        assert [n["ID"] for n in on_other] == [net]
        dhcp_ports = osc("port", "list", "--network", net, "--device-owner", "network:dhcp",
                         env=env)
        assert len(dhcp_ports) == 2, dhcp_ports
        osc("network", "agent", "remove", "network", "--dhcp", agents[other], net, env=env,
            json_output=False)
        assert osc("network", "list", "--agent", agents[other], env=env) == []
        # The CLI drops the error of removing it again (it builds a CommandError it never
        # raises): the API answers 409.
        status, doc, _ = _call(server, token, "DELETE",
                               f"/v2.0/agents/{agents[other]}/dhcp-networks/{net}", None)
        assert status == 409 and doc["NeutronError"]["type"] == "NetworkNotHostedByDhcpAgent"
    finally:
        server.stop()


def test_network_segment_ranges(admin_env, cleanup):
    env_b = _member_env(admin_env, cleanup)
    ranges = osc("network", "segment", "range", "list", "--long", env=admin_env)
    default = [r for r in ranges if r["Default"]]
    assert len(default) == 1 and default[0]["Network Type"] == "vxlan"
    osc_fails("network", "segment", "range", "delete", default[0]["ID"], env=admin_env)

    project = osc("project", "create", unique("ranges"), env=admin_env)
    cleanup.add(osc_run, "project", "delete", project["id"], env=admin_env)
    name = unique("range")
    # Far above anything else the suite allocates, so that no other network lands in it.
    made = osc("network", "segment", "range", "create", "--private", "--project", project["id"],
               "--network-type", "vxlan", "--minimum", "9000100", "--maximum", "9000101", name,
               env=admin_env)
    cleanup.add(osc_run, "network", "segment", "range", "delete", made["id"], env=admin_env)
    assert made["default"] is False and made["shared"] is False
    assert made["project_id"] == project["id"]
    assert (made["minimum"], made["maximum"]) == (9000100, 9000101)
    failed = osc_fails("network", "segment", "range", "create", "--shared", "--network-type",
                       "vxlan", "--minimum", "9000101", "--maximum", "9000200", unique("range"),
                       env=admin_env)
    assert "overlaps" in failed.stderr
    # Admin-only: other projects' listings leave every range out.
    assert osc("network", "segment", "range", "list", env=env_b) == []

    # The project's network takes an id of its range; the range is then in use.
    net = osc("network", "create", "--project", project["id"], unique("net"), env=admin_env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=admin_env)
    assert net["provider:segmentation_id"] == 9000100
    shown = osc("network", "segment", "range", "show", name, env=admin_env)
    # (The CLI turns the API's {id: project} into {project: [ids]}.)
    assert shown["used"] == {project["id"]: ["9000100"]} and shown["available"] == ["9000101"]
    failed = osc_fails("network", "segment", "range", "delete", name, env=admin_env)
    assert "referenced" in failed.stderr
    osc("network", "delete", net["id"], env=admin_env)
    osc("network", "segment", "range", "set", "--name", name + "-x", "--minimum", "9000090",
        "--maximum", "9000150", name, env=admin_env)
    shown = osc("network", "segment", "range", "show", name + "-x", env=admin_env)
    assert shown["maximum"] == 9000150 and shown["used"] == {}
    osc("network", "segment", "range", "delete", name + "-x", env=admin_env)
    osc_fails("network", "segment", "range", "show", made["id"], env=admin_env)


def test_router_conntrack_helpers(admin_env, cleanup):
    env_b = _member_env(admin_env, cleanup)
    router = osc("router", "create", unique("router"), env=admin_env)
    cleanup.add(osc_run, "router", "delete", router["id"], env=admin_env)
    helper = osc("network", "l3", "conntrack", "helper", "create", "--helper", "tftp",
                 "--protocol", "udp", "--port", "69", router["id"], env=admin_env)
    assert (helper["helper"], helper["protocol"], helper["port"]) == ("tftp", "udp", 69)
    failed = osc_fails("network", "l3", "conntrack", "helper", "create", "--helper", "tftp",
                       "--protocol", "tcp", "--port", "69", router["id"], env=admin_env)
    assert "does not support" in failed.stderr
    osc_fails("network", "l3", "conntrack", "helper", "create", "--helper", "nope",
              "--protocol", "tcp", "--port", "69", router["id"], env=admin_env)
    listed = osc("network", "l3", "conntrack", "helper", "list", router["id"], env=admin_env)
    assert [h["ID"] for h in listed] == [helper["id"]]
    osc("network", "l3", "conntrack", "helper", "set", "--port", "6969", router["id"],
        helper["id"], env=admin_env)
    shown = osc("network", "l3", "conntrack", "helper", "show", router["id"], helper["id"],
                env=admin_env)
    assert shown["port"] == 6969
    assert osc("router", "show", router["id"], env=admin_env)["conntrack_helpers"] == [
        {"protocol": "udp", "port": 6969, "helper": "tftp"}]
    # Another project does not see the router's helpers.
    osc_fails("network", "l3", "conntrack", "helper", "list", router["id"], env=env_b)
    osc("network", "l3", "conntrack", "helper", "delete", router["id"], helper["id"],
        env=admin_env)
    assert osc("network", "l3", "conntrack", "helper", "list", router["id"], env=admin_env) == []


def test_local_ips_and_associations(admin_env, cleanup):
    env_b = _member_env(admin_env, cleanup)
    net = _network(admin_env, cleanup)
    osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.73.0.0/24",
        unique("sub"), env=admin_env)
    name = unique("lip")
    lip = osc("local", "ip", "create", "--network", net["id"], "--local-ip-address",
              "10.73.0.200", "--name", name, env=admin_env)
    cleanup.add(osc_run, "local", "ip", "delete", lip["id"], env=admin_env)
    assert (lip["local_ip_address"], lip["ip_mode"]) == ("10.73.0.200", "translate")
    holder = osc("port", "show", lip["local_port_id"], env=admin_env)
    assert holder["device_owner"] == "network:local_ip"
    failed = osc_fails("port", "delete", holder["id"], env=admin_env)
    assert "still referenced by Local IPs" in failed.stderr
    osc("local", "ip", "set", "--name", name + "-2", lip["id"], env=admin_env)
    assert osc("local", "ip", "show", lip["id"], env=admin_env)["name"] == name + "-2"
    port = _port(admin_env, cleanup, net["id"])
    made = osc("local", "ip", "association", "create", lip["id"], port["id"], env=admin_env)
    assert made["fixed_port_id"] == port["id"]
    assert made["fixed_ip"] == port["fixed_ips"][0]["ip_address"]
    listed = osc("local", "ip", "association", "list", lip["id"], env=admin_env)
    assert [a["Fixed port ID"] for a in listed] == [port["id"]]
    # In use while associated; another project sees nothing.
    assert "still associated" in osc_fails("local", "ip", "delete", lip["id"],
                                           env=admin_env).stderr
    assert lip["id"] not in [x["ID"] for x in osc("local", "ip", "list", env=env_b)]
    osc("local", "ip", "association", "delete", lip["id"], port["id"], env=admin_env)
    assert osc("local", "ip", "association", "list", lip["id"], env=admin_env) == []
    osc("local", "ip", "delete", lip["id"], env=admin_env)
    osc_fails("port", "show", holder["id"], env=admin_env)
