"""One security policy for a VM, a container, a nested container and a bare-metal server.

The four sit on one flat provider network (``physnet1``, the physical bridge of
``test_dataplane_provider``'s lab): a VM-namespace on h1; a container on h1 attached by the
CNI plugin (the test plays the runtime, as in ``test_cni``); a container nested in that VM
with a macvlan on the VM's interface, its own port, and a pair on the VM's port; and a
bare-metal server, a namespace on the physical bridge with its port's MAC and address, where
no agent runs. The agents filter the nested container's port at its VM's tap and the server's
where its frames enter them (their ``eth1``), each by MAC. A client VM on h2 then finds the
same group allowing and blocking the same traffic, in both directions, for all four; they
are members of their group where another group names it as remote group; and the nested
container keeps its own group when its VM's changes.
"""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import osc
from dataplane_lab import bound_port, ip_of, needs_root, sh, tcp_peer, wait_active, wait_for
from test_cni import cni, cni_binary, config, ports_of, runtime  # noqa: F401 (runtime: fixture)
from test_dataplane_provider import flat_network, plab  # noqa: F401 (plab: fixture)

pytestmark = [needs_root, pytest.mark.skipif(
    not __import__("pathlib").Path(cni_binary()).exists(),
    reason="needs the plugin binary (cargo build --release -p neutrino-cni, or NEUTRINO_CNI_BIN)")]


def group(env, name: str, *rules: tuple[str, ...], keep_egress: bool = True) -> str:
    sg = osc("security", "group", "create", f"op-{name}-{uuid.uuid4().hex[:6]}", env=env)["id"]
    if not keep_egress:
        for r in osc("security", "group", "rule", "list", sg, env=env):
            osc("security", "group", "rule", "delete", r["ID"], env=env, json_output=False)
    for rule in rules:
        osc("security", "group", "rule", "create", *rule, sg, env=env)
    return sg


def reaches(lab, client_ns: str, server_ns: str, target: str, port: int) -> bool:
    """Whether a TCP connection from ``client_ns`` to ``target:port`` gets through."""
    return tcp_peer(lab, server_ns, client_ns, target, port=port) != ""


