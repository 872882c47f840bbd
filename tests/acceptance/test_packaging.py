"""What an operator installs: the configuration file (keys for every option; command line over
environment over file; unknown keys refused by name), `neutrino --version` naming the commit,
the Debian package built by `scripts/build-deb` with its systemd units (accepted by
`systemd-analyze verify`, the server's hardened), man pages and completions.

Installing the package changes the machine, so `test_installed_package_serves_from_its_config`
runs only where that is wanted: in CI (`CI=true`, a fresh machine) or with
`NEUTRINO_TEST_INSTALL_DEB=1`; it purges the package afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, _server_binary, free_port, parse_openrc


def binary() -> str:
    path = _server_binary()
    if not os.access(path, os.X_OK):
        pytest.skip(f"no server binary at {path}")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OS_") and not k.startswith("NEUTRINO_")}
    env.update(extra)
    return env


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_version_names_the_commit():
    out = subprocess.run([binary(), "--version"], capture_output=True, text=True, check=True)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True)
    assert re.match(r"^neutrino \d+\.\d+\.\d+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)$",
                    out.stdout.strip()), out.stdout
    if head.returncode == 0:
        assert head.stdout.strip() in out.stdout, (out.stdout, head.stdout)


def test_server_runs_from_the_config_file_and_flags_and_environment_win(tmp_path):
    port, other = free_port(), free_port()
    config = tmp_path / "neutrino.toml"
    config.write_text(f"""
