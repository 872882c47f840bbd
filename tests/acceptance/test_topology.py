"""The topology page (`/topology/`) in a real headless browser (Debian's Chromium, driven by
Selenium through chromedriver), and the view it reads (`GET /v2.0/neutrino/topology`).

A project's member builds a scenario with the `openstack` CLI (two networks, a router with a
gateway, ports, a floating IP, a trunk and a service chain), logs in on the page with their
Keystone credentials and must see it drawn; a change made with the CLI appears without a
reload; clicking an object shows its attributes; a user of another project sees none of it.
A screenshot of the scenario is written to ``target/test-logs/topology.png`` (or to
``NEUTRINO_TOPOLOGY_SCREENSHOT``). Browser tests skip, saying why, when Chromium or
chromedriver is missing; the view's HTTP semantics are tested without a browser.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO, osc, unique, user_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = Path(os.environ.get("NEUTRINO_TOPOLOGY_SCREENSHOT")
                  or REPO / "target" / "test-logs" / "topology.png")


# ---------------------------------------------------------------------------------------------
# HTTP helpers


def token_of(server, username: str, password: str, project: str) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": username, "password": password, "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}
    req = urllib.request.Request(server.url + "/v3/auth/tokens", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers["X-Subject-Token"]


def call(server, method: str, path: str, token: str | None, body=None, headers=None,
         timeout: float = 90):
    """(status, headers, JSON body or None) of one request; HTTP errors are returned."""
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["X-Auth-Token"] = token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, r.headers, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw.decode(errors="replace")
        return e.code, e.headers, doc


def ids(view: dict) -> set[str]:
    return {item["id"] for part in view["topology"].values() if isinstance(part, list)
            for item in part if isinstance(item, dict) and "id" in item}


def sfc_create(kind: str, *args: str, env: dict[str, str]) -> dict:
    """``openstack sfc KIND create ARGS``; networking-sfc's plugin prints title-case keys
    ("ID", "Name"), returned here in lower case like the core commands' output."""
    made = osc("sfc", *kind.split(), "create", *args, env=env)
    return {k.lower(): v for k, v in made.items()}


# ---------------------------------------------------------------------------------------------
# the scenario


class Person:
    def __init__(self, server, admin_env, project: str, role: str = "member"):
        self.name, self.password, self.project = unique("topo-user"), "pw-" + secrets.token_hex(8), project
        osc("user", "create", "--password", self.password, self.name, env=admin_env)
        osc("role", "add", "--user", self.name, "--project", project, role, env=admin_env)
        self.env = user_env(admin_env, self.name, self.password, project)
        self.server = server

    def token(self) -> str:
        return token_of(self.server, self.name, self.password, self.project)


@pytest.fixture(scope="module")
def cloud(neutrino, admin_env):
    """Two projects with a member each; in the first, the scenario of the module doc."""
    made = []
    projects = [unique("topo-a"), unique("topo-b")]
    for p in projects:
        osc("project", "create", p, env=admin_env)
    alice = Person(neutrino, admin_env, projects[0])
    bob = Person(neutrino, admin_env, projects[1])
    public = unique("public")
    osc("network", "create", "--external", public, env=admin_env)
    made.append(("network", public, admin_env))
    osc("subnet", "create", "--network", public, "--subnet-range", "198.18.120.0/24",
        "--no-dhcp", public + "-v4", env=admin_env)
    made.append(("subnet", public + "-v4", admin_env))
    e = alice.env
    s = {"public": public}
    for net, cidr in (("web", "10.61.1.0/24"), ("db", "10.61.2.0/24")):
        s[net] = osc("network", "create", unique(net), env=e)
        s[net + "-v4"] = osc("subnet", "create", "--network", s[net]["id"], "--subnet-range", cidr,
                             unique(net + "-v4"), env=e)
    s["router"] = osc("router", "create", unique("edge"), env=e)
    osc("router", "set", "--external-gateway", public, s["router"]["id"], env=e)
    for net in ("web", "db"):
        osc("router", "add", "subnet", s["router"]["id"], s[net + "-v4"]["id"], env=e)
    # Ports of three instances: a client, a server and a firewall with two legs.
    instances = {"client": str(uuid.uuid4()), "server": str(uuid.uuid4()),
                 "firewall": str(uuid.uuid4())}
    for name, net, instance in (("client", "web", "client"), ("server", "db", "server"),
                                ("fw-in", "web", "firewall"), ("fw-out", "web", "firewall")):
        s[name] = osc("port", "create", "--network", s[net]["id"], "--device-owner",
                      "compute:nova", "--device", instances[instance], unique(name), env=e)
    s["fip"] = osc("floating", "ip", "create", "--port", s["client"]["id"], public, env=e)
    s["pair"] = sfc_create("port pair", "--ingress", s["fw-in"]["id"],
                    "--egress", s["fw-out"]["id"], unique("fw"), env=e)
    s["group"] = sfc_create("port pair group", "--port-pair", s["pair"]["id"],
                     unique("firewalls"), env=e)
    s["classifier"] = sfc_create("flow classifier", "--ethertype", "IPv4",
                          "--protocol", "tcp", "--destination-port", "80:80",
                          "--logical-source-port", s["client"]["id"],
                          "--logical-destination-port", s["server"]["id"], unique("http"), env=e)
    s["chain"] = sfc_create("port chain", "--port-pair-group", s["group"]["id"],
                     "--flow-classifier", s["classifier"]["id"], unique("web-to-db"), env=e)
    yield alice, bob, s
    undo = [
        ("sfc", "port", "chain", "delete", s["chain"]["id"]),
        ("sfc", "flow", "classifier", "delete", s["classifier"]["id"]),
        ("sfc", "port", "pair", "group", "delete", s["group"]["id"]),
        ("sfc", "port", "pair", "delete", s["pair"]["id"]),
        ("floating", "ip", "delete", s["fip"]["id"]),
        *[("port", "delete", s[p]["id"]) for p in ("client", "server", "fw-in", "fw-out")],
        *[("router", "remove", "subnet", s["router"]["id"], s[n + "-v4"]["id"])
          for n in ("web", "db")],
        ("router", "delete", s["router"]["id"]),
        *[("network", "delete", s[n]["id"]) for n in ("web", "db")],
    ]
    for args in undo:
        try:
            osc(*args, env=e)
        except AssertionError:
            pass
    for kind, name, env in reversed(made):
        try:
            osc(kind, "delete", name, env=env)
        except AssertionError:
            pass


