"""openstacksdk's SFC resources (conn.network.*_sfc_*) and the raw SFC API over HTTP."""

from __future__ import annotations

import concurrent.futures

import pytest
import openstack.exceptions as exc

from conftest import unique


@pytest.fixture
def net(admin_conn, cleanup):
    conn = admin_conn
    network = conn.network.create_network(name=unique("sfcnet"))
    cleanup.add(conn.network.delete_network, network.id, ignore_missing=True)
    subnet = conn.network.create_subnet(network_id=network.id, ip_version=4, cidr="10.81.0.0/24")
    cleanup.add(conn.network.delete_subnet, subnet.id, ignore_missing=True)
    return network


def _port(conn, cleanup, net, device):
    port = conn.network.create_port(network_id=net.id, device_id=device, name=unique("p"))
    cleanup.add(conn.network.delete_port, port.id, ignore_missing=True)
    return port


def _error(resp):
    body = resp.json()["NeutronError"]
    assert body["detail"] == ""
    return resp.status_code, body["type"]


def test_sdk_sfc_lifecycle(admin_conn, net, cleanup):
    conn = admin_conn
    src = _port(conn, cleanup, net, unique("src"))
    dst = _port(conn, cleanup, net, unique("dst"))
    sf = unique("sf")
    p_in, p_out = _port(conn, cleanup, net, sf), _port(conn, cleanup, net, sf)
    tap_port = _port(conn, cleanup, net, unique("tap"))
    src_ip = src.fixed_ips[0]["ip_address"]

    fc = conn.network.create_sfc_flow_classifier(
        name=unique("fc"), ethertype="IPv4", protocol="udp", source_port_range_min=1000,
        source_port_range_max=2000, source_ip_prefix=f"{src_ip}/32",
        destination_ip_prefix="10.81.0.128/25", logical_source_port=src.id,
        logical_destination_port=dst.id)
    cleanup.add(conn.network.delete_sfc_flow_classifier, fc.id, ignore_missing=True)
    assert (fc.protocol, fc.source_port_range_min, fc.source_port_range_max) == ("udp", 1000, 2000)
    assert fc.destination_ip_prefix == "10.81.0.128/25" and fc.l7_parameters == {}

    pp = conn.network.create_sfc_port_pair(
        name=unique("pp"), ingress=p_in.id, egress=p_out.id,
        service_function_parameters={"correlation": "nsh", "weight": 3})
    cleanup.add(conn.network.delete_sfc_port_pair, pp.id, ignore_missing=True)
    assert pp.service_function_parameters == {"correlation": "nsh", "weight": 3}
    tap_pp = conn.network.create_sfc_port_pair(name=unique("pp"), ingress=tap_port.id,
                                               egress=tap_port.id)
    cleanup.add(conn.network.delete_sfc_port_pair, tap_pp.id, ignore_missing=True)

    ppg = conn.network.create_sfc_port_pair_group(
        name=unique("ppg"), port_pairs=[pp.id],
        port_pair_group_parameters={"lb_fields": ["ip_src", "udp_src"],
                                    "ppg_n_tuple_mapping": {"ingress_n_tuple": {},
                                                            "egress_n_tuple": {"source_ip_prefix": "10.9.0.0/16"}}})
    cleanup.add(conn.network.delete_sfc_port_pair_group, ppg.id, ignore_missing=True)
    assert ppg.port_pair_group_parameters["lb_fields"] == ["ip_src", "udp_src"]
    assert ppg.port_pair_group_parameters["ppg_n_tuple_mapping"]["egress_n_tuple"] == {
        "source_ip_prefix": "10.9.0.0/16"}
    assert ppg.is_tap_enabled is False
    tap = conn.network.create_sfc_port_pair_group(name=unique("tap"), port_pairs=[tap_pp.id],
                                                  is_tap_enabled=True)
    cleanup.add(conn.network.delete_sfc_port_pair_group, tap.id, ignore_missing=True)
    assert tap.is_tap_enabled is True

    pc = conn.network.create_sfc_port_chain(
        name=unique("pc"), port_pair_groups=[ppg.id], flow_classifiers=[fc.id],
        chain_parameters={"correlation": "nsh", "symmetric": True})
    cleanup.add(conn.network.delete_sfc_port_chain, pc.id, ignore_missing=True)
    assert pc.chain_parameters == {"correlation": "nsh", "symmetric": True}
    raw = conn.network.get(f"/sfc/port_chains/{pc.id}").json()["port_chain"]
    assert isinstance(raw["chain_id"], int) and raw["chain_id"] >= 1

    # Live chain: add a hop; show and list agree.
    pc = conn.network.update_sfc_port_chain(pc, port_pair_groups=[ppg.id, tap.id], name="two-hops")
    assert pc.port_pair_groups == [ppg.id, tap.id] and pc.name == "two-hops"
    fetched = conn.network.get_sfc_port_chain(pc.id)
    assert fetched.port_pair_groups == [ppg.id, tap.id] and fetched.flow_classifiers == [fc.id]
    assert pc.id in {c.id for c in conn.network.sfc_port_chains()}
    assert [g.id for g in conn.network.sfc_port_pair_groups(name=tap.name)] == [tap.id]
    assert conn.network.find_sfc_flow_classifier(fc.name).id == fc.id
    assert conn.network.update_sfc_port_pair(pp, description="nat").description == "nat"
    assert conn.network.update_sfc_flow_classifier(fc, name="renamed").name == "renamed"

    # Scale out: a second instance joins the first group.
    sf2 = unique("sf")
    q_in, q_out = _port(conn, cleanup, net, sf2), _port(conn, cleanup, net, sf2)
    pp2 = conn.network.create_sfc_port_pair(ingress=q_in.id, egress=q_out.id,
                                            service_function_parameters={"correlation": "nsh"})
    cleanup.add(conn.network.delete_sfc_port_pair, pp2.id, ignore_missing=True)
    ppg = conn.network.update_sfc_port_pair_group(ppg, port_pairs=[pp.id, pp2.id])
    assert ppg.port_pairs == [pp.id, pp2.id]

    # In use.
    with pytest.raises(exc.ConflictException):
        conn.network.delete_sfc_port_pair_group(ppg.id)
    with pytest.raises(exc.ConflictException):
        conn.network.delete_sfc_port_pair(pp2.id)

    for delete, ident in ((conn.network.delete_sfc_port_chain, pc.id),
                          (conn.network.delete_sfc_port_pair_group, ppg.id),
                          (conn.network.delete_sfc_port_pair_group, tap.id),
                          (conn.network.delete_sfc_port_pair, pp.id),
                          (conn.network.delete_sfc_flow_classifier, fc.id)):
        delete(ident, ignore_missing=False)
    with pytest.raises(exc.NotFoundException):
        conn.network.get_sfc_port_chain(pc.id)


