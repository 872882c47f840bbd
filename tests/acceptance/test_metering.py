"""L3 metering with real packets: a router with a gateway counts its project's label rules
in the ``inet neutrino_meter`` table of its namespace, and
``GET /v2.0/metering/metering-labels/{id}/statistics`` answers what the agents reported.

An instance behind the router sends UDP datagrams of a known size to two addresses of an
instance on the external network. The egress rule counts the external subnet; an excluded
rule takes one of the two addresses out. Each datagram counts as its IPv4 packet in the
forward hook: 20 bytes of IP header, 8 of UDP header, and the payload.

Uses the lab of ``dataplane_lab`` (hosts = namespaces on one underlay, one agent each); needs
root, iproute2 and nft. Every namespace is deleted by the lab's teardown.
"""

from __future__ import annotations

import json
import uuid

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, lab, needs_root, sh, upper_pool, wait_active, wait_for)

pytestmark = needs_root

PAYLOAD = 300
IP_UDP_HEADERS = 20 + 8
SENT_COUNTED = 7
SENT_EXCLUDED = 5


def send_udp(lab, ns: str, target: str, count: int) -> None:
    lab.exec(ns, "python3", "-c",
             "import socket\n"
             "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             f"for _ in range({count}): s.sendto(b'x' * {PAYLOAD}, ('{target}', 9))")


def statistics(conn, label: str) -> dict:
    resp = conn.network.get(f"/metering/metering-labels/{label}/statistics")
    assert resp.status_code == 200, resp.text
    return resp.json()["statistics"]


def router_namespace(lab, router: str) -> str:
    for host in lab.hosts:
        ns = f"{lab.prefix(host)}qrouter-{router}"
        if ns in sh("ip", "netns", "list").stdout:
            return ns
    return ""


def kernel_counters(ns: str) -> dict:
    out = sh("ip", "netns", "exec", ns, "nft", "-j", "list", "counters", "table", "inet",
             "neutrino_meter", check=False).stdout
    try:
        items = json.loads(out)["nftables"]
    except (ValueError, KeyError):
        return {}
    return {i["counter"]["name"]: i["counter"]["bytes"] for i in items if "counter" in i}


def test_router_counts_label_traffic_except_excluded(lab):
    env = lab.server.env
    conn = lab.server.connect()
    tag = uuid.uuid4().hex[:6]
    public = osc("network", "create", "--external", f"mt-pub-{tag}", env=env)["id"]
    public_sub = osc("subnet", "create", "--network", public, "--subnet-range",
                     "198.51.100.0/24", *upper_pool("198.51.100.0/24"), f"mt-pub-{tag}", env=env)["id"]
    private = osc("network", "create", f"mt-priv-{tag}", env=env)["id"]
    private_sub = osc("subnet", "create", "--network", private, "--subnet-range",
                      "10.10.77.0/24", f"mt-priv-{tag}", env=env)["id"]
    router = osc("router", "create", f"mt-r-{tag}", env=env)["id"]
    osc("router", "set", "--external-gateway", public, router, env=env, json_output=False)
    osc("router", "add", "subnet", router, private_sub, env=env, json_output=False)
    sg = osc("security", "group", "create", f"mt-open-{tag}", env=env)["id"]
    for proto in ("udp", "icmp"):
        osc("security", "group", "rule", "create", "--ingress", "--protocol", proto,
            "--remote-ip", "0.0.0.0/0", sg, env=env)
    a = bound_port(env, private, "h1", "a", "--security-group", sg)
    out = bound_port(env, public, "h2", "out", "--security-group", sg,
                     "--fixed-ip", f"subnet={public_sub},ip-address=198.51.100.50",
                     "--fixed-ip", f"subnet={public_sub},ip-address=198.51.100.60")
    for p in (a, out):
        wait_active(env, p["id"])
    for rp in osc("port", "list", "--router", router, env=env):
        wait_active(env, rp["ID"])
    ns_a = lab.instance("h1", "a")
    wait_for("the external instance reachable through the router",
             lambda: lab.pings(ns_a, "198.51.100.50") and lab.pings(ns_a, "198.51.100.60"))

    label = conn.network.create_metering_label(name=f"mt-{tag}")
    counted = conn.network.create_metering_label_rule(
        metering_label_id=label.id, direction="egress", remote_ip_prefix="198.51.100.0/24")
    conn.network.create_metering_label_rule(
        metering_label_id=label.id, direction="egress", remote_ip_prefix="198.51.100.60/32",
        is_excluded=True)
    # Another project's label that is not shared is not this router's business.
    other = conn.network.create_metering_label(name=f"mt-other-{tag}", project_id="elsewhere")
    conn.network.create_metering_label_rule(
        metering_label_id=other.id, direction="egress", remote_ip_prefix="198.51.100.0/24")

    ns_r = wait_for("the router namespace", lambda: router_namespace(lab, router))
    name = "r" + counted.id.replace("-", "")
    wait_for("the metering table", lambda: name in kernel_counters(ns_r))
    assert len(kernel_counters(ns_r)) == 1
    before = kernel_counters(ns_r)[name]

    send_udp(lab, ns_a, "198.51.100.60", SENT_EXCLUDED)
    send_udp(lab, ns_a, "198.51.100.50", SENT_COUNTED)
    want = SENT_COUNTED * (IP_UDP_HEADERS + PAYLOAD)
    wait_for("the kernel counter", lambda: kernel_counters(ns_r)[name] - before >= want)
    assert kernel_counters(ns_r)[name] - before == want

    # What the agent reported: the kernel counter, through the API.
    def reported():
        s = statistics(conn, label.id)
        return s if s["bytes"] == before + want else None
    s = wait_for("the reported statistics", reported)
    assert s["rules"] == [{"metering_label_rule_id": counted.id,
                           "packets": s["packets"], "bytes": before + want}]
    assert statistics(conn, other.id)["bytes"] == 0

    # Upstream's errors over HTTP, as Neutron error bodies.
    def refused(body: dict) -> tuple[int, str]:
        resp = conn.network.post("/metering/metering-label-rules",
                                 json={"metering_label_rule": body})
        return resp.status_code, resp.json()["NeutronError"]["type"]
    assert refused({"metering_label_id": label.id, "direction": "egress",
                    "remote_ip_prefix": "198.51.100.128/25"}) == (409, "MeteringLabelRuleOverlaps")
    assert refused({"metering_label_id": label.id, "remote_ip_prefix": "192.0.2.0/24",
                    "source_ip_prefix": "10.0.0.0/8"}) == (400, "Invalid")
    assert refused({"metering_label_id": str(uuid.uuid4()),
                    "remote_ip_prefix": "192.0.2.0/24"}) == (404, "MeteringLabelNotFound")

    # A restarted agent adopts the table (same digest): the counter goes on.
    host = next(h for h in lab.hosts if ns_r.startswith(lab.prefix(h)))
    lab.stop_agent(host)
    lab.start_agent(host)
    assert kernel_counters(ns_r)[name] == before + want

    # Deleting the label takes its table away.
    conn.network.delete_metering_label(label)
    wait_for("the metering table gone", lambda: not kernel_counters(ns_r))
