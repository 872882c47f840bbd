"""openstacksdk against the server: `openstack.connect(...)` with the admin's password, then the
network proxy (and the identity proxy for a second project and user)."""

from __future__ import annotations

import ipaddress
import re
import secrets
import uuid

import openstack
import openstack.exceptions as exc
import pytest

from conftest import unique

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def eui64(cidr: str, mac: str) -> str:
    """The SLAAC (modified EUI-64) address of ``mac`` in the /64 ``cidr``."""
    b = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return str(ipaddress.IPv6Address(ipaddress.IPv6Network(cidr).network_address.packed[:8] + iid))


@pytest.fixture
def net(admin_conn, cleanup):
    """A fresh network of the admin."""
    n = admin_conn.network.create_network(name=unique("sdk-net"))
    cleanup.add(admin_conn.network.delete_network, n, ignore_missing=True)
    return n


def make_subnets(conn, cleanup, network):
    s4 = conn.network.create_subnet(
        network_id=network.id, name=unique("sdk-s4"), ip_version=4, cidr="10.20.0.0/24",
        gateway_ip="10.20.0.1", allocation_pools=[{"start": "10.20.0.10", "end": "10.20.0.100"}],
        dns_nameservers=["8.8.8.8", "1.1.1.1"])
    cleanup.add(conn.network.delete_subnet, s4, ignore_missing=True)
    s6 = conn.network.create_subnet(
        network_id=network.id, name=unique("sdk-s6"), ip_version=6, cidr="2001:db8:2::/64",
        ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    cleanup.add(conn.network.delete_subnet, s6, ignore_missing=True)
    return s4, s6


# ---------------------------------------------------------------------------------------------


def test_connect_and_token(admin_conn, neutrino):
    token = admin_conn.authorize()
    assert token
    access = admin_conn.session.auth.get_access(admin_conn.session)
    assert access.project_name == neutrino.openrc["OS_PROJECT_NAME"]
    assert access.username == neutrino.openrc["OS_USERNAME"]
    assert "admin" in access.role_names
    # The catalog leads the SDK to the network API on the same port.
    assert admin_conn.network.get_endpoint().rstrip("/").startswith(neutrino.url)


def test_network_crud(admin_conn, cleanup):
    name = unique("sdk-net")
    n = admin_conn.network.create_network(name=name, description="d1")
    cleanup.add(admin_conn.network.delete_network, n, ignore_missing=True)
    uuid.UUID(n.id)
    assert n.name == name
    assert n.description == "d1"
    assert n.is_admin_state_up is True
    assert n.is_shared is False
    assert n.status == "ACTIVE"
    assert n.subnet_ids == []
    assert n.project_id == admin_conn.current_project_id
    assert n.created_at and n.updated_at

    assert n.id in {x.id for x in admin_conn.network.networks()}
    assert [x.id for x in admin_conn.network.networks(name=name)] == [n.id]
    got = admin_conn.network.get_network(n.id)
    assert got.name == name and got.description == "d1"
    assert admin_conn.network.find_network(name).id == n.id

    new_name = unique("sdk-renamed")
    rev = n.revision_number
    upd = admin_conn.network.update_network(n.id, name=new_name, description="d2")
    assert upd.name == new_name and upd.description == "d2"
    assert upd.revision_number > rev
    assert admin_conn.network.get_network(n.id).name == new_name

    shared = admin_conn.network.create_network(name=unique("sdk-shared"), is_shared=True)
    cleanup.add(admin_conn.network.delete_network, shared, ignore_missing=True)
    assert shared.is_shared is True
    assert shared.id in {x.id for x in admin_conn.network.networks(is_shared=True)}
    assert n.id not in {x.id for x in admin_conn.network.networks(is_shared=True)}

    admin_conn.network.delete_network(n, ignore_missing=False)
    with pytest.raises(exc.NotFoundException):
        admin_conn.network.get_network(n.id)
    assert admin_conn.network.find_network(new_name) is None


def test_missing_network_raises_not_found(admin_conn):
    with pytest.raises(exc.NotFoundException) as e:
        admin_conn.network.get_network(str(uuid.uuid4()))
    assert e.value.status_code == 404
    with pytest.raises(exc.NotFoundException):
        admin_conn.network.delete_network(str(uuid.uuid4()), ignore_missing=False)
    with pytest.raises(exc.NotFoundException):
        admin_conn.network.update_network(str(uuid.uuid4()), name="x")


def test_subnets_v4_v6(admin_conn, cleanup, net):
    s4, s6 = make_subnets(admin_conn, cleanup, net)
    assert s4.ip_version == 4
    assert s4.cidr == "10.20.0.0/24"
    assert s4.gateway_ip == "10.20.0.1"
    assert s4.allocation_pools == [{"start": "10.20.0.10", "end": "10.20.0.100"}]
    assert s4.dns_nameservers == ["8.8.8.8", "1.1.1.1"]
    assert s4.is_dhcp_enabled is True
    assert s4.network_id == net.id

    assert s6.ip_version == 6
    assert s6.cidr == "2001:db8:2::/64"
    assert s6.gateway_ip == "2001:db8:2::1"
    assert s6.ipv6_ra_mode == "slaac" and s6.ipv6_address_mode == "slaac"

    assert sorted(admin_conn.network.get_network(net.id).subnet_ids) == sorted([s4.id, s6.id])
    assert sorted(s.id for s in admin_conn.network.subnets(network_id=net.id)) == sorted([s4.id, s6.id])
    assert [s.id for s in admin_conn.network.subnets(network_id=net.id, ip_version=6)] == [s6.id]

    upd = admin_conn.network.update_subnet(s4, name=unique("sdk-s4b"), dns_nameservers=["9.9.9.9"],
                                           allocation_pools=[{"start": "10.20.0.10", "end": "10.20.0.150"}])
    assert upd.dns_nameservers == ["9.9.9.9"]
    assert upd.allocation_pools == [{"start": "10.20.0.10", "end": "10.20.0.150"}]
    assert upd.cidr == "10.20.0.0/24"
    got = admin_conn.network.get_subnet(s4.id)
    assert got.name == upd.name and got.dns_nameservers == ["9.9.9.9"]

    # cidr cannot be changed
    with pytest.raises(exc.BadRequestException):
        admin_conn.network.update_subnet(s4, cidr="10.21.0.0/24")

    admin_conn.network.delete_subnet(s6, ignore_missing=False)
    with pytest.raises(exc.NotFoundException):
        admin_conn.network.get_subnet(s6.id)
    assert admin_conn.network.get_network(net.id).subnet_ids == [s4.id]


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "10.0.0.300/24", "not-a-cidr"])
def test_bad_cidr_is_bad_request(admin_conn, net, cidr):
    with pytest.raises(exc.BadRequestException) as e:
        admin_conn.network.create_subnet(network_id=net.id, ip_version=4, cidr=cidr)
    assert e.value.status_code == 400
    assert list(admin_conn.network.subnets(network_id=net.id)) == []


