"""Service functions, traffic and counters for the SFC dataplane tests.

Two halves:

* the **tools** (stdlib only, run inside namespaces as ``python3 sfc_lab.py COMMAND ...``):
  a UDP receiver that records every datagram by flow (source address and port), sequence
  number and the IP DSCP it arrived with, and echoes on demand; a UDP sender of many flows or
  of one paced stream with sequence numbers; a TCP sink and a TCP sender of numbered lines.
  Each prints one JSON line with what it saw.
* the **helpers** the tests import: the nftables rules of a service function (bump in the
  wire, routed, or tap) with counters and per-flow sets keyed by the flow and the DSCP the
  packet arrived with; a destination-side observer of the same kind; readers of both; and the
  lab plumbing (ports through openstacksdk, waiting until every agent has applied a change,
  the host's steering table for failure messages).

A function's table (``table netdev sfct`` in its namespace) holds:

* ``f_all`` / ``r_all``: TCP and UDP packets that arrived on the ingress / egress port (the
  forward / reverse direction);
* ``f_marked``: forward packets that arrived with the DSCP the function expects (the one the
  previous function set): proves the order of functions;
* sets ``f4``/``f6`` (forward, key ``saddr . l4proto . sport . dscp``) and ``r4``/``r6``
  (reverse, key ``daddr . l4proto . dport . dscp``: a reply's destination is the original
  source), every element with a packet counter: which flows went through this instance.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TOOL = str(Path(__file__).resolve())
FN_TABLE = "sfct"
OBS_TABLE = "sfct_obs"
L4 = "meta l4proto { tcp, udp }"
SET4 = "ipv4_addr . inet_proto . inet_service . dscp"
# nft 1.0.6 extracts ``ip6 dscp`` wrongly inside a concatenation (it spans two bytes): the
# IPv6 sets key on the packet mark, set from the DSCP through a map first.
SET6 = "ipv6_addr . inet_proto . inet_service . mark"
MARK6 = "meta mark set ip6 dscp map { " + ", ".join(f"{v} : {v}" for v in range(64)) + " }"
# The agents' health probes of functions (UDP to the BFD port from fixed sources): forwarded
# like everything else, never counted as traffic.
PROBE = ("udp dport 3784 ip saddr 169.254.77.77", "udp dport 3784 ip6 saddr fd5f:5350:7072::1")
ND = ("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, "
      "nd-router-advert, nd-redirect }")

# ---------------------------------------------------------------------------------------------
# tools (run inside namespaces)


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _parse_ports(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def _emit(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def _missing_ranges(got: set, most: int = 20) -> list[str]:
    """The sequence numbers below the highest one received that never came, as ranges
    ("120-176"), the first `most` of them."""
    ranges: list[str] = []
    start = None
    for seq in range(max(got) + 2 if got else 0):
        if seq not in got and seq <= max(got):
            start = seq if start is None else start
        elif start is not None:
            ranges.append(f"{start}-{seq - 1}" if seq - 1 > start else str(start))
            start = None
            if len(ranges) >= most:
                break
    return ranges


def cmd_udp_recv(args) -> None:
    fam = _family(args.bind)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    if fam == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVTOS", 13), 1)
    else:
        s.setsockopt(socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVTCLASS", 66), 1)
    s.bind((args.bind, args.port))
    seqs: dict[str, Counter] = defaultdict(Counter)
    tos: dict[str, set] = defaultdict(set)
    print("ready", flush=True)
    start = time.monotonic()
    last = None
    while True:
        now = time.monotonic()
        if now - start > args.max_time:
            break
        if last is not None and now - last > args.idle:
            break
        if last is None and now - start > args.first:
            break
        if args.stop and os.path.exists(args.stop) and (last is None or now - last > 0.5):
            break
        r, _, _ = select.select([s], [], [], 0.1)
        if not r:
            continue
        data, anc, _, addr = s.recvmsg(2048, 64)
        last = time.monotonic()
        key = f"{addr[0]} {addr[1]}"
        try:
            seqs[key][int(data.split()[0])] += 1
        except (ValueError, IndexError):
            seqs[key][-1] += 1
        for level, kind, value in anc:
            if value:
                tos[key].add(value[0] >> 2)
        if args.echo:
            s.sendto(data, addr)
    flows = {}
    for key, c in seqs.items():
        got = [k for k in c if k >= 0]
        flows[key] = {"n": sum(c.values()), "unique": len(got), "dups": sum(c.values()) - len(c),
                      "max": max(got) if got else -1, "dscp": sorted(tos[key]),
                      "missing": _missing_ranges(set(got))}
    _emit({"flows": flows})


def cmd_udp_send(args) -> None:
    fam = _family(args.dst)
    sports = _parse_ports(args.sports) if args.sports else [0]
    socks = []
    for sp in sports:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args.bind or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), sp))
        if args.dscp:
            if fam == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, args.dscp << 2)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, getattr(socket, "IPV6_TCLASS", 67),
                             args.dscp << 2)
        s.setblocking(False)
        socks.append(s)
    sent = Counter()
    echoed = Counter()
    errors = Counter()

    def drain():
        for i, s in enumerate(socks):
            while True:
                try:
                    s.recv(2048)
                except (BlockingIOError, OSError):
                    break
                echoed[sports[i]] += 1

    t0 = time.monotonic()
    n = 0
    seq = 0
    while True:
        if args.until:
            if seq % 50 == 0 and os.path.exists(args.until):
                break
        elif seq >= args.count:
            break
        if time.monotonic() - t0 > args.max_time:
            break
        for i, s in enumerate(socks):
            if args.rate:
                wait = t0 + n / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            try:
                s.sendto(b"%d flow %d" % (seq, sports[i]), (args.dst, args.port))
                sent[sports[i]] += 1
            except OSError as e:  # e.g. ENOBUFS, EPERM: counted, never retried
                errors[f"{sports[i]} {e.errno}"] += 1
            n += 1
        seq += 1
        if args.echo:
            drain()
    if args.echo:
        deadline = time.monotonic() + args.echo_wait
        while time.monotonic() < deadline and sum(echoed.values()) < sum(sent.values()):
            select.select(socks, [], [], 0.05)
            drain()
    _emit({"sent": {str(k): v for k, v in sent.items()},
           "echoed": {str(k): v for k, v in echoed.items()},
           "errors": dict(errors), "seconds": round(time.monotonic() - t0, 3)})


def cmd_tcp_sink(args) -> None:
    fam = _family(args.bind)
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.bind, args.port))
    srv.listen(16)
    srv.settimeout(args.accept_timeout)
    print("ready", flush=True)
    conns = []
    for _ in range(args.conns):
        try:
            c, peer = srv.accept()
        except OSError:
            break
        c.settimeout(args.idle)
        data = b""
        error = None
        while True:
            try:
                chunk = c.recv(65536)
            except OSError as e:
                error = f"{type(e).__name__}: {e}"
                break
            if not chunk:
                break
            data += chunk
        lines = data.split(b"\n")
        numbers = []
        for line in lines:
            try:
                numbers.append(int(line.split()[0]))
            except (ValueError, IndexError):
                pass
        in_order = numbers == list(range(len(numbers)))
        conns.append({"peer": peer[0], "peer_port": peer[1], "bytes": len(data),
                      "lines": len(numbers), "in_order": in_order, "error": error})
        c.close()
    _emit({"conns": conns})


def cmd_tcp_send(args) -> None:
    fam = _family(args.dst)
    s = socket.socket(fam, socket.SOCK_STREAM)
    if args.sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", args.sport))
    s.settimeout(10)
    error = None
    n = 0
    t0 = time.monotonic()
    try:
        s.connect((args.dst, args.port))
        while True:
            if args.until:
                if os.path.exists(args.until):
                    break
            elif n >= args.lines:
                break
            if time.monotonic() - t0 > args.max_time:
                break
            s.sendall(b"%d %s\n" % (n, b"x" * args.pad))
            n += 1
            if args.rate:
                wait = t0 + n / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        s.shutdown(socket.SHUT_WR)
        # Wait for the peer's close: everything sent was read.
        while s.recv(4096):
            pass
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        s.close()
    _emit({"sent": n, "error": error})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="sfc_lab")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("udp-recv")
    r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--echo", action="store_true")
    r.add_argument("--idle", type=float, default=2.0)
    r.add_argument("--max-time", type=float, default=120.0)
    r.add_argument("--stop")
    r.add_argument("--first", type=float, default=8.0)
    s = sub.add_parser("udp-send")
    s.add_argument("--dst", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bind")
    s.add_argument("--sports", default="")
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--rate", type=float, default=0)
    s.add_argument("--until")
    s.add_argument("--max-time", type=float, default=120.0)
    s.add_argument("--echo", action="store_true")
    s.add_argument("--echo-wait", type=float, default=2.0)
    s.add_argument("--dscp", type=int, default=0)
    t = sub.add_parser("tcp-sink")
    t.add_argument("--bind", required=True)
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--conns", type=int, default=1)
    t.add_argument("--idle", type=float, default=10.0)
    t.add_argument("--accept-timeout", type=float, default=15.0)
    c = sub.add_parser("tcp-send")
    c.add_argument("--dst", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--sport", type=int, default=0)
    c.add_argument("--lines", type=int, default=1)
    c.add_argument("--rate", type=float, default=0)
    c.add_argument("--pad", type=int, default=32)
    c.add_argument("--until")
    c.add_argument("--max-time", type=float, default=120.0)
    args = p.parse_args(argv)
    {"udp-recv": cmd_udp_recv, "udp-send": cmd_udp_send, "tcp-sink": cmd_tcp_sink,
     "tcp-send": cmd_tcp_send}[args.cmd](args)


# ---------------------------------------------------------------------------------------------
# running things in namespaces


def run(*args: str, check: bool = True, timeout: float = 30,
        input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{' '.join(args)}` exited {proc.returncode}: "
                             f"{proc.stderr.strip()} {proc.stdout.strip()}")
    return proc


def in_ns(ns: str, *cmd: str, check: bool = True, timeout: float = 30,
          input: str | None = None) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout, input=input)


def nft_apply(ns: str, script: str) -> None:
    in_ns(ns, "nft", "-f", "-", input=script)


class Background:
    """A tool running in a namespace; ``result()`` waits for its JSON line."""

    def __init__(self, ns: str, *args: str, ready: bool = False):
        self.argv = ["ip", "netns", "exec", ns, sys.executable, TOOL, *args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, stdin=subprocess.DEVNULL)
        if ready:
            line = self.proc.stdout.readline()
            if line.strip() != "ready":
                _, err = self.proc.communicate(timeout=10)
                raise AssertionError(f"{' '.join(args)} in {ns} did not start: {line!r} {err}")

    def result(self, timeout: float = 120) -> dict:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"{' '.join(self.argv[4:])} did not finish: {err}")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            raise AssertionError(f"{' '.join(self.argv[4:])} failed ({self.proc.returncode}): "
                                 f"{err.strip()} {out.strip()}")
        return json.loads(lines[-1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def tool(ns: str, *args: str, timeout: float = 120) -> dict:
    """Runs a tool to completion in a namespace; returns its JSON."""
    return Background(ns, *args).result(timeout=timeout)


def udp_receiver(ns: str, bind: str, port: int, *, echo: bool = False, idle: float = 1.5,
                 stop: str | None = None, max_time: float = 120,
                 first: float = 8.0) -> Background:
    """Receives until ``idle`` seconds without a datagram (or ``first`` seconds without any,
    or ``stop`` exists); ``result()`` gives per flow ("address port"): n, unique, dups, max
    sequence number, DSCPs seen."""
    args = ["udp-recv", "--bind", bind, "--port", str(port), "--idle", str(idle),
            "--max-time", str(max_time), "--first", str(first)]
    if echo:
        args.append("--echo")
    if stop:
        args += ["--stop", stop]
    return Background(ns, *args, ready=True)


def udp_send(ns: str, dst: str, port: int, sports: str, *, count: int = 1, rate: float = 0,
             echo: bool = False, until: str | None = None, bind: str | None = None,
             dscp: int = 0, background: bool = False):
    args = ["udp-send", "--dst", dst, "--port", str(port), "--sports", sports,
            "--count", str(count), "--rate", str(rate)]
    if echo:
        args.append("--echo")
    if until:
        args += ["--until", until]
    if bind:
        args += ["--bind", bind]
    if dscp:
        args += ["--dscp", str(dscp)]
    job = Background(ns, *args)
    return job if background else job.result()


def tcp_sink(ns: str, bind: str, port: int, *, conns: int = 1, idle: float = 10.0,
             accept_timeout: float = 15.0) -> Background:
    return Background(ns, "tcp-sink", "--bind", bind, "--port", str(port), "--conns",
                      str(conns), "--idle", str(idle), "--accept-timeout", str(accept_timeout),
                      ready=True)


def tcp_send(ns: str, dst: str, port: int, *, lines: int = 1, rate: float = 0,
             until: str | None = None, sport: int = 0, background: bool = False):
    args = ["tcp-send", "--dst", dst, "--port", str(port), "--lines", str(lines),
            "--rate", str(rate), "--sport", str(sport)]
    if until:
        args += ["--until", until]
    job = Background(ns, *args)
    return job if background else job.result()


def tcp_lines(ns_server: str, server_ip: str, ns_client: str, port: int, lines: int = 20,
              sport: int = 0) -> tuple[dict, dict]:
    """One TCP connection carrying ``lines`` numbered lines; returns (sink's view of the
    connection or {}, sender's result)."""
    sink = tcp_sink(ns_server, server_ip, port, accept_timeout=8)
    sent = tcp_send(ns_client, server_ip, port, lines=lines, sport=sport)
    conns = sink.result()["conns"]
    return (conns[0] if conns else {}), sent


# ---------------------------------------------------------------------------------------------
# service functions


def _probe_lines(kind: str, out: str) -> list[str]:
    """Health probes pass a working function uncounted: a bump forwards them to ``out``, a
    routed function's kernel routes them, a tap drops them."""
    action = {"bump": f"fwd to \"{out}\"", "routed": "accept"}.get(kind, "drop")
    return [f"    {p} {action}" for p in PROBE]


def function_ruleset(kind: str, *, ingress: str = "eth0", egress: str = "eth1",
                     expect_dscp: int | None = None, set_dscp: int | None = None) -> str:
    """The nft table of a service function of ``kind``:

    * ``bump``: bump in the wire: frames addressed to the ingress port go out of the egress
      port unchanged, and the other way round (reverse direction of symmetric chains);
    * ``routed``: no forwarding here (the function's kernel routes, see make_function);
    * ``tap``: counts and drops what it receives.

    Counters and flow sets are described in the module doc. With ``set_dscp``, forward TCP/UDP
    packets leave with that DSCP (IPv4 DSCP / IPv6 traffic class)."""
    lines = [f"table netdev {FN_TABLE} {{"]
    for c in ("f_all", "f_marked", "r_all"):
        lines.append(f"  counter {c} {{}}")
    for name in ("f4", "r4"):
        lines.append(f"  set {name} {{ type {SET4}; flags dynamic; counter; size 65535; }}")
    for name in ("f6", "r6"):
        lines.append(f"  set {name} {{ type {SET6}; flags dynamic; counter; size 65535; }}")
    lines.append(f"  chain c_fwd {{ type filter hook ingress device \"{ingress}\" priority 0; "
                 "policy accept;")
    lines += _probe_lines(kind, egress)
    lines += [
        f"    {L4} counter name \"f_all\"",
        f"    {L4} update @f4 {{ ip saddr . meta l4proto . th sport . ip dscp }}",
        f"    {L4} {MARK6}",
        f"    {L4} update @f6 {{ ip6 saddr . meta l4proto . th sport . meta mark }}",
    ]
    if expect_dscp is not None:
        lines += [f"    ip dscp {expect_dscp} {L4} counter name \"f_marked\"",
                  f"    ip6 dscp {expect_dscp} {L4} counter name \"f_marked\""]
    if set_dscp is not None:
        lines += [f"    {L4} ip dscp set {set_dscp}", f"    {L4} ip6 dscp set {set_dscp}"]
    if kind == "bump":
        lines += [f"    {ND} accept",
                  f"    meta pkttype host meta protocol {{ ip, ip6 }} fwd to \"{egress}\""]
    elif kind == "tap":
        lines.append(f"    {L4} drop")
    lines.append("  }")
    if egress != ingress:
        lines.append(f"  chain c_rev {{ type filter hook ingress device \"{egress}\" priority 0; "
                     "policy accept;")
        lines += _probe_lines(kind, ingress)
        lines += [
            f"    {L4} counter name \"r_all\"",
            f"    {L4} update @r4 {{ ip daddr . meta l4proto . th dport . ip dscp }}",
            f"    {L4} {MARK6}",
            f"    {L4} update @r6 {{ ip6 daddr . meta l4proto . th dport . meta mark }}",
        ]
        if kind == "bump":
            lines += [f"    {ND} accept",
                      f"    meta pkttype host meta protocol {{ ip, ip6 }} fwd to \"{ingress}\""]
        elif kind == "tap":
            lines.append(f"    {L4} drop")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def make_function(ns: str, kind: str, *, routes: tuple[str, ...] = (),
                  reverse_routes: tuple[str, ...] = (), ingress: str = "eth0",
                  egress: str = "eth1", expect_dscp: int | None = None,
                  set_dscp: int | None = None, extra_nft: str = "") -> None:
    """Turns an instance namespace into a service function (see function_ruleset). A routed
    function forwards (IPv4 and IPv6, no reverse-path filter) and routes ``routes``
    (destination prefixes) out of its egress port, ``reverse_routes`` out of its ingress port.
    ``extra_nft``: more nft (e.g. NAT) loaded with it (``EGRESS`` in it: the egress
    interface's name)."""
    in_ns(ns, "nft", "delete", "table", "netdev", FN_TABLE, check=False)
    if kind == "routed":
        in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
              "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
              f"net.ipv4.conf.{ingress}.rp_filter=0", f"net.ipv4.conf.{egress}.rp_filter=0",
              "net.ipv4.conf.all.send_redirects=0", f"net.ipv4.conf.{ingress}.send_redirects=0")
        for dst in routes:
            in_ns(ns, "ip", "-6" if ":" in dst else "-4", "route", "replace", dst, "dev", egress)
        for dst in reverse_routes:
            in_ns(ns, "ip", "-6" if ":" in dst else "-4", "route", "replace", dst, "dev",
                  ingress)
    nft_apply(ns, function_ruleset(kind, ingress=ingress, egress=egress,
                                   expect_dscp=expect_dscp, set_dscp=set_dscp)
              + extra_nft.replace("EGRESS", egress))


