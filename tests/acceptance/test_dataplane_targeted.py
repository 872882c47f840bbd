"""Targeted reconciles: a change from the feed reads only what it touches, and the periodic
full reconcile still repairs what was changed behind the agent's back.

h1's agent resyncs every 3 s. Needs root, iproute2, nft and ping; every namespace is deleted
afterwards and traffic never leaves them.
"""

from __future__ import annotations

import pytest

from conftest import NeutrinoServer, _server_binary
from dataplane_lab import (
    Lab, bound_port, ip_of, needs_root, network_with_subnet, sh, wait_active, wait_for)

pytestmark = needs_root

RESYNC = 3


@pytest.fixture
def tlab(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1", "h2"))
    lab.agent_args = {"h1": ["--resync-interval", str(RESYNC)]}
    try:
        yield lab.setup()
    finally:
        lab.teardown()
        server.stop()


def targeted(lab: Lab) -> int:
    status = lab.status("h1")
    return status["reconciles"] - status["full_reconciles"]


def chain(lab: Lab, name: str) -> str:
    return sh("ip", "netns", "exec", lab.host_ns("h1"), "nft", "list", "chain", "inet",
              "neutrino", name, check=False).stdout


def test_changes_read_only_what_they_touch_and_the_resync_repairs_the_rest(tlab):
    lab, env = tlab, tlab.server.env
    net, _ = network_with_subnet(env, "10.66.0.0/24")
    a = wait_active(env, bound_port(env, net, "h1", "a")["id"])
    b = wait_active(env, bound_port(env, net, "h2", "b")["id"])
    ns_a, ns_b = lab.instance("h1", "a"), lab.instance("h2", "b")
    assert lab.pings(ns_b, ip_of(a), count=2)

    # A new port on h1 is plugged, filtered and reachable by a targeted reconcile.
    before = targeted(lab)
    c = wait_active(env, bound_port(env, net, "h1", "c")["id"])
    assert lab.pings(ns_b, ip_of(c))
    assert targeted(lab) > before, lab.status("h1")

    # Behind the agent's back: a's address goes, and a's ingress chain is emptied.
    full = lab.status("h1")["full_reconciles"]
    sh("ip", "-n", ns_a, "addr", "flush", "dev", "eth0")
    ingress = f"i-tap{a['id'][:11]}"
    assert "default-drop" in chain(lab, ingress)
    sh("ip", "netns", "exec", lab.host_ns("h1"), "nft", "flush", "chain", "inet", "neutrino",
       ingress)
    # Changes elsewhere on the host still converge (they plan against what the agent last
    # saw, which no longer holds for a: that is the periodic repair's to fix).
    d = wait_active(env, bound_port(env, net, "h1", "d")["id"])
    assert lab.pings(ns_b, ip_of(d))
    # The next full reconcile puts both back.
    wait_for("the resync to restore a's address", lambda: lab.pings(ns_b, ip_of(a)),
             timeout=4 * RESYNC + 10)
    wait_for("the resync to restore a's ingress chain",
             lambda: "default-drop" in chain(lab, ingress), timeout=4 * RESYNC + 10)
    assert lab.status("h1")["full_reconciles"] > full
    assert lab.status("h1")["errors_total"] == 0, lab.status("h1")
