"""BGP benchmarks (run only with ``NEUTRINO_BGP_BENCH=1``; the figures go to docs/BENCHMARKS.md).

The lab of ``test_bgp_speaker.py``: one host whose agent runs ``--bgp``, a "physical router"
BIRD peering with it.

1. From a router interface added through the API (``PUT .../add_router_interface``, timed
   from the request) to the tenant prefix in the peer's table: ``NEUTRINO_BGP_BENCH_SAMPLES``
   (20) subnets, each on a network of its own, p50 / p99 / max.
2. ``NEUTRINO_BGP_BENCH_PREFIXES`` (10,000) advertised prefixes, as floating IPs' host routes
   (bulk-created ports and floating IPs behind the router): the time for the peer to hold all
   of them once announced, then after the speaker's ``bird`` is killed (the agent starts a
   new one), from the kill to the peer holding all of them again.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import signal
import time

import pytest

from dataplane_lab import wait_for
from test_bgp_speaker import SPEAKER_AS, ROUTER_AS, ROUTER_IP, _bird_pid, _name, bgp_lab  # noqa: F401
from test_crash import _admin_token, _call

pytestmark = pytest.mark.skipif(os.environ.get("NEUTRINO_BGP_BENCH") != "1",
                                reason="a benchmark: NEUTRINO_BGP_BENCH=1 runs it")

SAMPLES = int(os.environ.get("NEUTRINO_BGP_BENCH_SAMPLES", "20"))
PREFIXES = int(os.environ.get("NEUTRINO_BGP_BENCH_PREFIXES", "10000"))
EXT_CIDR = "198.19.0.0/24"
FIP_CIDR = "198.19.64.0/18"


def _ok(server, token, method, path, body=None, want=(200, 201, 204)):
    status, doc, _ = _call(server, token, method, path, body, timeout=600)
    assert status in want, (method, path, status, doc)
    return doc


def _route_count(router) -> int:
    out = router.birdc("show", "route", "count")
    m = re.search(r"(\d+) of \d+ routes", out)
    return int(m.group(1)) if m else 0


def _percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def test_bgp_figures(bgp_lab):
    lab, router = bgp_lab
    server = lab.server
    token, project = _admin_token(server)
    router.configure(lab.tunnel_ip("h1"))
    _ok(server, token, "PUT", f"/v2.0/quotas/{project}", {"quota": {
        "port": -1, "floatingip": -1, "network": -1, "subnet": -1}})
    scope = _ok(server, token, "POST", "/v2.0/address-scopes", {"address_scope": {
        "name": _name("scope"), "ip_version": 4, "shared": True}})["address_scope"]["id"]
    ext_pool = _ok(server, token, "POST", "/v2.0/subnetpools", {"subnetpool": {
        "name": _name("ext"), "prefixes": [EXT_CIDR, FIP_CIDR],
        "address_scope_id": scope}})["subnetpool"]["id"]
    pool = _ok(server, token, "POST", "/v2.0/subnetpools", {"subnetpool": {
        "name": _name("tenant"), "prefixes": ["10.64.0.0/12"],
        "address_scope_id": scope}})["subnetpool"]["id"]
    ext = _ok(server, token, "POST", "/v2.0/networks", {"network": {
        "name": _name("ext"), "router:external": True}})["network"]["id"]
    _ok(server, token, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": ext, "ip_version": 4, "cidr": EXT_CIDR, "subnetpool_id": ext_pool}})
    fip_sub = _ok(server, token, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": ext, "ip_version": 4, "cidr": FIP_CIDR, "subnetpool_id": ext_pool,
        "gateway_ip": None, "enable_dhcp": False,
        "service_types": ["network:floatingip"]}})["subnet"]["id"]
    rid = _ok(server, token, "POST", "/v2.0/routers", {"router": {
        "name": _name("r"), "external_gateway_info": {"network_id": ext}}})["router"]
    gw_ip = rid["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    rid = rid["id"]
    speaker = _ok(server, token, "POST", "/v2.0/bgp-speakers", {"bgp_speaker": {
        "name": _name("sp"), "local_as": SPEAKER_AS, "ip_version": 4,
        "advertise_floating_ip_host_routes": True}})["bgp_speaker"]["id"]
    peer = _ok(server, token, "POST", "/v2.0/bgp-peers", {"bgp_peer": {
        "name": _name("peer"), "peer_ip": ROUTER_IP, "remote_as": ROUTER_AS,
        "auth_type": "none"}})["bgp_peer"]["id"]
    _ok(server, token, "PUT", f"/v2.0/bgp-speakers/{speaker}/add_gateway_network",
        {"network_id": ext})
    _ok(server, token, "PUT", f"/v2.0/bgp-speakers/{speaker}/add_bgp_peer",
        {"bgp_peer_id": peer})
    wait_for("the session", lambda: "Established" in router.session(), timeout=120)

    # 1. Interface added -> route at the peer.
    latencies = []
    for _ in range(SAMPLES):
        net = _ok(server, token, "POST", "/v2.0/networks",
                  {"network": {"name": _name("n")}})["network"]["id"]
        sub = _ok(server, token, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": net, "ip_version": 4, "subnetpool_id": pool,
            "prefixlen": 24}})["subnet"]
        started = time.monotonic()
        _ok(server, token, "PUT", f"/v2.0/routers/{rid}/add_router_interface",
            {"subnet_id": sub["id"]})
        wait_for(f"{sub['cidr']} at the peer", lambda: router.next_hop_of(sub["cidr"]) == gw_ip,
                 timeout=60, interval=0.01)
        latencies.append((time.monotonic() - started) * 1000)
    print(f"\ninterface added -> route at the peer, {SAMPLES} samples: "
          f"p50 {_percentile(latencies, 50):.0f} ms, p99 {_percentile(latencies, 99):.0f} ms, "
          f"max {max(latencies):.0f} ms")

    # 2. Many host routes: announce, then a speaker restart.
    net = _ok(server, token, "POST", "/v2.0/networks",
              {"network": {"name": _name("many")}})["network"]["id"]
    size = min(24, 32 - (PREFIXES + 16).bit_length())
    sub = _ok(server, token, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net, "ip_version": 4, "subnetpool_id": pool,
        "prefixlen": size}})["subnet"]
    assert ipaddress.ip_network(sub["cidr"]).num_addresses > PREFIXES + 4
    _ok(server, token, "PUT", f"/v2.0/routers/{rid}/add_router_interface",
        {"subnet_id": sub["id"]})
    before = _route_count(router)
    started = time.monotonic()
    for start in range(0, PREFIXES, 1000):
        n = min(1000, PREFIXES - start)
        ports = _ok(server, token, "POST", "/v2.0/ports", {"ports": [
            {"network_id": net, "device_id": f"vm{start + i}", "device_owner": "compute:nova"}
            for i in range(n)]})["ports"]
        _ok(server, token, "POST", "/v2.0/floatingips", {"floatingips": [
            {"floating_network_id": ext, "subnet_id": fip_sub, "port_id": p["id"]}
            for p in ports]})
    created = time.monotonic() - started
    want = before + PREFIXES
    wait_for(f"{want} routes at the peer", lambda: _route_count(router) >= want,
             timeout=1800, interval=0.2)
    announced = time.monotonic() - started
    pid = _bird_pid(lab, "h1")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for("the peer losing the routes", lambda: _route_count(router) < want, timeout=60,
             interval=0.05)
    wait_for(f"{want} routes at the peer again", lambda: _route_count(router) >= want,
             timeout=1800, interval=0.2)
    again = time.monotonic() - killed
    print(f"{PREFIXES} floating IP host routes: created through the API in {created:.1f} s, "
          f"all at the peer {announced:.1f} s after the first request; speaker bird killed: "
          f"all back at the peer {again:.1f} s later")
