"""Fixtures for the real-client acceptance tests (openstack CLI and openstacksdk).

Server under test, in order of preference:

* ``NEUTRINO_OPENRC=/path/to/admin-openrc``: use an already running server; the tests log in with
  the admin credentials of that file and start nothing.
* otherwise the binary ``NEUTRINO_BIN`` (default ``target/release/neutrino``) is started once per
  session with a temp data dir on a free 127.0.0.1 port (``neutrino server --data-dir DIR
  --listen 127.0.0.1:PORT``), and stopped at the end.

``NEUTRINO_TEST_PG_URL`` (a PostgreSQL database URL) enables the ``neutrino_pg_pair`` fixture: two
servers sharing one fresh database.  Server logs are kept in pytest's temp dir (path printed on
failure).

``openstack`` commands run in children forked from one warm CLI process per pytest process
(``osc_forkserver.py``: the same ``openstackclient.shell.main``, without importing the client
again for every command); ``NEUTRINO_OSC_FORK=0`` runs each as its own process instead.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = float(os.environ.get("NEUTRINO_READY_TIMEOUT", "30"))
CLI_TIMEOUT = float(os.environ.get("NEUTRINO_CLI_TIMEOUT", "120"))

# ---------------------------------------------------------------------------------------------
# helpers


def unique(prefix: str) -> str:
    """A name that no other test (or earlier run against the same server) uses."""
    return f"acc-{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_EXPORT_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_openrc(path: Path | str) -> dict[str, str]:
    """Parses ``export KEY=VALUE`` lines (shell quoting allowed) into a dict."""
    env: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _EXPORT_RE.match(line)
        if not m:
            continue
        words = shlex.split(m.group(2), comments=True)
        env[m.group(1)] = words[0] if words else ""
    return env


def client_env(os_vars: dict[str, str]) -> dict[str, str]:
    """The process environment for a client: ours without any inherited OS_* variable, plus
    ``os_vars``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(os_vars)
    return env


def user_env(base: dict[str, str], username: str, password: str, project: str) -> dict[str, str]:
    """``base`` (an env of :func:`client_env`) with the credentials of another user."""
    env = dict(base)
    env.update(
        OS_USERNAME=username,
        OS_PASSWORD=password,
        OS_PROJECT_NAME=project,
        OS_USER_DOMAIN_NAME=base.get("OS_USER_DOMAIN_NAME", "Default"),
        OS_PROJECT_DOMAIN_NAME=base.get("OS_PROJECT_DOMAIN_NAME", "Default"),
    )
    for k in ("OS_TOKEN", "OS_PROJECT_ID", "OS_USER_ID", "OS_TENANT_NAME", "OS_TENANT_ID"):
        env.pop(k, None)
    return env


def _openstack_cli() -> str:
    explicit = os.environ.get("OPENSTACK_CLI")
    if explicit:
        return explicit
    # The venv that runs pytest (do not resolve the symlinked interpreter).
    candidate = Path(sys.executable).parent / "openstack"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("openstack")
    if found:
        return found
    raise RuntimeError("no `openstack` CLI: install python-openstackclient in the test venv")


# Verbs whose commands print a record or a table, so accept `-f json`.
_JSON_VERBS = {"create", "show", "list", "issue"}
_OTHER_VERBS = {"set", "unset", "delete", "add", "remove", "revoke"}


class OscError(AssertionError):
    def __init__(self, argv: list[str], proc: subprocess.CompletedProcess):
        self.argv = argv
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(
            f"`{shlex.join(argv)}` exited {proc.returncode}\n"
            f"--- stderr ---\n{proc.stderr.strip()}\n--- stdout ---\n{proc.stdout.strip()}"
        )


def _wants_json(args: tuple[str, ...]) -> bool:
    if "-f" in args or any(a.startswith("--format") for a in args):
        return False
    for a in args:
        if a.startswith("-"):
            break
        if a in _JSON_VERBS:
            return True
        if a in _OTHER_VERBS:
            return False
    return False


