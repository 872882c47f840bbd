"""The short form of ``scripts/bench-cni``: 10 containers per scenario, 4 calls at a time.

Checks that the benchmark runs against the lab (server and agents of ``dataplane_lab``) and
the reference ``bridge`` + ``host-local`` plugins and produces figures; no timing asserts (the
figures are in docs/BENCHMARKS.md). Needs root, the plugin binary (``NEUTRINO_CNI_BIN``) and
containernetworking-plugins.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import ipaddress
import math
import os
from pathlib import Path

import pytest

from conftest import REPO, osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    lab, needs_root, network_with_subnet, sh, wait_for)
from test_cni import cni_binary

pytestmark = [needs_root, pytest.mark.skipif(
    not Path(cni_binary()).exists() or not os.access("/usr/lib/cni/bridge", os.X_OK),
    reason="needs the plugin binary (NEUTRINO_CNI_BIN) and containernetworking-plugins")]


def bench_module():
    path = str(REPO / "scripts" / "bench-cni")
    loader = importlib.machinery.SourceFileLoader("bench_cni", path)
    spec = importlib.util.spec_from_loader("bench_cni", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_bench_cni_runs_and_reports(lab):
    bench = bench_module()
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.81.0.0/24")
    conf = {"cniVersion": "1.0.0", "name": "bench-neutrino", "type": "neutrino-cni",
            "network": net, "openrc": str(lab.server.openrc_path), "host": "h1",
            "activeTimeout": 60}
    before = set(sh("ip", "netns", "list").stdout.split())
    ref = bench.run_reference(10, 4, 1)
    plugin = bench.run_ours(cni_binary(), conf, 10, 4, 1)
    ours = plugin.result
    parts = bench.breakdown(plugin, lab.server.log_path)
    assert ours["errors"] == [] and ref["errors"] == []
    assert parts["to_port_created"]["n"] == parts["created_to_result"]["n"] == 10
    assert ours["floor"]["VERSION"]["p50_ms"] > 0 and ref["floor"]["VERSION"]["p50_ms"] > 0
    for result, subnet in ((ours, "10.81.0.0/24"), (ref, "10.80.0.0/16")):
        for scenario in ("sequential", "parallel"):
            figures = result[scenario]
            assert figures["ADD"]["n"] == figures["DEL"]["n"] == 10
            for command in ("ADD", "DEL"):
                for key in ("p50_ms", "p99_ms", "total_s"):
                    assert figures[command][key] > 0 and not math.isnan(figures[command][key])
            addresses = figures["addresses"]
            assert len(set(addresses)) == 10
            assert all(ipaddress.ip_interface(a) in ipaddress.ip_network(subnet)
                       for a in addresses)
    rows = bench.compare(ours, ref)
    assert {r["figure"] for r in rows} >= {"sequential ADD p50_ms", "parallel DEL p99_ms"}
    assert all(r["ratio"] and r["ratio"] > 0 for r in rows)
    # Every port of the benchmark was deleted again, and its namespaces too.
    assert [p for p in osc("port", "list", "--network", net, "--long", env=env)
            if p["Device Owner"] == "compute:container"] == []
    # The agent drops its mounts of the containers' namespaces on its next reconcile, so
    # they may outlive the DEL by a moment.
    wait_for("the benchmark's namespaces and the agent's mounts of them to go",
             lambda: not {n for n in sh("ip", "netns", "list").stdout.split()
                          if "ntbn" in n} - before)
