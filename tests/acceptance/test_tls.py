"""The API over HTTPS (``--tls-cert``, ``--tls-key``, ``--tls-ca``).

A throwaway CA and a server certificate for 127.0.0.1 and localhost are made with the
``openssl`` CLI. The openstack CLI (``OS_CACERT`` from the written ``admin-openrc``),
openstacksdk (``cacert=``) and a host agent work over HTTPS; plain HTTP to the TLS port and
clients without the CA fail; a key that is not the certificate's stops the server before it
leaves anything behind.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO, NeutrinoServer, _server_binary, client_env, osc, osc_fails, unique
from dataplane_lab import Lab, bound_port, needs_root, network_with_subnet, wait_active, wait_for

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl CLI")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True,
                   timeout=60, stdin=subprocess.DEVNULL)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate it signed for 127.0.0.1 and localhost, and a stray key."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=neutrino test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2",
             "-extfile", "server.ext", cwd=d)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", "other.key", cwd=d)
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key",
            "other_key": d / "other.key"}

def tls_server(tmp: Path, pki: dict[str, Path]) -> NeutrinoServer:
    return NeutrinoServer(
        _server_binary(), tmp / "server",
        extra_args=["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
                    "--tls-ca", str(pki["ca"])],
        cacert=str(pki["ca"]))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_server(tmp_path_factory, pki):
    server = tls_server(tmp_path_factory.mktemp("tls"), pki).start()
    try:
        yield server
    finally:
        server.stop()


def test_admin_openrc_names_https_and_the_ca(https_server, pki):
    o = https_server.openrc
    assert o["OS_AUTH_URL"] == f"https://127.0.0.1:{https_server.port}/v3"
    assert Path(o["OS_CACERT"]) == pki["ca"].resolve()


def test_cli_lists_and_creates_networks_over_https(https_server, cleanup):
    env = https_server.env
    assert env["OS_CACERT"]
    name = unique("tls-net")
    net = osc("network", "create", name, env=env)
    cleanup.add(osc, "network", "delete", net["id"], env=env, json_output=False)
    listed = osc("network", "list", env=env)
    assert name in [n["Name"] for n in listed]
    # The catalog sends the CLI to the https endpoint, not to a plain one.
    catalog = osc("catalog", "list", env=env)
    network = [c for c in catalog if c["Type"] == "network"]
    assert network, catalog
    text = json.dumps(network)
    assert "https://127.0.0.1:" in text and "http://" not in text, text


def test_sdk_works_with_cacert(https_server, cleanup):
    conn = https_server.connect()
    cleanup.add(conn.close)
    name = unique("tls-sdk")
    net = conn.network.create_network(name=name)
    cleanup.add(conn.network.delete_network, net.id)
    assert conn.network.find_network(name).id == net.id
    assert conn.network.get_endpoint().startswith("https://")


def test_bench_logs_in_and_measures_over_https(https_server):
    """`neutrino bench` (the keystone client crate, then its own clients) with OS_CACERT."""
    def bench(env):
        return subprocess.run(
            [_server_binary(), "bench", "--scenarios", "network-create,network-delete",
             "--ports", "8", "--json"],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    proc = bench(https_server.env)
    assert proc.returncode == 0, proc.stderr
    assert f"network endpoint https://127.0.0.1:{https_server.port}" in proc.stderr
    report = json.loads(proc.stdout)
    assert report, proc.stdout
    # Without the CA the login fails on the certificate, and says so.
    proc = bench(client_env({k: v for k, v in https_server.openrc.items()
                             if k != "OS_CACERT"}))
    assert proc.returncode != 0
    assert "certificate" in proc.stderr.lower(), proc.stderr


def test_client_without_the_ca_fails_verification(https_server):
    env = client_env({k: v for k, v in https_server.openrc.items() if k != "OS_CACERT"})
    proc = osc_fails("network", "list", env=env)
    assert "certificate" in (proc.stderr + proc.stdout).lower() or "ssl" in proc.stderr.lower(), \
        proc.stderr
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(https_server.url + "/", timeout=5,
                               context=ssl.create_default_context())
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError), err.value
    # With the CA the same request succeeds.
    ok = ssl.create_default_context(cafile=https_server.cacert)
    with urllib.request.urlopen(https_server.url + "/", timeout=5, context=ok) as r:
        assert r.status == 200
    # Verified by name too: localhost is in the certificate.
    with urllib.request.urlopen(f"https://localhost:{https_server.port}/", timeout=5,
                                context=ok) as r:
        assert r.status == 200


def test_plain_http_to_the_tls_port_is_refused(https_server):
    # Whatever comes back (a TLS alert, or the connection closed) is no HTTP response.
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{https_server.port}/", timeout=5)
    with socket.create_connection(("127.0.0.1", https_server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except (ConnectionError, socket.timeout):
            pass
    assert not answer.startswith(b"HTTP/"), answer
    # The CLI pointed at http:// fails too.
    env = dict(https_server.env)
    env["OS_AUTH_URL"] = env["OS_AUTH_URL"].replace("https://", "http://")
    osc_fails("network", "list", env=env)
    # And the server still serves HTTPS afterwards.
    ok = ssl.create_default_context(cafile=https_server.cacert)
    with urllib.request.urlopen(https_server.url + "/", timeout=5, context=ok) as r:
        assert r.status == 200


def test_tls_turned_on_later_warns_about_the_old_openrc(tmp_path, pki):
    plain = NeutrinoServer(_server_binary(), tmp_path / "server").start()
    plain.stop()
    later = tls_server(tmp_path, pki)
    later.port = plain.port
    later.start()
    try:
        assert later.openrc["OS_AUTH_URL"].startswith("http://")
        assert "was written for another scheme than https://" in later.log_tail()
    finally:
        later.stop()


@pytest.mark.parametrize("fault, message", [
    ("mismatch", "does not belong to --tls-cert"),
    ("missing", "cannot read --tls-cert"),
    ("no_key", "no PEM private key"),
])
def test_unusable_certificate_or_key_stops_the_server_before_it_binds(tmp_path, pki, fault,
                                                                       message):
    cert, key = pki["cert"], pki["key"]
    if fault == "mismatch":
        key = pki["other_key"]
    elif fault == "missing":
        cert = tmp_path / "absent.pem"
    else:
        key = pki["cert"]
    data_dir = tmp_path / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OS_") and not k.startswith("NEUTRINO_")}
    proc = subprocess.run(
        [_server_binary(), "server", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert not data_dir.exists()
    # The port was never taken.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@needs_root
def test_agent_reports_and_binds_a_port_over_https(tmp_path, pki):
    server = tls_server(tmp_path, pki).start()
    lab = Lab(server, tmp_path, ("h1",))
    try:
        assert lab.server.url.startswith("https://")
        lab.setup()
        env = server.env
        agents = wait_for("the agent alive", lambda: [
            a for a in osc("network", "agent", "list", "--host", "h1", env=env)
            if a["Alive"] in (True, ":-)")])
        assert agents
        net, _ = network_with_subnet(env, "10.67.0.0/24")
        port = bound_port(env, net, "h1", f"t{uuid.uuid4().hex[:4]}")
        port = wait_active(env, port["id"])
        assert port["binding_vif_type"] == "bridge"
        assert "certificate" not in (tmp_path / "agent-h1.log").read_text().lower()
    finally:
        lab.teardown()
        server.stop()


@needs_root
def test_agent_without_the_ca_does_not_connect(tmp_path, pki):
    server = tls_server(tmp_path, pki).start()
    prefix = f"nt{uuid.uuid4().hex[:5]}x-"
    env = client_env({k: v for k, v in server.openrc.items() if k != "OS_CACERT"})
    env["RUST_LOG"] = "info"
    proc = subprocess.Popen(
        [_server_binary(), "agent", "--host", "nocacert", "--tunnel-ip", "198.18.0.9",
         "--server", server.url, "--netns-prefix", prefix, "--report-interval", "1",
         "--status-file", str(tmp_path / "status.json"), "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        text=True, start_new_session=True)
    try:
        try:
            out, _ = proc.communicate(timeout=6)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, _ = proc.communicate(timeout=10)
        # Its calls fail on the unknown issuer, and it never registered.
        assert "certificate" in out.lower(), out
        assert not (tmp_path / "status.json").exists()
        assert osc("network", "agent", "list", "--host", "nocacert", env=server.env) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
        for name in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                   text=True).stdout.split():
            if name.startswith(prefix):
                subprocess.run(["ip", "netns", "del", name], check=False)


def _cni_binary() -> str:
    return os.environ.get("NEUTRINO_CNI_BIN") or str(REPO / "target" / "release" / "neutrino-cni")


@needs_root
@pytest.mark.skipif(not Path(_cni_binary()).exists(),
                    reason="needs the plugin binary (NEUTRINO_CNI_BIN)")
def test_cni_adds_a_container_over_https(tmp_path, pki):
    server = tls_server(tmp_path, pki).start()
    lab = Lab(server, tmp_path, ("h1",))
    container = f"ntcni-{uuid.uuid4().hex[:10]}"
    try:
        lab.setup()
        env = server.env
        net, _ = network_with_subnet(env, "10.68.0.0/24")
        subprocess.run(["ip", "netns", "add", container], check=True)
        cid = uuid.uuid4().hex

        def cni(command: str, openrc: Path):
            conf = {"cniVersion": "1.0.0", "name": "neutrino", "type": "neutrino-cni",
                    "network": net, "openrc": str(openrc), "host": "h1", "activeTimeout": 30}
            p = subprocess.run(
                [_cni_binary()], input=json.dumps(conf), capture_output=True, text=True,
                timeout=90,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                     "CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin",
                     "CNI_CONTAINERID": cid, "CNI_IFNAME": "eth0",
                     "CNI_NETNS": f"/run/netns/{container}"})
            return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None)

        # The openrc without OS_CACERT: the plugin refuses the unknown issuer.
        bare = tmp_path / "openrc-without-ca"
        bare.write_text("".join(line + "\n" for line in
                                server.openrc_path.read_text().splitlines()
                                if "OS_CACERT" not in line))
        rc, out = cni("ADD", bare)
        assert rc != 0 and "certificate" in json.dumps(out).lower(), out
        # With it (admin-openrc as written by the server): the port is made and wired.
        rc, out = cni("ADD", server.openrc_path)
        assert rc == 0, out
        ports = osc("port", "list", "--device-id", cid, env=env)
        assert len(ports) == 1
        assert osc("port", "show", ports[0]["ID"], env=env)["status"] == "ACTIVE"
        rc, out = cni("DEL", server.openrc_path)
        assert rc == 0, out
        assert osc("port", "list", "--device-id", cid, env=env) == []
    finally:
        lab.teardown()
        subprocess.run(["ip", "netns", "del", container], check=False)
        server.stop()