def test_sdk_service_graph(admin_conn, net, cleanup):
    conn = admin_conn
    ids = []
    for i in range(3):
        port = _port(conn, cleanup, net, unique("sf"))
        pp = conn.network.create_sfc_port_pair(ingress=port.id, egress=port.id,
                                               service_function_parameters={"correlation": "mpls"})
        cleanup.add(conn.network.delete_sfc_port_pair, pp.id, ignore_missing=True)
        g = conn.network.create_sfc_port_pair_group(port_pairs=[pp.id])
        cleanup.add(conn.network.delete_sfc_port_pair_group, g.id, ignore_missing=True)
        pc = conn.network.create_sfc_port_chain(port_pair_groups=[g.id])
        cleanup.add(conn.network.delete_sfc_port_chain, pc.id, ignore_missing=True)
        ids.append(pc.id)
    a, b, c = ids
    sg = conn.network.create_sfc_service_graph(name=unique("sg"), port_chains={a: [b], b: [c]})
    cleanup.add(conn.network.delete_sfc_service_graph, sg.id, ignore_missing=True)
    assert sg.port_chains == {a: [b], b: [c]}
    assert conn.network.update_sfc_service_graph(sg, description="line").description == "line"
    with pytest.raises(exc.ConflictException):
        conn.network.delete_sfc_port_chain(b)
    with pytest.raises(exc.ConflictException):
        conn.network.create_sfc_service_graph(port_chains={c: [a]})
    conn.network.delete_sfc_service_graph(sg.id, ignore_missing=False)
    with pytest.raises(exc.BadRequestException):
        conn.network.create_sfc_service_graph(port_chains={c: [c]})
    conn.network.delete_sfc_port_chain(b, ignore_missing=False)