def osc_run(*args: str, env: dict[str, str], json_output: bool | None = None,
            timeout: float = CLI_TIMEOUT) -> tuple[list[str], subprocess.CompletedProcess]:
    """Runs the openstack CLI; returns (argv, completed process) whatever the exit status."""
    if json_output is None:
        json_output = _wants_json(args)
    argv = [_openstack_cli(), *args]
    if json_output:
        argv += ["-f", "json"]
    proc = _FORK_SERVER.run(argv, env, timeout)
    if proc is None:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    return argv, proc


class _OscForkServer:
    """A warm ``openstack`` (tests/acceptance/osc_forkserver.py) that forks one child per
    command, started on first use; ``NEUTRINO_OSC_FORK=0`` runs every command as its own
    process instead. One command at a time: a caller finding it busy runs its own process."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.buffer = b""

    def _start(self, cli: str) -> subprocess.Popen | None:
        python = Path(cli).parent / "python"
        if not python.exists():
            return None
        script = Path(__file__).with_name("osc_forkserver.py")
        self.buffer = b""
        proc = subprocess.Popen([str(python), str(script)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        self.proc = proc
        try:
            if self._answer(time.monotonic() + 60).get("ready"):
                return proc
        except (subprocess.TimeoutExpired, ValueError, EOFError):
            pass
        proc.kill()
        proc.wait()
        return None

    def _answer(self, deadline: float) -> dict:
        """The server's next answer line, waiting until ``deadline`` (monotonic)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise subprocess.TimeoutExpired("openstack", left)
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError("the openstack fork server exited")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, argv: list[str], env: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess | None:
        if os.environ.get("NEUTRINO_OSC_FORK", "1") == "0" or not self.lock.acquire(blocking=False):
            return None
        try:
            if self.proc is None or self.proc.poll() is not None:
                if self._start(argv[0]) is None:
                    self.proc = None
                    return None
            with tempfile.TemporaryDirectory(prefix="osc-") as tmp:
                out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
                request = {"argv": argv[1:], "env": env, "stdout": str(out), "stderr": str(err)}
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
                deadline = time.monotonic() + timeout
                pid = self._answer(deadline)["pid"]
                try:
                    rc = self._answer(deadline)["rc"]
                except subprocess.TimeoutExpired:
                    os.kill(pid, signal.SIGKILL)
                    self._answer(time.monotonic() + 30)
                    raise subprocess.TimeoutExpired(argv, timeout) from None
                return subprocess.CompletedProcess(argv, rc, out.read_text(errors="replace"),
                                                   err.read_text(errors="replace"))
        finally:
            self.lock.release()


_FORK_SERVER = _OscForkServer()


def osc(*args: str, env: dict[str, str], json_output: bool | None = None,
        timeout: float = CLI_TIMEOUT):
    """Runs ``openstack ARGS`` (adding ``-f json`` for create/show/list/issue commands) and
    returns the parsed JSON output (None for commands that print nothing).  Raises
    :class:`OscError` (with stderr) on a non-zero exit."""
    if json_output is None:
        json_output = _wants_json(args)
    argv, proc = osc_run(*args, env=env, json_output=json_output, timeout=timeout)
    if proc.returncode != 0:
        raise OscError(argv, proc)
    out = proc.stdout.strip()
    if not out:
        return None
    if json_output:
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise AssertionError(f"`{shlex.join(argv)}` printed no JSON ({e}):\n{out}") from e
    return out


