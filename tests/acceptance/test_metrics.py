"""The server's and the agent's Prometheus metrics: scraped before and after a known workload, the counters
move by exactly that workload, and the text parses with Prometheus' own Python parser.
``GET /metrics`` on the API address needs an admin token; ``--metrics-listen`` serves it
without one on a separate address.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import NeutrinoServer, _server_binary, free_port, osc, osc_run, unique
from dataplane_lab import Lab, bound_port, needs_root, network_with_subnet, wait_active, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    srv = NeutrinoServer(_server_binary(), tmp_path_factory.mktemp("metrics"),
                         extra_args=["--metrics-listen", f"127.0.0.1:{port}"]).start()
    srv.metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        yield srv
    finally:
        srv.stop()


def http(method: str, url: str, token: str | None = None, body: dict | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def samples(text: str) -> dict[tuple, float]:
    """Every sample as ``(name, sorted labels) -> value``."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(server) -> dict[tuple, float]:
    status, headers, text = http("GET", server.metrics_url)
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain"), headers
    return samples(text)


def requests_total(m, collection: str, method: str, status: int) -> float:
    key = ("neutrino_api_requests_total",
           (("collection", collection), ("method", method), ("status", str(status))))
    return m.get(key, 0.0)


def test_counters_move_by_exactly_the_workload(server):
    token = osc("token", "issue", env=server.env)["id"]
    before = scrape(server)
    api = server.url + "/v2.0"
    for _ in range(3):
        status, _, _ = http("POST", api + "/networks", token, {"network": {"name": unique("m")}})
        assert status == 201
    for _ in range(2):
        assert http("GET", api + "/networks", token)[0] == 200
    assert http("GET", api + "/networks/no-such-network", token)[0] == 404
    assert http("GET", api + "/ports")[0] == 401
    after = scrape(server)

    def delta(collection, method, status):
        return (requests_total(after, collection, method, status)
                - requests_total(before, collection, method, status))

    assert delta("networks", "POST", 201) == 3
    assert delta("networks", "GET", 200) == 2
    assert delta("networks", "GET", 404) == 1
    assert delta("ports", "GET", 401) == 1
    latency = ("neutrino_api_request_duration_seconds_count",
               (("collection", "networks"), ("method", "POST")))
    assert after[latency] - before.get(latency, 0) == 3
    # Each create is one write transaction; three commits carried them (nothing else wrote).
    commits = "neutrino_store_commit_transactions_sum", ()
    assert after[commits] - before[commits] == 3
    count = "neutrino_store_commit_duration_seconds_count", ()
    assert after[count] - before[count] == 3
    revision = "neutrino_feed_revision", ()
    assert after[revision] - before[revision] == 3
    assert after[("neutrino_agents", (("state", "alive"),))] == 0
    assert after[("neutrino_feed_watchers", ())] == 0


def test_the_api_address_serves_metrics_to_admins_only(server):
    assert http("GET", server.url + "/metrics")[0] == 401
    admin = osc("token", "issue", env=server.env)["id"]
    status, _, text = http("GET", server.url + "/metrics", admin)
    assert status == 200
    assert ("neutrino_feed_revision", ()) in samples(text)
    # A member of another project is refused by the get_metrics rule.
    name, project = unique("mu"), unique("mp")
    osc("project", "create", project, env=server.env)
    osc("user", "create", "--password", "pw", "--project", project, name, env=server.env)
    osc_run("role", "add", "--user", name, "--project", project, "member", env=server.env)
    login = {"auth": {"identity": {"methods": ["password"],
                                   "password": {"user": {"name": name, "password": "pw",
                                                         "domain": {"id": "default"}}}},
                      "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
    status, headers, _ = http("POST", server.url + "/v3/auth/tokens", body=login)
    assert status == 201
    status, _, body = http("GET", server.url + "/metrics", headers["X-Subject-Token"])
    assert status == 403, body
    assert json.loads(body)["NeutronError"]["type"] == "PolicyNotAuthorized"


@needs_root
def test_agent_metrics_follow_its_work(server, tmp_path):
    """An agent's `--metrics-listen`: a port bound to its host shows up ACTIVE, reconciles and
    kernel operations move, and the acknowledged revision catches up (lag 0)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    lab = Lab(server, tmp_path, ("h1",))
    lab.agent_args["h1"] = ["--metrics-listen", f"127.0.0.1:{port}"]
    try:
        lab.setup()

        def agent_scrape():
            status, _, text = http("GET", url)
            assert status == 200, text
            return samples(text)

        before = agent_scrape()
        env = server.env
        net, _ = network_with_subnet(env, "10.68.0.0/24")
        p = bound_port(env, net, "h1", "m1")
        wait_active(env, p["id"])

        # The port and the network's DHCP port are bound to h1.
        on_h1 = len(osc("port", "list", "--host", "h1", env=env))
        active = "neutrino_agent_ports", (("status", "ACTIVE"),)
        lag = "neutrino_agent_revision_lag", ()

        def caught_up():
            m = agent_scrape()
            return m if m.get(lag) == 0 and m.get(active) == on_h1 else None

        after = wait_for("the agent's metrics to catch up", caught_up)
        assert on_h1 >= 1 and before.get(active, 0) == 0
        reconciles = "neutrino_agent_reconciles_total", ()
        assert after[reconciles] > before[reconciles]
        kernel = "neutrino_agent_operations_total", (("kind", "kernel"),)
        assert after[kernel] > before.get(kernel, 0)
        assert after[("neutrino_agent_applied_revision", ())] >= \
            before[("neutrino_agent_applied_revision", ())]
        assert after[("neutrino_agent_reconcile_duration_seconds_count", ())] >= 1
    finally:
        lab.teardown()
