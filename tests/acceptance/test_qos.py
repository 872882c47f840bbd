"""QoS with a real dataplane: bandwidth limits and DSCP marks on instance ports.

Policies and rules are made with the openstack CLI (``network qos policy`` / ``network qos
rule``); the agent enforces them on the port's tap in its host namespace (``tbf`` for traffic
to the instance, an ``ifb`` redirect with ``tbf`` for traffic from it, a bridge nftables table
for DSCP). Throughput is TCP measured with iperf3 between two instances on one host (the
first seconds, where the bucket's burst drains, left out); DSCP is read by the receiver with
``IP_RECVTOS``. Needs root, iproute2 and iperf3; every namespace is deleted afterwards and
traffic never leaves them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from conftest import osc, osc_fails
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, needs_root, network_with_subnet, sh, wait_active, wait_for)

pytestmark = [needs_root, pytest.mark.skipif(not shutil.which("iperf3"), reason="needs iperf3")]

TOLERANCE = 0.10


def tap(port_id: str) -> str:
    return f"tap{port_id[:11]}"


def qdiscs(lab, dev: str) -> list[dict]:
    out = sh("ip", "netns", "exec", lab.host_ns("h1"), "tc", "-j", "qdisc", "show", "dev", dev,
             check=False).stdout
    return json.loads(out or "[]")


def tbf_rate(lab, dev: str) -> int | None:
    """The rate in bytes/s of the root tbf of ``dev`` in h1, if any."""
    for q in qdiscs(lab, dev):
        if q.get("kind") == "tbf" and q.get("root"):
            return q["options"]["rate"]
    return None


def has_ingress(lab, dev: str) -> bool:
    return any(q.get("kind") == "ingress" for q in qdiscs(lab, dev))


def ifbs(lab) -> list[str]:
    out = sh("ip", "-n", lab.host_ns("h1"), "-j", "link", "show", "type", "ifb").stdout
    return [link["ifname"] for link in json.loads(out or "[]")]


def qos_table(lab) -> str:
    return sh("ip", "netns", "exec", lab.host_ns("h1"), "nft", "list", "table", "bridge",
              "neutrino_qos", check=False).stdout


def throughput(lab, server_ns: str, server_ip: str, client_ns: str, reverse: bool) -> float:
    """TCP throughput in bit/s from the client to the server (``reverse``: back), measured
    by the receiver over 6 s after the first 2."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1",
                               "-B", server_ip, "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        args = ["iperf3", "-c", server_ip, "-p", "5201", "-t", "6", "-O", "2", "-J"]
        if reverse:
            args.append("-R")
        out = lab.exec(client_ns, *args, timeout=60).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]
    finally:
        server.kill()
        server.wait(timeout=10)


def assert_near(measured: float, want: float, what: str) -> None:
    assert abs(measured - want) <= want * TOLERANCE, \
        f"{what}: {measured / 1e6:.2f} Mbit/s, want {want / 1e6:.1f} ± {TOLERANCE:.0%}"