@pytest.mark.parametrize("plab", [("h1", "h2")], indirect=True)
def test_one_group_filters_vms_containers_nested_containers_and_bare_metal_alike(plab, runtime):
    lab, env = plab.lab, plab.lab.server.env
    net = flat_network(env)
    osc("subnet", "create", "--network", net, "--subnet-range", "203.0.113.0/24",
        "--allocation-pool", "start=203.0.113.100,end=203.0.113.200", "--no-dhcp",
        f"op-{uuid.uuid4().hex[:6]}", env=env)
    clients = group(env, "clients")
    # The policy: in, TCP 8080 and ICMP from the clients group; out, only TCP 9000.
    policy = group(env, "policy",
                   ("--ingress", "--protocol", "tcp", "--dst-port", "8080",
                    "--remote-group", clients),
                   ("--ingress", "--protocol", "icmp", "--remote-group", clients),
                   ("--egress", "--protocol", "tcp", "--dst-port", "9000"),
                   keep_egress=False)
    # The client takes TCP 9000 from members of the policy group only, TCP 9001 from anyone
    # (so only the policy's egress can stop it).
    osc("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
        "--dst-port", "9000", "--remote-group", policy, clients, env=env)
    osc("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
        "--dst-port", "9001", "--remote-ip", "0.0.0.0/0", clients, env=env)

    client = wait_active(env, bound_port(env, net, "h2", "client",
                                         "--security-group", clients)["id"])
    client_ns, client_ip = lab.instance("h2", "client"), ip_of(client)
    vm = wait_active(env, bound_port(env, net, "h1", "vm", "--security-group", policy)["id"])

    cid, ctr_ns, path = runtime.container()
    rc, result = cni("ADD", config(lab, net, securityGroups=[policy]), container=cid,
                     netns=path)
    assert rc == 0, result
    ctr = osc("port", "show", ports_of(env, cid)[0]["ID"], env=env)

    bm = osc("port", "create", "--network", net, "--vnic-type", "baremetal",
             "--host", "node-1", "--device-owner", "baremetal:none",
             "--security-group", policy, "op-bm", env=env)
    bm_ns = plab.outside("bm", f"{ip_of(bm)}/24")
    sh("ip", "-n", bm_ns, "link", "set", "eth0", "address", bm["mac_address"])
    bm = wait_active(env, bm["id"])
    assert bm["binding_vif_type"] == "other" and bm["binding_host_id"] == "node-1"

    # A container nested in the VM (what neutrino-cni's macvlan mode makes, done by hand here:
    # the plugin's own path is test_cni_nested.py): its port, a pair on the VM's port, and a
    # macvlan with its MAC on the VM's interface, moved into the container's namespace.
    nested = osc("port", "create", "--network", net, "--device-owner",
                 "compute:container-nested", "--binding-profile",
                 json.dumps({"neutrino:nested_parent": vm["id"],
                             "neutrino:nested_mode": "macvlan"}),
                 "--security-group", policy, "op-nested", env=env)
    osc("port", "set", "--allowed-address",
        f"ip-address={ip_of(nested)},mac-address={nested['mac_address']}", vm["id"], env=env,
        json_output=False)
    vm_ns = lab.instance("h1", "vm")
    nested_cid, nested_ns, _ = runtime.container()
    sh("ip", "-n", vm_ns, "link", "add", "link", "eth0", "name", "mvn", "address",
       nested["mac_address"], "type", "macvlan", "mode", "bridge")
    sh("ip", "-n", vm_ns, "link", "set", "mvn", "netns", nested_ns)
    sh("ip", "-n", nested_ns, "addr", "add", f"{ip_of(nested)}/24", "dev", "mvn")
    sh("ip", "-n", nested_ns, "link", "set", "mvn", "up")
    nested = wait_active(env, nested["id"])

    targets = {"vm": (vm_ns, ip_of(vm)),
               "container": (ctr_ns, ip_of(ctr)),
               "nested container": (nested_ns, ip_of(nested)),
               "bare metal": (bm_ns, ip_of(bm))}
    for name, (ns, ip) in targets.items():
        # Allowed: ping and TCP 8080 from the client; the first try may wait for ARP.
        wait_for(f"client pings the {name}", lambda ip=ip: lab.pings(client_ns, ip))
        assert wait_for(f"client reaches the {name} on 8080",
                        lambda ns=ns, ip=ip: reaches(lab, client_ns, ns, ip, 8080)), name
        # Blocked: any other port in, any other port out. Out to 9000 gets through as a
        # member of the policy group (the client's rule names it as remote group).
        assert not reaches(lab, client_ns, ns, ip, 8081), f"{name}: 8081 must be blocked"
        assert reaches(lab, ns, client_ns, client_ip, 9000), f"{name}: out to 9000"
        assert not reaches(lab, ns, client_ns, client_ip, 9001), f"{name}: out to 9001"
    # A machine on the segment that is no member does not get 9000.
    stranger = plab.outside("stranger", "203.0.113.60/24")
    assert not reaches(lab, stranger, client_ns, client_ip, 9000)
    assert reaches(lab, stranger, client_ns, client_ip, 9001)

    # The nested container keeps its own group when its VM's group opens everything.
    opened = group(env, "open", ("--ingress", "--protocol", "tcp", "--remote-ip", "0.0.0.0/0"))
    osc("port", "set", "--no-security-group", "--security-group", opened, vm["id"], env=env,
        json_output=False)
    assert wait_for("the VM open", lambda: reaches(lab, client_ns, vm_ns, ip_of(vm), 8081))
    assert not reaches(lab, client_ns, nested_ns, ip_of(nested), 8081)

    # Port security off on the bare-metal port: its filter goes, everything passes.
    osc("port", "set", "--no-security-group", "--disable-port-security", bm["id"], env=env,
        json_output=False)
    assert wait_for("the bare-metal server unfiltered",
                    lambda: reaches(lab, client_ns, bm_ns, ip_of(bm), 8081))

    rc, out = cni("DEL", config(lab, net, securityGroups=[policy]), container=cid, netns=path)
    assert rc == 0, out
