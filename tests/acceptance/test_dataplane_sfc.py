"""Service function chaining on real packets: chains steer TCP and UDP flows through service
functions (instance namespaces with two ports) on a 3-host lab (see ``dataplane_lab``).

A service function here is an instance with an ingress port and an egress port (found in
its namespace by MAC) without port security, made a function by ``sfc_lab.make_function``: a
bump in the wire (nft ``fwd`` between its ports), a routed function (the kernel forwards) or a
tap (counts and drops). Functions count what they see per flow and by the DSCP it arrived
with; function 1 sets DSCP 10, function 2 counts the packets that arrive with 10 and sets 20,
and the destination counts the DSCP it receives: that proves both functions were crossed, in
order. Everything is built through openstacksdk against the lab's own server, so it goes away
with the lab (namespaces, agents, server); nothing is created in the root namespace.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from conftest import NeutrinoServer, _server_binary
from dataplane_lab import Lab, needs_root
from sfc_lab import (
    FunctionView, addr, diagnostics, diff_obs, in_ns, make_function, make_observer, observed,
    FN_TABLE, port, read_function, read_observer, server_revision, settle, sfc_table, tcp_lines,
    tcp_send, tcp_sink, udp_receiver, udp_send, wait_for, wait_ports_active, wait_v6_ready)

pytestmark = needs_root

HOSTS = ("h1", "h2", "h3")
F1_DSCP, F2_DSCP = 10, 20


@pytest.fixture
def lab3(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, HOSTS)
    try:
        yield lab.setup()
    finally:
        lab.teardown()
        server.stop()


@pytest.fixture
def sfc(lab3):
    conn = lab3.server.connect()
    try:
        yield Sfc(lab3, conn)
    finally:
        conn.close()


class Instance:
    def __init__(self, sfc: "Sfc", host: str, device: str, ports: list):
        self.sfc, self.host, self.device, self.ports = sfc, host, device, ports
        self.ns = sfc.lab.instance(host, device)

    @property
    def port(self):
        return self.ports[0]

    def ip(self, version: int = 4) -> str:
        return addr(self.ports[0], version)


class Function(Instance):
    """A service function: ingress port (eth0), egress port (eth1, or the same port)."""

    def __init__(self, sfc, host, device, ports, kind):
        super().__init__(sfc, host, device, ports)
        self.kind = kind

    @property
    def ingress(self):
        return self.ports[0]

    @property
    def egress(self):
        return self.ports[-1]

    def ifname(self, p) -> str:
        """The interface of port ``p`` in the function's namespace, by MAC (ports created in
        the same second are not reliably eth0 then eth1)."""
        links = json.loads(in_ns(self.ns, "ip", "-j", "link", "show").stdout)
        names = [link["ifname"] for link in links
                 if link.get("address", "").lower() == p.mac_address.lower()]
        assert names, f"no interface with the MAC of port {p.id} in {self.ns}: {links}"
        return names[0]

    def configure(self, **kw) -> None:
        self.ingress_if, self.egress_if = self.ifname(self.ingress), self.ifname(self.egress)
        make_function(self.ns, self.kind, ingress=self.ingress_if, egress=self.egress_if, **kw)

    def view(self) -> FunctionView:
        return read_function(self.ns)


class Sfc:
    """The lab, an SDK connection and shortcuts for the SFC resources."""

    def __init__(self, lab: Lab, conn):
        self.lab, self.conn, self.net = lab, conn, conn.network
        self.functions: dict[str, Function] = {}
        self.pending: list = []

    # -- topology
    def network(self, cidr: str, *, v6: bool = False) -> str:
        net = self.net.create_network(name=f"sfc-{uuid.uuid4().hex[:6]}")
        self.net.create_subnet(network_id=net.id, ip_version=6 if v6 else 4, cidr=cidr,
                               is_dhcp_enabled=False, name=f"sfc-{uuid.uuid4().hex[:6]}")
        return net.id

    def instance(self, net: str, host: str, device: str, *, secure: bool = True) -> Instance:
        p = port(self.conn, net, host, device, secure=secure)
        self.pending.append(p)
        return Instance(self, host, device, [p])

    def function(self, net: str, host: str, device: str, kind: str, *,
                 one_port: bool = False) -> Function:
        ports = [port(self.conn, net, host, device, secure=False)]
        if not one_port:
            ports.append(port(self.conn, net, host, device, secure=False))
        self.pending.extend(ports)
        fn = Function(self, host, device, ports, kind)
        self.functions[device] = fn
        return fn

    def activate(self, instances: list[Instance]) -> None:
        """Waits until every port is ACTIVE, refreshes them (fixed IPs) and waits for DAD."""
        wait_ports_active(self.conn, self.pending)
        self.pending = []
        for inst in instances:
            inst.ports = [self.net.get_port(p.id) for p in inst.ports]
            assert os.path.exists(f"/run/netns/{inst.ns}"), f"no namespace {inst.ns}"
            if any(":" in ip["ip_address"] for p in inst.ports for ip in p.fixed_ips):
                wait_v6_ready(inst.ns)

    # -- SFC resources
    def fc(self, **kw):
        kw.setdefault("name", f"fc-{uuid.uuid4().hex[:6]}")
        for key in ("logical_source_port", "logical_destination_port"):
            if key in kw and not isinstance(kw[key], str):
                kw[key] = kw[key].port.id
        if "dport" in kw:
            kw["destination_port_range_min"] = kw["destination_port_range_max"] = kw.pop("dport")
        return self.net.create_sfc_flow_classifier(**kw)

    def pair(self, fn: Function, weight: int = 1, correlation: str | None = None):
        return self.net.create_sfc_port_pair(
            name=f"pp-{fn.device}", ingress=fn.ingress.id, egress=fn.egress.id,
            service_function_parameters={"correlation": correlation, "weight": weight})

    def group(self, pairs, *, lb_fields=None, tap: bool = False, egress_n_tuple=None):
        params = {}
        if lb_fields:
            params["lb_fields"] = lb_fields
        if egress_n_tuple:
            params["ppg_n_tuple_mapping"] = {"ingress_n_tuple": {},
                                             "egress_n_tuple": egress_n_tuple}
        kw = dict(name=f"ppg-{uuid.uuid4().hex[:6]}", port_pairs=[p.id for p in pairs])
        if params:
            kw["port_pair_group_parameters"] = params
        if tap:
            kw["is_tap_enabled"] = True
        return self.net.create_sfc_port_pair_group(**kw)

    def chain(self, groups, fcs, *, symmetric: bool = False):
        kw = dict(name=f"pc-{uuid.uuid4().hex[:6]}", port_pair_groups=[g.id for g in groups],
                  flow_classifiers=[f.id for f in fcs])
        if symmetric:
            kw["chain_parameters"] = {"correlation": "mpls", "symmetric": True}
        return self.net.create_sfc_port_chain(**kw)

    def settle(self) -> None:
        settle(self.lab, self.conn)

    # -- observation
    def views(self) -> dict[str, FunctionView]:
        return {name: fn.view() for name, fn in self.functions.items()}

    def deltas(self, before: dict[str, FunctionView]) -> dict[str, FunctionView]:
        now = self.views()
        return {name: now[name].minus(before[name]) for name in now}

    def diag(self) -> str:
        return diagnostics(self.lab, {n: f.ns for n, f in self.functions.items()})


def moved(deltas: dict[str, FunctionView]) -> dict[str, int]:
    return {name: v.f_all + v.r_all for name, v in deltas.items() if v.f_all + v.r_all}


# ---------------------------------------------------------------------------------------------
# 1. a chain of two groups across three hosts


def _chain_traffic(sfc: Sfc, src: Instance, dst: Instance, f1: Function, f2: Function,
                   version: int) -> None:
    """Matching UDP (port 5201) and TCP (port 5203) flows cross f1 then f2 and reach the
    destination with the source's address; UDP to 5203 and 5202 and TCP to 5201 (other
    protocol or port) go direct."""
    src_ip, dst_ip = src.ip(version), dst.ip(version)
    make_observer(dst.ns)

    # Matching UDP: 4 flows x 5 packets, echoed back (the replies are not classified).
    before, obs0 = sfc.views(), read_observer(dst.ns)
    rx = udp_receiver(dst.ns, dst_ip, 5201, echo=True, idle=1.0)
    sent = udp_send(src.ns, dst_ip, 5201, "30000-30003", count=5, echo=True)
    got = rx.result()["flows"]
    d = sfc.deltas(before)
    for sport in range(30000, 30004):
        flow = got.get(f"{src_ip} {sport}")
        assert flow and flow["n"] == 5 and flow["dups"] == 0, (
            f"UDP {src_ip}:{sport} -> {dst_ip}:5201 (matching): the destination got {flow} "
            f"of 5 packets (all it got: {got}; sender: {sent})\n{sfc.diag()}")
        assert flow["dscp"] == [F2_DSCP], (
            f"UDP flow {sport} reached the destination with DSCP {flow['dscp']}, not "
            f"{F2_DSCP}: it did not cross function 1 then function 2 in that order\n"
            f"f1: {d['sf1'].summary()}\nf2: {d['sf2'].summary()}\n{sfc.diag()}")
        n1 = d["sf1"].fwd_flows("udp", dscp=0).get((src_ip, sport), 0)
        n2 = d["sf2"].fwd_flows("udp", dscp=F1_DSCP).get((src_ip, sport), 0)
        assert (n1, n2) == (5, 5), (
            f"UDP flow {sport}: function 1 saw {n1} packets (unmarked), function 2 saw {n2} "
            f"marked by function 1; expected 5 and 5\nf1: {d['sf1'].summary()}\n"
            f"f2: {d['sf2'].summary()}")
    assert sent["echoed"] == sent["sent"], (
        f"replies to the steered UDP flows did not all come back: {sent}")
    assert d["sf2"].f_marked == d["sf2"].f_all, (
        f"function 2 got {d['sf2'].f_all - d['sf2'].f_marked} packets that had not crossed "
        f"function 1: {d['sf2'].summary()}")
    seen = observed(diff_obs(read_observer(dst.ns), obs0), "udp", 5201)
    assert seen == {(src_ip, F2_DSCP): 20}, (
        f"the destination accepted UDP/5201 packets as (source, DSCP) -> count {seen}; "
        f"expected only 20 from {src_ip} with DSCP {F2_DSCP}")

    # Matching TCP: one connection with 30 lines, from the source's own address.
    before, obs0 = sfc.views(), read_observer(dst.ns)
    conn, sender = tcp_lines(dst.ns, dst_ip, src.ns, 5203, lines=30, sport=30100)
    d = sfc.deltas(before)
    assert sender["error"] is None and conn.get("lines") == 30 and conn.get("in_order"), (
        f"TCP {src_ip}:30100 -> {dst_ip}:5203 through the chain: sender {sender}, "
        f"receiver {conn}\n{sfc.diag()}")
    assert conn["peer"] == src_ip, (
        f"the destination saw the TCP connection from {conn['peer']}, not the source's own "
        f"address {src_ip}")
    n1 = d["sf1"].fwd_flows("tcp", dscp=0).get((src_ip, 30100), 0)
    n2 = d["sf2"].fwd_flows("tcp", dscp=F1_DSCP).get((src_ip, 30100), 0)
    seen = observed(diff_obs(read_observer(dst.ns), obs0), "tcp", 5203)
    assert n1 > 0 and n2 == n1, (
        f"TCP flow: function 1 saw {n1} packets, function 2 saw {n2} marked by function 1 "
        f"(expected the same non-zero number)\nf1: {d['sf1'].summary()}\n"
        f"f2: {d['sf2'].summary()}\n{sfc.diag()}")
    assert seen == {(src_ip, F2_DSCP): n1}, (
        f"the destination accepted TCP/5203 packets as (source, DSCP) -> count {seen}; "
        f"expected {n1} from {src_ip} with DSCP {F2_DSCP}")

    # Not matching: other port or other protocol. Direct, untouched, functions silent.
    before, obs0 = sfc.views(), read_observer(dst.ns)
    receivers = {p: udp_receiver(dst.ns, dst_ip, p, echo=True, idle=1.0) for p in (5202, 5203)}
    for p in (5202, 5203):
        udp_send(src.ns, dst_ip, p, "30200-30201", count=5, echo=True)
    conn, sender = tcp_lines(dst.ns, dst_ip, src.ns, 5201, lines=10, sport=30300)
    results = {p: r.result()["flows"] for p, r in receivers.items()}
    d = sfc.deltas(before)
    for p, flows in results.items():
        for sport in (30200, 30201):
            flow = flows.get(f"{src_ip} {sport}")
            assert flow and flow["n"] == 5 and flow["dscp"] == [0], (
                f"UDP to port {p} (not classified) should arrive directly and unmarked: got "
                f"{flow}")
    assert sender["error"] is None and conn.get("peer") == src_ip and conn.get("lines") == 10, (
        f"TCP to port 5201 (classified only for UDP): sender {sender}, receiver {conn}")
    assert not moved(d), (
        f"functions saw traffic that no classifier matches: "
        f"{ {n: v.summary() for n, v in d.items()} }\n{sfc.diag()}")
    seen = diff_obs(read_observer(dst.ns), obs0)
    assert all(k[3] == 0 for k in seen), f"unclassified traffic arrived marked: {seen}"


def _two_function_chain(sfc: Sfc, net: str, version: int, kinds: tuple[str, str],
                        f2_host: str, dst_secure: bool = True) -> Instance:
    lab = sfc.lab
    src = sfc.instance(net, "h1", "src")
    dst = sfc.instance(net, "h3", "dst", secure=dst_secure)
    f1 = sfc.function(net, "h2", "sf1", kinds[0])
    f2 = sfc.function(net, f2_host, "sf2", kinds[1])
    sfc.activate([src, dst, f1, f2])
    dst_prefix = f"{dst.ip(version)}/{32 if version == 4 else 128}"
    f1.configure(set_dscp=F1_DSCP, routes=(dst_prefix,))
    f2.configure(expect_dscp=F1_DSCP, set_dscp=F2_DSCP, routes=(dst_prefix,))

    # Without a chain, everything goes direct (the lab itself works).
    before = sfc.views()
    rx = udp_receiver(dst.ns, dst.ip(version), 5201, idle=1.0)
    udp_send(src.ns, dst.ip(version), 5201, "30000", count=3)
    flow = rx.result()["flows"].get(f"{src.ip(version)} 30000")
    assert flow and flow["n"] == 3 and flow["dscp"] == [0], (
        f"before any chain, UDP from the source should arrive directly: {flow}")
    assert not moved(sfc.deltas(before)), "functions saw traffic before any chain existed"

    ethertype = "IPv4" if version == 4 else "IPv6"
    fc_udp = sfc.fc(ethertype=ethertype, protocol="udp", dport=5201, logical_source_port=src)
    fc_tcp = sfc.fc(ethertype=ethertype, protocol="tcp", dport=5203, logical_source_port=src)
    g1 = sfc.group([sfc.pair(f1)])
    g2 = sfc.group([sfc.pair(f2)])
    sfc.chain([g1, g2], [fc_udp, fc_tcp])
    sfc.settle()
    assert "neutrino_sfc" in in_ns(lab.host_ns("h1"), "nft", "list", "tables").stdout, (
        f"no steering table on the classifier's host h1 after the chain was created\n"
        f"{sfc.diag()}")
    _chain_traffic(sfc, src, dst, f1, f2, version)
    return dst


@pytest.mark.parametrize("kind,f2_host,dst_secure", [
    ("bump", "h1", True), ("bump", "h3", True), ("routed", "h3", True),
    ("bump", "h3", False), ("bump", "h1", False)],
    ids=["bump-in-the-wire", "bump-ending-at-destination", "routed",
         "open-destination-here", "open-destination-across"])
def test_chain_of_two_groups_across_three_hosts(sfc, kind, f2_host, dst_secure):
    """Source on h1, function 1 on h2, function 2 on h1 or h3, destination on h3. The
    source has port security: its TCP replies come back unsteered and must find the
    connection its security group saw leave (the chain enters through the bridge). A
    destination without port security gets the frames straight from the last function's
    host (its tap, or the VXLAN device), not through the bridge."""
    net = sfc.network("10.91.0.0/24")
    dst = _two_function_chain(sfc, net, 4, (kind, kind), f2_host, dst_secure)
    if not dst_secure:
        table = sfc_table(sfc.lab, f2_host)
        assert f"{dst.ip()} : goto dd-" in table and "chain dd-" in table, (
            f"{f2_host}, the last function's host, has no direct delivery to the destination "
            f"without port security:\n{table}")


def test_ipv6_chain(sfc):
    """The same with an IPv6 subnet and IPv6 classifiers: a routed function 1 on h2, a
    bump-in-the-wire function 2 on h1."""
    net = sfc.network("2001:db8:91::/64", v6=True)
    _two_function_chain(sfc, net, 6, ("routed", "bump"), "h1")


# ---------------------------------------------------------------------------------------------
# 2. load balancing, lb_fields, symmetric chains


def _owners(views: dict[str, FunctionView], src_ip: str, sports, proto: str = "udp",
            reverse: bool = False) -> dict[int, dict[str, int]]:
    """source port -> {function: packets} for the flows of one source."""
    out: dict[int, dict[str, int]] = {sp: {} for sp in sports}
    for name, v in views.items():
        flows = v.rev_flows(proto) if reverse else v.fwd_flows(proto)
        for (a, sp), n in flows.items():
            if a == src_ip and sp in out:
                out[sp][name] = out[sp].get(name, 0) + n
    return out


def test_load_balancing_weights_lb_fields_and_symmetric_chains(sfc):
    lab = sfc.lab
    net = sfc.network("10.92.0.0/24")
    src1 = sfc.instance(net, "h1", "src1")
    src2 = sfc.instance(net, "h1", "src2")
    dst = sfc.instance(net, "h3", "dst")
    fa = sfc.function(net, "h2", "sfa", "bump")
    fb = sfc.function(net, "h3", "sfb", "bump")
    fc = sfc.function(net, "h1", "sfc", "bump")
    sfc.activate([src1, src2, dst, fa, fb, fc])
    for fn in (fa, fb, fc):
        fn.configure()
    s1, s2, d_ip = src1.ip(), src2.ip(), dst.ip()
    pairs = [sfc.pair(fa, weight=2), sfc.pair(fb, weight=1), sfc.pair(fc, weight=1)]

    # Weights 2:1:1, default lb_fields (5-tuple): 128 flows, 3 packets each.
    fc1 = sfc.fc(protocol="udp", dport=5301, logical_source_port=src1)
    group = sfc.group(pairs)
    chain = sfc.chain([group], [fc1])
    sfc.settle()
    sports = range(20000, 20128)
    before = sfc.views()
    rx = udp_receiver(dst.ns, d_ip, 5301, idle=1.0)
    udp_send(src1.ns, d_ip, 5301, f"{sports[0]}-{sports[-1]}", count=3, rate=3000)
    got = rx.result()["flows"]
    owners = _owners(sfc.deltas(before), s1, sports)
    lost = {sp: got.get(f"{s1} {sp}") for sp in sports if got.get(f"{s1} {sp}", {}).get("n") != 3}
    assert not lost, f"flows not delivered exactly 3 times: {dict(list(lost.items())[:8])}"
    bad = {sp: o for sp, o in owners.items() if len(o) != 1 or sum(o.values()) != 3}
    assert not bad, (
        f"{len(bad)} of 128 flows were not carried by exactly one instance (3 packets): "
        f"{dict(list(bad.items())[:8])}\n{sfc.diag()}")
    shares = Counter(next(iter(o)) for o in owners.values())
    pct = {name: 100 * shares.get(name, 0) / len(sports) for name in ("sfa", "sfb", "sfc")}
    for name, want in (("sfa", 50), ("sfb", 25), ("sfc", 25)):
        assert abs(pct[name] - want) <= 15, (
            f"weights 2:1:1 should give about 50/25/25 % of the flows; got {pct}")

    # lb_fields ip_src: every flow of one source on one instance.
    sfc.net.delete_sfc_port_chain(chain.id)
    sfc.net.delete_sfc_port_pair_group(group.id)
    fc2 = sfc.fc(protocol="udp", dport=5301, logical_source_port=src2)
    group = sfc.group(pairs, lb_fields=["ip_src"])
    chain = sfc.chain([group], [fc1, fc2])
    sfc.settle()
    before = sfc.views()
    rx = udp_receiver(dst.ns, d_ip, 5301, idle=1.0)
    udp_send(src1.ns, d_ip, 5301, "21000-21031", count=3, rate=3000)
    udp_send(src2.ns, d_ip, 5301, "22000-22031", count=3, rate=3000)
    got = rx.result()["flows"]
    d = sfc.deltas(before)
    for ip, ports in ((s1, range(21000, 21032)), (s2, range(22000, 22032))):
        delivered = sum(got.get(f"{ip} {sp}", {}).get("n", 0) for sp in ports)
        assert delivered == 96, f"{delivered} of 96 packets from {ip} delivered (ip_src group)"
        owners = _owners(d, ip, ports)
        used = {name for o in owners.values() for name in o}
        assert len(used) == 1 and all(sum(o.values()) == 3 for o in owners.values()), (
            f"with lb_fields ip_src, the 32 flows of {ip} should all cross one instance; "
            f"they crossed {sorted(used)}: {dict(list(owners.items())[:6])}\n{sfc.diag()}")

    # Symmetric chain: replies cross the same instance, egress port to ingress port.
    sfc.net.delete_sfc_port_chain(chain.id)
    sfc.net.delete_sfc_port_pair_group(group.id)
    fcs = [sfc.fc(protocol=p, dport=5302, logical_source_port=src1,
                  logical_destination_port=dst) for p in ("udp", "tcp")]
    group = sfc.group(pairs)
    sfc.chain([group], fcs, symmetric=True)
    sfc.settle()
    before = sfc.views()
    rx = udp_receiver(dst.ns, d_ip, 5302, echo=True, idle=1.0)
    sent = udp_send(src1.ns, d_ip, 5302, "23000-23023", count=3, echo=True, rate=1000)
    rx.result()
    tcp = [tcp_lines(dst.ns, d_ip, src1.ns, 5302, lines=20, sport=23100 + i) for i in range(3)]
    d = sfc.deltas(before)
    assert sent["echoed"] == sent["sent"], (
        f"echoes lost on the symmetric chain (sent, echoed): {sent}\n{sfc.diag()}")
    for proto, ports in (("udp", range(23000, 23024)), ("tcp", range(23100, 23103))):
        if proto == "tcp":
            for i, (c, s) in enumerate(tcp):
                fwd = _owners(d, s1, [23100 + i], "tcp")[23100 + i]
                rev = _owners(d, s1, [23100 + i], "tcp", reverse=True)[23100 + i]
                assert s["error"] is None and c.get("lines") == 20, (
                    f"TCP connection {i} (source port {23100 + i}) over the symmetric chain "
                    f"failed: sender {s}, receiver {c}; forward packets crossed {fwd}, "
                    f"replies {rev}\n{sfc.diag()}")
        fwd = _owners(d, s1, ports, proto)
        rev = _owners(d, s1, ports, proto, reverse=True)
        for sp in ports:
            assert len(fwd[sp]) == 1, (
                f"{proto} flow {sp}: forward packets crossed {fwd[sp]} (expected one "
                f"instance)\n{sfc.diag()}")
            assert set(rev[sp]) == set(fwd[sp]), (
                f"{proto} flow {sp}: forward through {fwd[sp]}, replies through {rev[sp]} "
                f"(egress->ingress port); a symmetric chain must use the same instance\n"
                f"{sfc.diag()}")
            if proto == "udp":
                assert list(rev[sp].values()) == [3], (
                    f"udp flow {sp}: {rev[sp]} replies crossed the instance, expected 3")


# ---------------------------------------------------------------------------------------------
# 3. tap groups and service graphs

NAT = """table ip sfct_nat {
  chain post { type nat hook postrouting priority 100; oifname "EGRESS" masquerade; }
}
"""


def test_tap_and_service_graph(sfc):
    """The endpoints have no port security here: the destination must accept what the NAT
    function sends from its own address, and the source the replies it de-NATs (security
    groups with chains are covered by the tests above)."""
    net = sfc.network("10.93.0.0/24")
    src = sfc.instance(net, "h1", "src", secure=False)
    dst = sfc.instance(net, "h3", "dst", secure=False)
    f1 = sfc.function(net, "h2", "sf1", "bump")
    tap = sfc.function(net, "h3", "tap1", "tap", one_port=True)
    nat = sfc.function(net, "h2", "nat", "routed")
    fa = sfc.function(net, "h3", "sfa", "bump")
    fb = sfc.function(net, "h1", "sfb", "bump")
    sfc.activate([src, dst, f1, tap, nat, fa, fb])
    s_ip, d_ip = src.ip(), dst.ip()
    nat_ip = addr(nat.egress)
    f1.configure(set_dscp=F1_DSCP)
    tap.configure()
    nat.configure(routes=(f"{d_ip}/32",), reverse_routes=(f"{s_ip}/32",), extra_nft=NAT)
    fa.configure()
    fb.configure()

    # Tap after function 1: the tap gets a copy of every packet (as function 1 left it), the
    # destination every original, once.
    fcs = [sfc.fc(protocol=p, dport=5401, logical_source_port=src) for p in ("udp", "tcp")]
    g1 = sfc.group([sfc.pair(f1)])
    gt = sfc.group([sfc.pair(tap)], tap=True)
    tap_chain = sfc.chain([g1, gt], fcs)
    sfc.settle()
    before = sfc.views()
    rx = udp_receiver(dst.ns, d_ip, 5401, idle=1.0)
    udp_send(src.ns, d_ip, 5401, "32000", count=300, rate=1000)
    udp_send(src.ns, d_ip, 5401, "32001-32005", count=10, rate=1000)
    got = rx.result()["flows"]
    conn, sender = tcp_lines(dst.ns, d_ip, src.ns, 5401, lines=40, sport=32100)
    d = sfc.deltas(before)
    for sp, n in [(32000, 300)] + [(p, 10) for p in range(32001, 32006)]:
        flow = got.get(f"{s_ip} {sp}")
        assert flow and flow["n"] == n and flow["unique"] == n and flow["dscp"] == [F1_DSCP], (
            f"UDP flow {sp} on the tapped chain: the destination got {flow}, expected each "
            f"of {n} packets once with DSCP {F1_DSCP}\n{sfc.diag()}")
        copies = d["tap1"].fwd_flows("udp", dscp=F1_DSCP).get((s_ip, sp), 0)
        assert copies == n, (
            f"UDP flow {sp}: the tap function got {copies} copies of {n} packets (as function "
            f"1 left them)\ntap: {d['tap1'].summary()}\n{sfc.diag()}")
    assert sender["error"] is None and conn.get("lines") == 40, (
        f"TCP over the tapped chain: sender {sender}, receiver {conn}\n{sfc.diag()}")
    n1 = d["sf1"].fwd_flows("tcp").get((s_ip, 32100), 0)
    copies = d["tap1"].fwd_flows("tcp").get((s_ip, 32100), 0)
    assert n1 > 0 and copies == n1, (
        f"TCP flow: function 1 forwarded {n1} packets, the tap got {copies} copies\n"
        f"{sfc.diag()}")
    assert not moved({k: v for k, v in d.items() if k in ("nat", "sfa", "sfb")}), (
        "functions outside the tapped chain saw traffic")

    # Service graph: a source chain through a NAT function (its egress n-tuple says the
    # source becomes its address), then TCP to chain A, UDP to chain B.
    sfc.net.delete_sfc_port_chain(tap_chain.id)
    for f in fcs:  # they would overlap the graph's classifiers
        sfc.net.delete_sfc_flow_classifier(f.id)
    mpls = "mpls"  # a graph's branching groups need a correlation (API rule)
    gn = sfc.group([sfc.pair(nat, correlation=mpls)],
                   egress_n_tuple={"source_ip_prefix": f"{nat_ip}/32"})
    ga = sfc.group([sfc.pair(fa, correlation=mpls)])
    gb = sfc.group([sfc.pair(fb, correlation=mpls)])
    fc_s = sfc.fc(logical_source_port=src, source_ip_prefix=f"{s_ip}/32",
                  destination_ip_prefix=f"{d_ip}/32")
    fc_a = sfc.fc(protocol="tcp", source_ip_prefix=f"{nat_ip}/32",
                  destination_ip_prefix=f"{d_ip}/32")
    fc_b = sfc.fc(protocol="udp", source_ip_prefix=f"{nat_ip}/32",
                  destination_ip_prefix=f"{d_ip}/32")
    chain_s = sfc.chain([gn], [fc_s])
    chain_a = sfc.chain([ga], [fc_a])
    chain_b = sfc.chain([gb], [fc_b])
    sfc.net.create_sfc_service_graph(name="graph",
                                     port_chains={chain_s.id: [chain_a.id, chain_b.id]})
    sfc.settle()

    before = sfc.views()
    conn, sender = tcp_lines(dst.ns, d_ip, src.ns, 5501, lines=30, sport=33000)
    d = sfc.deltas(before)
    assert sender["error"] is None and conn.get("lines") == 30, (
        f"TCP through the graph: sender {sender}, receiver {conn}\n{sfc.diag()}")
    assert conn["peer"] == nat_ip, (
        f"the destination saw TCP from {conn['peer']}, not the NAT function's {nat_ip}: the "
        f"source chain was not crossed\n{sfc.diag()}")
    nat_tcp = d["nat"].fwd_flows("tcp").get((s_ip, 33000), 0)
    a_tcp = sum(n for (a, _), n in d["sfa"].fwd_flows("tcp").items() if a == nat_ip)
    b_tcp = sum(d["sfb"].fwd_flows("tcp").values())
    assert nat_tcp > 0 and a_tcp > 0 and b_tcp == 0, (
        f"TCP: NAT function saw {nat_tcp} packets, chain A's function {a_tcp}, chain B's "
        f"{b_tcp}; expected NAT then A only\n{sfc.diag()}")

    before = sfc.views()
    rx = udp_receiver(dst.ns, d_ip, 5501, echo=True, idle=1.0)
    sent = udp_send(src.ns, d_ip, 5501, "33100-33102", count=5, echo=True)
    got = rx.result()["flows"]
    d = sfc.deltas(before)
    assert sum(f["n"] for f in got.values()) == 15 and all(
        k.startswith(f"{nat_ip} ") for k in got), (
        f"UDP through the graph: the destination got {got} (expected 15 packets from "
        f"{nat_ip})\n{sfc.diag()}")
    assert sent["echoed"] == sent["sent"], f"UDP replies through the NAT function lost: {sent}"
    nat_udp = sum(n for (a, _), n in d["nat"].fwd_flows("udp").items() if a == s_ip)
    a_udp = sum(d["sfa"].fwd_flows("udp").values())
    b_udp = sum(n for (a, _), n in d["sfb"].fwd_flows("udp").items() if a == nat_ip)
    assert (nat_udp, a_udp, b_udp) == (15, 0, 15), (
        f"UDP: NAT function saw {nat_udp}, chain A's function {a_udp}, chain B's {b_udp}; "
        f"expected 15, 0, 15\n{sfc.diag()}")

    # Neither destination chain classifies ICMP: it leaves the source chain for the
    # destination directly.
    assert sfc.lab.pings(src.ns, d_ip, count=2), (
        f"ping through the source chain (NAT) only failed\n{sfc.diag()}")


# ---------------------------------------------------------------------------------------------
# 4. live changes under load


class Streams:
    """A paced UDP stream with sequence numbers and a long TCP stream, until stop()."""

    def __init__(self, lab: Lab, src: Instance, dst: Instance, udp_port: int, tcp_port: int,
                 udp_sport: int, tcp_sport: int, rate: int = 1000):
        self.stop_file = str(lab.tmp / f"stop-{uuid.uuid4().hex[:6]}")
        self.src_ip, self.udp_sport, self.tcp_sport = src.ip(), udp_sport, tcp_sport
        self.rx = udp_receiver(dst.ns, dst.ip(), udp_port, stop=self.stop_file, idle=3.0)
        self.sink = tcp_sink(dst.ns, dst.ip(), tcp_port, idle=10.0) if tcp_port else None
        self.tx = udp_send(src.ns, dst.ip(), udp_port, str(udp_sport), rate=rate,
                           until=self.stop_file, background=True)
        self.tcp = tcp_send(src.ns, dst.ip(), tcp_port, rate=200, until=self.stop_file,
                            sport=tcp_sport, background=True) if tcp_port else None

    def stop(self) -> tuple[dict, dict, dict, dict]:
        Path(self.stop_file).touch()
        sent = self.tx.result()
        tcp = self.tcp.result() if self.tcp else {}
        got = self.rx.result()["flows"]
        conns = self.sink.result(timeout=30)["conns"] if self.tcp else []
        return sent, got, tcp, (conns[0] if conns else {})

    def kill(self) -> None:
        Path(self.stop_file).touch()
        for job in (self.tx, self.tcp, self.rx, self.sink):
            if job:
                job.stop()

    def check(self) -> int:
        """Stops the streams and checks them; returns the UDP packets sent."""
        sent, got, tcp, conn = self.stop()
        n = sent["sent"].get(str(self.udp_sport), 0)
        flow = got.get(f"{self.src_ip} {self.udp_sport}", {})
        assert n >= 1000, f"the UDP stream sent only {n} packets: {sent}"
        assert flow.get("unique") == n and flow.get("dups") == 0 and flow.get("n") == n, (
            f"UDP stream: sent {n}, the destination got {flow.get('n')} packets, "
            f"{flow.get('unique')} distinct ({n - flow.get('unique', 0)} lost), "
            f"{flow.get('dups')} duplicated (sender errors {sent['errors']}); sequence "
            f"numbers missing (1 per ms at 1,000/s): {flow.get('missing')}")
        if self.tcp:
            assert tcp.get("error") is None and conn.get("error") is None, (
                f"the TCP stream broke: sender {tcp}, receiver {conn}")
            assert conn.get("lines") == tcp["sent"] and conn.get("in_order"), (
                f"TCP stream: sent {tcp['sent']} lines, the destination got {conn}")
        return n


def test_live_changes_under_load(sfc):
    """A UDP stream (1,000 packets/s, sequence numbers) and a TCP stream cross a chain while
    it changes: a pair is added to its group and removed again, a group is inserted in front,
    the UDP classifier is replaced. Nothing is lost, duplicated or looped, the TCP stream never
    breaks, and the flows in progress keep their instance when a pair is added. Every step's
    findings are collected and reported together with the streams' outcome.

    The last function of the chain is on another host than the source (h2): the TCP
    stream's replies come back unsteered through the source's security group."""
    lab = sfc.lab
    net = sfc.network("10.94.0.0/24")
    src = sfc.instance(net, "h1", "src")
    dst = sfc.instance(net, "h3", "dst")
    f1 = sfc.function(net, "h2", "sf1", "bump")
    f2 = sfc.function(net, "h1", "sf2", "bump")
    f3 = sfc.function(net, "h3", "sf3", "bump")
    sfc.activate([src, dst, f1, f2, f3])
    for fn in (f1, f2, f3):
        fn.configure()
    s_ip, d_ip = src.ip(), dst.ip()
    fc_u = sfc.fc(protocol="udp", dport=6000, logical_source_port=src)
    fc_t = sfc.fc(protocol="tcp", dport=6001, logical_source_port=src)
    p1, p2, p3 = sfc.pair(f1), sfc.pair(f2), sfc.pair(f3)
    g1 = sfc.group([p1])
    chain = sfc.chain([g1], [fc_u, fc_t])
    sfc.settle()

    streams = Streams(lab, src, dst, 6000, 6001, udp_sport=43000, tcp_sport=43001)
    started = time.monotonic()
    steady = {("udp", 43000), ("tcp", 43001)}
    problems: list[str] = []

    timeline: list[str] = []

    def expect(ok: bool, message: str) -> None:
        if not ok:
            problems.append(f"[{time.monotonic() - started:5.2f}s] {message}")

    def step(name: str) -> None:
        timeline.append(f"{time.monotonic() - started:5.2f}s {name}")

    def carried(view: FunctionView) -> set:
        return {(p, sp) for (a, p, sp, _), n in view.fwd.items()
                if a == s_ip and (p, sp) in steady and n > 0}

    def no_loop(step: str) -> None:
        # The stream sends 1,000 packets/s: a function that saw far more looped them.
        most = (time.monotonic() - started) * 1000 * 1.2 + 200
        seen = {n: v.fwd_flows("udp").get((s_ip, 43000), 0) for n, v in sfc.views().items()}
        expect(all(n <= most for n in seen.values()),
               f"{step}: functions saw the UDP stream's packets {seen} times, at most "
               f"~{most:.0f} were sent: packets looped through a function")

    def window(seconds: float = 0.7) -> dict[str, FunctionView]:
        before = sfc.views()
        time.sleep(seconds)
        return sfc.deltas(before)

    try:
        time.sleep(1.0)
        d = window(0.5)
        expect(carried(d["sf1"]) == steady,
               f"before any change the streams do not both cross sf1: {d['sf1'].summary()}")

        # Add a pair: the flows in progress stay on sf1; new flows may use sf2.
        before = sfc.views()
        step("adding a pair")
        g1 = sfc.net.update_sfc_port_pair_group(g1, port_pairs=[p1.id, p2.id])
        sfc.settle()
        time.sleep(0.5)
        udp_send(src.ns, d_ip, 6000, "44000-44031", count=2, rate=1000)
        time.sleep(0.5)
        d = sfc.deltas(before)
        expect(carried(d["sf2"]) == set() and carried(d["sf1"]) == steady,
               f"after adding a pair the flows in progress must keep their instance sf1: "
               f"sf1 carried {carried(d['sf1'])}, sf2 {carried(d['sf2'])}")
        no_loop("after adding a pair")
        over = {(name, sp): n for name in ("sf1", "sf2")
                for (a, p, sp, _), n in d[name].fwd.items()
                if a == s_ip and 44000 <= sp < 44032 and n > 2}
        expect(not over, f"after adding a pair, new flows of 2 packets crossed a function "
                         f"more often (function, source port -> packets): {over}: loops")
        new_on_2 = {sp for (a, p, sp, _) in d["sf2"].fwd if a == s_ip and 44000 <= sp < 44032}
        expect(bool(new_on_2), f"none of 32 new flows went to the added pair sf2: "
                               f"{d['sf2'].summary()}")

        # Remove that pair again: the steady flows do not notice; new flows all on sf1.
        step("removing the pair")
        g1 = sfc.net.update_sfc_port_pair_group(g1, port_pairs=[p1.id])
        sfc.settle()
        before = sfc.views()
        udp_send(src.ns, d_ip, 6000, "44100-44115", count=2, rate=1000)
        time.sleep(0.5)
        d = sfc.deltas(before)
        no_loop("after removing a pair")
        expect(not moved({"sf2": d["sf2"]}),
               f"the removed pair sf2 still gets traffic: {d['sf2'].summary()}")
        expect(carried(d["sf1"]) == steady,
               f"after removing a pair the streams left sf1: {d['sf1'].summary()}")

        # Insert a group in front: the streams now cross sf3, then sf1.
        g0 = sfc.group([p3])
        step("inserting a group")
        chain = sfc.net.update_sfc_port_chain(chain, port_pair_groups=[g0.id, g1.id])
        sfc.settle()
        time.sleep(0.3)
        d = window()
        no_loop("after inserting a group")
        expect(carried(d["sf3"]) == steady and carried(d["sf1"]) == steady,
               f"after inserting a group the streams should cross sf3 then sf1: sf3 carried "
               f"{carried(d['sf3'])}, sf1 {carried(d['sf1'])}")

        # Replace the UDP classifier with an equivalent one. Two classifiers matching the
        # same traffic from the same port cannot exist at once (FlowClassifierInConflict), so
        # the old one is detached and deleted, the new one created and attached (the UDP
        # stream goes direct in between).
        step("replacing the UDP classifier")
        chain = sfc.net.update_sfc_port_chain(chain, flow_classifiers=[fc_t.id])
        sfc.net.delete_sfc_flow_classifier(fc_u.id)
        fc_u2 = sfc.fc(protocol="udp", dport=6000, logical_source_port=src)
        chain = sfc.net.update_sfc_port_chain(chain, flow_classifiers=[fc_t.id, fc_u2.id])
        sfc.settle()
        time.sleep(0.3)
        d = window()
        no_loop("after replacing a classifier")
        expect(carried(d["sf3"]) == steady and carried(d["sf1"]) == steady,
               f"after replacing the UDP classifier the streams should cross sf3 and sf1 "
               f"again: sf3 carried {carried(d['sf3'])}, sf1 {carried(d['sf1'])}")
    except BaseException:
        streams.kill()
        raise
    step("streams stopping")
    diag = sfc.diag()
    try:
        sent = streams.check()
    except AssertionError as e:
        sent = None
        problems.append(f"[end] {e}")
    if sent is not None:
        seen = {n: v.fwd_flows("udp").get((s_ip, 43000), 0) for n, v in sfc.views().items()}
        expect(all(n <= sent for n in seen.values()),
               f"functions saw more packets of the UDP stream than were sent ({sent}): "
               f"{seen}: packets looped through a function during the changes")
    assert not problems, "\n".join(problems) + "\nsteps (since the streams started):\n  " + \
        "\n  ".join(timeline) + "\n" + diag


def test_classifier_replaced_call_by_call_loses_nothing(sfc):
    """The UDP classifier of a chain across three hosts is replaced three times, each of the
    four calls (detach, delete, create, attach) applied by every agent before the next, so the
    stream goes direct in between. The host of the first function must not drop its
    re-classification of the stream while the source's host may still send it in (the
    detach is staged like any other change that spans hosts): 0 UDP packets lost or doubled."""
    net = sfc.network("10.95.0.0/24")
    src = sfc.instance(net, "h1", "src")
    dst = sfc.instance(net, "h3", "dst")
    f1 = sfc.function(net, "h2", "sf1", "bump")
    f3 = sfc.function(net, "h3", "sf3", "bump")
    sfc.activate([src, dst, f1, f3])
    for fn in (f1, f3):
        fn.configure()
    fc_u = sfc.fc(protocol="udp", dport=6000, logical_source_port=src)
    fc_t = sfc.fc(protocol="tcp", dport=6001, logical_source_port=src)
    chain = sfc.chain([sfc.group([sfc.pair(f3)]), sfc.group([sfc.pair(f1)])], [fc_u, fc_t])
    sfc.settle()
    streams = Streams(sfc.lab, src, dst, 6000, 6001, udp_sport=43000, tcp_sport=43001)
    try:
        time.sleep(1.0)
        for _ in range(3):
            chain = sfc.net.update_sfc_port_chain(chain, flow_classifiers=[fc_t.id])
            sfc.settle()
            sfc.net.delete_sfc_flow_classifier(fc_u.id)
            sfc.settle()
            fc_u = sfc.fc(protocol="udp", dport=6000, logical_source_port=src)
            sfc.settle()
            chain = sfc.net.update_sfc_port_chain(chain, flow_classifiers=[fc_t.id, fc_u.id])
            sfc.settle()
            time.sleep(0.5)
        before = sfc.views()
        time.sleep(0.5)
        d = sfc.deltas(before)
        assert d["sf3"].fwd_flows("udp").get((src.ip(), 43000), 0) > 0, \
            f"the stream is not steered again at the end: {d['sf3'].summary()}"
    except BaseException:
        streams.kill()
        raise
    streams.check()


def test_lagging_function_host_never_loops_packets(sfc):
    """A group is inserted while the agent of its function's host is stopped (SIGSTOP), so
    the classifier's host steers into a function whose host has no rules yet. Packets may be
    lost until that agent catches up, but never loop (a bump in the wire sends the frame back
    into its host's bridge, which hands it to the function again) nor arrive twice."""
    lab = sfc.lab
    net = sfc.network("10.96.0.0/24")
    src = sfc.instance(net, "h1", "src")
    dst = sfc.instance(net, "h3", "dst")
    f1 = sfc.function(net, "h1", "sf1", "bump")
    f2 = sfc.function(net, "h2", "sf2", "bump")
    sfc.activate([src, dst, f1, f2])
    f1.configure()
    f2.configure()
    s_ip, d_ip = src.ip(), dst.ip()
    fc = sfc.fc(protocol="udp", dport=6200, logical_source_port=src)
    p1, p2 = sfc.pair(f1), sfc.pair(f2)
    g1 = sfc.group([p1])
    chain = sfc.chain([g1], [fc])
    g0 = sfc.group([p2])
    sfc.settle()
    agent = lab.agents["h2"]
    agent.send_signal(signal.SIGSTOP)
    try:
        revision = server_revision(lab, sfc.conn)
        chain = sfc.net.update_sfc_port_chain(chain, port_pair_groups=[g0.id, g1.id])
        wait_for("h1's agent to apply the insertion",
                 lambda: lab.status("h1").get("revision", -1) > revision)
        before = sfc.views()
        rx = udp_receiver(dst.ns, d_ip, 6200, idle=1.0, first=3.0)
        udp_send(src.ns, d_ip, 6200, "46000", count=20, rate=100)
        got = rx.result()["flows"].get(f"{s_ip} 46000", {})
        lagging = sfc.deltas(before)
    finally:
        agent.send_signal(signal.SIGCONT)
    sfc.settle()
    seen = {n: v.fwd_flows("udp").get((s_ip, 46000), 0) for n, v in lagging.items()}
    assert all(n <= 20 for n in seen.values()) and got.get("dups", 0) == 0, (
        f"while h2's agent was stopped, 20 packets steered to sf2 were seen {seen} times by "
        f"the functions and {got} at the destination: they looped\n{sfc.diag()}")
    # Once the agent runs again, the chain works: sf2 then sf1, each packet once.
    before = sfc.views()
    rx = udp_receiver(dst.ns, d_ip, 6200, idle=1.0)
    udp_send(src.ns, d_ip, 6200, "46001", count=20, rate=200)
    got = rx.result()["flows"].get(f"{s_ip} 46001", {})
    d = sfc.deltas(before)
    seen = {n: v.fwd_flows("udp").get((s_ip, 46001), 0) for n, v in d.items()}
    assert seen == {"sf1": 20, "sf2": 20} and got.get("n") == 20 and got.get("unique") == 20, (
        f"after h2's agent resumed, 20 packets crossed the functions {seen} times and reached "
        f"the destination as {got}\n{sfc.diag()}")


def test_switch_waits_for_a_lagging_function_host(sfc):
    """A group is inserted in front while a stream runs and the agent of the new function's
    host is stopped (SIGSTOP) for 1.5 s, longer than the grace period: the classifier's host
    adds its new paths, then waits for that host to acknowledge the change before it
    switches. Not a packet is lost, and the stream then crosses the new function."""
    lab = sfc.lab
    net = sfc.network("10.97.0.0/24")
    src = sfc.instance(net, "h1", "src")
    dst = sfc.instance(net, "h3", "dst")
    f1 = sfc.function(net, "h1", "sf1", "bump")
    f2 = sfc.function(net, "h2", "sf2", "bump")
    sfc.activate([src, dst, f1, f2])
    f1.configure()
    f2.configure()
    s_ip = src.ip()
    fc = sfc.fc(protocol="udp", dport=6300, logical_source_port=src)
    p1, p2 = sfc.pair(f1), sfc.pair(f2)
    g1 = sfc.group([p1])
    chain = sfc.chain([g1], [fc])
    g0 = sfc.group([p2])
    sfc.settle()
    streams = Streams(lab, src, dst, 6300, 0, udp_sport=47000, tcp_sport=0)
    agent = lab.agents["h2"]
    try:
        time.sleep(0.5)
        agent.send_signal(signal.SIGSTOP)
        try:
            chain = sfc.net.update_sfc_port_chain(chain, port_pair_groups=[g0.id, g1.id])
            time.sleep(1.5)
        finally:
            agent.send_signal(signal.SIGCONT)
        sfc.settle()
        time.sleep(0.3)
        before = sfc.views()
        time.sleep(0.5)
        d = sfc.deltas(before)
    except BaseException:
        streams.kill()
        raise
    streams.check()
    carried = {n: v.fwd_flows("udp").get((s_ip, 47000), 0) for n, v in d.items()}
    assert carried["sf2"] > 0 and carried["sf1"] > 0, (
        f"after the change the stream should cross sf2 then sf1: {carried}\n{sfc.diag()}")


# ---------------------------------------------------------------------------------------------
# 5. agents killed and restarted


def _steering_state(lab: Lab, host: str) -> str:
    """The host's steering table without what moves by itself (counters, flow pins)."""
    text = sfc_table(lab, host)
    # A flow pin set lists no elements at all while it is empty.
    text = re.sub(r"\n\s*elements = \{[^}]*\}", "", text, flags=re.S)
    return re.sub(r"packets \d+ bytes \d+", "counter", text)


def _steady_steering_state(lab: Lab) -> dict[str, str]:
    """Every host's steering state once it held still for 1.5 s: a new chain's paths settle
    through a transition (the old ones go after the agents' grace period)."""
    last, since = None, time.monotonic()
    deadline = since + 30
    while time.monotonic() < deadline:
        now = {h: _steering_state(lab, h) for h in lab.hosts}
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 1.5:
            return now
        time.sleep(0.25)
    raise AssertionError(f"the steering tables kept changing for 30 s: {last}")


def test_agent_killed_and_restarted_during_a_stream(sfc):
    lab = sfc.lab
    net = sfc.network("10.95.0.0/24")
    src = sfc.instance(net, "h1", "src")
    dst = sfc.instance(net, "h3", "dst")
    fa = sfc.function(net, "h2", "sfa", "bump")
    fb = sfc.function(net, "h3", "sfb", "bump")
    sfc.activate([src, dst, fa, fb])
    fa.configure()
    fb.configure()
    s_ip = src.ip()
    fc = sfc.fc(protocol="udp", dport=6100, logical_source_port=src)
    sfc.chain([sfc.group([sfc.pair(fa), sfc.pair(fb)])], [fc])
    sfc.settle()
    tables = _steady_steering_state(lab)

    # Steady state: a change that does not concern chains makes every agent reconcile, and
    # none touches its steering table.
    ops = {h: lab.status(h).get("sfc_ops") for h in lab.hosts}
    sfc.net.create_network(name="unrelated")
    sfc.settle()
    churn = {h: (ops[h], lab.status(h).get("sfc_ops")) for h in lab.hosts}

    streams = Streams(lab, src, dst, 6100, 0, udp_sport=45000, tcp_sport=0)
    try:
        time.sleep(1.0)
        owner = {n for n, v in sfc.views().items() if v.fwd_flows("udp").get((s_ip, 45000))}
        assert len(owner) == 1, (
            f"the stream should cross exactly one instance before the restarts: {owner}\n"
            f"{sfc.diag()}")
        statuses = {}
        for host in lab.hosts:
            proc = lab.agents.pop(host)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            time.sleep(0.5)
            lab.start_agent(host)
            statuses[host] = wait_for(
                f"agent {host} to finish its first reconcile",
                lambda: lab.status(host) if lab.status(host).get("reconciles") else None)
            time.sleep(0.5)
    except BaseException:
        streams.kill()
        raise
    tables_after = {h: _steering_state(lab, h) for h in lab.hosts}
    streams.check()
    after = {n for n, v in sfc.views().items() if v.fwd_flows("udp").get((s_ip, 45000))}
    assert after == owner, (
        f"the stream moved from {owner} to {after} across the agent restarts")
    assert all(a == b for a, b in churn.values()), (
        f"with nothing changed for chains, agents re-applied steering commands when they "
        f"reconciled (sfc_ops before, after an unrelated change): {churn}")
    for host, status in statuses.items():
        assert "sfc_ops" in status, f"agent {host}'s status has no sfc_ops: {status}"
        assert (status["last_ops"], status["ops_total"], status["sfc_ops"]) == (0, 0, 0), (
            f"agent {host}, restarted after SIGKILL with nothing changed, applied kernel "
            f"operations in its first reconcile: {status}\n"
            f"steering table before:\n{tables[host]}\nafter:\n{tables_after[host]}")
    for h in lab.hosts:
        now = tables_after[h]
        assert now == tables[h], (
            f"the steering table of {h} changed across the restarts:\nbefore:\n{tables[h]}\n"
            f"after:\n{now}")

    # The agent plans against the table it applied last, but a table deleted behind its
    # back is seen (the table's handle) and made again at its next reconcile.
    in_ns(lab.host_ns("h1"), "nft", "delete", "table", "netdev", "neutrino_sfc")
    sfc.net.create_network(name="unrelated-2")
    sfc.settle()
    again = _steering_state(lab, "h1")
    assert again == tables["h1"], (
        f"h1's steering table, deleted by hand, was not made again as it was:\n"
        f"before:\n{tables['h1']}\nafter:\n{again}")


# ---------------------------------------------------------------------------------------------
# 6. health of functions


def _health(sfc: Sfc, pair_id: str) -> tuple[str, str]:
    """The port pair's Neutrino health attributes, read through the raw API (openstacksdk
    drops attributes it does not know)."""
    body = sfc.conn.network.get(f"/sfc/port_pairs/{pair_id}").json()["port_pair"]
    return body.get("neutrino:health"), body.get("neutrino:health_detail")


def _burst(sfc: Sfc, src: Instance, dst: Instance, port: int, first: int, n: int = 32) -> dict:
    """One packet on each of ``n`` new flows; what the destination got, per source port."""
    rx = udp_receiver(dst.ns, dst.ip(), port, idle=0.4, first=1.0)
    udp_send(src.ns, dst.ip(), port, f"{first}-{first + n - 1}", count=1, rate=2000)
    flows = rx.result()["flows"]
    return {sp: flows.get(f"{src.ip()} {sp}", {}).get("n", 0) for sp in range(first, first + n)}


def test_dead_function_leaves_its_group_and_comes_back(sfc):
    """Probes find an instance that stopped forwarding: its flows move to the other instance
    within a second and the API shows it DOWN; restored, it is UP and takes new flows again.
    With every instance dead the group fails closed, and the chain's statistics count the
    drops."""
    net = sfc.network("10.97.0.0/24")
    src = sfc.instance(net, "h1", "src")
    dst = sfc.instance(net, "h3", "dst")
    fa = sfc.function(net, "h2", "sfa", "bump")
    fb = sfc.function(net, "h3", "sfb", "bump")
    sfc.activate([src, dst, fa, fb])
    fa.configure()
    fb.configure()
    pa, pb = sfc.pair(fa), sfc.pair(fb)
    fc = sfc.fc(protocol="udp", dport=6300, logical_source_port=src)
    chain = sfc.chain([sfc.group([pa, pb])], [fc])
    sfc.settle()
    wait_for("both pairs UP", lambda: _health(sfc, pa.id)[0] == "UP"
             and _health(sfc, pb.id)[0] == "UP", timeout=10)
    s_ip = src.ip()
    before = sfc.views()
    got = _burst(sfc, src, dst, 6300, 30000)
    used = {n for n, v in sfc.deltas(before).items()
            if any(a == s_ip and 30000 <= sp < 30032 for (a, _p, sp, _d) in v.fwd)}
    assert all(got.values()) and used == {"sfa", "sfb"}, (
        f"32 flows should cross both instances and arrive: {used}, lost "
        f"{[sp for sp, n in got.items() if not n]}\n{sfc.diag()}")

    # The classifier's agent shows the chain's hop counters in its status file.
    def counted():
        chains = (sfc.lab.status("h1").get("sfc") or {}).get("chains", [])
        mine = [c for c in chains if c["id"] == chain.id]
        hops = mine[0]["hops"] if mine else []
        return hops if sum(h["packets"] for h in hops) >= 32 else None
    hops = wait_for("h1's status file to count the chain's packets", counted, timeout=10)
    assert {h["port_pair_id"] for h in hops if h["packets"]} == {pa.id, pb.id}, hops

    # sfa stops forwarding (its function is gone, its interfaces stay up) while new flows
    # start every 5 ms (one packet each, source ports in sending order). Half of them hash to
    # sfa: they are lost from the moment it stops until it has left its group.
    rate, n = 200, 600
    rx = udp_receiver(dst.ns, dst.ip(), 6300, idle=1.0, first=4.0)
    stream = udp_send(src.ns, dst.ip(), 6300, f"31000-{31000 + n - 1}", count=1, rate=rate,
                      background=True)
    time.sleep(0.8)
    in_ns(fa.ns, "nft", "delete", "table", "netdev", FN_TABLE)
    stream.result()
    flows = rx.result()["flows"]
    lost = [sp for sp in range(31000, 31000 + n) if not flows.get(f"{s_ip} {sp}")]
    assert lost, f"no flow was lost although sfa stopped forwarding\n{sfc.diag()}"
    outage = (lost[-1] - lost[0]) / rate
    print(f"new flows lost for {outage:.2f} s after sfa stopped forwarding "
          f"({len(lost)} of {n} flows)")
    assert lost[-1] < 31000 + n - rate // 2, (
        f"flows were still lost at the end of the {n / rate:.0f} s stream: sfa never left "
        f"its group\n{sfc.diag()}")
    health, detail = wait_for("sfa DOWN in the API", lambda: _health(sfc, pa.id)
                              if _health(sfc, pa.id)[0] == "DOWN" else None, timeout=5)
    assert "probe" in detail, f"sfa's health detail should say why: {detail!r}"
    assert _health(sfc, pb.id)[0] == "UP"
    assert outage <= 1.0, (
        f"new flows were lost for {outage:.2f} s after sfa stopped forwarding (a dead "
        f"instance leaves its group within 1 s)\n{sfc.diag()}")

    # Restored: UP again, and new flows use it.
    fa.configure()
    wait_for("sfa UP again", lambda: _health(sfc, pa.id)[0] == "UP", timeout=5)
    sfc.settle()
    before = sfc.views()
    got = _burst(sfc, src, dst, 6300, 33000, n=64)
    back = [sp for (a, _p, sp, _d) in sfc.deltas(before)["sfa"].fwd
            if a == s_ip and 33000 <= sp < 33064]
    assert all(got.values()) and back, (
        f"after sfa was restored, new flows should use it again: sfa carried {len(back)} of 64"
        f"\n{sfc.diag()}")

    # Every instance dead: fail-closed, and the API says so.
    in_ns(fa.ns, "nft", "delete", "table", "netdev", FN_TABLE)
    in_ns(fb.ns, "nft", "delete", "table", "netdev", FN_TABLE)
    wait_for("both pairs DOWN", lambda: _health(sfc, pa.id)[0] == "DOWN"
             and _health(sfc, pb.id)[0] == "DOWN", timeout=5)
    sfc.settle()
    got = _burst(sfc, src, dst, 6300, 34000)
    assert not any(got.values()), (
        f"with every instance of the group dead, steered packets must be dropped (fail "
        f"closed), yet {sum(got.values())} arrived")

    def dropped():
        stats = sfc.conn.network.get(
            f"/sfc/port_chains/{chain.id}/statistics").json()["statistics"]
        return stats if stats["dropped"]["packets"] >= 32 else None
    wait_for("the chain's statistics to count the dropped packets", dropped, timeout=10)