def test_raw_http_contract(admin_conn, net, cleanup):
    """Status codes and NeutronError types over HTTP, extensions and quotas."""
    conn = admin_conn
    aliases = {e["alias"]: e for e in conn.network.get("/extensions").json()["extensions"]}
    for alias in ("flow_classifier", "sfc", "service_graph", "networking-sfc-tap"):
        assert alias in aliases
    assert aliases["service_graph"]["updated"] == "2017-09-20T00:00:00-00:00"
    quota = conn.network.get(f"/quotas/{conn.current_project_id}").json()["quota"]
    assert {k: quota[k] for k in ("flow_classifier", "port_pair", "port_pair_group", "port_chain")} \
        == {"flow_classifier": 100, "port_pair": 100, "port_pair_group": 10, "port_chain": 10}
    assert quota["service_graph"] == -1

    post = lambda path, body: conn.network.post(path, json=body, raise_exc=False)  # noqa: E731
    # 201 on create, 204 on delete, no bulk.
    r = post("/sfc/port_pair_groups", {"port_pair_group": {"name": unique("g")}})
    assert r.status_code == 201
    g = r.json()["port_pair_group"]
    assert g["group_id"] >= 1 and g["tap_enabled"] is False and g["port_pairs"] == []
    assert _error(post("/sfc/port_pair_groups", {"port_pair_groups": [{}, {}]})) == (400, "HTTPBadRequest")
    r = post("/sfc/port_chains", {"port_chain": {"port_pair_groups": [g["id"]]}})
    assert r.status_code == 201
    pc = r.json()["port_chain"]
    assert _error(post("/sfc/port_chains", {"port_chain": {"port_pair_groups": [g["id"]]}})) \
        == (409, "InvalidPortPairGroups")
    assert _error(post("/sfc/port_chains", {"port_chain": {"port_pair_groups": []}})) \
        == (400, "PortPairGroupNotSpecified")
    g2 = post("/sfc/port_pair_groups", {"port_pair_group": {}}).json()["port_pair_group"]
    cleanup.add(conn.network.delete_sfc_port_pair_group, g2["id"], ignore_missing=True)
    assert _error(post("/sfc/port_chains", {"port_chain": {"port_pair_groups": [g2["id"]],
                                                           "chain_id": pc["chain_id"]}})) \
        == (400, "PortChainChainIdInConflict")
    assert _error(conn.network.delete(f"/sfc/port_pair_groups/{g['id']}", raise_exc=False)) \
        == (409, "PortPairGroupInUse")
    assert _error(conn.network.get("/sfc/port_chains/not-a-uuid", raise_exc=False)) \
        == (404, "PortChainNotFound")
    a = _port(conn, cleanup, net, "one")
    b = _port(conn, cleanup, net, "two")
    assert _error(post("/sfc/port_pairs", {"port_pair": {"ingress": a.id, "egress": b.id}})) \
        == (400, "PortPairIngressEgressDifferentHost")
    assert _error(post("/sfc/flow_classifiers", {"flow_classifier": {"protocol": "gre"}})) \
        == (400, "FlowClassifierInvalidProtocol")
    assert _error(post("/sfc/service_graphs", {"service_graph": {"port_chains": {pc["id"]: [pc["id"]]}}})) \
        == (400, "ServiceGraphLoopDetected")
    # Unknown list filters are ignored (networking-sfc disables filter validation).
    listed = conn.network.get(f"/sfc/port_chains?id={pc['id']}&no_such_filter=1").json()["port_chains"]
    assert [c["id"] for c in listed] == [pc["id"]]
    assert conn.network.delete(f"/sfc/port_chains/{pc['id']}", raise_exc=False).status_code == 204
    assert conn.network.delete(f"/sfc/port_pair_groups/{g['id']}", raise_exc=False).status_code == 204