log_format = "json"
[server]
listen = "127.0.0.1:{port}"
data_dir = "{tmp_path / 'data'}"
public_url = "http://from-the-file.invalid:1"
[agent]
host = "compute1"
""")
    # The file alone.
    proc = subprocess.Popen([binary(), "server", "--config", str(config)], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_up(f"http://127.0.0.1:{port}/", proc)
        openrc = parse_openrc(tmp_path / "data" / "admin-openrc")
        assert openrc["OS_AUTH_URL"] == "http://from-the-file.invalid:1/v3"
    finally:
        stop(proc)
    assert proc.stderr.read().lstrip().startswith("{"), "log_format from the file"
    # A flag wins over the file, the environment too (and NEUTRINO_CONFIG names the file).
    env = clean_env(NEUTRINO_CONFIG=str(config), NEUTRINO_PUBLIC_URL="http://from-env.invalid:2")
    proc = subprocess.Popen([binary(), "server", "--listen", f"127.0.0.1:{other}",
                             "--log-format", "text"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_up(f"http://127.0.0.1:{other}/", proc)
        catalog = catalog_urls(f"http://127.0.0.1:{other}", openrc["OS_PASSWORD"])
    finally:
        stop(proc)
    assert catalog and all(u.startswith("http://from-env.invalid:2") for u in catalog), catalog
    assert not proc.stderr.read().lstrip().startswith("{"), "--log-format on the command line"


def catalog_urls(base: str, password: str) -> list[str]:
    """The endpoint URLs of the catalog the admin's token carries."""
    body = json.dumps({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "password": password, "domain": {"id": "default"}}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}).encode()
    req = urllib.request.Request(base + "/v3/auth/tokens", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        token = json.loads(r.read())
    return [e["url"] for s in token["token"]["catalog"] for e in s["endpoints"]]


def test_unknown_keys_stop_the_program_naming_them(tmp_path):
    config = tmp_path / "neutrino.toml"
    for text, named in [("[server]\nlisten_on = '127.0.0.1:1'\n", "server.listen_on"),
                        ("[agent]\nhots = 'x'\n", "agent.hots"),
                        ("[sever]\n", "[sever]"),
                        ("[server]\nl3_ha = 'yes'\n", "l3_ha")]:
        config.write_text(text)
        proc = subprocess.run([binary(), "server", "--config", str(config)], env=clean_env(),
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0
        assert named in proc.stderr, proc.stderr
        assert str(config) in proc.stderr, proc.stderr


def test_agent_takes_host_and_credentials_from_the_file(tmp_path, neutrino):
    """The agent reads its required options and an openrc from the file: with a wrong
    password it gets as far as logging in, and says the server refused it."""
    openrc = tmp_path / "agent-openrc"
    good = parse_openrc(neutrino.openrc_path)
    openrc.write_text("".join(f"export {k}='{v}'\n" for k, v in good.items()
                              if k != "OS_PASSWORD") + "export OS_PASSWORD='wrong'\n")
    config = tmp_path / "neutrino.toml"
    config.write_text(f"""
[agent]
host = "compute-from-file"
tunnel_ip = "198.18.7.1"
openrc = "{openrc}"
state_dir = "{tmp_path / 'state'}"
""")
    proc = subprocess.Popen([binary(), "agent", "--config", str(config)],
                            env=clean_env(NO_COLOR="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "failed" in line and ("401" in line or "nauthorized" in line):
                break
    finally:
        stop(proc)
    log = "".join(seen)
    assert "host=compute-from-file" in log, log
    assert neutrino.openrc["OS_AUTH_URL"] in log or "401" in log, log
    assert any("failed" in s and ("401" in s or "nauthorized" in s) for s in seen), log


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is missing (Debian's dpkg)")
    out = tmp_path_factory.mktemp("deb")
    cni = Path(binary()).parent / "neutrino-cni"
    proc = subprocess.run([str(REPO / "scripts" / "build-deb"), "--bin", binary(),
                           "--cni-bin", str(cni), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def test_package_holds_binary_config_units_man_pages_and_completions(deb):
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                             text=True, check=True).stdout
    for path in ["./usr/bin/neutrino", "./opt/cni/bin/neutrino-cni",
                 "./etc/neutrino/neutrino.toml",
                 "./lib/systemd/system/neutrino-server.service",
                 "./lib/systemd/system/neutrino-agent.service",
                 "./usr/share/man/man1/neutrino-server.1.gz",
                 "./usr/share/man/man1/neutrino-agent.1.gz",
                 "./usr/share/bash-completion/completions/neutrino"]:
        assert path in listing, path
    info = subprocess.run(["dpkg-deb", "--info", str(deb)], capture_output=True, text=True,
                          check=True).stdout
    assert "Package: neutrino" in info and "nftables" in info, info
    conffiles = subprocess.run(["dpkg-deb", "--info", str(deb), "conffiles"],
                               capture_output=True, text=True, check=True).stdout
    assert conffiles.strip() == "/etc/neutrino/neutrino.toml"


def test_units_verify_and_the_server_is_hardened(deb, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (package systemd)")
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    units = []
    # The units name /usr/bin/neutrino, which verify checks: point them at the extracted one.
    for name in ["neutrino-server.service", "neutrino-agent.service"]:
        text = (root / "lib/systemd/system" / name).read_text()
        unit = tmp_path / name
        unit.write_text(text.replace("/usr/bin/neutrino", str(root / "usr/bin/neutrino")))
        units.append(str(unit))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *units],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", units[0]],
                          capture_output=True, text=True)
    level = re.search(r"Overall exposure level for neutrino-server.service: ([\d.]+)",
                      proc.stdout)
    assert level and float(level.group(1)) <= 2.0, proc.stdout[-2000:]


@pytest.mark.skipif(not (os.environ.get("CI") == "true"
                         or os.environ.get("NEUTRINO_TEST_INSTALL_DEB") == "1"),
                    reason="installs a package on this machine: CI=true or "
                           "NEUTRINO_TEST_INSTALL_DEB=1 only")
def test_installed_package_serves_from_its_config(deb):
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb)],
                   check=True, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                   timeout=600)
    try:
        out = subprocess.run(["/usr/bin/neutrino", "--version"], capture_output=True,
                             text=True, check=True).stdout
        assert "commit" in out
        subprocess.run(["systemd-analyze", "verify", "--man=no",
                        "/lib/systemd/system/neutrino-server.service",
                        "/lib/systemd/system/neutrino-agent.service"], check=True)
        if Path("/run/systemd/system").is_dir():
            # Under systemd the package started the unit already.
            subprocess.run(["systemctl", "is-active", "--quiet", "neutrino-server"], check=True)
            deadline = time.monotonic() + 30
            while not Path("/var/lib/neutrino/server/admin-openrc").exists():
                assert time.monotonic() < deadline, "the unit wrote no admin-openrc"
                time.sleep(0.2)
        else:
            # As the unit runs it: the neutrino user, the installed configuration file only.
            proc = subprocess.Popen(["runuser", "-u", "neutrino", "--", "/usr/bin/neutrino",
                                     "server"], env=clean_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd="/")
            try:
                wait_up("http://127.0.0.1:9696/", proc)
                assert Path("/var/lib/neutrino/server/admin-openrc").exists()
            finally:
                stop(proc)
    finally:
        subprocess.run(["apt-get", "purge", "-y", "-q", "neutrino"], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    assert not Path("/usr/bin/neutrino").exists()
    assert not Path("/var/lib/neutrino").exists()