def test_ipv6_cidr_with_ip_version_4_is_bad_request(admin_conn, net):
    with pytest.raises(exc.BadRequestException):
        admin_conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="2001:db8:9::/64")


def test_ports_fixed_ips_and_address_pairs(admin_conn, cleanup, net):
    s4, s6 = make_subnets(admin_conn, cleanup, net)

    # No fixed_ips: one address from the IPv4 pool plus the SLAAC address.
    auto = admin_conn.network.create_port(network_id=net.id, name=unique("sdk-auto"))
    cleanup.add(admin_conn.network.delete_port, auto, ignore_missing=True)
    assert MAC_RE.match(auto.mac_address), auto.mac_address
    assert auto.status == "DOWN"
    by_subnet = {ip["subnet_id"]: ip["ip_address"] for ip in auto.fixed_ips}
    assert set(by_subnet) == {s4.id, s6.id}, auto.fixed_ips
    v4 = ipaddress.ip_address(by_subnet[s4.id])
    assert ipaddress.ip_address("10.20.0.10") <= v4 <= ipaddress.ip_address("10.20.0.100")
    assert by_subnet[s6.id] == eui64(s6.cidr, auto.mac_address)
    assert auto.security_group_ids, "a port gets the project's default security group"

    # Fixed address (outside the pool, which an admin may ask for: the automatic address
    # above, drawn from the pool, can't have taken it) + allowed address pairs.
    port = admin_conn.network.create_port(
        network_id=net.id, name=unique("sdk-port"),
        fixed_ips=[{"subnet_id": s4.id, "ip_address": "10.20.0.150"}],
        allowed_address_pairs=[{"ip_address": "10.20.0.200"},
                               {"ip_address": "192.168.7.0/24", "mac_address": "fa:16:3e:11:22:33"}])
    cleanup.add(admin_conn.network.delete_port, port, ignore_missing=True)
    assert {"subnet_id": s4.id, "ip_address": "10.20.0.150"} in port.fixed_ips
    pairs = sorted(port.allowed_address_pairs, key=lambda p: p["ip_address"])
    assert pairs == [
        {"ip_address": "10.20.0.200", "mac_address": port.mac_address},  # defaults to the port's MAC
        {"ip_address": "192.168.7.0/24", "mac_address": "fa:16:3e:11:22:33"},
    ]

    ports = {p.id: p for p in admin_conn.network.ports(network_id=net.id)}
    assert set(ports) == {auto.id, port.id}
    assert ports[port.id].mac_address == port.mac_address
    assert [p.id for p in admin_conn.network.ports(fixed_ips="ip_address=10.20.0.150")] == [port.id]

    # Duplicate fixed IP -> 409.
    with pytest.raises(exc.ConflictException) as e:
        admin_conn.network.create_port(network_id=net.id,
                                       fixed_ips=[{"subnet_id": s4.id, "ip_address": "10.20.0.150"}])
    assert e.value.status_code == 409
    # An address outside the subnet -> 400.
    with pytest.raises(exc.BadRequestException):
        admin_conn.network.create_port(network_id=net.id,
                                       fixed_ips=[{"subnet_id": s4.id, "ip_address": "10.99.0.5"}])

    upd = admin_conn.network.update_port(
        port, name=unique("sdk-port-b"), allowed_address_pairs=[{"ip_address": "10.20.0.201"}],
        fixed_ips=[{"subnet_id": s4.id, "ip_address": "10.20.0.151"}])
    assert upd.allowed_address_pairs == [{"ip_address": "10.20.0.201", "mac_address": port.mac_address}]
    assert {"subnet_id": s4.id, "ip_address": "10.20.0.151"} in upd.fixed_ips
    assert {"subnet_id": s4.id, "ip_address": "10.20.0.150"} not in upd.fixed_ips
    # The old address was released.
    again = admin_conn.network.create_port(network_id=net.id,
                                           fixed_ips=[{"subnet_id": s4.id, "ip_address": "10.20.0.150"}])
    cleanup.add(admin_conn.network.delete_port, again, ignore_missing=True)

    # A subnet with allocations cannot go; the network neither while ports exist.
    with pytest.raises(exc.ConflictException):
        admin_conn.network.delete_subnet(s4)
    with pytest.raises(exc.ConflictException):
        admin_conn.network.delete_network(net)

    for p in (auto, port, again):
        admin_conn.network.delete_port(p, ignore_missing=False)
    assert list(admin_conn.network.ports(network_id=net.id)) == []
    with pytest.raises(exc.NotFoundException):
        admin_conn.network.get_port(port.id)