def osc_fails(*args: str, env: dict[str, str], timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs ``openstack ARGS`` expecting a non-zero exit; returns the completed process."""
    argv, proc = osc_run(*args, env=env, json_output=False, timeout=timeout)
    if proc.returncode == 0:
        raise AssertionError(f"`{shlex.join(argv)}` succeeded but should have failed:\n{proc.stdout}")
    return proc


# ---------------------------------------------------------------------------------------------
# the server process


class NeutrinoServer:
    """One ``neutrino server`` process (or, with ``external_openrc``, a server run by someone
    else)."""

    def __init__(self, binary: str | None, data_dir: Path, *, database_url: str | None = None,
                 admin_password: str | None = None, external_openrc: Path | None = None,
                 name: str = "neutrino", extra_args: list[str] | None = None,
                 cacert: str | None = None):
        self.binary = binary
        self.data_dir = data_dir
        self.database_url = database_url
        self.admin_password = admin_password
        self.name = name
        # More `neutrino server` options (e.g. a short --agent-down-time).
        self.extra_args = list(extra_args or [])
        # With a CA file the server serves HTTPS (``extra_args`` name --tls-cert and
        # --tls-key): the readiness probe and the clients verify it with this CA.
        self.cacert = cacert
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / f"{name}.log" if data_dir else None
        self.port: int | None = None
        self.openrc_path = external_openrc or (data_dir / "admin-openrc")
        self.openrc: dict[str, str] = {}
        if external_openrc:
            self.openrc = parse_openrc(external_openrc)
            parsed = urllib.parse.urlsplit(self.openrc["OS_AUTH_URL"])
            self.url = f"{parsed.scheme}://{parsed.netloc}"
        else:
            self.url = ""

    # -- lifecycle
    def start(self) -> "NeutrinoServer":
        assert self.binary
        if not os.access(self.binary, os.X_OK):
            pytest.exit(f"server binary {self.binary} is missing: build it with "
                        "`cargo build --release -p neutrino` or set NEUTRINO_BIN", returncode=3)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A restart keeps the port, so clients (and host agents) find the server again.
        self.port = self.port or free_port()
        scheme = "https" if self.cacert else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        cmd = [self.binary, "server", "--data-dir", str(self.data_dir),
               "--listen", f"127.0.0.1:{self.port}"]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        cmd += self.extra_args
        # No OS_* and no NEUTRINO_* settings (database URL, public URL, ...) leak in.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("OS_") and not k.startswith("NEUTRINO_")}
        env.setdefault("RUST_BACKTRACE", "1")
        if self.admin_password:
            env["NEUTRINO_ADMIN_PASSWORD"] = self.admin_password
        log = open(self.log_path, "ab")
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last_error = "no answer"
        context = ssl.create_default_context(cafile=self.cacert) if self.cacert else None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"exited with status {self.proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2, context=context) as r:
                    if r.status == 200 and self.openrc_path.exists():
                        self.openrc = parse_openrc(self.openrc_path)
                        if "OS_PASSWORD" in self.openrc and "OS_AUTH_URL" in self.openrc:
                            return
                        last_error = f"{self.openrc_path} is incomplete"
                    else:
                        last_error = f"GET / -> {r.status}, openrc exists: {self.openrc_path.exists()}"
            except urllib.error.HTTPError as e:
                last_error = f"GET / -> {e.code}"
            except (OSError, urllib.error.URLError) as e:
                last_error = str(e)
            time.sleep(0.1)
        self.stop()
        self._fail(f"not ready within {READY_TIMEOUT:.0f}s ({last_error})")

    def _fail(self, why: str) -> None:
        pytest.fail(f"{self.name} at {self.url} {why}\n--- {self.log_path} (tail) ---\n{self.log_tail()}",
                    pytrace=False)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    # -- client side
    @property
    def env(self) -> dict[str, str]:
        """Environment for a CLI process logged in as the admin."""
        return client_env(self.openrc)

    def connect(self, **overrides):
        """An openstacksdk Connection logged in as the admin (or as ``overrides``)."""
        import openstack

        o = self.openrc
        kw = dict(
            auth_url=o["OS_AUTH_URL"],
            username=o["OS_USERNAME"],
            password=o["OS_PASSWORD"],
            project_name=o["OS_PROJECT_NAME"],
            user_domain_name=o.get("OS_USER_DOMAIN_NAME", "Default"),
            project_domain_name=o.get("OS_PROJECT_DOMAIN_NAME", "Default"),
            region_name=o.get("OS_REGION_NAME", "RegionOne"),
            interface=o.get("OS_INTERFACE", "public"),
            identity_api_version="3",
            api_timeout=60,
            # Never read a clouds.yaml of the machine.
            load_yaml_config=False,
            load_envvars=False,
        )
        if "OS_CACERT" in o:
            kw["cacert"] = o["OS_CACERT"]
        kw.update(overrides)
        return openstack.connect(**kw)


def _server_binary() -> str:
    return os.environ.get("NEUTRINO_BIN") or str(REPO / "target" / "release" / "neutrino")


@pytest.fixture(scope="session")
def neutrino(tmp_path_factory, request):
    """The server under test (see the module doc), running for the whole session."""
    external = os.environ.get("NEUTRINO_OPENRC")
    if external:
        yield NeutrinoServer(None, None, external_openrc=Path(external), name="external")
        return
    data_dir = tmp_path_factory.mktemp("neutrino")
    server = NeutrinoServer(_server_binary(), data_dir).start()
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            sys.stderr.write(f"\nneutrino server log: {server.log_path}\n")


@pytest.fixture(scope="session")
def admin_env(neutrino) -> dict[str, str]:
    """Environment for the openstack CLI logged in as the bootstrap admin."""
    return neutrino.env


@pytest.fixture(scope="session")
def admin_conn(neutrino):
    """openstacksdk Connection of the bootstrap admin."""
    conn = neutrino.connect()
    yield conn
    conn.close()


class Cleanup:
    """Callbacks run in reverse order at teardown; errors are reported, not raised, so one
    failed delete does not hide the test's own result."""

    def __init__(self):
        self._callbacks = []

    def add(self, fn, *args, **kwargs):
        self._callbacks.append((fn, args, kwargs))

    def run(self):
        errors = []
        while self._callbacks:
            fn, args, kwargs = self._callbacks.pop()
            try:
                fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - best effort
                errors.append(f"{getattr(fn, '__name__', fn)}{args}: {e}")
        if errors:
            sys.stderr.write("cleanup errors:\n  " + "\n  ".join(errors) + "\n")


@pytest.fixture
def cleanup():
    c = Cleanup()
    yield c
    c.run()


# ---------------------------------------------------------------------------------------------
# PostgreSQL-backed pair


def _psql(url: str, sql: str) -> None:
    psql = shutil.which("psql")
    if not psql:
        for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (d / "psql").exists():
                psql = str(d / "psql")
                break
    if not psql:
        raise FileNotFoundError("psql")
    subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                   check=True, capture_output=True, text=True, timeout=60,
                   stdin=subprocess.DEVNULL)


