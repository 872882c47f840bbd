"""The real `openstack` CLI (python-openstackclient) against the server, logged in with the
password of the bootstrap admin (and of a user the test creates)."""

from __future__ import annotations

import re
import secrets
import uuid

import pytest

from conftest import osc, osc_fails, osc_run, unique, user_env

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def by_id(rows: list[dict], key: str = "ID") -> dict[str, dict]:
    return {r[key]: r for r in rows}


def make_network(env, cleanup, prefix="net", *extra):
    net = osc("network", "create", *extra, unique(prefix), env=env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=env)
    return net


# ---------------------------------------------------------------------------------------------


def test_token_issue(admin_env):
    tok = osc("token", "issue", env=admin_env)
    assert tok["id"], tok
    assert re.fullmatch(r"[0-9a-f]{32}|[0-9a-f-]{36}", tok["project_id"]), tok
    assert tok["user_id"], tok
    assert tok["expires"], tok


def test_network_create_list_show_set_delete(admin_env, cleanup):
    name = unique("net")
    net = osc("network", "create", "--description", "first", name, env=admin_env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=admin_env)
    assert net["name"] == name
    assert net["description"] == "first"
    assert net["admin_state_up"] is True
    assert net["shared"] is False
    assert net["router:external"] is False
    assert net["status"] == "ACTIVE"
    assert net["subnets"] == []
    assert net["tags"] == []
    assert net["revision_number"] >= 1
    uuid.UUID(net["id"])

    rows = osc("network", "list", env=admin_env)
    assert net["id"] in by_id(rows), rows
    assert by_id(rows)[net["id"]]["Name"] == name
    assert osc("network", "list", "--name", name, env=admin_env) == [
        {"ID": net["id"], "Name": name, "Subnets": []}
    ]

    shown = osc("network", "show", name, env=admin_env)  # by name
    assert shown["id"] == net["id"]
    assert osc("network", "show", net["id"], env=admin_env)["name"] == name  # by id

    new_name = unique("renamed")
    assert osc("network", "set", "--name", new_name, "--description", "second", net["id"],
               env=admin_env) is None
    shown = osc("network", "show", net["id"], env=admin_env)
    assert shown["name"] == new_name
    assert shown["description"] == "second"
    assert shown["revision_number"] > net["revision_number"]

    osc("network", "delete", net["id"], env=admin_env)
    osc_fails("network", "show", net["id"], env=admin_env)
    assert net["id"] not in by_id(osc("network", "list", env=admin_env))


def test_network_create_shared(admin_env, cleanup):
    net = make_network(admin_env, cleanup, "shared", "--share")
    assert net["shared"] is True
    assert osc("network", "show", net["id"], env=admin_env)["shared"] is True
    rows = osc("network", "list", "--share", env=admin_env)
    assert net["id"] in by_id(rows)
    osc("network", "set", "--no-share", net["id"], env=admin_env)
    assert osc("network", "show", net["id"], env=admin_env)["shared"] is False


