//! Highly available routers and L3 scheduling: the `ha` attribute and its policy, the
//! per-project HA network, active/standby hosts and their HA ports, failover off a dead agent
//! (and, for legacy routers, only when allowed), manual scheduling, and one winner when two
//! servers on one PostgreSQL fail the same router over at once.

use crate::common::*;
use neutrino_store::Store;
use serde_json::{json, Value};

/// An app whose store handle the test keeps (to age heartbeats).
async fn app_with(config: Config) -> (App, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    let app = App::new(store.clone(), config).await.unwrap();
    (app, store, dir)
}

async fn register(app: &App, host: &str) -> String {
    let body = json!({"agent": {"host": host, "configurations": {"tunnel_ip": "192.0.2.1"}}});
    let out = app.report_agent(&admin(), body).await.unwrap();
    out["agent"]["id"].as_str().unwrap().to_string()
}

async fn create(app: &App, ctx: &Context, path: &str, body: Value) -> Result<Value, ApiError> {
    let mut out = app.create(ctx, coll(path), vec![doc(body)]).await?;
    Ok(Value::Object(out.remove(0)))
}

async fn show(app: &App, ctx: &Context, path: &str, id: &str) -> Value {
    Value::Object(app.show(ctx, coll(path), id, &[]).await.unwrap())
}

async fn list(app: &App, path: &str, filters: &[(&str, &str)]) -> Vec<Value> {
    let pairs: Vec<(String, String)> = filters
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    app.list(&admin(), coll(path), &pairs)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(Value::Object)
        .collect()
}

/// `(host, ha_state)` of the agents hosting a router, as `l3-agents` shows them.
async fn hosting(app: &App, router: &str) -> Vec<(String, Value)> {
    let out = app
        .l3_agents_hosting_router(&admin(), router)
        .await
        .unwrap();
    out["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["host"].as_str().unwrap().to_string(),
                a["ha_state"].clone(),
            )
        })
        .collect()
}

/// Hosts of the router's HA ports, sorted.
async fn ha_port_hosts(app: &App, router: &str) -> Vec<String> {
    let mut hosts: Vec<String> = list(
        app,
        "ports",
        &[
            ("device_id", router),
            ("device_owner", "network:router_ha_interface"),
        ],
    )
    .await
    .iter()
    .map(|p| p["binding:host_id"].as_str().unwrap().to_string())
    .collect();
    hosts.sort();
    hosts
}

/// A router with one interface on a fresh tenant network; returns the interface port.
async fn interface(app: &App, router: &str, cidr: &str) -> Value {
    let net = create(app, &tenant(), "networks", json!({"name": "n"}))
        .await
        .unwrap();
    let sub = create(
        app,
        &tenant(),
        "subnets",
        json!({"network_id": id(&net), "ip_version": 4, "cidr": cidr}),
    )
    .await
    .unwrap();
    let out = app
        .action(
            &admin(),
            coll("routers"),
            router,
            "add_router_interface",
            json!({"subnet_id": id(&sub)}),
        )
        .await
        .unwrap();
    show(app, &admin(), "ports", out["port_id"].as_str().unwrap()).await
}

