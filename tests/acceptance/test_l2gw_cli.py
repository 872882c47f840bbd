"""The `openstack l2gw ...` and `openstack l2gw connection ...` commands: networking-l2gw's own
OSC plugin (from PyPI) against the server.

networking-l2gw is installed with ``pip install --no-deps`` (tests/acceptance/
requirements-nodeps.txt): the package requires the whole Neutron server (neutron, neutron-lib,
ovsdbapp and their compiled dependencies), while its OSC plugin only imports osc-lib,
python-neutronclient, openstacksdk, pbr and oslo.i18n, which requirements.txt already installs.
The commands run here are that real plugin code, unchanged.
"""

from __future__ import annotations

import secrets

import pytest

from conftest import osc, osc_fails, osc_run, unique, user_env


@pytest.fixture(autouse=True)
def _plugin_installed():
    try:
        import networking_l2gw.l2gatewayclient.osc.l2gw  # noqa: F401
    except ImportError as e:  # pragma: no cover - scripts/test installs it
        pytest.fail(f"networking-l2gw's OSC plugin is not installed ({e}); see requirements-nodeps.txt")


def _gateway(env, cleanup, *args: str) -> dict:
    """`openstack l2gw create ARGS`, deleted at teardown."""
    gw = osc("l2gw", "create", *args, env=env)
    cleanup.add(osc_run, "l2gw", "delete", gw["id"], env=env)
    return gw


def _net(env, cleanup) -> dict:
    net = osc("network", "create", unique("l2gwnet"), env=env)
    cleanup.add(osc_run, "network", "delete", net["id"], env=env)
    return net


def _interfaces(gw: dict) -> dict[str, list]:
    """device name → {interface name: VLANs} of a gateway as the CLI prints it."""
    return {d["device_name"]: {i["name"]: i["segmentation_id"] for i in d["interfaces"]}
            for d in gw["devices"]}


def test_l2gw_lifecycle(admin_env, cleanup):
    env = admin_env
    name = unique("gw")
    gw = _gateway(env, cleanup, name, "--device", "name=switch1,interface_names=eth1|100#200;eth2|300",
                  "--device", "name=switch2,interface_names=eth3|400")
    assert gw["name"] == name
    assert _interfaces(gw) == {"switch1": {"eth1": ["100", "200"], "eth2": ["300"]},
                               "switch2": {"eth3": ["400"]}}
    assert all(len(d["id"]) == 36 for d in gw["devices"])

    # show by name and by id; list.
    assert osc("l2gw", "show", name, env=env)["id"] == gw["id"]
    shown = osc("l2gw", "show", gw["id"], env=env)
    assert _interfaces(shown) == _interfaces(gw)
    listed = {row["ID"]: row for row in osc("l2gw", "list", env=env)}
    assert listed[gw["id"]]["Name"] == name

    # update: name; one device's interfaces replaced (its id stays).
    renamed = unique("gw")
    up = osc("l2gw", "update", gw["id"], "--name", renamed, env=env, json_output=True)
    assert up["name"] == renamed and _interfaces(up) == _interfaces(gw)
    up = osc("l2gw", "update", gw["id"], "--device", "name=switch2,interface_names=eth9|401", env=env,
             json_output=True)
    assert _interfaces(up)["switch2"] == {"eth9": ["401"]}
    assert _interfaces(up)["switch1"] == _interfaces(gw)["switch1"]
    before = {d["device_name"]: d["id"] for d in gw["devices"]}
    assert {d["device_name"]: d["id"] for d in up["devices"]} == before

    # A device the gateway lacks: 404 from the server, a failed command.
    failed = osc_fails("l2gw", "update", gw["id"], "--device", "name=nope,interface_names=e|5", env=env)
    assert "L2 Gateway Device nope could not be found" in failed.stderr, failed.stderr

    osc("l2gw", "delete", gw["id"], env=env)
    assert osc_fails("l2gw", "show", gw["id"], env=env).returncode != 0
    assert gw["id"] not in {row["ID"] for row in osc("l2gw", "list", env=env)}


def test_l2gw_validation(admin_env, cleanup):
    env = admin_env
    for args, text in [
        (("--device", "name=,interface_names=eth1"), "empty device_name"),
        (("--device", "name=sw,interface_names=eth1|4095"), "out of range"),
        (("--device", "name=sw,interface_names=eth1|-1"), "out of range"),
        (("--device", "name=sw,interface_names=eth1|x"), "valid integer"),
        (("--device", "name=sw,interface_names=eth1|5;eth2"), "consistent"),
    ]:
        failed = osc_fails("l2gw", "create", unique("bad"), *args, env=env)
        assert text in failed.stderr, (args, failed.stderr)
    # Nothing was stored.
    assert not [r for r in osc("l2gw", "list", env=env) if r["Name"].startswith("bad-")]


