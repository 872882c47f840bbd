"""The `openstack sfc ...` commands (python-neutronclient's OSC plugin) on every SFC resource."""

from __future__ import annotations

from conftest import osc, osc_fails, osc_run, unique


def _sfc_net(env, cleanup, cidr: str) -> str:
    net = osc("network", "create", unique("sfcnet"), env=env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=env)
    sub = osc("subnet", "create", "--network", net["id"], "--subnet-range", cidr, unique("s"), env=env)
    cleanup.add(osc_run, "subnet", "delete", sub["id"], env=env)
    return net["id"]


def _port(env, cleanup, net: str, device: str) -> dict:
    port = osc("port", "create", "--network", net, "--device", device, unique("p"), env=env)
    cleanup.add(osc_run, "port", "delete", port["id"], env=env)
    return port


def _ip(port: dict) -> str:
    ips = port["fixed_ips"]
    first = ips[0] if isinstance(ips, list) else ips
    return first["ip_address"]


def _sfc(env, cleanup, kind: list[str], *args: str) -> dict:
    """`openstack sfc KIND create ARGS`, deleted at teardown."""
    made = osc("sfc", *kind, "create", *args, env=env)
    cleanup.add(osc_run, "sfc", *kind, "delete", made["ID"], env=env)
    return made


def test_sfc_resources_lifecycle(admin_env, cleanup):
    env = admin_env
    net = _sfc_net(env, cleanup, "10.71.0.0/24")
    src = _port(env, cleanup, net, unique("vm-src"))
    dst = _port(env, cleanup, net, unique("vm-dst"))
    sf1, sf2 = unique("sf1"), unique("sf2")
    p1_in, p1_out = _port(env, cleanup, net, sf1), _port(env, cleanup, net, sf1)
    p2 = _port(env, cleanup, net, sf2)

    # Flow classifier.
    fc_name = unique("fc")
    fc = _sfc(env, cleanup, ["flow", "classifier"], fc_name, "--protocol", "TCP",
              "--destination-port", "80:8080", "--source-ip-prefix", f"{_ip(src)}/32",
              "--logical-source-port", src["id"], "--logical-destination-port", dst["id"])
    assert fc["Name"] == fc_name and fc["Protocol"] == "tcp" and fc["Ethertype"] == "IPv4"
    assert fc["Destination Port Range Min"] == 80 and fc["Destination Port Range Max"] == 8080
    assert fc["Source IP"] == f"{_ip(src)}/32" and fc["Logical Source Port"] == src["id"]
    assert fc["L7 Parameters"] == {}

    # Port pairs: a two-armed SF with MPLS and a weight; a single-armed one.
    pp1 = _sfc(env, cleanup, ["port", "pair"], unique("pp"), "--ingress", p1_in["id"],
               "--egress", p1_out["id"], "--service-function-parameters", "correlation=mpls,weight=2")
    assert pp1["Service Function Parameters"] == {"correlation": "mpls", "weight": 2}
    assert pp1["Ingress Logical Port"] == p1_in["id"] and pp1["Egress Logical Port"] == p1_out["id"]
    pp2 = _sfc(env, cleanup, ["port", "pair"], unique("pp"), "--ingress", p2["id"], "--egress", p2["id"])
    assert pp2["Service Function Parameters"] == {"correlation": None, "weight": 1}

    # Port pair groups: load-balancing fields; a tap group.
    g1 = _sfc(env, cleanup, ["port", "pair", "group"], unique("ppg"), "--port-pair", pp1["ID"],
              "--port-pair-group-parameters", "lb-fields=ip_src&ip_dst")
    assert g1["Port Pair"] == [pp1["ID"]] and g1["Tap Enabled"] is False
    assert g1["Port Pair Group Parameters"] == {
        "lb_fields": ["ip_src", "ip_dst"],
        "ppg_n_tuple_mapping": {"ingress_n_tuple": {}, "egress_n_tuple": {}}}
    tap = _sfc(env, cleanup, ["port", "pair", "group"], unique("tap"), "--port-pair", pp2["ID"],
               "--enable-tap")
    assert tap["Tap Enabled"] is True

    # Port chain with MPLS correlation, symmetric.
    pc_name = unique("pc")
    pc = _sfc(env, cleanup, ["port", "chain"], pc_name, "--port-pair-group", g1["ID"],
              "--flow-classifier", fc["ID"], "--chain-parameters", "correlation=mpls,symmetric=true")
    assert pc["Port Pair Groups"] == [g1["ID"]] and pc["Flow Classifiers"] == [fc["ID"]]
    assert pc["Chain Parameters"] == {"correlation": "mpls", "symmetric": True}

    # `set --port-pair-group` appends a hop to the live chain.
    osc("sfc", "port", "chain", "set", "--port-pair-group", tap["ID"], "--description", "two hops",
        pc["ID"], env=env)
    shown = osc("sfc", "port", "chain", "show", pc["ID"], env=env)
    assert shown["Port Pair Groups"] == [g1["ID"], tap["ID"]]
    assert shown["Description"] == "two hops"

    # Lists.
    rows = {r["ID"]: r for r in osc("sfc", "port", "chain", "list", env=env)}
    assert rows[pc["ID"]]["Name"] == pc_name
    assert rows[pc["ID"]]["Chain Parameters"] == {"correlation": "mpls", "symmetric": True}
    assert fc["ID"] in {r["ID"] for r in osc("sfc", "flow", "classifier", "list", env=env)}
    assert pp1["ID"] in {r["ID"] for r in osc("sfc", "port", "pair", "list", env=env)}
    groups = {r["ID"]: r for r in osc("sfc", "port", "pair", "group", "list", "--long", env=env)}
    assert groups[tap["ID"]]["Tap Enabled"] is True

    # Set name / description on every kind, by name where the CLI resolves names.
    new = unique("renamed")
    osc("sfc", "flow", "classifier", "set", "--name", new, fc_name, env=env)
    assert osc("sfc", "flow", "classifier", "show", new, env=env)["ID"] == fc["ID"]
    osc("sfc", "port", "pair", "set", "--description", "arm", pp1["ID"], env=env)
    assert osc("sfc", "port", "pair", "show", pp1["ID"], env=env)["Description"] == "arm"
    osc("sfc", "port", "pair", "group", "set", "--name", new, g1["ID"], env=env)
    assert osc("sfc", "port", "pair", "group", "show", g1["ID"], env=env)["Name"] == new

    # In-use deletes are refused.
    failed = osc_fails("sfc", "port", "pair", "group", "delete", g1["ID"], env=env)
    assert "in use" in failed.stderr.lower() or "409" in failed.stderr, failed.stderr
    assert osc_fails("sfc", "flow", "classifier", "delete", fc["ID"], env=env).returncode != 0
    assert osc_fails("sfc", "port", "pair", "delete", pp1["ID"], env=env).returncode != 0
    assert osc_fails("port", "delete", p1_in["id"], env=env).returncode != 0

    # Delete in dependency order; each is gone afterwards.
    for kind, ident in ((["port", "chain"], pc["ID"]), (["port", "pair", "group"], g1["ID"]),
                        (["port", "pair", "group"], tap["ID"]), (["port", "pair"], pp1["ID"]),
                        (["port", "pair"], pp2["ID"]), (["flow", "classifier"], fc["ID"])):
        osc("sfc", *kind, "delete", ident, env=env)
        assert osc_fails("sfc", *kind, "show", ident, env=env).returncode != 0