# ---------------------------------------------------------------------------------------------
# the view, without a browser


def test_the_view_holds_what_the_caller_may_list_and_waits_for_their_changes(neutrino, cloud):
    alice, bob, s = cloud
    a, b = alice.token(), bob.token()
    status, headers, view = call(neutrino, "GET", "/v2.0/neutrino/topology", a)
    assert status == 200, view
    etag = headers["ETag"]
    assert etag.startswith('"') and headers["Cache-Control"] == "no-store"
    t = view["topology"]
    for part in ("networks", "subnets", "ports", "routers", "floatingips", "trunks",
                 "flow_classifiers", "port_pairs", "port_pair_groups", "port_chains",
                 "port_chain_statistics", "l2_gateway_connections"):
        assert isinstance(t[part], list), part
    mine = ids(view)
    for key in ("web", "db", "router", "client", "server", "fip", "pair", "group", "classifier",
                "chain"):
        assert s[key]["id"] in mine, key
    # A member does not see the admin-only host binding.
    assert all("binding:host_id" not in p for p in t["ports"])
    # Bob sees none of Alice's objects (the external network is visible to all, as in Neutron).
    status, _, theirs = call(neutrino, "GET", "/v2.0/neutrino/topology", b)
    assert status == 200
    leaked = (mine & ids(theirs)) - {n["id"] for n in t["networks"] if n["router:external"]} \
        - {sn["id"] for sn in t["subnets"] if sn["network_id"] in
           {n["id"] for n in t["networks"] if n["router:external"]}}
    assert not leaked, leaked
    # Unchanged: 304 with the same tag once the wait is over.
    status, headers, _ = call(neutrino, "GET", "/v2.0/neutrino/topology?timeout=0.5", a,
                              headers={"If-None-Match": etag})
    assert status == 304 and headers["ETag"] == etag
    # Bob's change does not end Alice's wait; hers does, with the new view.
    bob_etag = call(neutrino, "GET", "/v2.0/neutrino/topology", b)[1]["ETag"]
    osc("network", "create", unique("bobs"), env=bob.env)
    status, _, _ = call(neutrino, "GET", "/v2.0/neutrino/topology?timeout=1", a,
                        headers={"If-None-Match": etag})
    assert status == 304
    status, _, _ = call(neutrino, "GET", "/v2.0/neutrino/topology?timeout=5", b,
                        headers={"If-None-Match": bob_etag})
    assert status == 200
    import threading
    answer = {}

    def wait():
        answer["r"] = call(neutrino, "GET", "/v2.0/neutrino/topology?timeout=30", a,
                           headers={"If-None-Match": etag})

    waiter = threading.Thread(target=wait)
    started = time.monotonic()
    waiter.start()
    time.sleep(0.5)
    net = osc("network", "create", unique("late"), env=alice.env)
    waiter.join(40)
    status, headers, view = answer["r"]
    assert status == 200 and headers["ETag"] != etag
    assert net["id"] in ids(view)
    assert time.monotonic() - started < 25, "the wait did not end on the change"
    osc("network", "delete", net["id"], env=alice.env)
    # Errors: no token, bad timeout, wrong method, as Neutron's error bodies.
    status, _, body = call(neutrino, "GET", "/v2.0/neutrino/topology", None)
    assert status == 401
    status, _, body = call(neutrino, "GET", "/v2.0/neutrino/topology?timeout=61", a,
                           headers={"If-None-Match": etag})
    assert status == 400 and body["NeutronError"]["type"] == "HTTPBadRequest", body
    status, _, body = call(neutrino, "POST", "/v2.0/neutrino/topology", a, body={})
    assert status == 405 and "NeutronError" in body


