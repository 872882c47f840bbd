"""Security-group logging with real packets: a log on a port makes the agent of its host
write one JSON line per logged packet to ``<state dir>/security-group-log.jsonl``: a
connection the port's groups accept appears as ACCEPT, a blocked one as DROP, each with its
5-tuple; a disabled log writes nothing more.

Uses the lab of ``dataplane_lab`` (hosts = namespaces on one underlay, one agent each); needs
root, iproute2 and nft. Every namespace is deleted by the lab's teardown.
"""

from __future__ import annotations

import json
import time
import uuid

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, needs_root, network_with_subnet, sh, tcp_peer, wait_active,
    wait_for)

pytestmark = needs_root

OPEN, CLOSED = 5003, 5004


def lines(lab, host: str) -> list[dict]:
    path = lab.state_dir(host) / "security-group-log.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def logged(lab, host: str, event: str, dst_port: int) -> list[dict]:
    return [e for e in lines(lab, host) if e["event"] == event and e.get("dst_port") == dst_port]


def test_accepted_and_blocked_connections_are_logged_until_disabled(lab):
    env = lab.server.env
    conn = lab.server.connect()
    tag = uuid.uuid4().hex[:6]
    net, _ = network_with_subnet(env, "10.10.88.0/24")
    sg = osc("security", "group", "create", f"lg-srv-{tag}", env=env)["id"]
    osc("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
        "--dst-port", str(OPEN), "--remote-ip", "0.0.0.0/0", sg, env=env)
    server = bound_port(env, net, "h1", "s", "--security-group", sg)
    client = bound_port(env, net, "h2", "c")
    for p in (server, client):
        wait_active(env, p["id"])
    ns_s, ns_c = lab.instance("h1", "s"), lab.instance("h2", "c")

    resp = conn.network.get("/log/loggable-resources")
    assert resp.json() == {"loggable_resources": [{"type": "security_group"}]}
    resp = conn.network.post("/log/logs", json={"log": {
        "name": f"lg-{tag}", "resource_type": "security_group", "resource_id": sg,
        "target_id": server["id"], "event": "ALL"}})
    assert resp.status_code == 201, resp.text
    log = resp.json()["log"]

    def rule_in_kernel(text: str) -> bool:
        out = sh("ip", "netns", "exec", lab.host_ns("h1"), "nft", "list", "table", "inet",
                 "neutrino", check=False).stdout
        return f'"{text} {server["id"]}"' in out
    wait_for("the log statements", lambda: rule_in_kernel("ACCEPT") and rule_in_kernel("DROP"))

    assert tcp_peer(lab, ns_s, ns_c, ip_of(server), OPEN) == ip_of(client)
    accepted = wait_for("the ACCEPT line", lambda: logged(lab, "h1", "ACCEPT", OPEN))
    assert accepted[0]["src_ip"] == ip_of(client)
    assert accepted[0]["dst_ip"] == ip_of(server)
    assert accepted[0]["protocol"] == "tcp"
    assert accepted[0]["port_id"] == server["id"]
    assert accepted[0]["log_ids"] == [log["id"]]
    assert isinstance(accepted[0]["src_port"], int)

    assert tcp_peer(lab, ns_s, ns_c, ip_of(server), CLOSED) == ""
    dropped = wait_for("the DROP line", lambda: logged(lab, "h1", "DROP", CLOSED))
    assert (dropped[0]["src_ip"], dropped[0]["dst_ip"]) == (ip_of(client), ip_of(server))
    assert dropped[0]["protocol"] == "tcp"
    assert dropped[0]["log_ids"] == [log["id"]]
    # Accepted connections are not logged as drops, nor the other way round.
    assert not logged(lab, "h1", "DROP", OPEN)
    assert not logged(lab, "h1", "ACCEPT", CLOSED)

    resp = conn.network.put(f"/log/logs/{log['id']}", json={"log": {"enabled": False}})
    assert resp.status_code == 200 and resp.json()["log"]["enabled"] is False
    wait_for("the log statements gone",
             lambda: not rule_in_kernel("ACCEPT") and not rule_in_kernel("DROP"))
    before = len(lines(lab, "h1"))
    assert tcp_peer(lab, ns_s, ns_c, ip_of(server), CLOSED) == ""
    assert tcp_peer(lab, ns_s, ns_c, ip_of(server), OPEN) == ip_of(client)
    time.sleep(1)
    assert len(lines(lab, "h1")) == before

    resp = conn.network.delete(f"/log/logs/{log['id']}")
    assert resp.status_code == 204
