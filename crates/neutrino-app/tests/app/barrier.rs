//! The realisation barrier: a port its host reports plugged turns ACTIVE only once every
//! alive host that must know it (ports on its network, ports in groups naming its group as
//! remote group) has acknowledged the revision of the report; dead hosts do not hold it back;
//! the barrier switched off restores the old behaviour; revision waits report lagging hosts.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

async fn register(t: &Env, host: &str) {
    let body = json!({"agent": {"host": host, "configurations": {"tunnel_ip": "198.18.0.1"}}});
    t.app.report_agent(&admin(), body).await.unwrap();
}

async fn status(t: &Env, port: &str) -> String {
    let doc = t
        .app
        .show(&admin(), coll("ports"), port, &[])
        .await
        .unwrap();
    doc["status"].as_str().unwrap().to_string()
}

async fn plugged(t: &Env, host: &str, port: &str, revision: i64) -> Value {
    let body = json!({"host": host, "revision": revision,
                      "ports": [{"id": port, "status": "ACTIVE"}]});
    t.app.report_port_status(&admin(), body).await.unwrap()
}

async fn applied(t: &Env, host: &str, revision: i64) -> Value {
    let body = json!({"host": host, "revision": revision});
    t.app.report_applied(&admin(), body).await.unwrap()
}

async fn port(t: &Env, net: &str, host: &str, groups: &[&str]) -> String {
    let mut body = json!({"network_id": net, "binding:host_id": host, "device_id": host});
    if !groups.is_empty() {
        body["security_groups"] = json!(groups);
    }
    id(&t.ok(&admin(), "ports", body).await)
}

/// Hosts h1 and h2, each with a port on one network; returns the port of h1.
async fn two_hosts_one_network(t: &Env) -> String {
    for h in ["h1", "h2"] {
        register(t, h).await;
    }
    let net = id(&t.ok(&admin(), "networks", json!({"name": "n"})).await);
    let p1 = port(t, &net, "h1", &[]).await;
    port(t, &net, "h2", &[]).await;
    p1
}

async fn revision(t: &Env) -> i64 {
    let out = t
        .app
        .revision_status(&admin(), 0, Duration::ZERO)
        .await
        .unwrap();
    out["revision"]["current"].as_i64().unwrap()
}

#[tokio::test]
async fn a_port_turns_active_once_every_host_on_its_network_applied_it() {
    let t = env().await;
    for h in ["h1", "h2", "h3"] {
        register(&t, h).await;
    }
    let net = id(&t.ok(&admin(), "networks", json!({"name": "n"})).await);
    let other = id(&t.ok(&admin(), "networks", json!({"name": "o"})).await);
    let sg = id(&t
        .ok(&admin(), "security-groups", json!({"name": "plain"}))
        .await);
    let p1 = port(&t, &net, "h1", &[&sg]).await;
    let _p2 = port(&t, &net, "h2", &[&sg]).await;
    // h3 has a port elsewhere and no group naming `plain`: it need not know p1.
    let _p3 = port(&t, &other, "h3", &[&sg]).await;
    let r = revision(&t).await;
    let out = plugged(&t, "h1", &p1, r).await;
    assert_eq!(out["waiting"], 1, "{out}");
    assert_eq!(status(&t, &p1).await, "DOWN");
    applied(&t, "h1", r).await;
    assert_eq!(status(&t, &p1).await, "DOWN", "h2 has not applied it yet");
    applied(&t, "h2", r - 1).await;
    assert_eq!(status(&t, &p1).await, "DOWN", "h2 is one revision behind");
    // The same report again keeps the revision it waits for.
    plugged(&t, "h1", &p1, r + 5).await;
    let out = applied(&t, "h2", r).await;
    assert_eq!(out["activated"], 1, "{out}");
    assert_eq!(status(&t, &p1).await, "ACTIVE");
    // An ACTIVE port reported again does not wait.
    let out = plugged(&t, "h1", &p1, r + 10).await;
    assert_eq!(out["waiting"], 0, "{out}");
}