Flow = tuple  # (address, protocol name, port, dscp)


@dataclass
class FunctionView:
    """What one service function saw (see the module doc)."""
    f_all: int = 0
    f_marked: int = 0
    r_all: int = 0
    # (source address, "tcp"/"udp", source port, dscp on arrival) -> packets, forward
    fwd: dict = field(default_factory=dict)
    # (original source address, proto, original source port, dscp) -> packets, reverse
    rev: dict = field(default_factory=dict)

    def fwd_flows(self, proto: str | None = None, dscp: int | None = None) -> Counter:
        """(address, source port) -> packets, forward direction."""
        out = Counter()
        for (addr, p, port, d), n in self.fwd.items():
            if (proto is None or p == proto) and (dscp is None or d == dscp):
                out[(addr, port)] += n
        return out

    def rev_flows(self, proto: str | None = None) -> Counter:
        out = Counter()
        for (addr, p, port, _d), n in self.rev.items():
            if proto is None or p == proto:
                out[(addr, port)] += n
        return out

    def minus(self, before: "FunctionView") -> "FunctionView":
        def sub(a: dict, b: dict) -> dict:
            return {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0) > 0}
        return FunctionView(self.f_all - before.f_all, self.f_marked - before.f_marked,
                            self.r_all - before.r_all, sub(self.fwd, before.fwd),
                            sub(self.rev, before.rev))

    def summary(self) -> str:
        def short(d: dict) -> str:
            items = sorted(d.items())
            text = ", ".join(f"{a}/{p}/{port}/dscp{ds}:{n}" for (a, p, port, ds), n in items[:8])
            return text + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
        return (f"f_all={self.f_all} f_marked={self.f_marked} r_all={self.r_all} "
                f"fwd[{short(self.fwd)}] rev[{short(self.rev)}]")


