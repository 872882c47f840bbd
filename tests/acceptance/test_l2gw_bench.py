"""Border gateway benchmark (run only with ``NEUTRINO_L2GW_BENCH=1``; the figures go to
docs/BENCHMARKS.md).

Two deployments stretch one network through their software gateways with the MAC exchange
(``--l2gw-exchange-macs``) and ``flood`` off, as in ``test_dataplane_l2gw.py``. For
``NEUTRINO_L2GW_BENCH_PORTS`` (20) ports created one at a time in cloud A (bound to A's h1),
timed from the ``POST``: cloud B's gateway host forwarding the port's MAC over the WAN
(its static FDB entry toward A's gateway), and B's compute host sending that MAC to its
gateway. p50 / p99 / max.
"""

from __future__ import annotations

import math
import os
import statistics
import time

import pytest

from conftest import osc
from dataplane_lab import sh
from test_dataplane_l2gw import border, stretched_side, two_clouds  # noqa: F401

pytestmark = pytest.mark.skipif(os.environ.get("NEUTRINO_L2GW_BENCH") != "1",
                                reason="a benchmark: NEUTRINO_L2GW_BENCH=1 runs it")

PORTS = int(os.environ.get("NEUTRINO_L2GW_BENCH_PORTS", "20"))


def _fdb(ns: str) -> str:
    return sh("bridge", "-n", ns, "fdb", "show").stdout


def _toward(text: str, mac: str, dst: str) -> bool:
    return any(line.startswith(f"{mac} ") and f"dst {dst} " in line + " "
               for line in text.splitlines())


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


@pytest.mark.gateway_args("--l2gw-exchange-macs")
def test_port_in_one_cloud_forwarded_by_the_other(two_clouds):
    a, b = two_clouds
    _, net_a, gw_a = stretched_side(a, "10.72.0.10")
    _, net_b, gw_b = stretched_side(b, "10.72.0.20")
    border(a, gw_a, net_a, b, flood=False)
    border(b, gw_b, net_b, a, flood=False)
    env = a.server.env
    sub = osc("network", "show", net_a, env=env)["subnets"][0]
    sg = osc("security", "group", "create", "bench-l2gw", env=env)["id"]
    conn = a.server.connect()
    gw_host, compute = b.host_ns("h2"), b.host_ns("h1")
    a_gw, b_gw = a.tunnel_ip("h2"), b.tunnel_ip("h2")
    at_gateway, at_compute = [], []
    for i in range(PORTS):
        time.sleep(0.3)
        started = time.monotonic()
        port = conn.network.post("/ports", json={"port": {
            "network_id": net_a, "binding:host_id": "h1", "device_id": f"bench-{i}",
            "device_owner": "compute:bench", "security_groups": [sg],
            "fixed_ips": [{"subnet_id": sub, "ip_address": f"10.72.0.{100 + i}"}]}}).json()["port"]
        mac, seen_gw, seen_compute = port["mac_address"], None, None
        while time.monotonic() - started < 30 and (seen_gw is None or seen_compute is None):
            now = time.monotonic()
            if seen_gw is None and _toward(_fdb(gw_host), mac, a_gw):
                seen_gw = now - started
            if seen_compute is None and _toward(_fdb(compute), mac, b_gw):
                seen_compute = now - started
            time.sleep(0.005)
        assert seen_gw is not None and seen_compute is not None, f"port {i} never reached cloud B"
        at_gateway.append(seen_gw * 1000)
        at_compute.append(seen_compute * 1000)
    for what, values in (("B's gateway forwards it over the WAN", at_gateway),
                         ("B's compute host sends it to B's gateway", at_compute)):
        print(f"\n| port created in cloud A → {what} | {len(values)} | "
              f"{statistics.median(values):.0f} ms | {_pct(values, 99):.0f} ms | "
              f"{max(values):.0f} ms |")