def test_security_groups_and_rules(admin_conn, cleanup):
    name = unique("sdk-sg")
    sg = admin_conn.network.create_security_group(name=name, description="d")
    cleanup.add(admin_conn.network.delete_security_group, sg, ignore_missing=True)
    assert sg.name == name and sg.description == "d"
    rules = sg.security_group_rules
    assert sorted((r["direction"], r["ethertype"]) for r in rules) == [("egress", "IPv4"), ("egress", "IPv6")]

    assert sg.id in {s.id for s in admin_conn.network.security_groups()}
    assert admin_conn.network.get_security_group(sg.id).name == name
    upd = admin_conn.network.update_security_group(sg, name=unique("sdk-sg-b"), description="d2")
    assert upd.description == "d2"

    rule = admin_conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", protocol="tcp", port_range_min=22,
        port_range_max=22, remote_ip_prefix="10.0.0.0/8", ether_type="IPv4")
    assert rule.direction == "ingress" and rule.protocol == "tcp"
    assert (rule.port_range_min, rule.port_range_max) == (22, 22)
    assert rule.remote_ip_prefix == "10.0.0.0/8"
    assert rule.ether_type == "IPv4"
    assert rule.security_group_id == sg.id

    with pytest.raises(exc.ConflictException):
        admin_conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", protocol="tcp", port_range_min=22,
            port_range_max=22, remote_ip_prefix="10.0.0.0/8", ether_type="IPv4")
    with pytest.raises(exc.BadRequestException):  # ethertype does not match the prefix
        admin_conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", remote_ip_prefix="2001:db8::/64",
            ether_type="IPv4")

    listed = {r.id for r in admin_conn.network.security_group_rules(security_group_id=sg.id)}
    assert len(listed) == 3 and rule.id in listed
    assert len(admin_conn.network.get_security_group(sg.id).security_group_rules) == 3
    assert admin_conn.network.get_security_group_rule(rule.id).port_range_min == 22

    admin_conn.network.delete_security_group_rule(rule, ignore_missing=False)
    assert len(list(admin_conn.network.security_group_rules(security_group_id=sg.id))) == 2
    admin_conn.network.delete_security_group(sg, ignore_missing=False)
    with pytest.raises(exc.NotFoundException):
        admin_conn.network.get_security_group(sg.id)


