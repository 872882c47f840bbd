"""Nested containers: the CNI plugin run inside a VM whose interface is a Neutrino port.

The "VM" is an instance namespace the agent of lab host h1 wires for a port bound there; the
test plays the VM's container runtime: it creates a "container" namespace, and runs the
plugin inside the VM (``ip netns exec <VM namespace>``) with ``CNI_NETNS`` the container's
path. The server listens on the machine's 127.0.0.1, which the VM's namespace cannot reach,
so a small forwarder listens on the same address inside the VM and relays to the server
(the VM's "route to the cloud API").

- macvlan mode runs for real: the container reaches a VM on h2 across VXLAN, its address is
  an allowed address pair of the VM's port (concurrent ADDs lose no pair), the VM's
  anti-spoofing still drops an address that is not a pair, DEL leaves nothing behind.
- VLAN mode: this kernel lacks 802.1q devices, so the packet test skips; the API side is
  asserted anyway: an ADD claims the lowest free VLAN id on the VM port's trunk (the server
  refuses an id twice), the device creation fails with a CNI error and the subport and its
  port are removed again; the agent of h1 reports the trunk DEGRADED and the subports ERROR
  and keeps everything else working.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import threading
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import osc, osc_fails
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, network_with_subnet, sh, wait_active, wait_for)
from test_cni import (  # noqa: F401 (runtime is a fixture)
    cni_binary, config, pytestmark, runtime)
from test_dataplane_provider import kernel_has_vlan

CLONE_NEWNET = 0x40000000


class ApiRelay:
    """Listens on the server's address inside a namespace and relays to the server."""

    def __init__(self, netns: str, url: str):
        parsed = urllib.parse.urlsplit(url)
        self.target = (parsed.hostname, parsed.port)
        self.netns = netns
        self.stop = False
        ready = threading.Event()
        self.error: Exception | None = None
        self.listener: socket.socket | None = None

        def serve():
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
            other = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(other, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
                sh("ip", "-n", netns, "link", "set", "lo", "up")
                self.listener = socket.create_server(self.target)
                if libc.setns(own, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")
            except Exception as e:  # reported by the constructor
                self.error = e
                ready.set()
                return
            finally:
                os.close(own)
                os.close(other)
            ready.set()
            self.listener.settimeout(0.2)
            while not self.stop:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    continue
                threading.Thread(target=self.relay, args=(conn,), daemon=True).start()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)
        if self.error:
            raise self.error

    def relay(self, conn: socket.socket):
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            conn.close()
            return

        def pump(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)

    def close(self):
        self.stop = True
        self.thread.join(5)
        if self.listener:
            self.listener.close()


def cni_in_vm(vm_ns: str, command: str, conf: dict, *, container: str, netns: str,
              ifname: str = "eth0") -> tuple[int, dict | None]:
    """The plugin run inside the VM, as the VM's container runtime runs it."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"}
    if container:
        env.update(CNI_CONTAINERID=container, CNI_IFNAME=ifname, CNI_NETNS=netns)
    p = subprocess.run(["ip", "netns", "exec", vm_ns, cni_binary()], input=json.dumps(conf),
                       env=env, capture_output=True, text=True, timeout=90)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None)


def nested_ports(env, container: str) -> list[dict]:
    ports = osc("port", "list", "--name", f"cni-{container[:12]}-eth0", "--long", env=env)
    return [osc("port", "show", p["ID"], env=env) for p in ports]


def pairs(env, port_id: str) -> list[dict]:
    return osc("port", "show", port_id, env=env)["allowed_address_pairs"]


@pytest.fixture
def vm_world(lab):
    """A network, a VM port on h1 (its namespace is the VM) and a VM on h2; the relay."""
    env = lab.server.env
    net, sub = network_with_subnet(env, "10.81.0.0/24")
    vm1 = wait_active(env, bound_port(env, net, "h1", "vm1")["id"])
    vm2 = wait_active(env, bound_port(env, net, "h2", "vm2")["id"])
    vm_ns = lab.instance("h1", "vm1")
    relay = ApiRelay(vm_ns, lab.server.url)
    try:
        yield net, vm1, vm2, vm_ns
    finally:
        relay.close()


def test_macvlan_container_in_a_vm_reaches_a_vm_on_another_host(lab, runtime, vm_world):
    env = lab.server.env
    net, vm1, vm2, vm_ns = vm_world
    # No parentPort: the plugin finds the VM's port by the MAC of its eth0.
    conf = config(lab, net, nested={"mode": "macvlan", "link": "eth0"})
    cid, ns, path = runtime.container()
    rc, result = cni_in_vm(vm_ns, "ADD", conf, container=cid, netns=path)
    assert rc == 0, result
    [port] = nested_ports(env, cid)
    assert port["device_owner"] == "compute:container-nested"
    assert port["binding_host_id"] in ("", None)
    assert port["binding_profile"]["neutrino:nested_parent"] == vm1["id"]
    assert result["interfaces"] == [{"name": "eth0", "mac": port["mac_address"],
                                     "sandbox": path}]
    assert result["ips"] == [{"address": f"{ip_of(port)}/24", "gateway": "10.81.0.1",
                              "interface": 0}]
    assert {"ip_address": ip_of(port), "mac_address": port["mac_address"]} in pairs(env,
                                                                                    vm1["id"])
    link = json.loads(sh("ip", "-n", ns, "-d", "-j", "addr", "show", "eth0").stdout)[0]
    assert link["address"] == port["mac_address"]
    assert link["linkinfo"]["info_kind"] == "macvlan"
    assert ip_of(port) in [a["local"] for a in link["addr_info"]]
    # Across VXLAN, through the VM's tap and its filters, both ways.
    assert lab.pings(ns, ip_of(vm2), count=2)
    assert lab.pings(lab.instance("h2", "vm2"), ip_of(port))
    rc, out = cni_in_vm(vm_ns, "CHECK", conf, container=cid, netns=path)
    assert rc == 0, out

    # An address that is no pair of the VM's port is dropped by its anti-spoofing.
    spoof = f"ntcni-{uuid.uuid4().hex[:10]}"
    sh("ip", "netns", "add", spoof)
    runtime.netns.append(spoof)
    sh("ip", "-n", vm_ns, "link", "add", "link", "eth0", "name", "spoof0", "type", "macvlan",
       "mode", "bridge")
    sh("ip", "-n", vm_ns, "link", "set", "spoof0", "netns", spoof)
    sh("ip", "-n", spoof, "addr", "add", "10.81.0.50/24", "dev", "spoof0")
    sh("ip", "-n", spoof, "link", "set", "spoof0", "up")
    assert not lab.pings(spoof, ip_of(vm2), count=2)
    assert lab.pings(ns, ip_of(vm2))

    # DEL: pair removed, port gone, no link left in the container or the VM; repeatable.
    rc, out = cni_in_vm(vm_ns, "DEL", conf, container=cid, netns=path)
    assert rc == 0 and out is None, out
    assert nested_ports(env, cid) == []
    assert pairs(env, vm1["id"]) == []
    assert "eth0" not in sh("ip", "-n", ns, "link").stdout
    assert "nst" not in sh("ip", "-n", vm_ns, "link").stdout
    rc, out = cni_in_vm(vm_ns, "DEL", conf, container=cid, netns=path)
    assert rc == 0, out
    rc, out = cni_in_vm(vm_ns, "DEL", conf, container=cid, netns="")
    assert rc == 0, out


def test_concurrent_macvlan_adds_keep_every_pair(lab, runtime, vm_world):
    env = lab.server.env
    net, vm1, vm2, vm_ns = vm_world
    conf = config(lab, net, nested={"mode": "macvlan", "parentPort": vm1["id"]})
    containers = [runtime.container() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda c: cni_in_vm(vm_ns, "ADD", conf, container=c[0], netns=c[2]), containers))
    assert all(rc == 0 for rc, _ in results), results
    want = {(r["ips"][0]["address"].split("/")[0], r["interfaces"][0]["mac"])
            for _, r in results}
    have = {(p["ip_address"], p["mac_address"]) for p in pairs(env, vm1["id"])}
    assert have == want
    for _, ns, _ in containers:
        assert lab.pings(ns, ip_of(vm2))
    # GC (1.1.0) releases the attachments the runtime no longer lists: port and pair.
    gc = dict(conf, cniVersion="1.1.0")
    gc["cni.dev/valid-attachments"] = [{"containerID": c[0], "ifname": "eth0"}
                                       for c in containers[:2]]
    rc, out = cni_in_vm(vm_ns, "GC", gc, container="", netns="")
    assert rc == 0, out
    assert all(len(nested_ports(env, c[0])) == 1 for c in containers[:2])
    assert all(nested_ports(env, c[0]) == [] for c in containers[2:])
    kept = {(r["ips"][0]["address"].split("/")[0], r["interfaces"][0]["mac"])
            for _, r in results[:2]}
    assert {(p["ip_address"], p["mac_address"]) for p in pairs(env, vm1["id"])} == kept
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda c: cni_in_vm(vm_ns, "DEL", conf, container=c[0], netns=c[2]), containers))
    assert all(rc == 0 for rc, _ in results), results
    assert pairs(env, vm1["id"]) == []


def test_macvlan_errors(lab, runtime, vm_world):
    env = lab.server.env
    net, vm1, vm2, vm_ns = vm_world
    cid, ns, path = runtime.container()
    other, _ = network_with_subnet(env, "10.82.0.0/24")
    # A macvlan container is on its VM's network.
    rc, out = cni_in_vm(vm_ns, "ADD", config(lab, other, nested={"mode": "macvlan"}),
                        container=cid, netns=path)
    assert rc != 0 and out["code"] == 7, out
    rc, out = cni_in_vm(vm_ns, "ADD", config(lab, net, nested={"mode": "ipvlan"}),
                        container=cid, netns=path)
    assert rc != 0 and out["code"] == 7, out
    # A link that is not there: the device cannot be made; nothing is left behind.
    rc, out = cni_in_vm(vm_ns, "ADD", config(lab, net, nested={
        "mode": "macvlan", "link": "eth9", "parentPort": vm1["id"]}), container=cid, netns=path)
    assert rc != 0 and out["code"] == 110, out
    assert nested_ports(env, cid) == [] and pairs(env, vm1["id"]) == []


def trunk_of(env, trunk_id: str) -> dict:
    return osc("network", "trunk", "show", trunk_id, env=env)


def test_vlan_mode_api_side_and_clean_up(lab, runtime, vm_world):
    """VLAN mode on this kernel: the plugin claims the lowest free VLAN id on the VM port's
    trunk (the server refuses an id twice), the device creation fails, the plugin answers a
    CNI error and removes subport and port. The agent of h1 cannot wire subports either: the
    trunk is DEGRADED, the subports' ports ERROR, and everything else keeps working."""
    env = lab.server.env
    net, vm1, vm2, vm_ns = vm_world
    if kernel_has_vlan(lab.tag):
        pytest.skip("this kernel has 802.1q VLAN devices: test_vlan_container_packets covers it")
    cid, ns, path = runtime.container()
    conf = config(lab, net, nested={"mode": "vlan", "parentPort": vm1["id"]})
    # No trunk on the VM's port: refused, nothing created.
    rc, out = cni_in_vm(vm_ns, "ADD", conf, container=cid, netns=path)
    assert rc != 0 and out["code"] == 7 and "trunk" in out["details"], out
    assert nested_ports(env, cid) == []
    trunk = osc("network", "trunk", "create", "--parent-port", vm1["id"],
                f"t-{uuid.uuid4().hex[:6]}", env=env)
    try:
        wait_for("empty trunk ACTIVE", lambda: trunk_of(env, trunk["id"])["status"] == "ACTIVE")
        # VLAN ids 1 and 2 taken by subports made through the API; 1 cannot be taken twice.
        helpers = [osc("port", "create", "--network", net, f"sub-{i}", env=env)
                   for i in range(3)]
        for i, h in enumerate(helpers[:2]):
            osc("network", "trunk", "set", "--subport",
                f"port={h['id']},segmentation-type=vlan,segmentation-id={i + 1}", trunk["id"],
                env=env)
        dup = osc_fails("network", "trunk", "set", "--subport",
                        f"port={helpers[2]['id']},segmentation-type=vlan,segmentation-id=1",
                        trunk["id"], env=env)
        assert "409" in dup.stderr + dup.stdout or "in use" in dup.stderr, dup.stderr
        # The agent cannot make VLAN devices here: DEGRADED, the subports in ERROR, and the
        # VM's own port and the other host still work.
        wait_for("trunk DEGRADED", lambda: trunk_of(env, trunk["id"])["status"] == "DEGRADED")
        for h in helpers[:2]:
            wait_for("subport ERROR",
                     lambda h=h: osc("port", "show", h["id"], env=env)["status"] == "ERROR")
        assert lab.pings(vm_ns, ip_of(vm2))
        assert osc("port", "show", vm1["id"], env=env)["status"] == "ACTIVE"

        rc, out = cni_in_vm(vm_ns, "ADD", conf, container=cid, netns=path)
        assert rc != 0 and out["code"] == 110, out
        assert "type vlan id 3:" in out["details"], out
        containers = [runtime.container() for _ in range(3)]
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(
                lambda c: cni_in_vm(vm_ns, "ADD", conf, container=c[0], netns=c[2]),
                containers))
        for rc, out in results:
            assert rc != 0 and out["code"] == 110 and "type vlan id" in out["details"], out
        # Nothing left: no port, no subport, no interface in the containers or the VM.
        for c in [(cid, ns, path), *containers]:
            assert nested_ports(env, c[0]) == []
            assert "eth0" not in sh("ip", "-n", c[1], "link").stdout
        assert {s["segmentation_id"] for s in trunk_of(env, trunk["id"])["sub_ports"]} == {1, 2}
        assert "nst" not in sh("ip", "-n", vm_ns, "link").stdout
        # Without the subports the agent can wire everything again.
        for h in helpers[:2]:
            osc("network", "trunk", "unset", "--subport", h["id"], trunk["id"], env=env)
        wait_for("trunk ACTIVE", lambda: trunk_of(env, trunk["id"])["status"] == "ACTIVE")
    finally:
        osc("network", "trunk", "delete", trunk["id"], env=env)


