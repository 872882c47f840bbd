"""Port pools for containers: parked, pre-wired ports that the CNI plugin's ADD takes.

The lab (``dataplane_lab``: two hosts, one agent each) and the runtime-playing helpers of
``test_cni`` drive the plugin. A pool on h1 fills with ports that h1's agent wires in its
parking namespace (``<prefix>pool``, interfaces ``pp<port id>``) with their filters, ACTIVE
before anyone takes them; ADD takes one (its id was the pool's) and the agent moves the
interface into the container; the pool refills; an agent restart keeps the parked ports as
they are; concurrent ADDs get distinct pooled addresses; DEL and deleting the pool leave no
port, link, mount or nft element behind. No timings are asserted.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, network_with_subnet, sh, wait_active, wait_for)
from test_cni import cni, config, ports_of, pytestmark, runtime  # noqa: F401 (fixtures)
from test_host_credential import call

__all__ = ["pytestmark"]


class Pools:
    """`/v2.0/neutrino/port-pools` as the lab's admin."""

    def __init__(self, lab):
        self.lab = lab
        self.server = lab.server
        o = self.server.openrc
        status, headers, body = call(self.server, "POST", "/v3/auth/tokens", body={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": o["OS_USERNAME"], "password": o["OS_PASSWORD"],
                "domain": {"name": o.get("OS_USER_DOMAIN_NAME", "Default")}}}},
            "scope": {"project": {"name": o["OS_PROJECT_NAME"], "domain": {
                "name": o.get("OS_PROJECT_DOMAIN_NAME", "Default")}}}}})
        assert status == 201, body
        self.token = {k.lower(): v for k, v in headers.items()}["x-subject-token"]

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, _, out = call(self.server, method, "/v2.0/neutrino/port-pools" + path,
                              self.token, body)
        return status, out

    def create(self, net: str, size: int, groups: list[str] | None = None) -> str:
        pool = {"host": "h1", "network_id": net, "size": size}
        if groups is not None:
            pool["security_groups"] = groups
        status, out = self.api("POST", "", {"port_pool": pool})
        assert status == 201, out
        return out["port_pool"]["id"]

    def show(self, pool: str) -> dict:
        status, out = self.api("GET", f"/{pool}")
        assert status == 200, out
        return out["port_pool"]

    def wait_ready(self, pool: str, ready: int, timeout: float = 90) -> dict:
        return wait_for(f"pool {pool} with {ready} ready ports",
                        lambda: (p := self.show(pool))["ready"] == ready and p["building"] == 0
                        and p, timeout=timeout)

    def parked_ids(self, pool: str) -> set[str]:
        return {p["ID"] for p in osc("port", "list", "--device-id", pool, env=self.server.env)}

    def delete(self, pool: str) -> None:
        status, out = self.api("DELETE", f"/{pool}")
        assert status == 204, out


def parking(lab) -> str:
    return f"{lab.prefix('h1')}pool"


def links(ns: str) -> dict[str, dict]:
    r = sh("ip", "-n", ns, "-j", "addr", "show", check=False)
    return {link["ifname"]: link for link in json.loads(r.stdout or "[]")} if r.returncode == 0 \
        else {}


def addresses(link: dict) -> list[str]:
    return [a["local"] for a in link.get("addr_info", [])]


def shape(result: dict) -> dict:
    """An ADD result with what differs between two ports (MAC, address, tap, sandbox) blanked."""
    out = json.loads(json.dumps(result))
    for i in out["interfaces"]:
        i["mac"] = "-"
        i["name"] = i["name"][:3]
        if "sandbox" in i:
            i["sandbox"] = "-"
    for ip in out["ips"]:
        ip["address"] = "/" + ip["address"].split("/")[1]
    return out