#[tokio::test]
async fn hosts_admitting_the_port_through_a_remote_group_are_waited_for() {
    let t = env().await;
    for h in ["h1", "h2"] {
        register(&t, h).await;
    }
    let net = id(&t.ok(&admin(), "networks", json!({"name": "n"})).await);
    let other = id(&t.ok(&admin(), "networks", json!({"name": "o"})).await);
    let web = id(&t
        .ok(&admin(), "security-groups", json!({"name": "web"}))
        .await);
    let db = id(&t
        .ok(&admin(), "security-groups", json!({"name": "db"}))
        .await);
    t.ok(
        &admin(),
        "security-group-rules",
        json!({"security_group_id": db, "direction": "ingress", "remote_group_id": web}),
    )
    .await;
    let p1 = port(&t, &net, "h1", &[&web]).await;
    // On another network, but its group admits members of `web`.
    port(&t, &other, "h2", &[&db]).await;
    let r = revision(&t).await;
    plugged(&t, "h1", &p1, r).await;
    applied(&t, "h1", r).await;
    assert_eq!(status(&t, &p1).await, "DOWN");
    applied(&t, "h2", r).await;
    assert_eq!(status(&t, &p1).await, "ACTIVE");
}

#[tokio::test]
async fn dead_agents_do_not_hold_ports_back_and_the_barrier_can_be_switched_off() {
    let t = env().await;
    let p1 = two_hosts_one_network(&t).await;
    let r = revision(&t).await;
    plugged(&t, "h1", &p1, r).await;
    applied(&t, "h1", r).await;
    assert_eq!(status(&t, &p1).await, "DOWN");
    // h2 goes silent for longer than the agent down time: the next sweep lets p1 pass.
    t.store.heartbeat("h2", 0).await.unwrap();
    assert_eq!(t.app.barrier_sweep().await.unwrap(), 1);
    assert_eq!(status(&t, &p1).await, "ACTIVE");

    // Off: ACTIVE as soon as the own host reports it.
    let t = env_with(Config {
        active_barrier: false,
        ..Config::default()
    })
    .await;
    let p1 = two_hosts_one_network(&t).await;
    plugged(&t, "h1", &p1, 1).await;
    assert_eq!(status(&t, &p1).await, "ACTIVE");
}

#[tokio::test]
async fn a_port_moved_or_reported_down_stops_waiting() {
    let t = env().await;
    let p1 = two_hosts_one_network(&t).await;
    let r = revision(&t).await;
    plugged(&t, "h1", &p1, r).await;
    let body = json!({"host": "h1", "revision": r, "ports": [{"id": p1, "status": "DOWN"}]});
    t.app.report_port_status(&admin(), body).await.unwrap();
    applied(&t, "h1", r).await;
    applied(&t, "h2", r).await;
    assert_eq!(
        status(&t, &p1).await,
        "DOWN",
        "reported down after the plug"
    );
    // Plugged again, then moved to h2 before the others caught up: the wait is forgotten.
    let r = revision(&t).await;
    plugged(&t, "h1", &p1, r + 1).await;
    t.update(&admin(), "ports", &p1, json!({"binding:host_id": "h2"}))
        .await
        .unwrap();
    applied(&t, "h1", r + 1).await;
    applied(&t, "h2", r + 1).await;
    assert_ne!(status(&t, &p1).await, "ACTIVE");
}