def test_subnets_ipv4_and_ipv6(admin_env, cleanup):
    net = make_network(admin_env, cleanup, "subnets")
    s4_name, s6_name = unique("s4"), unique("s6")
    s4 = osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.10.0.0/24",
             "--allocation-pool", "start=10.10.0.10,end=10.10.0.200",
             "--dns-nameserver", "8.8.8.8", "--gateway", "10.10.0.1",
             "--description", "v4 subnet", s4_name, env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", s4["id"], env=admin_env)
    assert s4["name"] == s4_name
    assert s4["network_id"] == net["id"]
    assert s4["ip_version"] == 4
    assert s4["cidr"] == "10.10.0.0/24"
    assert s4["gateway_ip"] == "10.10.0.1"
    assert s4["allocation_pools"] == [{"start": "10.10.0.10", "end": "10.10.0.200"}]
    assert s4["dns_nameservers"] == ["8.8.8.8"]
    assert s4["enable_dhcp"] is True
    assert s4["description"] == "v4 subnet"
    assert s4["ipv6_ra_mode"] is None and s4["ipv6_address_mode"] is None
    assert s4["host_routes"] == []

    s6 = osc("subnet", "create", "--network", net["name"], "--ip-version", "6",
             "--ipv6-ra-mode", "slaac", "--ipv6-address-mode", "slaac",
             "--subnet-range", "2001:db8:1::/64", s6_name, env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", s6["id"], env=admin_env)
    assert s6["ip_version"] == 6
    assert s6["cidr"] == "2001:db8:1::/64"
    assert s6["ipv6_ra_mode"] == "slaac"
    assert s6["ipv6_address_mode"] == "slaac"
    assert s6["gateway_ip"] == "2001:db8:1::1"
    assert len(s6["allocation_pools"]) == 1
    assert s6["allocation_pools"][0]["end"] == "2001:db8:1:0:ffff:ffff:ffff:ffff"

    assert sorted(osc("network", "show", net["id"], env=admin_env)["subnets"]) == sorted(
        [s4["id"], s6["id"]])

    rows = osc("subnet", "list", "--network", net["id"], env=admin_env)
    assert sorted(r["ID"] for r in rows) == sorted([s4["id"], s6["id"]])
    assert by_id(rows)[s4["id"]]["Subnet"] == "10.10.0.0/24"
    assert by_id(rows)[s6["id"]]["Subnet"] == "2001:db8:1::/64"
    assert by_id(rows)[s4["id"]]["Network"] == net["id"]
    rows = osc("subnet", "list", "--network", net["id"], "--ip-version", "6", env=admin_env)
    assert [r["ID"] for r in rows] == [s6["id"]]

    assert osc("subnet", "show", s4_name, env=admin_env)["id"] == s4["id"]
    new_name = unique("s4-renamed")
    osc("subnet", "set", "--name", new_name, "--description", "changed",
        "--dns-nameserver", "8.8.4.4", s4["id"], env=admin_env)
    shown = osc("subnet", "show", s4["id"], env=admin_env)
    assert shown["name"] == new_name
    assert shown["description"] == "changed"
    # `subnet set --dns-nameserver` sends the new server first, then the old ones; order is kept.
    assert shown["dns_nameservers"] == ["8.8.4.4", "8.8.8.8"]
    assert shown["cidr"] == "10.10.0.0/24"

    osc("subnet", "delete", s6["id"], env=admin_env)
    osc_fails("subnet", "show", s6["id"], env=admin_env)
    assert osc("network", "show", net["id"], env=admin_env)["subnets"] == [s4["id"]]


def test_ports(admin_env, cleanup):
    net = make_network(admin_env, cleanup, "ports")
    sub = osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.10.0.0/24",
              "--allocation-pool", "start=10.10.0.10,end=10.10.0.200", unique("sub"), env=admin_env)
    cleanup.add(osc_run, "subnet", "delete", sub["id"], env=admin_env)

    name = unique("port")
    port = osc("port", "create", "--network", net["id"], "--fixed-ip",
               f"subnet={sub['id']},ip-address=10.10.0.20", "--description", "fixed", name,
               env=admin_env)
    cleanup.add(osc_run, "port", "delete", port["id"], env=admin_env)
    assert port["name"] == name
    assert port["network_id"] == net["id"]
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.10.0.20"}]
    assert MAC_RE.match(port["mac_address"]), port["mac_address"]
    assert int(port["mac_address"][:2], 16) & 1 == 0, "unicast MAC"
    assert port["status"] == "DOWN"  # not bound to any host
    assert port["admin_state_up"] is True
    assert port["description"] == "fixed"
    assert port["device_owner"] == "" and port["device_id"] == ""

    # A second port takes an address from the allocation pool.
    auto = osc("port", "create", "--network", net["name"], unique("auto"), env=admin_env)
    cleanup.add(osc_run, "port", "delete", auto["id"], env=admin_env)
    assert len(auto["fixed_ips"]) == 1
    ip = auto["fixed_ips"][0]["ip_address"]
    assert auto["fixed_ips"][0]["subnet_id"] == sub["id"]
    last = int(ip.rsplit(".", 1)[1])
    assert ip.startswith("10.10.0.") and 10 <= last <= 200 and ip != "10.10.0.20", ip
    assert auto["mac_address"] != port["mac_address"]

    # The same fixed IP again: conflict.
    dup = osc_fails("port", "create", "--network", net["id"], "--fixed-ip",
                    f"subnet={sub['id']},ip-address=10.10.0.20", unique("dup"), env=admin_env)
    assert "409" in dup.stderr or "in use" in dup.stderr.lower(), dup.stderr

    rows = osc("port", "list", "--network", net["id"], env=admin_env)
    assert sorted(r["ID"] for r in rows) == sorted([port["id"], auto["id"]])
    row = by_id(rows)[port["id"]]
    assert row["Name"] == name
    assert row["MAC Address"] == port["mac_address"]
    assert row["Fixed IP Addresses"] == port["fixed_ips"]
    assert row["Status"] == "DOWN"

    shown = osc("port", "show", port["id"], env=admin_env)
    assert shown["fixed_ips"] == port["fixed_ips"]
    assert shown["mac_address"] == port["mac_address"]
    assert shown["status"] == "DOWN"

    new_name = unique("port-renamed")
    osc("port", "set", "--name", new_name, "--description", "changed", port["id"], env=admin_env)
    shown = osc("port", "show", new_name, env=admin_env)
    assert shown["id"] == port["id"]
    assert shown["description"] == "changed"
    assert shown["fixed_ips"] == port["fixed_ips"]
    assert shown["revision_number"] > port["revision_number"]

    osc("port", "delete", port["id"], env=admin_env)
    osc_fails("port", "show", port["id"], env=admin_env)
    assert [r["ID"] for r in osc("port", "list", "--network", net["id"], env=admin_env)] == [auto["id"]]
    # The address is free again.
    again = osc("port", "create", "--network", net["id"], "--fixed-ip",
                f"subnet={sub['id']},ip-address=10.10.0.20", unique("again"), env=admin_env)
    cleanup.add(osc_run, "port", "delete", again["id"], env=admin_env)
    assert again["fixed_ips"][0]["ip_address"] == "10.10.0.20"