def test_pool_fills_parks_and_add_takes_a_pooled_port(lab, runtime):
    env = lab.server.env
    pools = Pools(lab)
    net, _ = network_with_subnet(env, "10.81.0.0/24")
    vm = wait_active(env, bound_port(env, net, "h2", "vm")["id"])
    pool = pools.create(net, 3)
    pools.wait_ready(pool, 3)
    parked = pools.parked_ids(pool)
    assert len(parked) == 3
    # Parked: ACTIVE, wired in the agent's parking namespace with their addresses.
    inside = links(parking(lab))
    for port_id in parked:
        port = osc("port", "show", port_id, env=env)
        assert port["status"] == "ACTIVE"
        assert port["device_owner"] == "compute:container-pool"
        assert ip_of(port) in addresses(inside["pp" + port_id[:11]])
    # ADD takes one of them; the interface moves into the container under CNI_IFNAME.
    cid, ns, path = runtime.container()
    rc, result = cni("ADD", config(lab, net), container=cid, netns=path)
    assert rc == 0, result
    [mine] = ports_of(env, cid)
    assert mine["ID"] in parked
    port = osc("port", "show", mine["ID"], env=env)
    assert port["status"] == "ACTIVE" and port["device_owner"] == "compute:container"
    assert port["binding_profile"]["neutrino:netns"] == path
    assert result["interfaces"][1] == {"name": "eth0", "mac": port["mac_address"],
                                       "sandbox": path}
    assert result["interfaces"][0]["name"] == "tap" + port["id"][:11]
    assert result["ips"] == [{"address": f"{ip_of(port)}/24", "gateway": "10.81.0.1",
                              "interface": 1}]
    link = links(ns)["eth0"]
    assert link["address"] == port["mac_address"] and ip_of(port) in addresses(link)
    assert "pp" + port["id"][:11] not in links(parking(lab))
    assert lab.pings(ns, ip_of(vm), count=2)
    assert lab.pings(lab.instance("h2", "vm"), ip_of(port))
    rc, out = cni("CHECK", config(lab, net), container=cid, netns=path)
    assert rc == 0, out
    # The same result as an ADD that creates its port (pools not used).
    cid2, ns2, path2 = runtime.container()
    rc, created = cni("ADD", config(lab, net, usePortPools=False), container=cid2, netns=path2)
    assert rc == 0, created
    assert ports_of(env, cid2)[0]["ID"] not in parked
    assert shape(created) == shape(result)
    # The pool refills in the background.
    refilled = pools.wait_ready(pool, 3)
    assert refilled["in_use"] == 1
    assert len(pools.parked_ids(pool) - parked) == 1
    # DEL: the port goes, the pool does not give it back, nothing is left in the container.
    for c, p in ((cid, path), (cid2, path2)):
        rc, out = cni("DEL", config(lab, net), container=c, netns=p)
        assert rc == 0 and out is None, out
        assert ports_of(env, c) == []
    wait_for("container unplugged", lambda: "eth0" not in links(ns))
    assert pools.show(pool)["in_use"] == 0
    pools.delete(pool)


def test_security_group_of_the_pool_filters_the_container(lab, runtime):
    env = lab.server.env
    pools = Pools(lab)
    net, _ = network_with_subnet(env, "10.82.0.0/24")
    wait_active(env, bound_port(env, net, "h2", "vm")["id"])
    closed = osc("security", "group", "create", f"closed-{uuid.uuid4().hex[:6]}", env=env)
    pool = pools.create(net, 1, [closed["id"]])
    pools.wait_ready(pool, 1)
    parked = pools.parked_ids(pool)
    cid, ns, path = runtime.container()
    rc, result = cni("ADD", config(lab, net, securityGroups=[closed["name"]]),
                     container=cid, netns=path)
    assert rc == 0, result
    assert ports_of(env, cid)[0]["ID"] in parked
    ctr_ip = result["ips"][0]["address"].split("/")[0]
    # No ingress rule: blocked like a VM; a rule opens it.
    assert not lab.pings(lab.instance("h2", "vm"), ctr_ip, count=2)
    osc("security", "group", "rule", "create", "--protocol", "icmp", "--ingress",
        closed["id"], env=env)
    wait_for("icmp allowed", lambda: lab.pings(lab.instance("h2", "vm"), ctr_ip))
    assert cni("DEL", config(lab, net), container=cid, netns=path)[0] == 0
    pools.delete(pool)


def test_agent_restart_keeps_parked_ports(lab, runtime):
    env = lab.server.env
    pools = Pools(lab)
    net, _ = network_with_subnet(env, "10.83.0.0/24")
    vm = wait_active(env, bound_port(env, net, "h2", "vm")["id"])
    pool = pools.create(net, 2)
    pools.wait_ready(pool, 2)
    before = {name: link["ifindex"] for name, link in links(parking(lab)).items()}
    lab.stop_agent("h1")
    lab.start_agent("h1")
    # Adopted, not re-created.
    after = {name: link["ifindex"] for name, link in links(parking(lab)).items()}
    assert after == before
    pools.wait_ready(pool, 2)
    parked = pools.parked_ids(pool)
    cid, ns, path = runtime.container()
    rc, result = cni("ADD", config(lab, net), container=cid, netns=path)
    assert rc == 0, result
    assert ports_of(env, cid)[0]["ID"] in parked
    assert lab.pings(ns, ip_of(vm), count=2)
    assert cni("DEL", config(lab, net), container=cid, netns=path)[0] == 0
    pools.delete(pool)