#[tokio::test]
async fn a_revision_is_realised_once_every_alive_agent_applied_it() {
    let t = env().await;
    for h in ["h1", "h2"] {
        register(&t, h).await;
    }
    t.ok(&admin(), "networks", json!({"name": "n"})).await;
    let r = revision(&t).await;
    applied(&t, "h1", r).await;
    let out = t
        .app
        .revision_status(&admin(), r, Duration::from_millis(50))
        .await
        .unwrap();
    let doc = &out["revision"];
    assert_eq!(doc["realised"], false, "{out}");
    assert_eq!(doc["lagging"], json!(["h2"]), "{out}");
    // A waiting caller is answered as soon as h2 catches up.
    let app = t.app.clone();
    let waiter = tokio::spawn(async move {
        app.revision_status(&admin(), r, Duration::from_secs(30))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    applied(&t, "h2", r + 3).await;
    let out = waiter.await.unwrap().unwrap();
    assert_eq!(out["revision"]["realised"], true, "{out}");
    // Waiting for named hosts only: h1 is behind a later revision, h2 is not.
    t.ok(&admin(), "networks", json!({"name": "n2"})).await;
    let r2 = revision(&t).await;
    applied(&t, "h2", r2).await;
    let only = |h: &str| std::collections::BTreeSet::from([h.to_string()]);
    let out = t
        .app
        .revision_status_of(&admin(), r2, Duration::ZERO, Some(&only("h2")))
        .await
        .unwrap();
    assert_eq!(out["revision"]["realised"], true, "{out}");
    let out = t
        .app
        .revision_status_of(&admin(), r2, Duration::ZERO, Some(&only("h1")))
        .await
        .unwrap();
    assert_eq!(out["revision"]["realised"], false, "{out}");
    assert_eq!(out["revision"]["lagging"], json!(["h1"]), "{out}");
    // Project members may wait too, but see no host names.
    let out = t
        .app
        .revision_status(&tenant(), r, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(out["revision"]["realised"], true, "{out}");
    assert!(out["revision"].get("hosts").is_none(), "{out}");
    assert_eq!(out["revision"]["lagging_hosts"], 0, "{out}");
    // A revision not yet written is not realised.
    let out = t
        .app
        .revision_status(&admin(), r + 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(out["revision"]["realised"], false, "{out}");
    // Only agents (admin or service) acknowledge.
    let body = json!({"host": "h1", "revision": 1});
    assert_err(
        t.app.report_applied(&tenant(), body).await,
        403,
        "PolicyNotAuthorized",
    );
}

/// Two servers on one PostgreSQL (when `NEUTRINO_TEST_PG_URL` names one; SQLite otherwise):
/// the report reaches one, the acknowledgements either, both sweep at once, and the port
/// turns ACTIVE exactly once.
#[tokio::test]
async fn servers_sharing_a_database_decide_once() {
    let tag = format!("{}-{}", std::process::id(), rand_tag());
    let (h1, h2) = (format!("h1-{tag}"), format!("h2-{tag}"));
    for pair in server_pairs().await {
        let ServerPair {
            one, two, store, ..
        } = &pair;
        for h in [&h1, &h2] {
            let body = json!({"agent": {"host": h, "configurations": {}}});
            one.report_agent(&admin(), body).await.unwrap();
        }
        let create = |path: &'static str, body: Value| {
            let one = one.clone();
            async move {
                let mut out = one
                    .create(&admin(), coll(path), vec![doc(body)])
                    .await
                    .unwrap();
                Value::Object(out.remove(0))
            }
        };
        let net = id(&create("networks", json!({"name": "n"})).await);
        let p1 = id(&create("ports", json!({"network_id": net, "binding:host_id": h1})).await);
        create("ports", json!({"network_id": net, "binding:host_id": h2})).await;
        let r = store.current_revision().await.unwrap();
        let body = json!({"host": h1, "revision": r, "ports": [{"id": p1, "status": "ACTIVE"}]});
        two.report_port_status(&admin(), body).await.unwrap();
        one.report_applied(&admin(), json!({"host": h1, "revision": r}))
            .await
            .unwrap();
        let show = |app: App, id: String| async move {
            Value::Object(app.show(&admin(), coll("ports"), &id, &[]).await.unwrap())
        };
        let before = show(one.clone(), p1.clone()).await;
        assert_eq!(before["status"], "DOWN");
        // Recorded on server two, decided on both at once.
        let mut tx = store.begin().await.unwrap();
        tx.set_applied(&h2, r, 1).await.unwrap();
        tx.commit().await.unwrap();
        let (x, y) = tokio::join!(one.barrier_sweep(), two.barrier_sweep());
        assert_eq!(x.unwrap() + y.unwrap(), 1, "one server turns it ACTIVE");
        let after = show(two.clone(), p1.clone()).await;
        assert_eq!(after["status"], "ACTIVE");
        assert_eq!(
            after["revision_number"].as_i64().unwrap(),
            before["revision_number"].as_i64().unwrap() + 1
        );
        // Tests sharing the PostgreSQL database schedule on alive agents: these die.
        for h in [&h1, &h2] {
            store.heartbeat(h, 0).await.unwrap();
        }
    }
}

fn rand_tag() -> String {
    format!("{:?}", std::time::Instant::now()).replace([' ', '.', ':', '{', '}'], "")
}

/// A bare-metal server's port is bound to its server, where no agent runs: a host whose
/// agent maps the port's physical network (and so filters the port at its uplink) turns it
/// ACTIVE at once; a host that does not map it, or a report other than ACTIVE, changes
/// nothing.
#[tokio::test]
async fn a_bare_metal_port_turns_active_when_a_host_carrying_its_network_filters_it() {
    let t = env().await;
    let mapped = json!({"agent": {"host": "h1", "configurations":
        {"tunnel_ip": "198.18.0.1", "interface_mappings": {"physnet1": "eth1"}}}});
    t.app.report_agent(&admin(), mapped).await.unwrap();
    register(&t, "h2").await;
    let net = id(&t
        .ok(
            &admin(),
            "networks",
            json!({"name": "flat", "provider:network_type": "flat",
                   "provider:physical_network": "physnet1"}),
        )
        .await);
    let bm = id(&t
        .ok(
            &admin(),
            "ports",
            json!({"network_id": net, "binding:host_id": "node-1",
                   "binding:vnic_type": "baremetal", "device_owner": "baremetal:none"}),
        )
        .await);
    let r = revision(&t).await;
    let report = |host: &str, status: &str| {
        json!({"host": host, "revision": r,
               "ports": [{"id": bm, "status": status, "vif_type": "other"}]})
    };
    t.app
        .report_port_status(&admin(), report("h2", "ACTIVE"))
        .await
        .unwrap();
    assert_eq!(status(&t, &bm).await, "DOWN", "h2 does not carry physnet1");
    t.app
        .report_port_status(&admin(), report("h1", "DOWN"))
        .await
        .unwrap();
    assert_eq!(status(&t, &bm).await, "DOWN");
    t.app
        .report_port_status(&admin(), report("h1", "ACTIVE"))
        .await
        .unwrap();
    assert_eq!(status(&t, &bm).await, "ACTIVE");
    let doc = t.app.show(&admin(), coll("ports"), &bm, &[]).await.unwrap();
    assert_eq!(doc["binding:vif_type"], "other");
    assert_eq!(doc["binding:host_id"], "node-1");
}

/// A container nested in a VM has no binding host: it turns ACTIVE when its VM's host (which
/// filters it at the VM's tap) reports it, and no other host's report counts.
#[tokio::test]
async fn a_nested_container_turns_active_when_its_vms_host_reports_it() {
    let t = env().await;
    for h in ["h1", "h2"] {
        register(&t, h).await;
    }
    let net = id(&t.ok(&admin(), "networks", json!({"name": "n"})).await);
    let vm = port(&t, &net, "h1", &[]).await;
    let nested = id(&t
        .ok(
            &admin(),
            "ports",
            json!({"network_id": net, "device_owner": "compute:container-nested",
                   "binding:profile": {"neutrino:nested_parent": vm,
                                       "neutrino:nested_mode": "macvlan"}}),
        )
        .await);
    let r = revision(&t).await;
    let report = |host: &str| {
        json!({"host": host, "revision": r,
               "ports": [{"id": nested, "status": "ACTIVE", "vif_type": "other"}]})
    };
    t.app
        .report_port_status(&admin(), report("h2"))
        .await
        .unwrap();
    assert_eq!(status(&t, &nested).await, "DOWN", "h2 does not host the VM");
    t.app
        .report_port_status(&admin(), report("h1"))
        .await
        .unwrap();
    assert_eq!(status(&t, &nested).await, "ACTIVE");
}