def test_security_groups_and_rules(admin_env, cleanup):
    name = unique("sg")
    sg = osc("security", "group", "create", "--description", "web", name, env=admin_env)
    cleanup.add(osc_run, "security", "group", "delete", sg["id"], env=admin_env)
    assert sg["name"] == name
    assert sg["description"] == "web"
    rules = sg["rules"]
    assert len(rules) == 2, rules
    assert sorted(r["ethertype"] for r in rules) == ["IPv4", "IPv6"]
    for r in rules:
        assert r["direction"] == "egress"
        assert r["protocol"] is None
        assert r["remote_ip_prefix"] is None
        assert r["port_range_min"] is None and r["port_range_max"] is None
        assert r["security_group_id"] == sg["id"]

    rows = osc("security", "group", "list", env=admin_env)
    assert by_id(rows)[sg["id"]]["Name"] == name
    assert by_id(rows)[sg["id"]]["Description"] == "web"
    assert any(r["Name"] == "default" for r in rows), "the project's default group is listed"
    assert osc("security", "group", "show", name, env=admin_env)["id"] == sg["id"]

    new_name = unique("sg-renamed")
    osc("security", "group", "set", "--name", new_name, "--description", "changed", sg["id"],
        env=admin_env)
    shown = osc("security", "group", "show", sg["id"], env=admin_env)
    assert shown["name"] == new_name
    assert shown["description"] == "changed"

    rule = osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
               "--remote-ip", "10.0.0.0/8", "--ingress", sg["id"], env=admin_env)
    assert rule["direction"] == "ingress"
    assert rule["protocol"] == "tcp"
    assert rule["port_range_min"] == 22 and rule["port_range_max"] == 22
    assert rule["remote_ip_prefix"] == "10.0.0.0/8"
    assert rule["ether_type"] == "IPv4"
    assert rule["security_group_id"] == sg["id"]

    osc_fails("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
              "--remote-ip", "10.0.0.0/8", "--ingress", sg["id"], env=admin_env)  # duplicate

    rows = osc("security", "group", "rule", "list", sg["id"], env=admin_env)
    assert len(rows) == 3, rows
    r = by_id(rows)[rule["id"]]
    assert r["IP Protocol"] == "tcp"
    assert r["Port Range"] == "22:22"
    assert r["IP Range"] == "10.0.0.0/8"
    assert r["Direction"] == "ingress"
    assert [x["ID"] for x in osc("security", "group", "rule", "list", "--ingress", sg["id"],
                                 env=admin_env)] == [rule["id"]]
    assert osc("security", "group", "rule", "show", rule["id"], env=admin_env)["id"] == rule["id"]

    osc("security", "group", "rule", "delete", rule["id"], env=admin_env)
    rows = osc("security", "group", "rule", "list", sg["id"], env=admin_env)
    assert len(rows) == 2 and rule["id"] not in by_id(rows)
    assert len(osc("security", "group", "show", sg["id"], env=admin_env)["rules"]) == 2

    osc("security", "group", "delete", sg["id"], env=admin_env)
    osc_fails("security", "group", "show", sg["id"], env=admin_env)


