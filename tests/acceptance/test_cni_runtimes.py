"""The CNI plugin ``neutrino-cni`` driven by real container runtimes: podman and containerd.

podman (CNI network backend, OCI runtime runc) and containerd (``ctr run --cni``, a private
daemon) start busybox containers on a Neutrino network of the lab (``dataplane_lab``: two
hosts as namespaces, one agent each; the runtimes' containers are on host ``h1``). Each test
checks that the container gets its port's address, pings a VM namespace on ``h2`` across
VXLAN, is filtered by a security group exactly like a VM (no ingress rule: the VM cannot
ping it; with one it can), and that its port is gone once the container is removed. The
plugin runs in the root namespace as the runtime's child; the agent of ``h1`` plugs the
veth from its host namespace into the runtime's namespace (bind-mounting ``CNI_NETNS``).

All runtime state lives in a temp dir under ``/run``; containers, images, mounts,
namespaces, the libcni cache entries and the files written to ``/etc/cni/net.d`` and
``/opt/cni/bin`` (containerd reads only those) are removed afterwards. Needs root, the
plugin binary (``NEUTRINO_CNI_BIN``), busybox-static, and podman + runc or containerd + runc;
each test skips when its runtime is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import osc
from dataplane_lab import (  # noqa: F401 (lab is a fixture)
    bound_port, ip_of, lab, needs_root, network_with_subnet, sh, wait_active, wait_for)
from test_cni import cni_binary

pytestmark = [needs_root, pytest.mark.skipif(
    not Path(cni_binary()).exists(),
    reason="needs the plugin binary (cargo build --release -p neutrino-cni, or NEUTRINO_CNI_BIN)")]

BUSYBOX = "/bin/busybox"
NETD = Path("/etc/cni/net.d")
OPT_CNI = Path("/opt/cni")
LIBCNI_CACHE = Path("/var/lib/cni")


def missing(*binaries: str) -> list[str]:
    return [b for b in binaries if not shutil.which(b)]


def static_busybox() -> bool:
    """A statically linked busybox (busybox-static): the image needs no libraries. A 64-bit
    ELF file without a PT_INTERP program header."""
    try:
        elf = Path(BUSYBOX).read_bytes()
    except OSError:
        return False
    if elf[:5] != b"\x7fELF\x02":
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return all(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] != 3
               for i in range(phnum))


def skip_unless(*binaries: str):
    gone = missing(*binaries)
    if gone:
        pytest.skip(f"needs {', '.join(gone)} (Debian: see PACKAGES in .ci/run)")
    if not static_busybox():
        pytest.skip("needs a static /bin/busybox (Debian package busybox-static)")


def make_rootfs(root: Path) -> Path:
    """A container root file system: static busybox and its applet links."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in sh(BUSYBOX, "--list").stdout.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def conflist(name: str, plugin_type: str, lab, network: str, **extra) -> dict:
    plugin = {"type": plugin_type, "network": network, "openrc": str(lab.server.openrc_path),
              "host": "h1", "activeTimeout": 30}
    plugin.update(extra)
    return {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}


def ports_of(env, device: str) -> list[dict]:
    return osc("port", "list", "--device-id", device, "--long", env=env)


def container_ports(env, network: str) -> list[dict]:
    return [p for p in osc("port", "list", "--network", network, "--long", env=env)
            if p["Device Owner"] == "compute:container"]


def netns_names() -> set[str]:
    return set(re.findall(r"^(\S+)", sh("ip", "netns", "list").stdout, re.M))


def podman_netns() -> set[str]:
    """The namespaces podman (CNI backend) made: ``/run/netns/netns-<uuid>``."""
    return {n for n in netns_names() if n.startswith("netns-")}


def unmount_under(path: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(path))]
    for m in sorted(mounts, reverse=True):
        sh("umount", "-l", m, check=False)


def closed_group(env) -> dict:
    """A security group with only the default egress rules: nothing may come in."""
    return osc("security", "group", "create", f"ctr-closed-{uuid.uuid4().hex[:6]}", env=env)


def vm_on_h2(env, net: str) -> dict:
    """A VM port on h2 whose group lets ICMP in from anywhere (the project's default group
    only admits its own members, and the containers are in other groups)."""
    group = osc("security", "group", "create", f"ctr-vm-{uuid.uuid4().hex[:6]}", env=env)
    osc("security", "group", "rule", "create", "--protocol", "icmp", "--ingress", group["id"],
        env=env)
    return wait_active(env, bound_port(env, net, "h2", "vm", "--security-group",
                                       group["id"])["id"])