def test_sfc_service_graph(admin_env, cleanup):
    env = admin_env
    net = _sfc_net(env, cleanup, "10.72.0.0/24")
    chains = []
    for i in range(3):
        sf = unique(f"sf{i}")
        port = _port(env, cleanup, net, sf)
        src = _port(env, cleanup, net, unique("src"))
        pp = _sfc(env, cleanup, ["port", "pair"], unique("pp"), "--ingress", port["id"],
                  "--egress", port["id"], "--service-function-parameters", "correlation=mpls")
        g = _sfc(env, cleanup, ["port", "pair", "group"], unique("ppg"), "--port-pair", pp["ID"])
        fc = _sfc(env, cleanup, ["flow", "classifier"], unique("fc"), "--protocol", "udp",
                  "--source-ip-prefix", f"{_ip(src)}/32", "--logical-source-port", src["id"])
        chains.append(_sfc(env, cleanup, ["port", "chain"], unique("pc"), "--port-pair-group", g["ID"],
                           "--flow-classifier", fc["ID"]))
    a, b, c = (ch["ID"] for ch in chains)
    name = unique("sg")
    sg = _sfc(env, cleanup, ["service", "graph"], name, "--branching-point", f"{a}:{b},{c}")
    assert sg["Name"] == name
    assert {k: sorted(v) for k, v in sg["Branching Points"].items()} == {a: sorted([b, c])}

    osc("sfc", "service", "graph", "set", "--description", "fan-out", name, env=env)
    assert osc("sfc", "service", "graph", "show", sg["ID"], env=env)["Description"] == "fan-out"
    assert sg["ID"] in {r["ID"] for r in osc("sfc", "service", "graph", "list", env=env)}

    # Chains in the graph keep their hops and cannot be deleted.
    failed = osc_fails("sfc", "port", "chain", "delete", b, env=env)
    assert "in use" in failed.stderr.lower() or "409" in failed.stderr, failed.stderr
    # A chain belongs to one graph; loops are refused.
    assert osc_fails("sfc", "service", "graph", "create", unique("sg"), "--branching-point",
                     f"{b}:{c}", env=env).returncode != 0

    osc("sfc", "service", "graph", "delete", sg["ID"], env=env)
    assert osc_fails("sfc", "service", "graph", "show", sg["ID"], env=env).returncode != 0
    loop = osc_fails("sfc", "service", "graph", "create", unique("sg"), "--branching-point",
                     f"{b}:{b}", env=env)
    assert loop.returncode != 0
    osc("sfc", "port", "chain", "delete", b, env=env)


def test_sfc_errors_reach_the_cli(admin_env, cleanup):
    env = admin_env
    net = _sfc_net(env, cleanup, "10.73.0.0/24")
    a = _port(env, cleanup, net, unique("vm-a"))
    b = _port(env, cleanup, net, unique("vm-b"))
    failed = osc_fails("sfc", "port", "pair", "create", unique("pp"), "--ingress", a["id"],
                       "--egress", b["id"], env=env)
    assert "not in the same host" in failed.stderr, failed.stderr
    failed = osc_fails("sfc", "flow", "classifier", "create", unique("fc"), "--protocol", "icmp",
                       "--destination-port", "80", env=env)
    assert "TCP or UDP" in failed.stderr, failed.stderr