def _quota(rows: list[dict]) -> dict:
    return {r["Resource"]: r["Limit"] for r in rows}


def test_quotas(admin_env, cleanup):
    q = _quota(osc("quota", "show", "--network", env=admin_env))
    assert q["networks"] == 100
    assert q["subnets"] == 100
    assert q["ports"] == 500
    assert q["routers"] == 10
    assert q["floating_ips"] == 50
    assert q["security_groups"] == 10
    assert q["security_group_rules"] == 100

    project = osc("project", "create", unique("quota"), env=admin_env)
    cleanup.add(osc_run, "project", "delete", project["id"], env=admin_env)
    assert _quota(osc("quota", "show", "--network", project["id"], env=admin_env))["networks"] == 100

    osc("quota", "set", "--networks", "5", "--ports", "50", project["id"], env=admin_env)
    q = _quota(osc("quota", "show", "--network", project["id"], env=admin_env))
    assert q["networks"] == 5
    assert q["ports"] == 50
    assert q["subnets"] == 100  # untouched
    # The admin's own project keeps its limits.
    assert _quota(osc("quota", "show", "--network", env=admin_env))["networks"] == 100


def test_network_tags(admin_env, cleanup):
    net = make_network(admin_env, cleanup, "tags")
    other = make_network(admin_env, cleanup, "untagged")
    a, b = unique("a"), unique("b")
    osc("network", "set", "--tag", a, "--tag", b, net["id"], env=admin_env)
    assert sorted(osc("network", "show", net["id"], env=admin_env)["tags"]) == sorted([a, b])

    assert [r["ID"] for r in osc("network", "list", "--tags", a, env=admin_env)] == [net["id"]]
    assert [r["ID"] for r in osc("network", "list", "--tags", f"{a},{b}", env=admin_env)] == [net["id"]]
    assert [r["ID"] for r in osc("network", "list", "--any-tags", f"{a},nope-{a}", env=admin_env)] == [net["id"]]
    not_tagged = by_id(osc("network", "list", "--not-tags", a, env=admin_env))
    assert other["id"] in not_tagged and net["id"] not in not_tagged

    osc("network", "unset", "--tag", a, net["id"], env=admin_env)
    assert osc("network", "show", net["id"], env=admin_env)["tags"] == [b]
    assert osc("network", "list", "--tags", a, env=admin_env) == []
    assert [r["ID"] for r in osc("network", "list", "--tags", b, env=admin_env)] == [net["id"]]

    tagged = osc("network", "create", "--tag", a, unique("born-tagged"), env=admin_env)
    cleanup.add(osc_run, "network", "delete", tagged["id"], env=admin_env)
    assert tagged["tags"] == [a]
    osc("network", "set", "--no-tag", tagged["id"], env=admin_env)
    assert osc("network", "show", tagged["id"], env=admin_env)["tags"] == []