def test_the_page_is_served_from_the_binary_with_a_strict_policy(neutrino):
    for path, kind in (("/topology/", "text/html"), ("/topology", "text/html"),
                       ("/topology/app.js", "text/javascript"),
                       ("/topology/vendor/cytoscape.min.js", "text/javascript"),
                       ("/topology/app.css", "text/css")):
        status, headers, _ = call_raw(neutrino, path)
        assert status == 200, path
        assert headers["Content-Type"].startswith(kind), (path, headers["Content-Type"])
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert call_raw(neutrino, "/topology/nope.js")[0] == 404


def call_raw(server, path):
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


# ---------------------------------------------------------------------------------------------
# the page, in a browser


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("Chromium or chromedriver is not installed (Debian: chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed in this venv")
    # Selenium must not try to download a driver or browser.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")


def log_in(driver, server, person: Person):
    from selenium.webdriver.common.by import By

    driver.get(server.url + "/topology/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(server.url + "/topology/")
    form = driver.find_element(By.ID, "login")
    assert form.is_displayed()
    for field, value in (("username", person.name), ("password", person.password),
                         ("project", person.project)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.ID, "submit").click()
    wait_for(lambda: driver.execute_script(
        "return window.neutrinoTopology.renders > 0"), what="first drawing")
    assert not form.is_displayed()


def drawn(driver) -> dict[str, str]:
    """The elements drawn, id -> label, for the nodes inside the visible graph area."""
    return driver.execute_script("""
        const cy = window.neutrinoTopology.cy;
        const out = {};
        const w = cy.width(), h = cy.height();
        cy.nodes().forEach(n => {
            const b = n.renderedBoundingBox();
            if (b.x2 > 0 && b.y2 > 0 && b.x1 < w && b.y1 < h) out[n.id()] = n.data('label');
        });
        cy.edges().forEach(e => { out[e.id()] = e.data('label') || ''; });
        return out;
    """)


def test_a_member_sees_their_project_drawn_and_live(neutrino, cloud, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    alice, _, s = cloud
    log_in(browser, neutrino, alice)
    seen = drawn(browser)
    for kind, key in (("network", "web"), ("network", "db"), ("subnet", "web-v4"),
                      ("subnet", "db-v4"), ("router", "router"), ("port", "client"),
                      ("port", "server"), ("fip", "fip"), ("ppg", "group"), ("pp", "pair")):
        assert f"{kind}:{s[key]['id']}" in seen, (kind, key, sorted(seen))
    assert seen[f"fip:{s['fip']['id']}"] == s["fip"]["floating_ip_address"]
    # The router's two interfaces and its gateway; the chain's path client -> group -> server.
    interfaces = [k for k in seen if k.startswith("interface:")]
    assert len(interfaces) == 2, interfaces
    assert any(k.startswith(f"gateway:{s['router']['id']}") for k in seen)
    chain = s["chain"]["id"]
    assert f"chain:{chain}:from:port:{s['client']['id']}" in seen
    assert f"chain:{chain}:to:port:{s['server']['id']}" in seen
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))

    # Clicking the router shows its attributes.
    x, y = browser.execute_script(
        "const p = window.neutrinoTopology.cy.getElementById(arguments[0]).renderedPosition();"
        "return [p.x, p.y];", f"router:{s['router']['id']}")
    graph = browser.find_element(By.ID, "graph")
    size = graph.size
    ActionChains(browser).move_to_element_with_offset(
        graph, int(x - size["width"] / 2), int(y - size["height"] / 2)).click().perform()
    details = browser.find_element(By.ID, "details")
    wait_for(details.is_displayed, what="details panel")
    assert s["router"]["id"] in details.text and s["router"]["name"] in details.text

    # A change through the CLI appears without a reload (the marker would be lost).
    browser.execute_script("window.__sameDocument = true")
    net = osc("network", "create", unique("live"), env=alice.env)
    wait_for(lambda: f"network:{net['id']}" in drawn(browser), what="new network drawn")
    port = osc("port", "create", "--network", net["id"], unique("live-port"), env=alice.env)
    parent = osc("port", "create", "--network", s["web"]["id"], unique("trunk-parent"),
                 env=alice.env)
    trunk = osc("network", "trunk", "create", "--parent-port", parent["id"], "--subport",
                f"port={port['id']},segmentation-type=vlan,segmentation-id=101", unique("t"),
                env=alice.env)
    wait_for(lambda: f"subport:{trunk['id']}:{port['id']}" in drawn(browser),
             what="trunk and subport drawn")
    assert drawn(browser)[f"subport:{trunk['id']}:{port['id']}"] == "vlan 101"
    osc("network", "trunk", "delete", trunk["id"], env=alice.env)
    for p in (port, parent):
        osc("port", "delete", p["id"], env=alice.env)
    osc("network", "delete", net["id"], env=alice.env)
    wait_for(lambda: f"network:{net['id']}" not in drawn(browser), what="network removed")
    assert browser.execute_script("return window.__sameDocument === true")