_PROTO = {6: "tcp", 17: "udp", "tcp": "tcp", "udp": "udp"}


def _elements(doc: list, set_name: str) -> dict:
    out = {}
    for obj in doc:
        s = obj.get("set")
        if not s or s.get("name") != set_name:
            continue
        for e in s.get("elem", []):
            packets = 0
            if isinstance(e, dict) and "elem" in e:
                counter = e["elem"].get("counter") or {}
                packets = counter.get("packets", 0)
                val = e["elem"]["val"]
            else:
                val = e
            parts = val["concat"] if isinstance(val, dict) and "concat" in val else [val]
            addr, proto, port, dscp = parts
            out[(addr, _PROTO.get(proto, str(proto)), int(port), _dscp_value(dscp))] = packets
    return out


_DSCP_NAMES = {"cs0": 0, "cs1": 8, "cs2": 16, "cs3": 24, "cs4": 32, "cs5": 40, "cs6": 48,
               "cs7": 56, "af11": 10, "af12": 12, "af13": 14, "af21": 18, "af22": 20,
               "af23": 22, "af31": 26, "af32": 28, "af33": 30, "af41": 34, "af42": 36,
               "af43": 38, "ef": 46, "be": 0, "va": 44, "lephb": 1}


def _dscp_value(v) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        if v in _DSCP_NAMES:
            return _DSCP_NAMES[v]
        return int(v, 0)
    raise ValueError(f"dscp {v!r}")


