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


REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _call(url: str, method: str = "GET", headers: dict[str, str] | None = None,
          body: bytes | None = None) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


def test_every_response_names_its_request_and_the_log_lines_carry_it(tmp_path):
    server = NeutrinoServer(_binary(), tmp_path / "data", name="reqid").start()
    global_id = f"req-{uuid.uuid4()}"
    try:
        calls = {
            "version list": _call(server.url + "/"),
            "identity version": _call(server.url + "/v3"),
            "no token": _call(server.url + "/v2.0/networks"),
            "bad login": _call(server.url + "/v3/auth/tokens", "POST",
                               {"Content-Type": "application/json"}, b'{"auth": {}}'),
            "too large": _call(server.url + "/v2.0/networks", "POST",
                               {"Content-Type": "application/json"}, b" " * (2 << 20)),
            "with a global id": _call(server.url + "/v2.0/subnets",
                                      headers={"X-OpenStack-Request-ID": global_id}),
            "with a malformed id": _call(server.url + "/v2.0/ports",
                                         headers={"X-OpenStack-Request-ID": "mine"}),
        }
    finally:
        server.stop()
    ids = {}
    for what, (status, headers) in calls.items():
        rid = headers.get("x-openstack-request-id", "")
        assert REQUEST_ID.match(rid), f"{what} ({status}): {headers}"
        ids[what] = rid
    assert len(set(ids.values())) == len(ids), "one id per request"
    assert ids["with a global id"] != global_id, "the server's own id is its own"
    assert calls["no token"][0] == 401 and calls["too large"][0] == 413
    log = server.log_path.read_text()
    for what, rid in ids.items():
        lines = [line for line in log.splitlines() if rid in line]
        assert any("status=" in line for line in lines), f"{what}: no access line with {rid}"
    tagged = [line for line in log.splitlines() if ids["with a global id"] in line]
    assert any(global_id in line for line in tagged), tagged
    assert "mine" not in log


def test_json_log_format(tmp_path):
    import json

    server = NeutrinoServer(_binary(), tmp_path / "data", name="jsonlog",
                            extra_args=["--log-format", "json"]).start()
    try:
        status, headers = _call(server.url + "/v2.0/networks")
    finally:
        server.stop()
    assert status == 401
    rid = headers["x-openstack-request-id"]
    # stderr (the log) is JSON lines; stdout, merged into the same file here, has the
    # fixture's command line and the start-up banner for a person.
    lines = server.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r.get("fields", {}).get("message") == "serving" for r in records), lines
    access = [r for r in records if r.get("fields", {}).get("path") == "/v2.0/networks"]
    assert len(access) == 1, records
    entry = access[0]
    assert entry["level"] == "INFO"
    assert entry["fields"]["status"] == 401
    assert entry["fields"]["method"] == "GET"
    assert entry["span"]["id"] == rid, entry
