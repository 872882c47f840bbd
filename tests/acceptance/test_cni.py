"""The CNI plugin ``neutrino-cni`` driven the way a container runtime drives it.

The test plays the runtime: it creates a network namespace itself (``ip netns add`` under a
unique name: the "container"), runs the plugin binary with the ``CNI_*`` variables and the
network configuration on stdin, and checks the result, the wiring done by the agent of the
lab host (``dataplane_lab``: two hosts as namespaces, one agent each), security groups, DEL,
errors and concurrent ADDs. Needs root, iproute2 and ping; every namespace is deleted.
The binary is ``NEUTRINO_CNI_BIN`` (default ``target/release/neutrino-cni``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, needs_root, network_with_subnet, sh, wait_active, wait_for)

def cni_binary() -> str:
    return os.environ.get("NEUTRINO_CNI_BIN") or str(REPO / "target" / "release" / "neutrino-cni")


pytestmark = [needs_root, pytest.mark.skipif(
    not Path(cni_binary()).exists() or not shutil.which("nsenter"),
    reason="needs the plugin binary (cargo build --release -p neutrino-cni, or NEUTRINO_CNI_BIN) "
           "and nsenter")]


def cni(command: str, conf: dict | str | None, *, container: str = "", netns: str = "",
        ifname: str = "eth0", timeout: float = 90) -> tuple[int, dict | None]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"}
    if container:
        env.update(CNI_CONTAINERID=container, CNI_IFNAME=ifname, CNI_NETNS=netns)
    stdin = conf if isinstance(conf, str) else json.dumps(conf or {})
    p = subprocess.run([cni_binary()], input=stdin, env=env, capture_output=True, text=True,
                       timeout=timeout)
    out = json.loads(p.stdout) if p.stdout.strip() else None
    return p.returncode, out


class Runtime:
    """Containers as the runtime makes them: namespaces with names of our own."""

    def __init__(self):
        self.netns: list[str] = []

    def container(self) -> tuple[str, str, str]:
        cid = uuid.uuid4().hex
        name = f"ntcni-{cid[:10]}"
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        return cid, name, f"/run/netns/{name}"

    def cleanup(self):
        for name in self.netns:
            sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def runtime():
    rt = Runtime()
    try:
        yield rt
    finally:
        rt.cleanup()


def config(lab, network: str, **extra) -> dict:
    conf = {"cniVersion": "1.0.0", "name": "neutrino", "type": "neutrino-cni",
            "network": network, "openrc": str(lab.server.openrc_path), "host": "h1",
            "activeTimeout": 30, "tokenCacheDir": str(lab.tmp / "cni-tokens")}
    conf.update(extra)
    return conf


def ports_of(env, container: str) -> list[dict]:
    return osc("port", "list", "--device-id", container, "--long", env=env)


def test_add_ping_across_vxlan_del(lab, runtime):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.71.0.0/24")
    vm = wait_active(env, bound_port(env, net, "h2", "vm")["id"])
    cid, ns, path = runtime.container()
    rc, result = cni("ADD", config(lab, net), container=cid, netns=path)
    assert rc == 0, result
    port = ports_of(env, cid)
    assert len(port) == 1
    port = osc("port", "show", port[0]["ID"], env=env)
    assert port["status"] == "ACTIVE" and port["device_owner"] == "compute:container"
    assert result["cniVersion"] == "1.0.0"
    assert result["interfaces"][1] == {"name": "eth0", "mac": port["mac_address"],
                                       "sandbox": path}
    assert result["interfaces"][0]["name"] == "tap" + port["id"][:11]
    assert result["ips"] == [{"address": f"{ip_of(port)}/24", "gateway": "10.71.0.1",
                              "interface": 1}]
    assert {"dst": "0.0.0.0/0", "gw": "10.71.0.1"} in result["routes"]
    # The agent wired the runtime's namespace: MAC, address, and it reaches a VM on h2.
    link = json.loads(sh("ip", "-n", ns, "-j", "addr", "show", "eth0").stdout)[0]
    assert link["address"] == port["mac_address"]
    assert ip_of(port) in [a["local"] for a in link["addr_info"]]
    assert lab.pings(ns, ip_of(vm), count=2)
    assert lab.pings(lab.instance("h2", "vm"), ip_of(port))
    # CHECK agrees.
    rc, out = cni("CHECK", config(lab, net), container=cid, netns=path)
    assert rc == 0, out
    # DEL: port gone, host end gone, the runtime's namespace left alone; DEL again is fine.
    rc, out = cni("DEL", config(lab, net), container=cid, netns=path)
    assert rc == 0 and out is None, out
    assert ports_of(env, cid) == []
    wait_for("container unplugged", lambda: "eth0" not in sh("ip", "-n", ns, "link").stdout)
    assert ns in sh("ip", "netns", "list").stdout
    mounted = f"{lab.prefix('h1')}ctr-{cid}"
    wait_for("bind mount removed", lambda: mounted not in sh("ip", "netns", "list").stdout)
    rc, out = cni("DEL", config(lab, net), container=cid, netns=path)
    assert rc == 0, out
    rc, out = cni("DEL", config(lab, net), container=cid, netns="")
    assert rc == 0, out


def test_security_group_without_rule_blocks_container(lab, runtime):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.72.0.0/24")
    vm = wait_active(env, bound_port(env, net, "h2", "vm")["id"])
    closed = osc("security", "group", "create", f"closed-{uuid.uuid4().hex[:6]}", env=env)
    cid, ns, path = runtime.container()
    rc, result = cni("ADD", config(lab, net, securityGroups=[closed["name"]]),
                     container=cid, netns=path)
    assert rc == 0, result
    ctr_ip = result["ips"][0]["address"].split("/")[0]
    # Egress is allowed by the group's default egress rules; ingress is not.
    assert not lab.pings(lab.instance("h2", "vm"), ctr_ip, count=2)
    osc("security", "group", "rule", "create", "--protocol", "icmp", "--ingress",
        closed["id"], env=env)
    wait_for("icmp allowed", lambda: lab.pings(lab.instance("h2", "vm"), ctr_ip))
    assert ip_of(vm)
    rc, _ = cni("DEL", config(lab, net), container=cid, netns=path)
    assert rc == 0


def test_errors_and_version(lab, runtime, tmp_path):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.73.0.0/24")
    rc, out = cni("VERSION", {"cniVersion": "1.0.0"})
    assert rc == 0 and out == {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]}
    cid, ns, path = runtime.container()
    rc, out = cni("ADD", "{not json", container=cid, netns=path)
    assert rc != 0 and out["code"] == 6
    rc, out = cni("ADD", config(lab, net, cniVersion="0.3.1"), container=cid, netns=path)
    assert rc != 0 and out["code"] == 1
    rc, out = cni("ADD", config(lab, net))
    assert rc != 0 and out["code"] == 4 and "CNI_CONTAINERID" in out["details"]
    rc, out = cni("ADD", {k: v for k, v in config(lab, net).items() if k != "network"},
                  container=cid, netns=path)
    assert rc != 0 and out["code"] == 7
    rc, out = cni("STATUS", config(lab, net, cniVersion="1.1.0"))
    assert rc == 0, out
    # Server down: ADD fails with "try again later" and leaves nothing; STATUS says 50.
    dead = tmp_path / "dead-openrc"
    text = Path(lab.server.openrc_path).read_text()
    dead.write_text(re.sub(r"OS_AUTH_URL=\S+", "OS_AUTH_URL=http://127.0.0.1:9/v3", text))
    rc, out = cni("ADD", config(lab, net, openrc=str(dead)), container=cid, netns=path)
    assert rc != 0 and out["code"] == 11, out
    rc, out = cni("STATUS", config(lab, net, openrc=str(dead), cniVersion="1.1.0"))
    assert rc != 0 and out["code"] == 50, out
    rc, out = cni("DEL", config(lab, net, openrc=str(dead)), container=cid, netns=path)
    assert rc != 0 and out["code"] == 11, out
    assert ports_of(env, cid) == []
    assert "eth0" not in sh("ip", "-n", ns, "link").stdout
    # An unwired port (no agent on that host) times out, and the port is deleted again.
    rc, out = cni("ADD", config(lab, net, host="nowhere", activeTimeout=2),
                  container=cid, netns=path)
    assert rc != 0 and out["code"] == 101, out
    assert ports_of(env, cid) == []


def test_gc_deletes_ports_not_in_valid_attachments(lab, runtime):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.74.0.0/24")
    keep, ns_k, path_k = runtime.container()
    drop, ns_d, path_d = runtime.container()
    for cid, path in ((keep, path_k), (drop, path_d)):
        rc, out = cni("ADD", config(lab, net), container=cid, netns=path)
        assert rc == 0, out
    gc = config(lab, net, cniVersion="1.1.0")
    gc["cni.dev/valid-attachments"] = [{"containerID": keep, "ifname": "eth0"}]
    rc, out = cni("GC", gc)
    assert rc == 0, out
    assert len(ports_of(env, keep)) == 1 and ports_of(env, drop) == []
    cni("DEL", config(lab, net), container=keep, netns=path_k)


def test_concurrent_adds_get_distinct_addresses(lab, runtime):
    """50 ADDs at once on one host: 50 distinct addresses, all reachable from a VM on the other
    host; then 50 DELs at once leave no port, host-side link, bind mount or nft element."""
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.75.0.0/24")
    vm = wait_active(env, bound_port(env, net, "h2", "vm")["id"])
    containers = [runtime.container() for _ in range(50)]

    def add(c):
        return cni("ADD", config(lab, net, activeTimeout=120), container=c[0], netns=c[2],
                   timeout=180)

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(add, containers))
    assert all(rc == 0 for rc, _ in results), [r for r in results if r[0] != 0][:3]
    addresses = [r["ips"][0]["address"] for _, r in results]
    assert len(set(addresses)) == 50
    for a in addresses:
        assert ipaddress.ip_interface(a) in ipaddress.ip_network("10.75.0.0/24")
    vm_ns = lab.instance("h2", "vm")
    unreachable = [a for a in addresses
                   if not lab.pings(vm_ns, str(ipaddress.ip_interface(a).ip), count=2)]
    assert unreachable == []
    taps = [r["interfaces"][0]["name"] for _, r in results]

    def delete(c):
        return cni("DEL", config(lab, net), container=c[0], netns=c[2])[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        assert set(pool.map(delete, containers)) == {0}
    for cid, _, _ in containers:
        assert ports_of(env, cid) == []
    host = lab.host_ns("h1")

    def leftovers():
        links = sh("ip", "-n", host, "-o", "link").stdout
        tables = sh("ip", "netns", "exec", host, "nft", "list", "ruleset").stdout
        mounts = sh("ip", "netns", "list").stdout
        return ([t for t in taps if t in links or t in tables]
                + [cid for cid, _, _ in containers if f"ctr-{cid}" in mounts])

    wait_for("nothing left of 50 containers", lambda: leftovers() == [], timeout=60)


def test_logins_are_cached_and_a_refused_token_is_replaced(lab, runtime):
    """Calls share a cached login (a root-only file holding the token, not the password);
    a cached token the server refuses makes the call log in again instead of failing."""
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.76.0.0/24")
    cache = lab.tmp / "cni-tokens"
    cid, _, path = runtime.container()
    rc, out = cni("ADD", config(lab, net), container=cid, netns=path)
    assert rc == 0, out
    files = list(cache.glob("token-*.json"))
    assert len(files) == 1
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    entry = json.loads(files[0].read_text())
    password = re.search(r"OS_PASSWORD=(\S+)", Path(lab.server.openrc_path).read_text())
    assert password and password.group(1).strip("'\"") not in files[0].read_text()
    # A token the server never issued: DEL logs in again, succeeds, and caches the new one.
    files[0].write_text(json.dumps({**entry, "token": "gAAAA-not-a-token"}))
    rc, out = cni("DEL", config(lab, net), container=cid, netns=path)
    assert rc == 0, out
    assert ports_of(env, cid) == []
    assert json.loads(files[0].read_text())["token"] not in ("gAAAA-not-a-token", "")
    # No cache at all works too.
    cid2, _, path2 = runtime.container()
    rc, out = cni("ADD", config(lab, net, tokenCacheDir=""), container=cid2, netns=path2)
    assert rc == 0, out
    assert cni("DEL", config(lab, net, tokenCacheDir=""), container=cid2, netns=path2)[0] == 0


def test_a_container_removed_without_del_loses_its_port(lab, runtime):
    """The runtime removes a container and its DEL never reaches the server (it was down, or
    the runtime crashed): the agent finds the runtime's namespace gone, drops its mount and
    has the server delete the port. A container whose namespace lives on keeps its port."""
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.77.0.0/24")
    gone, ns_gone, path_gone = runtime.container()
    kept, _, path_kept = runtime.container()
    for cid, path in ((gone, path_gone), (kept, path_kept)):
        rc, out = cni("ADD", config(lab, net), container=cid, netns=path)
        assert rc == 0, out
    # The runtime's DEL finds the server down ("try again later"); then it removes the
    # container anyway.
    dead = lab.tmp / "dead-openrc"
    text = Path(lab.server.openrc_path).read_text()
    dead.write_text(re.sub(r"OS_AUTH_URL=\S+", "OS_AUTH_URL=http://127.0.0.1:9/v3", text))
    rc, out = cni("DEL", config(lab, net, openrc=str(dead)), container=gone, netns=path_gone)
    assert rc != 0 and out["code"] == 11, out
    assert len(ports_of(env, gone)) == 1
    sh("ip", "netns", "del", ns_gone)
    wait_for("the removed container's port deleted", lambda: ports_of(env, gone) == [])
    mounted = f"{lab.prefix('h1')}ctr-{gone}"
    wait_for("its mount dropped", lambda: mounted not in sh("ip", "netns", "list").stdout)
    assert len(ports_of(env, kept)) == 1
    assert cni("DEL", config(lab, net), container=kept, netns=path_kept)[0] == 0