def _table_json(ns: str, table: str) -> list:
    out = in_ns(ns, "nft", "-j", "list", "table", "netdev", table).stdout
    return json.loads(out)["nftables"]


def read_function(ns: str) -> FunctionView:
    doc = _table_json(ns, FN_TABLE)
    view = FunctionView()
    for obj in doc:
        c = obj.get("counter")
        if c and "name" in c and "packets" in c:
            setattr(view, c["name"], c["packets"])
    view.fwd = {**_elements(doc, "f4"), **_elements(doc, "f6")}
    view.rev = {**_elements(doc, "r4"), **_elements(doc, "r6")}
    return view


def make_observer(ns: str, dev: str = "eth0") -> None:
    """Counts, in a destination namespace, the TCP/UDP packets it accepts (addressed to its
    MAC) by ``saddr . l4proto . dport . dscp``."""
    in_ns(ns, "nft", "delete", "table", "netdev", OBS_TABLE, check=False)
    nft_apply(ns, "\n".join([
        f"table netdev {OBS_TABLE} {{",
        f"  set s4 {{ type {SET4}; flags dynamic; counter; size 65535; }}",
        f"  set s6 {{ type {SET6}; flags dynamic; counter; size 65535; }}",
        f"  chain c_obs {{ type filter hook ingress device \"{dev}\" priority 0; policy accept;",
        f"    meta pkttype host {L4} update @s4 {{ ip saddr . meta l4proto . th dport . ip dscp }}",
        f"    meta pkttype host {L4} {MARK6}",
        f"    meta pkttype host {L4} update @s6 "
        "{ ip6 saddr . meta l4proto . th dport . meta mark }",
        "  }",
        "}",
    ]) + "\n")


