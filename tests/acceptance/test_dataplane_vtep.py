"""Hardware VTEPs end to end: h2's agent runs with ``--vtep NAME=unix:...`` against a real
``ovsdb-server`` holding the ``hardware_vtep`` schema (Debian's ``openvswitch-common`` and
``openvswitch-vtep``), the "switch" being a ``Physical_Switch`` with one port written the way
a switch does (``vtep-ctl``). An L2 gateway naming that device, connected to a VXLAN network,
gives the switch the network's logical switch (VNI as tunnel key), the VLAN binding on its
port, the network's ports as remote MACs at their hosts' tunnel IPs and flooding to them; h1
floods to the switch's tunnel IP and sends the MACs the switch learnt locally there. The
switch's database is then lost (a replaced switch) and replayed, and the connection deleted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import NeutrinoServer, _server_binary, osc
from dataplane_lab import Lab, bound_port, needs_root, network_with_subnet, sh, wait_active, wait_for
from test_dataplane_l2gw import fdb_toward
from test_dataplane_provider import open_group

SCHEMA = Path("/usr/share/openvswitch/vtep.ovsschema")
SWITCH_IP = "198.18.0.50"
TOOLS = ("ovsdb-server", "ovsdb-tool", "ovsdb-client", "vtep-ctl")

pytestmark = [
    needs_root,
    pytest.mark.skipif(
        not all(shutil.which(t) or Path("/usr/sbin", t).exists() for t in TOOLS)
        or not SCHEMA.exists(),
        reason="needs ovsdb-server, ovsdb-tool, ovsdb-client, vtep-ctl and "
               f"{SCHEMA} (apt-get install openvswitch-common openvswitch-vtep)"),
]


def tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Switch:
    """An ``ovsdb-server`` with the vtep schema on a unix socket, and the switch's own rows."""

    def __init__(self, tmp: Path, name: str):
        self.dir, self.name = tmp / "vtep", name
        self.dir.mkdir(exist_ok=True)
        self.db, self.sock = self.dir / "vtep.db", self.dir / "db.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def remote(self) -> str:
        return f"unix:{self.sock}"

    def fresh(self) -> "Switch":
        """A new empty database with the switch, its tunnel IP and port ``p1``."""
        self.db.unlink(missing_ok=True)
        sh(tool("ovsdb-tool"), "create", str(self.db), str(SCHEMA))
        self.start()
        self.ctl("add-ps", self.name, "--", "set", "Physical_Switch", self.name,
                 f"tunnel_ips={SWITCH_IP}")
        self.ctl("add-port", self.name, "p1")
        return self

    def start(self) -> None:
        self.sock.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [tool("ovsdb-server"), f"--remote=punix:{self.sock}",
             f"--unixctl={self.dir / 'ctl'}", "--no-chdir", str(self.db)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_for("the ovsdb-server socket", self.sock.exists)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def ctl(self, *args: str) -> str:
        return sh(tool("vtep-ctl"), f"--db={self.remote}", *args).stdout

    def rows(self, *tables: str) -> list[list[dict]]:
        """The rows of ``tables``, read in one transaction (the agent writes meanwhile)."""
        ops = [{"op": "select", "table": t, "where": []} for t in tables]
        out = sh(tool("ovsdb-client"), "transact", self.remote,
                 json.dumps(["hardware_vtep", *ops])).stdout
        return [r["rows"] for r in json.loads(out)]

    def state(self) -> dict:
        """Logical switches (name: key), port bindings (VLAN: logical switch name) and
        remote MACs (MAC: locator IP), comparable."""
        lss, locs, ports, macs, floods = self.rows(
            "Logical_Switch", "Physical_Locator", "Physical_Port", "Ucast_Macs_Remote",
            "Mcast_Macs_Remote")
        lss = {r["_uuid"][1]: r for r in lss}
        locs = {r["_uuid"][1]: r["dst_ip"] for r in locs}
        ports = {p["name"]: {str(vlan): lss[ls[1]]["name"] for vlan, ls in p["vlan_bindings"][1]}
                 for p in ports}
        macs = {m["MAC"]: locs[m["locator"][1]] for m in macs}
        return {"switches": {r["name"]: r["tunnel_key"] for r in lss.values()},
                "ports": ports, "macs": macs, "flood": len(floods)}


@pytest.fixture
def vlab(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1", "h2"))
    lab.device = f"sw-{lab.tag}"
    lab.switch = Switch(tmp_path, lab.device).fresh()
    lab.agent_args = {"h2": ["--vtep", f"{lab.device}={lab.switch.remote}"]}
    try:
        yield lab.setup()
    finally:
        lab.teardown()
        lab.switch.stop()
        server.stop()


def test_vtep_follows_the_network_and_replays(vlab):
    lab, env, sw = vlab, vlab.server.env, vlab.switch
    net, _ = network_with_subnet(env, "10.70.0.0/24")
    vni = osc("network", "show", net, env=env)["provider:segmentation_id"]
    a = wait_active(env, bound_port(env, net, "h1", "a", *open_group(env))["id"])
    gw = osc("l2gw", "create", f"dp-vtep-{uuid.uuid4().hex[:6]}",
             "--device", f"name={lab.device},interface_names=p1", env=env)
    conn = osc("l2gw", "connection", "create", gw["id"], net,
               "--default-segmentation-id", "100", env=env)
    ls = net

    def programmed(state: dict) -> bool:
        # Every bound port of the network is a remote MAC (the DHCP port too).
        return (state["switches"] == {ls: vni} and state["ports"] == {"p1": {"100": ls}}
                and state["macs"].get(a["mac_address"]) == lab.tunnel_ip("h1")
                and state["flood"] == 1)

    wait_for("the switch programmed", lambda: programmed(sw.state()))
    want = sw.state()

    # The managing agent reports the switch's tunnel IP: h1 floods to the switch.
    h1 = lab.host_ns("h1")
    wait_for("h1 flooding to the switch", lambda: fdb_toward(h1, "00:00:00:00:00:00", SWITCH_IP))

    # A machine behind the switch's port: the switch learns its MAC, h1 sends it there.
    local_mac = "00:00:5e:00:53:07"
    sw.ctl("add-ucast-local", ls, local_mac, SWITCH_IP)
    wait_for("h1's FDB entry for the switch's local MAC",
             lambda: fdb_toward(h1, local_mac, SWITCH_IP))

    # A second port comes and goes.
    b = wait_active(env, bound_port(env, net, "h1", "b", *open_group(env))["id"])
    wait_for("the second port's MAC",
             lambda: sw.state()["macs"].get(b["mac_address"]) == lab.tunnel_ip("h1"))
    osc("port", "delete", b["id"], env=env, json_output=False)
    wait_for("the second port's MAC removed", lambda: sw.state() == want)

    # The switch loses its database (replaced, reset): everything is written again.
    sw.stop()
    time.sleep(1)
    sw.fresh()
    wait_for("the switch programmed again", lambda: sw.state() == want)

    # The connection goes: so do the logical switch, the binding and the MACs, and h1 stops
    # flooding to the switch.
    osc("l2gw", "connection", "delete", conn["id"], env=env, json_output=False)
    wait_for("the switch cleared", lambda: sw.state() == {
        "switches": {}, "ports": {"p1": {}}, "macs": {}, "flood": 0})
    wait_for("h1 no longer floods to the switch",
             lambda: not fdb_toward(h1, "00:00:00:00:00:00", SWITCH_IP))
    osc("l2gw", "delete", gw["id"], env=env, json_output=False)