def received_tos(lab, server_ns: str, server_ip: str, client_ns: str) -> set[int]:
    """The TOS bytes of UDP datagrams from the client, as the receiving socket sees them."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "python3", "-c",
         "import socket\n"
         "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
         "s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)\n"
         f"s.bind(('{server_ip}', 5301)); s.settimeout(5)\n"
         "seen=set()\n"
         "try:\n"
         "    for _ in range(5):\n"
         "        _, anc, _, _ = s.recvmsg(100, 64)\n"
         "        for level, kind, data in anc:\n"
         "            if level == socket.IPPROTO_IP and kind == socket.IP_TOS:\n"
         "                seen.add(data[0])\n"
         "except OSError:\n"
         "    pass\n"
         "print(sorted(seen), flush=True)"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    lab.exec(client_ns, "python3", "-c",
             "import socket,time\n"
             "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "for _ in range(5):\n"
             f"    s.sendto(b'mark', ('{server_ip}', 5301)); time.sleep(0.05)")
    out, _ = receiver.communicate(timeout=20)
    return set(json.loads(out.strip() or "[]"))


def test_bandwidth_limits_and_dscp_apply_live(lab):
    env = lab.server.env
    policy = osc("network", "qos", "policy", "create", "acc-qos-gold", env=env)
    pid = policy["id"]
    assert policy["is_default"] is False
    egress = osc("network", "qos", "rule", "create", "--type", "bandwidth-limit",
                 "--max-kbps", "10000", "--egress", pid, env=env)
    ingress = osc("network", "qos", "rule", "create", "--type", "bandwidth-limit",
                  "--max-kbps", "10000", "--ingress", pid, env=env)
    osc("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "26",
        pid, env=env)
    # Upstream's validation through the CLI: one limit per direction, valid marks only.
    osc_fails("network", "qos", "rule", "create", "--type", "bandwidth-limit",
              "--max-kbps", "5", "--egress", pid, env=env)
    osc_fails("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "27",
              pid, env=env)
    shown = osc("network", "qos", "policy", "show", pid, env=env)
    assert len(shown["rules"]) == 3
    assert pid in [p["ID"] for p in osc("network", "qos", "policy", "list", env=env)]
    types = [t["Type"] for t in osc("network", "qos", "rule", "type", "list", env=env)]
    assert "bandwidth_limit" in types and "dscp_marking" in types

    net, _ = network_with_subnet(lab.server.env, "10.71.0.0/24")
    a = bound_port(env, net, "h1", "a", "--qos-policy", pid)
    b = bound_port(env, net, "h1", "b")
    a, b = wait_active(env, a["id"]), wait_active(env, b["id"])
    assert a["qos_policy_id"] == pid
    ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h1", "b")
    tap_a, ifb_a = tap(a["id"]), "qif" + a["id"][:11]
    # ACTIVE means realised: the shapers are there.
    assert tbf_rate(lab, tap_a) == 1_250_000
    assert tbf_rate(lab, ifb_a) == 1_250_000
    assert has_ingress(lab, tap_a)
    assert tbf_rate(lab, tap(b["id"])) is None

    # a's egress limit holds a -> b; its ingress limit holds b -> a.
    assert_near(throughput(lab, ns_b, ip_of(b), ns_a, reverse=False), 10e6, "from a (egress)")
    assert_near(throughput(lab, ns_b, ip_of(b), ns_a, reverse=True), 10e6, "to a (ingress)")
    # Marked on the way out of a (ECN bits stay 0): DSCP 26 is TOS 104.
    assert received_tos(lab, ns_b, ip_of(b), ns_a) == {26 << 2}
    assert received_tos(lab, ns_a, ip_of(a), ns_b) == {0}

    # Live changes: the qdiscs follow the rules.
    for rule in (egress, ingress):
        osc("network", "qos", "rule", "set", "--max-kbps", "20000", pid, rule["id"], env=env,
            json_output=False)
    wait_for("20 Mbit/s shapers", lambda: tbf_rate(lab, tap_a) == 2_500_000
             and tbf_rate(lab, ifb_a) == 2_500_000)
    assert_near(throughput(lab, ns_b, ip_of(b), ns_a, reverse=False), 20e6, "from a at 20")
    assert_near(throughput(lab, ns_b, ip_of(b), ns_a, reverse=True), 20e6, "to a at 20")

    # A restarted agent adopts the shapers and the table as they are.
    lab.stop_agent("h1")
    lab.start_agent("h1")
    assert lab.status("h1")["ops_total"] == 0, "the restarted agent changed QoS state"
    assert tbf_rate(lab, tap_a) == 2_500_000 and tbf_rate(lab, ifb_a) == 2_500_000

    # The policy is in use: it cannot go.
    osc_fails("network", "qos", "policy", "delete", pid, env=env)
    # Removing it from the port removes every trace of it.
    osc("port", "unset", "--qos-policy", a["id"], env=env, json_output=False)
    wait_for("shapers removed", lambda: tbf_rate(lab, tap_a) is None
             and not has_ingress(lab, tap_a) and ifb_a not in ifbs(lab)
             and "neutrino_qos" not in qos_table(lab))
    assert received_tos(lab, ns_b, ip_of(b), ns_a) == {0}

    # Through the network's policy this time; deleting the port takes its ifb along.
    osc("network", "set", "--qos-policy", pid, net, env=env, json_output=False)
    c = wait_active(env, bound_port(env, net, "h1", "c")["id"])
    assert c["qos_policy_id"] is None
    ifb_c = "qif" + c["id"][:11]
    wait_for("network policy applied", lambda: tbf_rate(lab, ifb_c) == 2_500_000)
    assert tbf_rate(lab, tap(c["id"])) == 2_500_000
    osc("port", "delete", c["id"], env=env, json_output=False)
    wait_for("ifb of a deleted port removed", lambda: ifb_c not in ifbs(lab))
    osc("network", "set", "--no-qos-policy", net, env=env, json_output=False)
    wait_for("nothing left", lambda: not any(i.startswith("qif") for i in ifbs(lab))
             and "neutrino_qos" not in qos_table(lab))
    osc("network", "qos", "policy", "delete", pid, env=env, json_output=False)


def test_policy_sharing_default_and_rule_types_through_the_cli(lab):
    env = lab.server.env
    policy = osc("network", "qos", "policy", "create", "--share", "--default",
                 "acc-qos-shared", env=env)
    pid = policy["id"]
    assert policy["shared"] is True and policy["is_default"] is True
    # One default per project.
    osc_fails("network", "qos", "policy", "create", "--default", "acc-qos-second", env=env)
    # A new network of the project takes the default policy.
    net = osc("network", "create", "acc-qos-net", env=env)
    assert net["qos_policy_id"] == pid
    rule = osc("network", "qos", "rule", "create", "--type", "minimum-bandwidth",
               "--min-kbps", "1000", "--egress", pid, env=env)
    shown = osc("network", "qos", "rule", "show", pid, rule["id"], env=env)
    assert shown["min_kbps"] == 1000
    # A limit below that guarantee conflicts.
    osc_fails("network", "qos", "rule", "create", "--type", "bandwidth-limit",
              "--max-kbps", "10", "--egress", pid, env=env)
    details = osc("network", "qos", "rule", "type", "show", "bandwidth_limit", env=env)
    assert details["drivers"][0]["name"] == "neutrino"
    # As upstream, a policy a network uses (the owner's own too) stays shared.
    failed = osc_fails("network", "qos", "policy", "set", "--no-share", pid, env=env)
    assert "cannot stop being shared" in failed.stderr, failed.stderr
    osc("network", "set", "--no-qos-policy", net["id"], env=env, json_output=False)
    osc("network", "qos", "policy", "set", "--no-share", "--no-default", pid, env=env,
        json_output=False)
    shown = osc("network", "qos", "policy", "show", pid, env=env)
    assert shown["shared"] is False and shown["is_default"] is False
    osc("network", "delete", net["id"], env=env, json_output=False)
    osc("network", "qos", "policy", "delete", pid, env=env, json_output=False)