def test_concurrent_adds_take_distinct_pooled_ports_and_nothing_leaks(lab, runtime):
    env = lab.server.env
    pools = Pools(lab)
    net, _ = network_with_subnet(env, "10.84.0.0/24")
    n = 20
    pool = pools.create(net, n)
    pools.wait_ready(pool, n, timeout=180)
    parked = pools.parked_ids(pool)
    containers = [runtime.container() for _ in range(n)]

    def add(c):
        return cni("ADD", config(lab, net, activeTimeout=90, requestTimeout=60),
                   container=c[0], netns=c[2],
                   timeout=150)

    with ThreadPoolExecutor(max_workers=n) as workers:
        results = list(workers.map(add, containers))
    assert all(rc == 0 for rc, _ in results), results
    addresses_ = [r["ips"][0]["address"] for _, r in results]
    assert len(set(addresses_)) == n
    for a in addresses_:
        assert ipaddress.ip_interface(a) in ipaddress.ip_network("10.84.0.0/24")
    taken = {ports_of(env, cid)[0]["ID"] for cid, _, _ in containers}
    assert taken <= parked and len(taken) == n
    for (cid, ns, _), (_, r) in zip(containers, results):
        assert r["ips"][0]["address"].split("/")[0] in addresses(links(ns)["eth0"])
    # DEL everything, then the pool: no port, tap, mount, parked link or nft element left.
    for cid, _, path in containers:
        assert cni("DEL", config(lab, net), container=cid, netns=path)[0] == 0
    pools.wait_ready(pool, n, timeout=180)
    pools.delete(pool)
    host = lab.host_ns("h1")

    def clean():
        ports = osc("port", "list", "--network", net, "--long", env=env)
        owners = [p["Device Owner"] for p in ports if p["Device Owner"].startswith("compute:")]
        host_links = sh("ip", "-n", host, "link").stdout
        ruleset = sh("ip", "netns", "exec", host, "nft", "list", "ruleset").stdout
        netns = sh("ip", "netns", "list").stdout
        leftovers = [t for t in taken | parked if "tap" + t[:11] in host_links
                     or "tap" + t[:11] in ruleset]
        return not owners and not leftovers and parking(lab) not in netns \
            and f"{lab.prefix('h1')}ctr-" not in netns
    wait_for("nothing left behind", clean, timeout=60)


def test_gc_deletes_taken_ports_of_vanished_containers_not_parked_ones(lab, runtime):
    """A container that died without DEL (its namespace gone): CNI GC deletes its port,
    leaves the pool's parked ports alone, and the agent drops its wiring and mount."""
    env = lab.server.env
    pools = Pools(lab)
    net, _ = network_with_subnet(env, "10.85.0.0/24")
    pool = pools.create(net, 2)
    pools.wait_ready(pool, 2)
    parked = pools.parked_ids(pool)
    cid, ns, path = runtime.container()
    rc, result = cni("ADD", config(lab, net), container=cid, netns=path)
    assert rc == 0, result
    [taken] = ports_of(env, cid)
    assert taken["ID"] in parked
    pools.wait_ready(pool, 2)
    sh("ip", "netns", "del", ns)
    gc = config(lab, net, cniVersion="1.1.0")
    gc["cni.dev/valid-attachments"] = []
    rc, out = cni("GC", gc)
    assert rc == 0, out
    assert ports_of(env, cid) == []
    assert parked - {taken["ID"]} <= pools.parked_ids(pool)
    assert pools.show(pool)["ready"] == 2
    host = lab.host_ns("h1")
    wait_for("wiring and mount gone", lambda: "tap" + taken["ID"][:11]
             not in sh("ip", "-n", host, "link").stdout
             and f"{lab.prefix('h1')}ctr-" not in sh("ip", "netns", "list").stdout)
    pools.delete(pool)
