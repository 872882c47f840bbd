"""The encrypted overlay (``neutrino agent --encrypt-overlay``): VXLAN between lab hosts goes
through each host's userspace WireGuard device (boringtun over a TUN in the host namespace).

Two hosts whose agents encrypt: instances on one VXLAN network ping (also 1400-byte packets)
and talk TCP; a capture on the underlay sees only WireGuard UDP, never VXLAN or the ping's
payload pattern; a plaintext VXLAN packet injected from the underlay is dropped; an agent
restart keeps the tunnel, a restarted device re-establishes it, a key rotation
(``--rotate-overlay-key``) keeps a TCP stream, and an agent started without the flag removes
the device, rules and filter. The throughput test runs
iperf3 over plain VXLAN and over the encrypted overlay in the same run and records both
(docs/BENCHMARKS.md), asserting no timings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import struct
import time

import pytest

from conftest import NeutrinoServer, _server_binary, osc
from dataplane_lab import (
    Lab, bound_port, ip_of, needs_root, network_with_subnet, sh, tcp_exchange, wait_active,
    wait_for)

pytestmark = needs_root

ENCRYPT = ["--encrypt-overlay"]
PATTERN = "deadbeefcafe0123456789abcdef0042"

CAPTURE = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.settimeout(0.2)
pattern = bytes.fromhex(sys.argv[1]); end = time.time() + float(sys.argv[2])
ports = {}; hits = 0; frames = 0
print("ready", flush=True)
while time.time() < end:
    try:
        f = s.recv(65535)
    except socket.timeout:
        continue
    frames += 1
    if pattern in f:
        hits += 1
    if f[12:14] == b"\x08\x00" and f[23] == 17:
        ihl = (f[14] & 15) * 4
        if int.from_bytes(f[20:22], "big") & 0x1fff == 0:
            dport = int.from_bytes(f[14 + ihl + 2:14 + ihl + 4], "big")
            ports[str(dport)] = ports.get(str(dport), 0) + 1
print(json.dumps({"frames": frames, "hits": hits, "ports": ports}), flush=True)
"""


def make_lab(tmp_path, name: str, args: list[str]) -> Lab:
    server = NeutrinoServer(_server_binary(), tmp_path / name).start()
    (tmp_path / name).mkdir(exist_ok=True)
    lab = Lab(server, tmp_path / name, ("h1", "h2"))
    lab.agent_args = {"h1": args, "h2": args}
    return lab


@pytest.fixture
def elab(tmp_path):
    lab = make_lab(tmp_path, "enc", ENCRYPT)
    try:
        yield lab.setup()
    finally:
        lab.teardown()
        lab.server.stop()


def overlay_status(lab: Lab, host: str) -> dict:
    return lab.status(host).get("overlay") or {}


def two_instances(lab: Lab, cidr: str):
    env = lab.server.env
    net, _ = network_with_subnet(env, cidr)
    a = wait_active(env, bound_port(env, net, "h1", "a")["id"])
    b = wait_active(env, bound_port(env, net, "h2", "b")["id"])
    return net, a, b


def dump(lab: Lab) -> str:
    """The overlay's kernel state on every host (for failure messages)."""
    out = []
    for host in lab.hosts:
        ns = lab.host_ns(host)
        out.append(f"== {host}: {json.dumps(overlay_status(lab, host))}")
        for cmd in (["ip", "rule"], ["ip", "route", "show", "table", "51820"],
                    ["ip", "-d", "-s", "link"], ["nft", "list", "table", "inet", "neutrino_overlay"]):
            out.append(sh("ip", "netns", "exec", ns, *cmd, check=False).stdout)
    return "\n".join(out)


def wait_tunnel(lab: Lab) -> None:
    for host in lab.hosts:
        wait_for(f"{host}'s overlay to have its peer",
                 lambda h=host: overlay_status(lab, h).get("peers") == 1
                 and not overlay_status(lab, h).get("error"))