def test_quotas(admin_conn, cleanup):
    domain = admin_conn.identity.find_domain("Default", ignore_missing=False)
    project = admin_conn.identity.create_project(name=unique("sdk-quota"), domain_id=domain.id)
    cleanup.add(admin_conn.identity.delete_project, project, ignore_missing=True)

    q = admin_conn.network.get_quota(project.id)
    assert (q.networks, q.subnets, q.ports) == (100, 100, 500)
    assert (q.routers, q.floating_ips) == (10, 50)
    assert (q.security_groups, q.security_group_rules) == (10, 100)

    upd = admin_conn.network.update_quota(project.id, networks=5, ports=20)
    assert upd.networks == 5 and upd.ports == 20
    q = admin_conn.network.get_quota(project.id)
    assert (q.networks, q.ports, q.subnets) == (5, 20, 100)
    assert admin_conn.network.get_quota(admin_conn.current_project_id).networks == 100


def test_quota_enforced_for_a_member(neutrino, admin_conn, cleanup):
    domain = admin_conn.identity.find_domain("Default", ignore_missing=False)
    project = admin_conn.identity.create_project(name=unique("sdk-qp"), domain_id=domain.id)
    cleanup.add(admin_conn.identity.delete_project, project, ignore_missing=True)
    password = "pw-" + secrets.token_hex(8)
    user = admin_conn.identity.create_user(name=unique("sdk-qu"), password=password,
                                           default_project_id=project.id, domain_id=domain.id)
    cleanup.add(admin_conn.identity.delete_user, user, ignore_missing=True)
    member = admin_conn.identity.find_role("member", ignore_missing=False)
    admin_conn.identity.assign_project_role_to_user(project, user, member)
    admin_conn.network.update_quota(project.id, networks=1)

    conn = neutrino.connect(username=user.name, password=password, project_name=project.name)
    cleanup.add(conn.close)
    first = conn.network.create_network(name=unique("sdk-q1"))
    cleanup.add(admin_conn.network.delete_network, first.id, ignore_missing=True)
    with pytest.raises(exc.ConflictException):
        conn.network.create_network(name=unique("sdk-q2"))


def test_tags(admin_conn, cleanup, net):
    other = admin_conn.network.create_network(name=unique("sdk-untagged"))
    cleanup.add(admin_conn.network.delete_network, other, ignore_missing=True)
    a, b = unique("a"), unique("b")
    admin_conn.network.set_tags(net, [a, b])
    assert sorted(admin_conn.network.get_network(net.id).tags) == sorted([a, b])
    assert [n.id for n in admin_conn.network.networks(tags=a)] == [net.id]
    assert [n.id for n in admin_conn.network.networks(tags=f"{a},{b}")] == [net.id]
    assert [n.id for n in admin_conn.network.networks(any_tags=f"{b},x-{b}")] == [net.id]
    ids = {n.id for n in admin_conn.network.networks(not_tags=a)}
    assert other.id in ids and net.id not in ids

    admin_conn.network.set_tags(net, [b])
    assert admin_conn.network.get_network(net.id).tags == [b]
    assert list(admin_conn.network.networks(tags=a)) == []
    admin_conn.network.set_tags(net, [])
    assert admin_conn.network.get_network(net.id).tags == []

    # Subnets, ports and security groups are taggable too.
    sub = admin_conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.30.0.0/24")
    cleanup.add(admin_conn.network.delete_subnet, sub, ignore_missing=True)
    admin_conn.network.set_tags(sub, [a])
    assert admin_conn.network.get_subnet(sub.id).tags == [a]
    port = admin_conn.network.create_port(network_id=net.id)
    cleanup.add(admin_conn.network.delete_port, port, ignore_missing=True)
    admin_conn.network.set_tags(port, [a])
    assert [p.id for p in admin_conn.network.ports(tags=a)] == [port.id]