def read_observer(ns: str) -> dict:
    """(source address, proto, destination port, dscp) -> packets the destination accepted."""
    doc = _table_json(ns, OBS_TABLE)
    return {**_elements(doc, "s4"), **_elements(doc, "s6")}


def observed(obs: dict, proto: str, port: int) -> dict:
    """(source address, dscp) -> packets of one destination port."""
    out = Counter()
    for (addr, p, dport, dscp), n in obs.items():
        if p == proto and dport == port:
            out[(addr, dscp)] += n
    return dict(out)


def diff_obs(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


def wait_v6_ready(ns: str, timeout: float = 15) -> None:
    """Waits until no address of the namespace is tentative (IPv6 DAD done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "tentative" not in in_ns(ns, "ip", "-6", "addr").stdout:
            return
        time.sleep(0.2)
    raise AssertionError(f"IPv6 addresses of {ns} stay tentative: "
                         f"{in_ns(ns, 'ip', '-6', 'addr').stdout}")


# ---------------------------------------------------------------------------------------------
# lab plumbing (a dataplane_lab.Lab and an openstacksdk connection)


def wait_for(what: str, predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def server_revision(lab, conn) -> int:
    r = conn.session.get(f"{lab.server.url}/neutrino/v1/snapshot")
    return int(r.json()["revision"])


def settle(lab, conn, timeout: float = 30.0) -> int:
    """Waits until every agent has reconciled at least up to the server's current revision
    (so every change made so far is in its kernel); returns that revision."""
    revision = server_revision(lab, conn)
    seen: dict = {}

    def done():
        seen.update({h: lab.status(h).get("revision", -1) for h in lab.agents})
        return all(r >= revision for r in seen.values())
    try:
        wait_for(f"every agent at revision {revision}", done, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}: agents at {seen}") from None
    # The status is written after the reconcile applied its plan; an agent that did not
    # write any status is caught by the predicate above.
    return revision


def port(conn, net: str, host: str, device: str, *, secure: bool = True, **extra):
    """A port bound to ``host`` for instance ``device``; SF ports without port security."""
    kw = dict(network_id=net, binding_host_id=host, device_id=device, name=f"sfc-{device}")
    if not secure:
        kw.update(port_security_enabled=False, security_group_ids=[])
    kw.update(extra)
    return conn.network.create_port(**kw)


def wait_ports_active(conn, ports, timeout: float = 30.0) -> None:
    ids = [p.id for p in ports]
    seen: dict = {}

    def done():
        seen.update({i: conn.network.get_port(i).status for i in ids if seen.get(i) != "ACTIVE"})
        return all(v == "ACTIVE" for v in seen.values())
    try:
        wait_for("ports ACTIVE", done, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}: {seen}") from None


def addr(p, version: int = 4) -> str:
    for ip in p.fixed_ips:
        if (":" in ip["ip_address"]) == (version == 6):
            return ip["ip_address"]
    raise AssertionError(f"port {p.id} has no IPv{version} address: {p.fixed_ips}")


def sfc_table(lab, host: str) -> str:
    r = in_ns(lab.host_ns(host), "nft", "list", "table", "netdev", "neutrino_sfc", check=False)
    return r.stdout if r.returncode == 0 else f"(no table: {r.stderr.strip()})"


def diagnostics(lab, functions: dict[str, str] | None = None) -> str:
    """The hosts' steering tables and the functions' counters, for failure messages."""
    out = []
    for name, ns in (functions or {}).items():
        try:
            out.append(f"--- function {name} ({ns}): {read_function(ns).summary()}")
        except Exception as e:  # noqa: BLE001 - diagnostics only
            out.append(f"--- function {name}: {e}")
    for host in lab.hosts:
        status = lab.status(host)
        out.append(f"--- {host} status {json.dumps(status)}\n{sfc_table(lab, host)}")
    return "\n".join(out)


if __name__ == "__main__":
    main()
