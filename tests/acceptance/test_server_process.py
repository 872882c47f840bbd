"""The `neutrino server` process as a new user meets it: a start that fails leaves nothing
behind, the log is plain text with one line per request, and `--help` says how to set the log
level.  Each test starts its own server from NEUTRINO_BIN (or target/release/neutrino)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import NeutrinoServer, _server_binary


def _binary() -> str:
    binary = _server_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip(f"no server binary at {binary}")
    return binary


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("OS_") and not k.startswith("NEUTRINO_") and k != "RUST_LOG"}


def test_failed_start_on_a_taken_port_leaves_nothing(tmp_path):
    data_dir = tmp_path / "fresh"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [_binary(), "server", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"],
            env=_clean_env(), capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Address already in use" in proc.stderr, proc.stderr
    # No admin-openrc with a fresh password pointing at the other process's port, no database.
    assert not (data_dir / "admin-openrc").exists()
    assert not (data_dir / "neutrino.db").exists()
    assert not data_dir.exists(), sorted(p.name for p in data_dir.iterdir())


def test_log_is_plain_text_with_one_line_per_request(tmp_path):
    server = NeutrinoServer(_binary(), tmp_path / "data", name="plain")
    server.start()  # stdout and stderr go to a file: not a terminal
    try:
        missing = f"/v2.0/ports/{uuid.uuid4()}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + missing, timeout=30)
        assert err.value.code == 401
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "\x1b" not in log, "colour codes in a redirected log"
    lines = [line for line in log.splitlines() if missing in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert " INFO " in line, line
    assert re.search(r"method=GET\b", line), line
    assert f"path={missing}" in line, line
    assert re.search(r"status=401\b", line), line
    assert re.search(r"duration_ms=\d+(\.\d+)?\b", line), line


@pytest.mark.parametrize("argv", [["--help"], ["server", "--help"], ["agent", "--help"]])
def test_help_documents_rust_log(argv):
    proc = subprocess.run([_binary(), *argv], env=_clean_env(), capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "RUST_LOG" in proc.stdout, proc.stdout


def test_bench_help_names_every_optional_scenario():
    proc = subprocess.run([_binary(), "bench", "--help"], env=_clean_env(), capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "pool-subnet-create, router-interface and sfc" in text, text
