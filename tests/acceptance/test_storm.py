"""A start-up storm: a whole site's agents come back within one second.

A server holding ``NEUTRINO_STORM_PORTS`` ports (2,000 in CI; the figure in docs/BENCHMARKS.md
is for 10,000) meets ``neutrino storm``: 300 simulated agents, all started within one second,
each registering, fetching the snapshot and opening its watch of the change feed (no kernel),
while a user reads the API every 10 ms. Every agent must converge (its watch open) and every
user request must be answered; the server, admitting new watches at 100 a second, must have
sent some agents away with a ``Retry-After`` that they honoured; and every agent must be
registered. The user's latencies are printed.
"""

from __future__ import annotations

import json
import os
import subprocess

from conftest import NeutrinoServer, _server_binary
from test_crash import _admin_token, _call

PORTS = int(os.environ.get("NEUTRINO_STORM_PORTS", "2000"))
AGENTS = 300
ADMISSION = 20


def test_three_hundred_agents_starting_within_a_second_all_converge(tmp_path):
    # Watches admitted at 20 a second: the crowd is more than that, some must be sent away.
    server = NeutrinoServer(_server_binary(), tmp_path / "server",
                            extra_args=["--watch-admission-rate", str(ADMISSION)]).start()
    try:
        token, project = _admin_token(server)
        status, doc, _ = _call(server, token, "PUT", f"/v2.0/quotas/{project}",
                               {"quota": {"port": -1, "network": -1, "subnet": -1}})
        assert status == 200, doc
        per_network = 1000
        for n in range((PORTS + per_network - 1) // per_network):
            status, net, _ = _call(server, token, "POST", "/v2.0/networks",
                                   {"network": {"name": f"storm-{n}"}})
            assert status == 201, net
            status, sub, _ = _call(server, token, "POST", "/v2.0/subnets", {"subnet": {
                "network_id": net["network"]["id"], "ip_version": 4,
                "cidr": f"10.{120 + n}.0.0/20"}})
            assert status == 201, sub
            count = min(per_network, PORTS - n * per_network)
            status, doc, _ = _call(server, token, "POST", "/v2.0/ports", {"ports": [
                {"network_id": net["network"]["id"], "device_id": f"vm-{n}-{i}",
                 "device_owner": "compute:nova", "binding:host_id": f"storm-{i % AGENTS:04}"}
                for i in range(count)]}, timeout=300)
            assert status == 201, doc

        proc = subprocess.run(
            [_server_binary(), "storm", "--agents", str(AGENTS), "--window-ms", "1000",
             "--probe-every-ms", "10", "--timeout", "300", "--json"],
            env=server.env, capture_output=True, text=True, timeout=400,
            stdin=subprocess.DEVNULL)
        assert proc.stdout.strip(), proc.stderr
        report = json.loads(proc.stdout)
        assert report["converged"] == AGENTS, json.dumps(report, indent=1)
        assert report["failed"] == 0 and report["probe_errors"] == 0, report
        assert report["probes"] > 0, report
        # The server let the crowd in at its pace, and the agents waited as told.
        assert report["told_to_wait"] > 0, report
        assert proc.returncode == 0, proc.stderr

        status, doc, _ = _call(server, token, "GET", "/v2.0/agents?binary=neutrino-storm")
        assert status == 200, doc
        assert len({a["host"] for a in doc["agents"]}) == AGENTS
        print(f"\nstorm of {AGENTS} agents on {PORTS} ports: all converged in "
              f"{report['converge_ms']} ms, {report['told_to_wait']} told to come back later; "
              f"user probes p50 {report['probe_p50_ms']:.1f} ms, p99 "
              f"{report['probe_p99_ms']:.1f} ms, max {report['probe_max_ms']:.1f} ms "
              f"({report['probes']} probes); {report['snapshot_bytes_total']} snapshot bytes")
    finally:
        server.stop()
