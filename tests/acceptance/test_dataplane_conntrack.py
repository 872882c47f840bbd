"""Removing a security-group rule (or a group from a port) cuts the established connections
only it allowed.

Two TCP streams from instance ``a`` to instance ``b``: one admitted by rule X (port 5001),
one by rule Y (port 5002). After X is deleted the agent deletes the conntrack entries the
remaining rules do not allow: the 5001 stream stops, the 5002 stream keeps going, until the
port moves to a group without rules.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, needs_root, network_with_subnet, wait_active, wait_for)

pytestmark = [needs_root, pytest.mark.skipif(not shutil.which("conntrack"),
                                              reason="needs the conntrack tool")]

PORTS = (5001, 5002)

SERVER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port)); s.listen(4)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    while (data := c.recv(100)):
        c.sendall(data)
for p in (5001, 5002):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

CLIENT = """
import socket, sys
conns = {p: socket.create_connection((sys.argv[1], p), timeout=5) for p in (5001, 5002)}
print("connected", flush=True)
for line in sys.stdin:
    out = []
    for p, c in conns.items():
        try:
            c.settimeout(3)
            c.sendall(line.encode())
            out.append(f"{p}:{'ok' if c.recv(100).decode() == line else 'bad'}")
        except OSError:
            out.append(f"{p}:cut")
    print(" ".join(out), flush=True)
"""


def spawn(ns: str, script: str, arg: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", script, arg],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def connects(lab, ns: str, address: str, port: int) -> bool:
    r = lab.exec(ns, "python3", "-c",
                 f"import socket; socket.create_connection(('{address}', {port}), timeout=3)",
                 check=False)
    return r.returncode == 0


def test_removed_rule_cuts_its_established_streams_only(lab):
    env = lab.server.env
    tag = uuid.uuid4().hex[:6]
    net, _ = network_with_subnet(env, "10.69.0.0/24")
    web = osc("security", "group", "create", f"dp-ct-{tag}", env=env)["id"]
    rules = {port: osc("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                       "--dst-port", str(port), "--remote-ip", "0.0.0.0/0", web,
                       env=env)["id"] for port in PORTS}
    wait_active(env, bound_port(env, net, "h1", "a")["id"])
    b = wait_active(env, bound_port(env, net, "h2", "b", "--security-group", web)["id"])
    ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h2", "b")
    server = spawn(ns_b, SERVER, ip_of(b))
    client = None
    try:
        assert server.stdout.readline().strip() == "ready"
        client = spawn(ns_a, CLIENT, ip_of(b))
        assert client.stdout.readline().strip() == "connected"

        def round_trip(n: int) -> str:
            client.stdin.write(f"line {n}\n")
            client.stdin.flush()
            return client.stdout.readline().strip()

        assert round_trip(1) == "5001:ok 5002:ok"
        cut_before = lab.status("h2").get("connections_cut", 0)
        osc("security", "group", "rule", "delete", rules[5001], env=env, json_output=False)
        wait_for("h2's agent to cut the 5001 stream",
                 lambda: lab.status("h2").get("connections_cut", 0) > cut_before)
        # The stream only X allowed is cut; the one Y allows keeps going, on and on.
        assert round_trip(2) == "5001:cut 5002:ok"
        assert round_trip(3) == "5001:cut 5002:ok"
        # No new connection on 5001 either, while 5002 still accepts them.
        assert not connects(lab, ns_a, ip_of(b), 5001)
        assert connects(lab, ns_a, ip_of(b), 5002)
        # The port changes groups, to one that allows nothing in: the 5002 stream goes too.
        closed = osc("security", "group", "create", f"dp-closed-{tag}", env=env)["id"]
        cut_before = lab.status("h2").get("connections_cut", 0)
        osc("port", "set", "--no-security-group", "--security-group", closed, b["id"],
            env=env, json_output=False)
        wait_for("h2's agent to cut the 5002 stream",
                 lambda: lab.status("h2").get("connections_cut", 0) > cut_before)
        assert round_trip(4) == "5001:cut 5002:cut"
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.kill()
                proc.wait(timeout=10)