def test_project_user_visibility(neutrino, admin_conn, cleanup):
    domain = admin_conn.identity.find_domain("Default", ignore_missing=False)
    project = admin_conn.identity.create_project(name=unique("sdk-proj"), domain_id=domain.id)
    cleanup.add(admin_conn.identity.delete_project, project, ignore_missing=True)
    password = "pw-" + secrets.token_hex(8)
    user = admin_conn.identity.create_user(name=unique("sdk-user"), password=password,
                                           default_project_id=project.id, domain_id=domain.id)
    cleanup.add(admin_conn.identity.delete_user, user, ignore_missing=True)
    member = admin_conn.identity.find_role("member", ignore_missing=False)
    admin_conn.identity.assign_project_role_to_user(project, user, member)

    private = admin_conn.network.create_network(name=unique("sdk-private"))
    cleanup.add(admin_conn.network.delete_network, private, ignore_missing=True)
    shared = admin_conn.network.create_network(name=unique("sdk-shared"), is_shared=True)
    cleanup.add(admin_conn.network.delete_network, shared, ignore_missing=True)
    shared_sub = admin_conn.network.create_subnet(network_id=shared.id, ip_version=4, cidr="10.40.0.0/24")
    cleanup.add(admin_conn.network.delete_subnet, shared_sub, ignore_missing=True)

    conn = neutrino.connect(username=user.name, password=password, project_name=project.name)
    cleanup.add(conn.close)
    assert conn.current_project_id == project.id
    own = conn.network.create_network(name=unique("sdk-own"))
    cleanup.add(admin_conn.network.delete_network, own.id, ignore_missing=True)
    assert own.project_id == project.id

    seen = {n.id: n for n in conn.network.networks()}
    assert own.id in seen and shared.id in seen
    assert private.id not in seen
    assert all(n.is_shared or n.project_id == project.id for n in seen.values())
    with pytest.raises(exc.NotFoundException):
        conn.network.get_network(private.id)
    assert conn.network.get_network(shared.id).is_shared is True
    assert shared_sub.id in {s.id for s in conn.network.subnets()}

    # A port on the shared network is allowed; changing the network is not.
    port = conn.network.create_port(network_id=shared.id)
    cleanup.add(admin_conn.network.delete_port, port.id, ignore_missing=True)
    assert port.project_id == project.id
    assert port.fixed_ips and port.fixed_ips[0]["subnet_id"] == shared_sub.id
    with pytest.raises(exc.ForbiddenException):
        conn.network.update_network(shared, name="taken-over")
    with pytest.raises(exc.NotFoundException):
        conn.network.delete_network(private, ignore_missing=False)
    with pytest.raises(exc.HttpException) as e:  # only the admin may share
        conn.network.create_network(name=unique("sdk-share"), is_shared=True)
    assert e.value.status_code == 403

    # The member sees its own quota, not the admin's.
    assert conn.network.get_quota(project.id).networks == 100
    with pytest.raises(exc.ForbiddenException):
        conn.network.get_quota(admin_conn.current_project_id)

    # The admin sees everything.
    assert {own.id, port.network_id} <= {n.id for n in admin_conn.network.networks()}
    assert port.id in {p.id for p in admin_conn.network.ports(network_id=shared.id)}


def test_wrong_password_is_rejected(neutrino):
    conn = neutrino.connect(password="not-the-password")
    with pytest.raises(exc.SDKException) as e:  # keystoneauth's Unauthorized, wrapped
        conn.authorize()
    assert "401" in str(e.value), e.value