def check_security_group(lab, group: dict, ctr_ip: str) -> None:
    """No ingress rule: the VM on h2 cannot ping the container; with one it can."""
    vm_ns = lab.instance("h2", "vm")
    assert not lab.pings(vm_ns, ctr_ip, count=2)
    osc("security", "group", "rule", "create", "--protocol", "icmp", "--ingress",
        group["id"], env=lab.server.env)
    wait_for("icmp allowed", lambda: lab.pings(vm_ns, ctr_ip))


# ---------------------------------------------------------------------------------------------
# podman


class Podman:
    """podman with its own configuration, storage and network directory (CNI backend, runc,
    cgroupfs, vfs) and a busybox image imported from a local rootfs (no registry)."""

    IMAGE = "localhost/neutrino-cni-bb:latest"

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ntpod.", dir="/run"))
        self.made_containers_dir = not Path("/var/lib/containers").exists()
        self.made_libcni = not LIBCNI_CACHE.exists()
        self.networks: list[str] = []
        for d in ("net.d", "plugins", "root", "runroot", "tmp"):
            (self.dir / d).mkdir()
        nofile = sh("sh", "-c", "ulimit -Hn").stdout.strip()
        # cgroupfs: PID 1 need not be systemd. runc: crun refuses hybrid cgroup hierarchies.
        # ulimits: rootful podman asks for limits a runtime without CAP_SYS_RESOURCE cannot set.
        (self.dir / "containers.conf").write_text(f"""\
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{self.dir}/events.log"
runtime = "runc"
tmp_dir = "{self.dir}/tmp"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{self.dir}/plugins", "/usr/lib/cni"]
network_config_dir = "{self.dir}/net.d"
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]
log_driver = "k8s-file"
""")
        (self.dir / "storage.conf").write_text(f"""\
[storage]
driver = "vfs"
graphroot = "{self.dir}/root"
runroot = "{self.dir}/runroot"
""")
        shutil.copy2(cni_binary(), self.dir / "plugins" / "neutrino-cni")
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "HOME": str(self.dir),
                    "CONTAINERS_CONF": str(self.dir / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(self.dir / "storage.conf")}
        rootfs = make_rootfs(self.dir / "rootfs")
        sh("tar", "-C", str(rootfs), "-cf", str(self.dir / "rootfs.tar"), ".")
        self.run("import", "--change", 'CMD ["/bin/sh"]', str(self.dir / "rootfs.tar"),
                 self.IMAGE)

    def run(self, *args: str, check: bool = True, timeout: float = 120):
        p = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def network(self, conf: dict) -> str:
        (self.dir / "net.d" / f"{conf['name']}.conflist").write_text(json.dumps(conf))
        self.networks.append(conf["name"])
        return conf["name"]

    def cleanup(self) -> None:
        self.run("rm", "-af", "-t", "0", check=False)
        self.run("rmi", "-af", check=False)
        for name in self.networks:
            for f in (LIBCNI_CACHE / "results").glob(f"{name}-*"):
                f.unlink(missing_ok=True)
        if self.made_containers_dir:
            shutil.rmtree("/var/lib/containers", ignore_errors=True)
        if self.made_libcni:
            shutil.rmtree(LIBCNI_CACHE, ignore_errors=True)
        unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def podman():
    skip_unless("podman", "runc")
    pm = Podman()
    try:
        yield pm
    finally:
        pm.cleanup()