fn host_of(port: &Value) -> String {
    port["binding:host_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn ha_attribute_policy_and_conversion() {
    let (app, _store, _dir) = app_with(Config::default()).await;
    // Only admins may ask; projects get 403 whatever they ask for.
    let e = create(&app, &tenant(), "routers", json!({"name": "r", "ha": true})).await;
    assert_err(e, 403, "PolicyNotAuthorized");
    let e = create(
        &app,
        &tenant(),
        "routers",
        json!({"name": "r", "ha": false}),
    )
    .await;
    assert_err(e, 403, "PolicyNotAuthorized");
    // The default is legacy; admins see `ha`, projects do not.
    let r = create(&app, &tenant(), "routers", json!({"name": "r"}))
        .await
        .unwrap();
    assert!(r.get("ha").is_none());
    assert_eq!(show(&app, &admin(), "routers", &id(&r)).await["ha"], false);
    // Converting needs the router administratively down, with Neutron's error.
    let up = app
        .update(
            &admin(),
            coll("routers"),
            &id(&r),
            doc(json!({"ha": true})),
            None,
        )
        .await;
    let e = assert_err(up, 400, "BadRequest");
    assert_eq!(
        e.message,
        "Bad router request: Cannot change HA attribute of active routers. Please set router admin_state_up to False prior to upgrade."
    );
    let port = interface(&app, &id(&r), "10.1.0.0/24").await;
    assert_eq!(port["device_owner"], "network:router_interface");
    let e = app
        .update(
            &tenant(),
            coll("routers"),
            &id(&r),
            doc(json!({"ha": true, "admin_state_up": false})),
            None,
        )
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
    let out = app
        .update(
            &admin(),
            coll("routers"),
            &id(&r),
            doc(json!({"ha": true, "admin_state_up": false})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out["ha"], true);
    let port = show(&app, &admin(), "ports", &id(&port)).await;
    assert_eq!(
        port["device_owner"],
        "network:ha_router_replicated_interface"
    );
    // And back.
    app.update(
        &admin(),
        coll("routers"),
        &id(&r),
        doc(json!({"ha": false})),
        None,
    )
    .await
    .unwrap();
    let port = show(&app, &admin(), "ports", &id(&port)).await;
    assert_eq!(port["device_owner"], "network:router_interface");
    // The server option makes HA the default.
    let (app, _store, _dir) = app_with(Config {
        l3_ha: true,
        ..Config::default()
    })
    .await;
    let r = create(&app, &tenant(), "routers", json!({"name": "r"}))
        .await
        .unwrap();
    assert_eq!(show(&app, &admin(), "routers", &id(&r)).await["ha"], true);
}

#[tokio::test]
async fn ha_network_lives_with_the_projects_ha_routers() {
    let (app, _store, _dir) = app_with(Config::default()).await;
    let name = "HA network project project-a";
    let body = json!({"name": "r", "ha": true, "project_id": "project-a"});
    let r1 = create(&app, &admin(), "routers", body.clone())
        .await
        .unwrap();
    let r2 = create(&app, &admin(), "routers", body).await.unwrap();
    let nets = list(&app, "networks", &[("name", name)]).await;
    assert_eq!(nets.len(), 1, "one HA network per project");
    let net = &nets[0];
    assert_eq!(net["project_id"], "");
    assert!(net["provider:segmentation_id"].as_i64().is_some());
    let subnets = list(&app, "subnets", &[("network_id", &id(net))]).await;
    assert_eq!(subnets[0]["cidr"], "169.254.192.0/18");
    // Invisible to the project itself.
    assert!(app
        .show(&tenant(), coll("networks"), &id(net), &[])
        .await
        .is_err());
    // Kept (same segment) while an HA router remains, gone with the last one.
    app.delete(&admin(), coll("routers"), &id(&r1), None)
        .await
        .unwrap();
    let kept = show(&app, &admin(), "networks", &id(net)).await;
    assert_eq!(
        kept["provider:segmentation_id"],
        net["provider:segmentation_id"]
    );
    app.delete(&admin(), coll("routers"), &id(&r2), None)
        .await
        .unwrap();
    assert!(list(&app, "networks", &[("name", name)]).await.is_empty());
    // A new HA router brings a new one.
    create(
        &app,
        &admin(),
        "routers",
        json!({"ha": true, "project_id": "project-a"}),
    )
    .await
    .unwrap();
    assert_eq!(list(&app, "networks", &[("name", name)]).await.len(), 1);
}

#[tokio::test]
async fn ha_router_fails_over_to_its_standby() {
    let (app, store, _dir) = app_with(Config::default()).await;
    for h in ["h1", "h2", "h3"] {
        register(&app, h).await;
    }
    let r = create(
        &app,
        &admin(),
        "routers",
        json!({"ha": true, "project_id": "project-a"}),
    )
    .await
    .unwrap();
    let r = id(&r);
    let states = hosting(&app, &r).await;
    assert_eq!(states.len(), 2);
    assert_eq!(
        (states[0].1.clone(), states[1].1.clone()),
        (json!("active"), json!("standby"))
    );
    let (active, standby) = (states[0].0.clone(), states[1].0.clone());
    assert_ne!(active, standby);
    let mut both = vec![active.clone(), standby.clone()];
    both.sort();
    assert_eq!(ha_port_hosts(&app, &r).await, both);
    let port = interface(&app, &r, "10.2.0.0/24").await;
    assert_eq!(
        port["device_owner"],
        "network:ha_router_replicated_interface"
    );
    assert_eq!(host_of(&port), active);
    // Nothing to do while everyone is alive.
    assert_eq!(app.reschedule_routers().await.unwrap(), 0);
    // The active agent stops heart-beating.
    store.heartbeat(&active, 0).await.unwrap();
    assert_eq!(app.reschedule_routers().await.unwrap(), 1);
    let third = ["h1", "h2", "h3"]
        .into_iter()
        .find(|h| *h != active && *h != standby)
        .unwrap();
    assert_eq!(
        hosting(&app, &r).await,
        vec![
            (standby.clone(), json!("active")),
            (third.to_string(), json!("standby"))
        ]
    );
    let moved = show(&app, &admin(), "ports", &id(&port)).await;
    assert_eq!(host_of(&moved), standby);
    assert_eq!(moved["status"], "DOWN", "down until the new host plugs it");
    let mut hosts = vec![standby.clone(), third.to_string()];
    hosts.sort();
    assert_eq!(ha_port_hosts(&app, &r).await, hosts);
    assert_eq!(app.reschedule_routers().await.unwrap(), 0, "stable");
    // With one agent left it runs there, without a standby.
    store.heartbeat(&standby, 0).await.unwrap();
    assert_eq!(app.reschedule_routers().await.unwrap(), 1);
    assert_eq!(
        hosting(&app, &r).await,
        vec![(third.to_string(), json!("active"))]
    );
    assert_eq!(ha_port_hosts(&app, &r).await, vec![third.to_string()]);
    // A returning agent becomes the standby again.
    register(&app, &active).await;
    store.heartbeat(&active, chrono_now()).await.unwrap();
    assert_eq!(app.reschedule_routers().await.unwrap(), 1);
    assert_eq!(
        hosting(&app, &r).await,
        vec![
            (third.to_string(), json!("active")),
            (active.clone(), json!("standby"))
        ]
    );
    // Deleting the router forgets it.
    app.action(
        &admin(),
        coll("routers"),
        &r,
        "remove_router_interface",
        json!({"port_id": id(&port)}),
    )
    .await
    .unwrap();
    app.delete(&admin(), coll("routers"), &r, None)
        .await
        .unwrap();
    assert_eq!(app.reschedule_routers().await.unwrap(), 0);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn legacy_routers_move_only_when_allowed() {
    for allowed in [false, true] {
        let (app, store, _dir) = app_with(Config {
            allow_automatic_l3agent_failover: allowed,
            ..Config::default()
        })
        .await;
        for h in ["h1", "h2"] {
            register(&app, h).await;
        }
        let r = create(&app, &tenant(), "routers", json!({"name": "r"}))
            .await
            .unwrap();
        let port = interface(&app, &id(&r), "10.3.0.0/24").await;
        let first = host_of(&port);
        assert_eq!(
            hosting(&app, &id(&r)).await,
            vec![(first.clone(), Value::Null)]
        );
        store.heartbeat(&first, 0).await.unwrap();
        let changed = app.reschedule_routers().await.unwrap();
        let now = host_of(&show(&app, &admin(), "ports", &id(&port)).await);
        if allowed {
            assert_eq!(changed, 1);
            assert_ne!(now, first);
        } else {
            assert_eq!(changed, 0);
            assert_eq!(now, first, "Neutron's default: legacy routers stay");
        }
    }
}

#[tokio::test]
async fn manual_scheduling() {
    let (app, _store, _dir) = app_with(Config::default()).await;
    let a1 = register(&app, "h1").await;
    let a2 = register(&app, "h2").await;
    let r = create(&app, &tenant(), "routers", json!({"name": "r"}))
        .await
        .unwrap();
    let r = id(&r);
    // Admins only.
    assert_err(
        app.l3_agents_hosting_router(&tenant(), &r).await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        app.l3_agent_routers(&tenant(), &a1).await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        app.add_router_to_l3_agent(&tenant(), &a1, json!({"router_id": r}))
            .await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        app.remove_router_from_l3_agent(&tenant(), &a1, &r).await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        app.l3_agent_routers(&admin(), "nope").await,
        404,
        "AgentNotFound",
    );
    let missing = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";
    assert_err(
        app.l3_agents_hosting_router(&admin(), missing).await,
        404,
        "RouterNotFound",
    );
    // A router without ports is hosted once it gets an interface, or by hand.
    app.add_router_to_l3_agent(&admin(), &a2, json!({"router_id": r}))
        .await
        .unwrap();
    assert_eq!(
        hosting(&app, &r).await,
        vec![("h2".to_string(), Value::Null)]
    );
    let routers = app.l3_agent_routers(&admin(), &a2).await.unwrap();
    assert_eq!(routers["routers"][0]["id"], json!(r));
    assert_eq!(
        app.l3_agent_routers(&admin(), &a1).await.unwrap()["routers"],
        json!([])
    );
    let port = interface(&app, &r, "10.4.0.0/24").await;
    assert_eq!(host_of(&port), "h2");
    // A legacy router runs on one agent.
    let e = app
        .add_router_to_l3_agent(&admin(), &a1, json!({"router_id": r}))
        .await;
    assert_err(e, 409, "RouterHostedByL3Agent");
    app.add_router_to_l3_agent(&admin(), &a2, json!({"router_id": r}))
        .await
        .unwrap();
    app.remove_router_from_l3_agent(&admin(), &a2, &r)
        .await
        .unwrap();
    assert!(hosting(&app, &r).await.is_empty());
    assert_eq!(
        host_of(&show(&app, &admin(), "ports", &id(&port)).await),
        ""
    );
    app.add_router_to_l3_agent(&admin(), &a1, json!({"router_id": r}))
        .await
        .unwrap();
    assert_eq!(
        host_of(&show(&app, &admin(), "ports", &id(&port)).await),
        "h1"
    );
    // An HA router: removing the active agent hands over to the standby.
    let h = create(&app, &admin(), "routers", json!({"ha": true}))
        .await
        .unwrap();
    let h = id(&h);
    let states = hosting(&app, &h).await;
    let active_agent = if states[0].0 == "h1" { &a1 } else { &a2 };
    app.remove_router_from_l3_agent(&admin(), active_agent, &h)
        .await
        .unwrap();
    assert_eq!(
        hosting(&app, &h).await,
        vec![(states[1].0.clone(), json!("active"))]
    );
    app.add_router_to_l3_agent(&admin(), active_agent, json!({"router_id": h}))
        .await
        .unwrap();
    assert_eq!(
        hosting(&app, &h).await,
        vec![
            (states[1].0.clone(), json!("active")),
            (states[0].0.clone(), json!("standby"))
        ]
    );
}

/// Two servers on one PostgreSQL (or two tasks on one SQLite server) fail the same router
/// over at once: it moves once, and its HA ports are not doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failover_has_one_winner() {
    let tag = format!("{}-{}", std::process::id(), chrono_now());
    let hosts: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|h| format!("{h}-{tag}"))
        .collect();
    for pair in server_pairs().await {
        let ServerPair {
            one, two, store, ..
        } = &pair;
        for h in &hosts {
            register(one, h).await;
        }
        let project = format!("p-{tag}");
        let r = create(
            one,
            &admin(),
            "routers",
            json!({"ha": true, "project_id": project}),
        )
        .await
        .unwrap();
        let r = id(&r);
        let port = interface(one, &r, "10.5.0.0/24").await;
        let states = hosting(one, &r).await;
        let (active, standby) = (states[0].0.clone(), states[1].0.clone());
        assert!(hosts.contains(&active) && hosts.contains(&standby));
        let before = show(one, &admin(), "ports", &id(&port)).await["revision_number"].clone();
        store.heartbeat(&active, 0).await.unwrap();
        let (x, y) = tokio::join!(one.reschedule_routers(), two.reschedule_routers());
        assert!(x.is_ok() && y.is_ok());
        let moved = show(one, &admin(), "ports", &id(&port)).await;
        assert_eq!(host_of(&moved), standby);
        assert_eq!(
            moved["revision_number"],
            json!(before.as_i64().unwrap() + 1),
            "moved once"
        );
        let ha_hosts = ha_port_hosts(one, &r).await;
        assert_eq!(ha_hosts.len(), 2, "{ha_hosts:?}");
        assert!(ha_hosts.contains(&standby) && !ha_hosts.contains(&active));
        let states = hosting(two, &r).await;
        assert_eq!(states[0], (standby.clone(), json!("active")));
        assert_eq!(states[1].1, json!("standby"));
        // Leave nothing for other tests sharing the database.
        one.action(
            &admin(),
            coll("routers"),
            &r,
            "remove_router_interface",
            json!({"port_id": id(&port)}),
        )
        .await
        .unwrap();
        one.delete(&admin(), coll("routers"), &r, None)
            .await
            .unwrap();
        let net = moved["network_id"].as_str().unwrap();
        one.delete(&admin(), coll("networks"), net, None)
            .await
            .unwrap();
        for h in &hosts {
            store.heartbeat(h, 0).await.unwrap();
        }
    }
}