def capture(lab: Lab, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.underlay, "python3", "-c", CAPTURE, PATTERN, str(seconds)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def captured(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def vxlan_frame(vni: int, dst_mac: str, src_ip: str, dst_ip: str, payload: bytes) -> bytes:
    """A VXLAN payload: an Ethernet frame carrying UDP 9999 -> 7777 with ``payload``."""
    udp = struct.pack("!HHHH", 9999, 7777, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                      socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    csum = sum(struct.unpack("!10H", hdr))
    csum = (csum & 0xFFFF) + (csum >> 16)
    csum = ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF
    hdr = hdr[:10] + struct.pack("!H", csum) + hdr[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("02aabbccddee") + b"\x08\x00"
    return struct.pack("!II", 0x08000000, vni << 8) + eth + hdr + udp


def test_encrypted_overlay(elab):
    lab = elab
    env = lab.server.env
    net, a, b = two_instances(lab, "10.71.0.0/24")
    ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h2", "b")
    # Keys are per host, and every agent learnt the other's through the server.
    keys = {h: overlay_status(lab, h).get("public_key") for h in lab.hosts}
    assert keys["h1"] and keys["h2"] and keys["h1"] != keys["h2"]
    key_file = lab.state_dir("h1") / "overlay-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    wait_tunnel(lab)
    assert lab.pings(ns_a, ip_of(b), count=3), dump(lab)
    assert lab.pings(ns_b, ip_of(a))
    # Full-size packets: 1400 bytes of payload (the encrypted UDP is fragmented underneath).
    r = lab.exec(ns_a, "ping", "-c", "2", "-W", "2", "-s", "1400", ip_of(b), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tcp_exchange(lab, ns_b, ip_of(b), ns_a) == "hello-tcp"
    # TCP bulk: 4 MB through full-size segments.
    if shutil.which("iperf3"):
        server = subprocess.Popen(["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            out = lab.exec(ns_a, "iperf3", "-c", ip_of(b), "-n", "4M", "-J", timeout=60)
            end = json.loads(out.stdout)["end"]
            # iperf3 counts the receiver's bytes in whole intervals only.
            assert end["sum_sent"]["bytes"] >= 4 * 1024 * 1024 and end["sum_received"]["bytes"]
        finally:
            server.kill()
            server.wait()

    # The underlay carries WireGuard only: no VXLAN, no inner payload in clear.
    cap = capture(lab, 4)
    lab.exec(ns_a, "ping", "-c", "5", "-i", "0.2", "-s", "1000", "-p", PATTERN, ip_of(b))
    seen = captured(cap)
    assert seen["ports"].get("51820", 0) >= 10, seen
    assert "4789" not in seen["ports"], seen
    assert seen["hits"] == 0, seen

    # Plaintext VXLAN injected from the underlay is dropped at h1.
    intruder = f"nt{lab.tag}-x"
    sh("ip", "netns", "add", intruder)
    sh("ip", "link", "add", "ulx", "netns", lab.underlay, "type", "veth",
       "peer", "name", "eth0", "netns", intruder)
    sh("ip", "-n", lab.underlay, "link", "set", "ulx", "master", "br0", "up")
    sh("ip", "-n", intruder, "addr", "add", "198.18.0.99/24", "dev", "eth0")
    sh("ip", "-n", intruder, "link", "set", "eth0", "up")
    vni = osc("network", "show", net, env=env)["provider:segmentation_id"]
    listener = subprocess.Popen(
        ["ip", "netns", "exec", ns_a, "python3", "-c",
         "import socket\n"
         "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7777))\n"
         "s.settimeout(4)\n"
         "try:\n"
         "    print(s.recv(100).decode(), flush=True)\n"
         "except OSError:\n"
         "    print('nothing', flush=True)"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    frame = vxlan_frame(vni, a["mac_address"], ip_of(b), ip_of(a), b"INJECTED")
    cap = capture(lab, 3)
    lab.exec(intruder, "python3", "-c",
             "import socket,sys\n"
             "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "for _ in range(5): s.sendto(bytes.fromhex(sys.argv[1]), ('198.18.0.1', 4789))",
             frame.hex())
    out, _ = listener.communicate(timeout=20)
    assert out.strip() == "nothing"
    assert captured(cap)["ports"].get("4789", 0) >= 5, "the injected VXLAN was on the wire"
    table = sh("ip", "netns", "exec", lab.host_ns("h1"),
               "nft", "list", "table", "inet", "neutrino_overlay").stdout
    assert "VXLAN in clear" in table and "packets 0 " not in table, table

    # An agent restart keeps the tunnel (the device outlives the agent) ...
    lab.stop_agent("h1")
    assert lab.pings(ns_a, ip_of(b), count=2)
    # ... and a new device (same key) re-establishes it when the agent comes back.
    pid = int((lab.state_dir("h1") / "overlay" / overlay_status(lab, "h1")["device"] / "pid")
              .read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for("the device to stop", lambda: not os.path.exists(f"/proc/{pid}"))
    assert not lab.pings(ns_a, ip_of(b)), "VXLAN must not fall back to the underlay in clear"
    lab.start_agent("h1")
    wait_tunnel(lab)
    wait_for("the tunnel back", lambda: lab.pings(ns_a, ip_of(b)), timeout=30)
    assert overlay_status(lab, "h1")["public_key"] == keys["h1"]

    # Rotating h1's key (agent restarted with --rotate-overlay-key) keeps a TCP stream: it
    # pauses until h2 has the new key from the server, then goes on over the same connection.
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", ns_b, "python3", "-c",
         "import socket\n"
         "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('{ip_of(b)}', 5002)); s.listen(1); s.settimeout(30)\n"
         "c,_=s.accept(); c.settimeout(30); data=b''\n"
         "while True:\n"
         "    chunk=c.recv(4096)\n"
         "    if not chunk: break\n"
         "    data+=chunk\n"
         "print(len(data.splitlines()), flush=True)"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    sender = subprocess.Popen(
        ["ip", "netns", "exec", ns_a, "python3", "-c",
         "import socket,time\n"
         f"s=socket.create_connection(('{ip_of(b)}', 5002), timeout=5)\n"
         "for i in range(120):\n"
         "    s.sendall(b'line %d\\n' % i); time.sleep(0.05)\n"
         "s.close()"])
    time.sleep(1.0)
    lab.stop_agent("h1")
    lab.agent_args["h1"] = ENCRYPT + ["--rotate-overlay-key"]
    lab.start_agent("h1")
    lab.agent_args["h1"] = ENCRYPT
    assert sender.wait(timeout=60) == 0
    out, _ = receiver.communicate(timeout=60)
    assert out.strip() == "120", "the stream lost data across the key rotation"
    rotated = overlay_status(lab, "h1")["public_key"]
    assert rotated and rotated != keys["h1"]
    assert lab.pings(ns_a, ip_of(b))

    # Without --encrypt-overlay, the agent removes what the encrypting run left.
    device = overlay_status(lab, "h1")["device"]
    pid = int((lab.state_dir("h1") / "overlay" / device / "pid").read_text())
    lab.stop_agent("h1")
    lab.agent_args["h1"] = []
    lab.start_agent("h1")
    h1 = lab.host_ns("h1")
    wait_for("the device to stop", lambda: not os.path.exists(f"/proc/{pid}"))
    assert sh("ip", "netns", "exec", h1, "nft", "list", "table", "inet", "neutrino_overlay",
              check=False).returncode != 0
    assert "51820" not in sh("ip", "-n", h1, "rule").stdout
    assert device not in sh("ip", "-n", h1, "link").stdout
    assert not (lab.state_dir("h1") / "overlay").exists()


def iperf(lab: Lab, server_ns: str, client_ns: str, address: str, seconds: int = 5) -> float:
    """Bits per second of one TCP stream from ``client_ns`` to ``address``."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = lab.exec(client_ns, "iperf3", "-c", address, "-t", str(seconds), "-J",
                       timeout=seconds + 30)
        return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]
    finally:
        server.kill()
        server.wait()


@pytest.mark.skipif(not shutil.which("iperf3"), reason="needs iperf3")
def test_throughput_plain_vs_encrypted(tmp_path):
    """Records TCP throughput over plain VXLAN and the encrypted overlay, same run (no
    timing is asserted). Prints a line for docs/BENCHMARKS.md."""
    results = {}
    for name, args in (("plain", []), ("encrypted", ENCRYPT)):
        lab = make_lab(tmp_path, name, args)
        try:
            lab.setup()
            _, a, b = two_instances(lab, "10.72.0.0/24")
            if args:
                wait_tunnel(lab)
            ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h2", "b")
            wait_for("reachable", lambda: lab.pings(ns_a, ip_of(b)), timeout=30)
            results[name] = iperf(lab, ns_b, ns_a, ip_of(b))
        finally:
            lab.teardown()
            lab.server.stop()
    line = (f"overlay throughput: plain VXLAN {results['plain'] / 1e6:.0f} Mbit/s, encrypted "
            f"{results['encrypted'] / 1e6:.0f} Mbit/s, ratio "
            f"{results['encrypted'] / results['plain']:.2f}")
    print(line)
    out = os.environ.get("NEUTRINO_BENCH_OUT")
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    assert results["plain"] > 0 and results["encrypted"] > 0