def test_two_servers_never_hand_out_the_same_chain_or_group_id(neutrino_pg_pair):
    """8 clients through two servers on one PostgreSQL create 150 groups and chains at once."""
    from test_durability import _call, _token_and_project

    servers = neutrino_pg_pair.servers
    token, project = _token_and_project(servers[0])
    status, _ = _call(servers[0], token, "PUT", f"/v2.0/quotas/{project}",
                      {"quota": {"port_chain": -1, "port_pair_group": -1}})
    assert status == 200
    count = 150
    results: list[tuple[int, dict, dict]] = [None] * count  # type: ignore[list-item]

    def create(i: int):
        server = servers[i % 2]
        s1, g = _call(server, token, "POST", "/v2.0/sfc/port_pair_groups",
                      {"port_pair_group": {"name": f"g{i}"}})
        assert s1 == 201, g
        s2, c = _call(server, token, "POST", "/v2.0/sfc/port_chains",
                      {"port_chain": {"port_pair_groups": [g["port_pair_group"]["id"]]}})
        results[i] = (s2, g["port_pair_group"], c)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    assert all(s == 201 for s, _, _ in results), [c for s, _, c in results if s != 201][:3]
    chain_ids = [c["port_chain"]["chain_id"] for _, _, c in results]
    group_ids = [g["group_id"] for _, g, _ in results]
    assert sorted(chain_ids) == list(range(1, count + 1)), "chain ids unique and lowest-first"
    assert sorted(group_ids) == list(range(1, count + 1)), "group ids unique and lowest-first"

    # An explicit chain id asked for through both servers at once: one winner.
    def explicit(i: int):
        status, g = _call(servers[i % 2], token, "POST", "/v2.0/sfc/port_pair_groups",
                          {"port_pair_group": {}})
        return _call(servers[i % 2], token, "POST", "/v2.0/sfc/port_chains",
                     {"port_chain": {"port_pair_groups": [g["port_pair_group"]["id"]],
                                     "chain_id": 60000}})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(explicit, range(8)))
    assert sorted(s for s, _ in outcomes) == [201] + [400] * 7
    assert {b["NeutronError"]["type"] for s, b in outcomes if s == 400} == {"PortChainChainIdInConflict"}
    status, listed = _call(servers[1], token, "GET", "/v2.0/sfc/port_chains?chain_id=60000")
    assert status == 200 and len(listed["port_chains"]) == 1