def test_l2gw_connection_lifecycle(admin_env, cleanup):
    env = admin_env
    net = _net(env, cleanup)
    plain = _gateway(env, cleanup, unique("gw"), "--device", "name=sw1,interface_names=eth1;eth2")
    tagged = _gateway(env, cleanup, unique("gw"), "--device", "name=sw2,interface_names=eth1|100")

    # Segmentation id on exactly one side.
    failed = osc_fails("l2gw", "connection", "create", plain["id"], net["id"], env=env)
    assert "Segmentation id must be specified" in failed.stderr, failed.stderr
    failed = osc_fails("l2gw", "connection", "create", tagged["id"], net["id"],
                       "--default-segmentation-id", "200", env=env)
    assert "should not be provided" in failed.stderr, failed.stderr
    failed = osc_fails("l2gw", "connection", "create", plain["id"], net["id"],
                       "--default-segmentation-id", "4095", env=env)
    assert "out of range" in failed.stderr, failed.stderr

    # By name and by id.
    conn = osc("l2gw", "connection", "create", plain["name"], net["name"],
               "--default-segmentation-id", "100", env=env)
    cleanup.add(osc_run, "l2gw", "connection", "delete", conn["id"], env=env)
    assert str(conn["segmentation_id"]) == "100"
    assert conn["network_id"] == net["id"]
    own = osc("l2gw", "connection", "create", tagged["id"], net["id"], env=env)
    cleanup.add(osc_run, "l2gw", "connection", "delete", own["id"], env=env)
    assert own["segmentation_id"] == ""

    shown = osc("l2gw", "connection", "show", conn["id"], env=env)
    assert shown["id"] == conn["id"] and str(shown["segmentation_id"]) == "100"
    rows = {r["ID"]: r for r in osc("l2gw", "connection", "list", env=env)}
    assert rows[conn["id"]]["L2 GateWay ID"] == plain["id"]
    assert rows[conn["id"]]["Network ID"] == net["id"]
    assert own["id"] in rows

    # The same pair twice: 409.
    failed = osc_fails("l2gw", "connection", "create", plain["id"], net["id"],
                       "--default-segmentation-id", "101", env=env)
    assert "exists on network gateway" in failed.stderr, failed.stderr
    # A connected gateway cannot be deleted.
    failed = osc_fails("l2gw", "delete", plain["id"], env=env)
    assert "Failed to delete" in failed.stderr, failed.stderr
    assert osc("l2gw", "show", plain["id"], env=env)["id"] == plain["id"]

    osc("l2gw", "connection", "delete", conn["id"], env=env)
    assert osc_fails("l2gw", "connection", "show", conn["id"], env=env).returncode != 0
    osc("l2gw", "delete", plain["id"], env=env)


def test_l2gw_admin_only(admin_env, cleanup):
    project = unique("l2gwproj")
    osc("project", "create", project, env=admin_env)
    cleanup.add(osc_run, "project", "delete", project, env=admin_env)
    username, password = unique("user"), "pw-" + secrets.token_hex(8)
    user = osc("user", "create", "--project", project, "--password", password, username,
               env=admin_env)
    cleanup.add(osc_run, "user", "delete", user["id"], env=admin_env)
    osc("role", "add", "--user", username, "--project", project, "member", env=admin_env)
    env = user_env(admin_env, username, password, project)
    net = _net(env, cleanup)
    gw = _gateway(admin_env, cleanup, unique("gw"), "--device", "name=sw,interface_names=eth1|7")

    failed = osc_fails("l2gw", "create", unique("gw"), "--device", "name=sw,interface_names=e|5", env=env)
    assert "disallowed by policy" in failed.stderr, failed.stderr
    failed = osc_fails("l2gw", "list", env=env)
    assert "admin privileges" in failed.stderr, failed.stderr
    failed = osc_fails("l2gw", "connection", "list", env=env)
    assert "admin privileges" in failed.stderr, failed.stderr
    failed = osc_fails("l2gw", "connection", "create", gw["id"], net["id"], env=env)
    assert failed.returncode != 0
    assert osc_fails("l2gw", "delete", gw["id"], env=env).returncode != 0
    assert osc("l2gw", "show", gw["id"], env=admin_env)["id"] == gw["id"]