def test_podman_container_on_neutrino_network(lab, podman):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.76.0.0/24")
    vm = vm_on_h2(env, net)
    group = closed_group(env)
    name = podman.network(conflist(f"ntpod-{lab.tag}", "neutrino-cni", lab, net,
                                   securityGroups=[group["name"]]))
    listed = podman.run("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout
    assert f"{name} neutrino-cni" in listed.splitlines()
    # --rm: ADD on start, the container reaches the VM, DEL when it exits.
    before = podman_netns()
    out = podman.run("run", "--rm", "--cap-add", "NET_RAW", "--network", name,
                     podman.IMAGE, "sh", "-c",
                     f"ip -4 -o addr show eth0; ping -c 2 -W 2 {ip_of(vm)} && echo PING_OK")
    addr = re.search(r"inet (10\.76\.0\.\d+)/24", out.stdout)
    assert addr and "PING_OK" in out.stdout, out.stdout + out.stderr
    wait_for("port of the --rm container deleted", lambda: container_ports(env, net) == [])
    wait_for("runtime namespace removed", lambda: not (podman_netns() - before))
    # Detached: the port's address, VXLAN to h2, the security group, DEL on stop.
    cid = podman.run("run", "-d", "--cap-add", "NET_RAW", "--network", name,
                     podman.IMAGE, "sleep", "600").stdout.strip()
    port = ports_of(env, cid)
    assert len(port) == 1
    port = osc("port", "show", port[0]["ID"], env=env)
    assert port["status"] == "ACTIVE" and port["device_owner"] == "compute:container"
    assert port["binding_profile"]["neutrino:netns"].startswith("/run/netns/")
    ctr_ip = ip_of(port)
    inspected = podman.run("inspect", "-f",
                           "{{range .NetworkSettings.Networks}}{{.IPAddress}} "
                           "{{.MacAddress}}{{end}}", cid).stdout.split()
    assert inspected == [ctr_ip, port["mac_address"]]
    shown = podman.run("exec", cid, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"inet {ctr_ip}/24" in shown
    assert podman.run("exec", cid, "ping", "-c", "2", "-W", "2", ip_of(vm),
                      check=False).returncode == 0
    check_security_group(lab, group, ctr_ip)
    podman.run("stop", "-t", "0", cid)
    wait_for("port deleted after stop", lambda: ports_of(env, cid) == [])
    wait_for("unplugged", lambda: f"{lab.prefix('h1')}ctr-{cid}" not in netns_names())
    podman.run("rm", cid)
    assert not lab.pings(lab.instance("h2", "vm"), ctr_ip, count=1)


def test_podman_add_with_server_down_leaves_nothing(lab, podman):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.77.0.0/24")
    dead = podman.dir / "dead-openrc"
    text = Path(lab.server.openrc_path).read_text()
    dead.write_text(re.sub(r"OS_AUTH_URL=\S+", "OS_AUTH_URL=http://127.0.0.1:9/v3", text))
    name = podman.network(conflist(f"ntdead-{lab.tag}", "neutrino-cni", lab, net,
                                   openrc=str(dead)))
    before = podman_netns()
    out = podman.run("run", "--rm", "--name", f"ntdead-{lab.tag}", "--network", name,
                     podman.IMAGE, "true", check=False)
    assert out.returncode != 0
    assert "server unreachable, try again later" in out.stderr, out.stderr
    assert container_ports(env, net) == []
    time.sleep(1)  # a cleanup process conmon may have spawned
    assert not (podman_netns() - before)
    assert podman.run("ps", "-aq").stdout.strip() == ""


# ---------------------------------------------------------------------------------------------
# containerd


class Containerd:
    """A private containerd (own root, state, socket; CRI plugin off) and ``ctr``. ``ctr``
    reads the first configuration in ``/etc/cni/net.d`` and the plugins in ``/opt/cni/bin``
    only: the test writes ``10-<name>.conflist`` and the plugin under a name of its own
    there (a wrapper noting each call's command and ``CNI_NETNS``), and removes both."""

    def __init__(self, tag: str):
        self.dir = Path(tempfile.mkdtemp(prefix="ntctrd.", dir="/run"))
        self.sock = self.dir / "containerd.sock"
        self.made = {p: not p.exists() for p in
                     (NETD.parent, NETD, OPT_CNI, LIBCNI_CACHE, Path("/run/containerd"))}
        self.plugin_type = f"neutrino-cni-{tag}"
        self.plugin = OPT_CNI / "bin" / self.plugin_type
        self.conf_path = NETD / f"10-neutrino-{tag}.conflist"
        self.name = f"ntctr-{tag}"
        (self.dir / "opt").mkdir()
        (self.dir / "config.toml").write_text(f"""\
version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.dir}/opt"
""")
        log = open(self.dir / "containerd.log", "wb")
        self.proc = subprocess.Popen(["containerd", "--config", str(self.dir / "config.toml")],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_for("containerd", lambda: self.ctr("version", check=False).returncode == 0)
        self.rootfs = make_rootfs(self.dir / "rootfs")

    def ctr(self, *args: str, check: bool = True, timeout: float = 60):
        p = subprocess.run(["ctr", "-a", str(self.sock), *args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def network(self, conf: dict) -> None:
        conf["name"] = self.name
        NETD.mkdir(parents=True, exist_ok=True)
        self.plugin.parent.mkdir(parents=True, exist_ok=True)
        # The plugin, behind a wrapper that notes what ctr sends (command and CNI_NETNS).
        shutil.copy2(cni_binary(), self.dir / "neutrino-cni")
        self.plugin.write_text(
            "#!/bin/sh\n"
            f"echo \"$CNI_COMMAND netns=$CNI_NETNS\" >>{self.dir}/calls.log\n"
            f"exec {self.dir}/neutrino-cni\n")
        self.plugin.chmod(0o755)
        self.conf_path.write_text(json.dumps(conf))
        first = sorted(p for p in NETD.iterdir() if p.suffix in (".conf", ".conflist", ".json"))
        if first[0] != self.conf_path:
            pytest.skip(f"ctr would load {first[0]}, not our configuration")

    def calls(self) -> list[str]:
        try:
            return (self.dir / "calls.log").read_text().splitlines()
        except OSError:
            return []

    def cleanup(self) -> None:
        for cid in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "rm", "-f", cid, check=False)
            self.ctr("containers", "rm", cid, check=False)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.conf_path.unlink(missing_ok=True)
        self.plugin.unlink(missing_ok=True)
        for f in (LIBCNI_CACHE / "results").glob(f"{self.name}-*"):
            f.unlink(missing_ok=True)
        for path, made in self.made.items():
            if made:
                shutil.rmtree(path, ignore_errors=True)
        unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def containerd(lab):
    skip_unless("containerd", "ctr", "runc")
    cd = Containerd(lab.tag)
    try:
        yield cd
    finally:
        cd.cleanup()


def test_containerd_container_on_neutrino_network(lab, containerd):
    env = lab.server.env
    net, _ = network_with_subnet(env, "10.78.0.0/24")
    vm = vm_on_h2(env, net)
    group = closed_group(env)
    containerd.network(conflist("", containerd.plugin_type, lab, net,
                                securityGroups=[group["name"]]))
    cid = f"ntctr-{lab.tag}"
    # ctr sends DEL when `ctr run` (not detached) sees the task exit: run it in the background.
    run = subprocess.Popen(
        ["ctr", "-a", str(containerd.sock), "run", "--rm", "--rootfs", "--cni",
         "--env", "PATH=/bin", str(containerd.rootfs), cid, "/bin/sleep", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        device = f"default-{cid}"  # CNI_CONTAINERID: <containerd namespace>-<container id>
        port = wait_for("container port ACTIVE", lambda: [
            p for p in ports_of(env, device) if p["Status"] == "ACTIVE"], timeout=60)
        assert len(port) == 1
        port = osc("port", "show", port[0]["ID"], env=env)
        assert re.fullmatch(r"/proc/\d+/ns/net", port["binding_profile"]["neutrino:netns"])
        ctr_ip = ip_of(port)
        wait_for("task running", lambda: "RUNNING" in containerd.ctr("tasks", "ls").stdout)
        shown = containerd.ctr("tasks", "exec", "--exec-id", "addr", cid,
                               "/bin/ip", "-o", "link", "show", "eth0").stdout
        assert port["mac_address"] in shown
        shown = containerd.ctr("tasks", "exec", "--exec-id", "addr4", cid,
                               "/bin/ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert f"inet {ctr_ip}/24" in shown
        pinged = containerd.ctr("tasks", "exec", "--exec-id", "ping", cid,
                                "/bin/ping", "-c", "2", "-W", "2", ip_of(vm), check=False)
        assert pinged.returncode == 0, pinged.stdout + pinged.stderr
        check_security_group(lab, group, ctr_ip)
        containerd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        run.wait(timeout=60)
        # DEL came with an empty CNI_NETNS (the task was gone): the port is deleted anyway.
        wait_for("port deleted", lambda: ports_of(env, device) == [])
        calls = containerd.calls()
        assert len(calls) == 2 and re.fullmatch(r"ADD netns=/proc/\d+/ns/net", calls[0])
        assert calls[1] == "DEL netns=", calls
        wait_for("unplugged", lambda: f"{lab.prefix('h1')}ctr-{device}" not in netns_names())
        assert containerd.ctr("containers", "ls", "-q").stdout.strip() == ""
        assert not lab.pings(lab.instance("h2", "vm"), ctr_ip, count=1)
    finally:
        if run.poll() is None:
            containerd.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.kill()
