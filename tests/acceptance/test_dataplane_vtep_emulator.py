"""Packets through a hardware VTEP: Open vSwitch's VTEP emulator (``ovs-vtep``, Debian's
``openvswitch-vtep``) plays the switch. It reads the ``hardware_vtep`` database that h2's agent
programs (``--vtep NAME=unix:...``) and realises it with an OVS bridge per logical switch and
VXLAN tunnels to the hosts. OVS runs its userspace datapath (``datapath_type=netdev``,
``ovs-vswitchd --disable-system``), so the kernel needs no openvswitch module.

The switch is a namespace on the lab's underlay holding ``ovsdb-server`` (the vswitch and vtep
databases), ``ovs-vswitchd`` and ``ovs-vtep``; its tunnel address sits on an OVS bridge whose
port is its underlay veth (OVS's own tunnelling needs that). A "bare-metal" namespace hangs
off the switch's physical port ``p0``. Everything is stopped and deleted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import NeutrinoServer, _server_binary, osc
from dataplane_lab import Lab, bound_port, ip_of, needs_root, network_with_subnet, sh, wait_active, wait_for
from test_dataplane_l2gw import fdb_toward
from test_dataplane_provider import open_group

SHARE = Path("/usr/share/openvswitch")
VTEP = SHARE / "scripts" / "ovs-vtep"
SWITCH_IP = "198.18.0.50"
TOOLS = ("ovsdb-server", "ovsdb-tool", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "vtep-ctl")


def tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return str(Path("/usr/sbin", name)) if Path("/usr/sbin", name).exists() else None


pytestmark = [
    needs_root,
    pytest.mark.skipif(
        not all(tool(t) for t in TOOLS) or not VTEP.exists()
        or not (SHARE / "vtep.ovsschema").exists() or not (SHARE / "vswitch.ovsschema").exists(),
        reason="needs Open vSwitch and its VTEP emulator (apt-get install openvswitch-switch "
               "openvswitch-vtep)"),
]


class Emulator:
    """An OVS VTEP emulator in namespace ``ns``: switch ``name`` with tunnel IP ``SWITCH_IP``
    and physical port ``p0``."""

    def __init__(self, dir: Path, ns: str, name: str):
        self.dir, self.ns, self.name = dir, ns, name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = self.dir / "db.sock"
        self.env = {**os.environ, "OVS_RUNDIR": str(dir), "OVS_DBDIR": str(dir),
                    "OVS_LOGDIR": str(dir)}

    @property
    def remote(self) -> str:
        return f"unix:{self.sock}"

    def run(self, *cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], check=True,
                              capture_output=True, text=True, env=self.env, timeout=30).stdout

    def vsctl(self, *args: str) -> str:
        return self.run(tool("ovs-vsctl"), f"--db={self.remote}", *args)

    def vtep(self, *args: str) -> str:
        return self.run(tool("vtep-ctl"), f"--db={self.remote}", *args)

    def start_database(self) -> None:
        """The switch's databases (the agent connects to them before the switch is wired)."""
        sh("ip", "netns", "add", self.ns)
        for schema in ("vswitch", "vtep"):
            sh(tool("ovsdb-tool"), "create", str(self.dir / f"{schema}.db"),
               str(SHARE / f"{schema}.ovsschema"))
        self.run(tool("ovsdb-server"), f"--remote=punix:{self.sock}", "--detach", "--no-chdir",
                 f"--pidfile={self.dir / 'ovsdb-server.pid'}",
                 f"--log-file={self.dir / 'ovsdb-server.log'}",
                 str(self.dir / "vswitch.db"), str(self.dir / "vtep.db"))
        self.vsctl("--no-wait", "init")
        self.vtep("add-ps", self.name, "--", "set", "Physical_Switch", self.name,
                  f"tunnel_ips={SWITCH_IP}")
        self.vtep("add-port", self.name, "p0")

    def start_switch(self, underlay: str, machine: str, address: str) -> None:
        """Wires the switch to the lab's underlay namespace and to ``machine`` (a namespace
        it creates, with ``address`` on its ``eth0``), then starts OVS and the emulator."""
        self.run(tool("ovs-vswitchd"), self.remote, "--detach", "--no-chdir", "--disable-system",
                 f"--pidfile={self.dir / 'ovs-vswitchd.pid'}",
                 f"--log-file={self.dir / 'ovs-vswitchd.log'}")
        self.run("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "ulsw", "netns", underlay, "type", "veth",
           "peer", "name", "uplink", "netns", self.ns)
        sh("ip", "-n", underlay, "link", "set", "ulsw", "master", "br0", "up")
        # The tunnel address on an OVS bridge over the uplink: OVS tunnels route through it.
        self.vsctl("add-br", "br-ul", "--", "set", "Bridge", "br-ul", "datapath_type=netdev")
        self.vsctl("add-port", "br-ul", "uplink")
        sh("ip", "-n", self.ns, "link", "set", "uplink", "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{SWITCH_IP}/24", "dev", "br-ul")
        sh("ip", "-n", self.ns, "link", "set", "br-ul", "up")
        # The physical switch and its port toward the machine.
        sh("ip", "netns", "add", machine)
        sh("ip", "link", "add", "p0", "netns", self.ns, "type", "veth",
           "peer", "name", "eth0", "netns", machine)
        sh("ip", "-n", self.ns, "link", "set", "p0", "up")
        for cmd in (["addr", "add", address, "dev", "eth0"], ["link", "set", "eth0", "up"],
                    ["link", "set", "lo", "up"]):
            sh("ip", "-n", machine, *cmd)
        self.vsctl("add-br", self.name, "--", "set", "Bridge", self.name, "datapath_type=netdev")
        self.vsctl("add-port", self.name, "p0")
        self.run(str(VTEP), "--detach", "--no-chdir", f"--pidfile={self.dir / 'ovs-vtep.pid'}",
                 f"--log-file={self.dir / 'ovs-vtep.log'}", self.name)

    def stop(self) -> None:
        for daemon in ("ovs-vtep", "ovs-vswitchd", "ovsdb-server"):
            try:
                os.kill(int((self.dir / f"{daemon}.pid").read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass

    def bridges(self) -> list[str]:
        return self.vsctl("list-br").split()


@pytest.fixture
def elab(tmp_path):
    server = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    lab = Lab(server, tmp_path, ("h1", "h2"))
    lab.device = f"ps{lab.tag}"
    lab.switch = Emulator(tmp_path / "switch", f"nt{lab.tag}-sw", lab.device)
    lab.agent_args = {"h2": ["--vtep", f"{lab.device}={lab.switch.remote}"]}
    try:
        lab.switch.start_database()
        lab.setup()
        lab.machine = f"nt{lab.tag}-bm"
        lab.switch.start_switch(lab.underlay, lab.machine, "10.73.0.50/24")
        yield lab
    finally:
        lab.switch.stop()
        lab.teardown()
        server.stop()


def test_packets_cross_the_vtep_emulator(elab):
    lab, env, sw = elab, elab.server.env, elab.switch
    net, _ = network_with_subnet(env, "10.73.0.0/24")
    vm = wait_active(env, bound_port(env, net, "h1", "vm", *open_group(env))["id"])
    instance = lab.instance("h1", "vm")
    assert not lab.pings(lab.machine, ip_of(vm)), "reachable before the connection"

    gw = osc("l2gw", "create", f"dp-emu-{uuid.uuid4().hex[:6]}",
             "--device", f"name={lab.device},interface_names=p0", env=env)
    conn = osc("l2gw", "connection", "create", gw["id"], net, "--default-segmentation-id", "0",
               env=env)
    # The emulator made a bridge for the network's logical switch.
    wait_for("the emulator's logical switch bridge",
             lambda: any(b.startswith(f"{lab.device}_vtep_ls") for b in sw.bridges()))
    wait_for("the machine behind the switch reaching the instance",
             lambda: lab.pings(lab.machine, ip_of(vm)), timeout=60)
    assert lab.pings(instance, "10.73.0.50", count=2)

    # What the switch learnt on its port reached h1, which sends that MAC to the switch.
    machine_mac = json.loads(sh("ip", "-n", lab.machine, "-j", "link", "show", "eth0").stdout)[0]["address"]
    wait_for("h1's FDB entry for the machine's MAC toward the switch",
             lambda: fdb_toward(lab.host_ns("h1"), machine_mac, SWITCH_IP))

    # The connection goes: the switch forgets the network, the machine is cut off.
    osc("l2gw", "connection", "delete", conn["id"], env=env, json_output=False)
    wait_for("the logical switch bridge removed",
             lambda: not any(b.startswith(f"{lab.device}_vtep_ls") for b in sw.bridges()))
    sh("ip", "-n", lab.machine, "neigh", "flush", "all")
    assert not lab.pings(lab.machine, ip_of(vm), count=2)