def test_sfc_status_extensions(admin_conn, admin_env, neutrino, net, cleanup):
    """Neutrino's SFC status: port pair health, the agent report endpoint, chain statistics
    over plain HTTP, and the `fail_open` group parameter; the CLI keeps working."""
    from conftest import osc
    from test_durability import _call, _token_and_project

    conn = admin_conn
    sf = unique("sf")
    ports = []
    for _ in range(2):
        port = conn.network.create_port(network_id=net.id, device_id=sf, name=unique("p"),
                                        binding_host_id="acc-h1")
        cleanup.add(conn.network.delete_port, port.id, ignore_missing=True)
        ports.append(port)
    pp = conn.network.create_sfc_port_pair(name=unique("pp"), ingress=ports[0].id,
                                           egress=ports[1].id)
    cleanup.add(conn.network.delete_sfc_port_pair, pp.id, ignore_missing=True)
    g = conn.network.create_sfc_port_pair_group(
        name=unique("g"), port_pairs=[pp.id], port_pair_group_parameters={"fail_open": True})
    cleanup.add(conn.network.delete_sfc_port_pair_group, g.id, ignore_missing=True)
    assert g.port_pair_group_parameters == {
        "lb_fields": [], "fail_open": True,
        "ppg_n_tuple_mapping": {"ingress_n_tuple": {}, "egress_n_tuple": {}}}
    r = conn.network.post("/sfc/port_pair_groups", raise_exc=False, json={
        "port_pair_group": {"port_pair_group_parameters": {"fail_open": "sometimes"}}})
    assert _error(r) == (400, "HTTPBadRequest")
    pc = conn.network.create_sfc_port_chain(name=unique("pc"), port_pair_groups=[g.id])
    cleanup.add(conn.network.delete_sfc_port_chain, pc.id, ignore_missing=True)

    raw = lambda: conn.network.get(f"/sfc/port_pairs/{pp.id}").json()["port_pair"]  # noqa: E731
    assert (raw()["neutrino:health"], raw()["neutrino:health_detail"]) == ("UNKNOWN", "")
    r = conn.network.put(f"/sfc/port_pairs/{pp.id}", raise_exc=False,
                         json={"port_pair": {"neutrino:health": "UP"}})
    assert _error(r) == (400, "HTTPBadRequest")

    token, _ = _token_and_project(neutrino)
    status, stats = _call(neutrino, token, "GET", f"/v2.0/sfc/port_chains/{pc.id}/statistics")
    assert status == 200, stats
    assert stats == {"statistics": {"port_chain_id": pc.id, "hops": [],
                                    "dropped": {"packets": 0, "bytes": 0}, "updated_at": None}}

    # What a host agent sends.
    hop = {"port_pair_group_id": g.id, "port_pair_id": pp.id, "direction": "forward"}
    for host, packets in (("acc-h1", 4), ("acc-h2", 6)):
        status, out = _call(neutrino, token, "PUT", "/neutrino/v1/sfc-status", {
            "host": host,
            "port_pairs": [{"id": pp.id, "health": "DOWN", "detail": "no reply on eth1"}],
            "chains": [{"id": pc.id, "hops": [dict(hop, packets=packets, bytes=packets * 100)],
                        "dropped": {"packets": 1, "bytes": 64}}]})
        assert status == 200, out
        # Only acc-h1 hosts the pair's ports: acc-h2's health report is ignored.
        assert out == {"updated": 1 if host == "acc-h1" else 0, "chains": 1}
    status, out = _call(neutrino, token, "PUT", "/neutrino/v1/sfc-status",
                        {"host": "acc-h1", "port_pairs": [{"id": pp.id, "health": "SIDEWAYS"}]})
    assert (status, out["NeutronError"]["type"]) == (400, "HTTPBadRequest")
    assert (raw()["neutrino:health"], raw()["neutrino:health_detail"]) \
        == ("DOWN", "no reply on eth1")

    status, stats = _call(neutrino, token, "GET", f"/v2.0/sfc/port_chains/{pc.id}/statistics")
    assert status == 200, stats
    s = stats["statistics"]
    assert s["hops"] == [dict(hop, packets=10, bytes=1000, hosts=["acc-h1", "acc-h2"])]
    assert s["dropped"] == {"packets": 2, "bytes": 128}
    assert s["updated_at"].endswith("Z")
    status, err = _call(neutrino, token, "GET",
                        "/v2.0/sfc/port_chains/8d2c4b1e-0000-4000-8000-00000000beef/statistics")
    assert (status, err["NeutronError"]["type"]) == (404, "PortChainNotFound")

    # The CLI (python-neutronclient's OSC plugin through openstacksdk) still shows both.
    # openstacksdk keeps only the attributes its SfcPortPair class knows, so the CLI does not
    # list neutrino:health; the raw API above is where clients read it.
    shown = osc("sfc", "port", "pair", "show", pp.id, env=admin_env)
    assert shown["ID"] == pp.id and shown["Ingress Logical Port"] == ports[0].id
    chain = osc("sfc", "port", "chain", "show", pc.id, env=admin_env)
    assert chain["ID"] == pc.id and chain["Port Pair Groups"] == [g.id]
    assert "statistics" not in conn.network.get(f"/sfc/port_chains/{pc.id}").json()["port_chain"]