def test_a_user_of_another_project_sees_none_of_it(neutrino, cloud, browser):
    alice, bob, s = cloud
    log_in(browser, neutrino, bob)
    seen = drawn(browser)
    for key in ("web", "db", "router", "client", "server", "fip", "pair", "group", "chain"):
        assert not any(s[key]["id"] in element for element in seen), (key, sorted(seen))
    browser.find_element("id", "logout").click()
    wait_for(lambda: browser.find_element("id", "login").is_displayed(), what="login form")


def test_a_project_of_500_ports_is_drawn(neutrino, admin_env, cloud, browser):
    """All 500 ports are on the page, the plain ones folded into their instances (which show
    their port count and list the ports when clicked), while a port something points at stays
    drawn; the time from the view's arrival to the painted frame is printed (the figure
    docs/BENCHMARKS.md records)."""
    alice, _, s = cloud
    osc("quota", "set", "--ports", "-1", alice.project, env=admin_env)
    token = alice.token()
    net = osc("network", "create", unique("many"), env=alice.env)
    osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.62.0.0/22",
        unique("many-v4"), env=alice.env)
    made = []
    for batch in range(5):
        body = {"ports": [{"network_id": net["id"], "name": f"many-{batch}-{i}",
                           "device_id": f"vm-{batch}-{i // 4}", "device_owner": "compute:nova"}
                          for i in range(100)]}
        status, _, doc = call(neutrino, "POST", "/v2.0/ports", token, body)
        assert status == 201, doc
        made += [p["id"] for p in doc["ports"]]
    # One of them is a trunk's parent: it must stay a node of its own.
    trunk = osc("network", "trunk", "create", "--parent-port", made[0], unique("many-trunk"),
                env=alice.env)
    try:
        log_in(browser, neutrino, alice)
        counts = browser.execute_script("""
            const cy = window.neutrinoTopology.cy;
            const folded = cy.nodes('.folded');
            return {drawn: cy.nodes('.port').length, folded: folded.length,
                    inFolded: folded.map(n => n.data('ports')).reduce((a, b) => a + b, 0),
                    labels: folded.map(n => n.data('label')).slice(0, 3)};""")
        assert counts["drawn"] + counts["inFolded"] >= 500, counts
        assert counts["folded"] >= 100, counts
        assert all(label.endswith("4 ports") for label in counts["labels"]), counts
        assert browser.execute_script(
            f"return window.neutrinoTopology.cy.getElementById('port:{made[0]}').nonempty()")
        # The instance with the trunk's parent port keeps its ports drawn; the others fold.
        instance = browser.execute_script(
            "return window.neutrinoTopology.cy.getElementById('device:vm-0-0').isParent()")
        assert instance
        folded = browser.execute_script(
            "const n = window.neutrinoTopology.cy.getElementById('device:vm-0-1');"
            "n.emit('tap'); return n.hasClass('folded')")
        assert folded
        wait_for(lambda: browser.find_element("id", "details").is_displayed(), what="details")
        listed = browser.find_element("id", "details-body").text
        assert "many-0-4" in listed and "many-0-7" in listed, listed
        ms = browser.execute_script("return window.neutrinoTopology.lastRenderMs")
        phases = browser.execute_script("return window.neutrinoTopology.lastPhasesMs")
        print(f"\ntopology page: {counts['drawn']} ports drawn and {counts['inFolded']} folded"
              f" into {counts['folded']} instances, painted {ms} ms after the view arrived"
              f" ({phases})")
    finally:
        osc("network", "trunk", "delete", trunk["id"], env=alice.env)
        for i in range(0, len(made), 50):
            for pid in made[i:i + 50]:
                call(neutrino, "DELETE", f"/v2.0/ports/{pid}", token)
        osc("network", "delete", net["id"], env=alice.env)