def test_project_user_role_and_visibility(admin_env, cleanup):
    project_name = unique("proj")
    project = osc("project", "create", "--description", "acceptance", project_name, env=admin_env)
    cleanup.add(osc_run, "project", "delete", project["id"], env=admin_env)
    assert project["name"] == project_name

    username, password = unique("user"), "pw-" + secrets.token_hex(8)
    user = osc("user", "create", "--project", project_name, "--password", password, username,
               env=admin_env)
    cleanup.add(osc_run, "user", "delete", user["id"], env=admin_env)
    assert user["name"] == username
    assert user["default_project_id"] == project["id"]

    assert osc("role", "add", "--user", username, "--project", project_name, "member",
               env=admin_env) is None

    private = make_network(admin_env, cleanup, "admin-private")
    shared = make_network(admin_env, cleanup, "admin-shared", "--share")

    env = user_env(admin_env, username, password, project_name)
    tok = osc("token", "issue", env=env)
    assert tok["project_id"] == project["id"]
    assert tok["user_id"] == user["id"]

    own = osc("network", "create", unique("user-net"), env=env)
    cleanup.add(osc_run, "network", "delete", own["id"], env=admin_env)
    assert own["project_id"] == project["id"]
    assert own["shared"] is False

    seen = by_id(osc("network", "list", "--long", env=env))
    assert own["id"] in seen
    assert shared["id"] in seen
    assert private["id"] not in seen
    for net_id, row in seen.items():  # only its own networks and shared ones
        assert net_id == own["id"] or row["Shared"] is True, row
    assert seen[own["id"]]["Project"] == project["id"]
    assert osc("network", "show", shared["id"], env=env)["id"] == shared["id"]
    osc_fails("network", "show", private["id"], env=env)
    # Only the admin may share; the owner of a shared network is the admin.
    osc_fails("network", "create", "--share", unique("user-shared"), env=env)
    osc_fails("network", "delete", shared["id"], env=env)
    osc_fails("network", "delete", private["id"], env=env)
    # The admin sees the user's network too.
    assert own["id"] in by_id(osc("network", "list", env=admin_env))

    osc("network", "delete", own["id"], env=env)
    osc_fails("network", "show", own["id"], env=admin_env)


def test_role_assignment_list_names(admin_env, cleanup):
    """`--names` asks for `include_names`: user, project and role come back with their names
    and domains; `--effective` adds the implied roles; other listing options agree."""
    project_name, username = unique("proj"), unique("user")
    project = osc("project", "create", project_name, env=admin_env)
    cleanup.add(osc_run, "project", "delete", project["id"], env=admin_env)
    user = osc("user", "create", "--password", "pw-" + secrets.token_hex(8), username,
               env=admin_env)
    cleanup.add(osc_run, "user", "delete", user["id"], env=admin_env)
    osc("role", "add", "--user", username, "--project", project_name, "member", env=admin_env)

    rows = osc("role", "assignment", "list", "--user", username, "--names", env=admin_env)
    assert rows == [{"Role": "member", "User": f"{username}@Default", "Group": "",
                     "Project": f"{project_name}@Default", "Domain": "", "System": "",
                     "Inherited": False}], rows
    rows = osc("role", "assignment", "list", "--project", project_name, "--names",
               "--effective", env=admin_env)
    assert sorted(r["Role"] for r in rows) == ["member", "reader"], rows
    assert {r["User"] for r in rows} == {f"{username}@Default"}, rows
    rows = osc("role", "assignment", "list", "--user", username, "--role", "member", env=admin_env)
    assert [(r["Role"], r["User"], r["Project"]) for r in rows] == [
        (osc("role", "show", "member", env=admin_env)["id"], user["id"], project["id"])], rows
    # Assignments here are all on projects: a domain-scoped listing is empty.
    assert osc("role", "assignment", "list", "--user", username, "--domain", "default",
               env=admin_env) == []
    assert [r["Name"] for r in osc("user", "list", "--project", project_name, env=admin_env)] == [
        username]
    assert [r["Name"] for r in osc("project", "list", "--user", username, env=admin_env)] == [
        project_name]


def test_show_missing_network_fails(admin_env):
    proc = osc_fails("network", "show", str(uuid.uuid4()), env=admin_env)
    assert proc.stderr.strip()
    proc = osc_fails("network", "show", unique("no-such-network"), env=admin_env)
    assert "no-such-network" in proc.stderr or "No Network found" in proc.stderr, proc.stderr


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "not-a-cidr"])
def test_bad_subnet_range_fails(admin_env, cleanup, cidr):
    net = make_network(admin_env, cleanup, "badcidr")
    osc_fails("subnet", "create", "--network", net["id"], "--subnet-range", cidr, unique("bad"),
              env=admin_env)
    assert osc("network", "show", net["id"], env=admin_env)["subnets"] == []