def _with_database(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


class ServerPair:
    def __init__(self, a: NeutrinoServer, b: NeutrinoServer, database_url: str, admin_password: str):
        self.a = a
        self.b = b
        self.servers = (a, b)
        self.database_url = database_url
        self.admin_password = admin_password


@pytest.fixture(scope="session")
def neutrino_pg_pair(tmp_path_factory):
    """Two servers on one fresh PostgreSQL database (created next to the database of
    NEUTRINO_TEST_PG_URL and dropped afterwards), started with the same admin password.
    ``pair.a`` boots first (and bootstraps), then ``pair.b``.  Skips without
    NEUTRINO_TEST_PG_URL."""
    base_url = os.environ.get("NEUTRINO_TEST_PG_URL")
    if not base_url:
        pytest.skip("NEUTRINO_TEST_PG_URL is not set")
    if os.environ.get("NEUTRINO_OPENRC"):
        pytest.skip("NEUTRINO_OPENRC is set: not starting servers")
    dbname = f"neutrino_acc_{uuid.uuid4().hex[:12]}"
    created = False
    try:
        _psql(base_url, f'CREATE DATABASE "{dbname}"')
        url = _with_database(base_url, dbname)
        created = True
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        # No psql or no CREATEDB right: share the given database (tests use unique names).
        sys.stderr.write(f"neutrino_pg_pair: using {base_url} as is ({e})\n")
        url = base_url
    password = "acc-" + secrets.token_hex(12)
    root = tmp_path_factory.mktemp("neutrino-pg")
    a = NeutrinoServer(_server_binary(), root / "a", database_url=url, admin_password=password, name="neutrino-a")
    b = NeutrinoServer(_server_binary(), root / "b", database_url=url, admin_password=password, name="neutrino-b")
    try:
        a.start()
        b.start()
        yield ServerPair(a, b, url, password)
    finally:
        b.stop()
        a.stop()
        if created:
            try:
                _psql(base_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            except (FileNotFoundError, subprocess.CalledProcessError) as e:
                sys.stderr.write(f"neutrino_pg_pair: could not drop {dbname}: {e}\n")