def test_vlan_container_packets(lab, runtime, vm_world):
    if not kernel_has_vlan(lab.tag):
        pytest.skip("this kernel lacks 802.1q VLAN devices (ip link add ... type vlan fails); "
                    "the agent's trunk plan is covered by the golden tests of neutrino-dataplane "
                    "and the plugin's VLAN API side by test_vlan_mode_api_side_and_clean_up")
    env = lab.server.env
    net, vm1, vm2, vm_ns = vm_world
    trunk = osc("network", "trunk", "create", "--parent-port", vm1["id"],
                f"t-{uuid.uuid4().hex[:6]}", env=env)
    try:
        cid, ns, path = runtime.container()
        conf = config(lab, net, nested={"mode": "vlan", "parentPort": vm1["id"]})
        rc, result = cni_in_vm(vm_ns, "ADD", conf, container=cid, netns=path)
        assert rc == 0, result
        assert lab.pings(ns, ip_of(vm2), count=2)
        wait_for("trunk ACTIVE", lambda: trunk_of(env, trunk["id"])["status"] == "ACTIVE")
        rc, out = cni_in_vm(vm_ns, "DEL", conf, container=cid, netns=path)
        assert rc == 0, out
    finally:
        osc("network", "trunk", "delete", trunk["id"], env=env)
