//! One `neutrino agent` also appears as Neutron's "L3 agent" and "DHCP agent" of its host:
//! clients filtering by agent type find them, router scheduling honours the L3 entry's
//! `admin_state_up`, and the l3-agent endpoints name the L3 entry.

use crate::common::*;
use serde_json::{json, Value};

async fn register(t: &Env, host: &str, configurations: Value) -> String {
    let body = json!({"agent": {"host": host, "configurations": configurations}});
    let out = t.app.report_agent(&admin(), body).await.unwrap();
    id(&out["agent"])
}

async fn agents(t: &Env, filters: &[(&str, &str)]) -> Vec<Value> {
    let pairs: Vec<(String, String)> = filters
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let page = t.app.list_agents(&admin(), &pairs).await.unwrap();
    page.items.into_iter().map(Value::Object).collect()
}

fn types(list: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = list
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["host"].as_str().unwrap(),
                a["agent_type"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn an_agent_appears_once_per_role() {
    let t = env().await;
    register(&t, "h1", json!({"tunnel_ip": "198.18.0.1"})).await;
    register(&t, "h2", json!({"tunnel_ip": "198.18.0.2", "l3": false})).await;
    // A second report changes nothing.
    register(&t, "h1", json!({"tunnel_ip": "198.18.0.1"})).await;
    assert_eq!(
        types(&agents(&t, &[]).await),
        [
            "h1 DHCP agent",
            "h1 L3 agent",
            "h1 Neutrino agent",
            "h2 DHCP agent",
            "h2 Neutrino agent"
        ]
    );
    let l3 = agents(&t, &[("agent_type", "L3 agent")]).await;
    assert_eq!(l3.len(), 1);
    assert_eq!(l3[0]["configurations"]["agent_mode"], "dvr_snat");
    assert_eq!(l3[0]["topic"], "l3_agent");
    assert_eq!(l3[0]["alive"], true, "the host's heartbeat");
    // Turning the role off in the configuration drops its entry.
    register(&t, "h1", json!({"tunnel_ip": "198.18.0.1", "dhcp": false})).await;
    assert_eq!(agents(&t, &[("agent_type", "DHCP agent")]).await.len(), 1);
}

#[tokio::test]
async fn the_l3_entry_schedules_routers_and_names_their_host() {
    let t = env().await;
    register(&t, "h1", json!({"tunnel_ip": "198.18.0.1"})).await;
    let l3 = id(&agents(&t, &[("agent_type", "L3 agent")]).await[0]);
    let dhcp = id(&agents(&t, &[("agent_type", "DHCP agent")]).await[0]);
    let r = id(&t.ok(&tenant(), "routers", json!({"name": "r1"})).await);
    t.app
        .add_router_to_l3_agent(&admin(), &l3, json!({"router_id": r}))
        .await
        .unwrap();
    let hosting = t.app.l3_agents_hosting_router(&admin(), &r).await.unwrap();
    let ids: Vec<&Value> = hosting["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["id"])
        .collect();
    assert_eq!(ids, [&json!(l3)], "the L3 entry hosts the router");
    let routers = t.app.l3_agent_routers(&admin(), &l3).await.unwrap();
    assert_eq!(routers["routers"][0]["id"], json!(r));
    // A DHCP entry is no L3 agent.
    let r2 = id(&t.ok(&tenant(), "routers", json!({"name": "r2"})).await);
    let e = t
        .app
        .add_router_to_l3_agent(&admin(), &dhcp, json!({"router_id": r2}))
        .await;
    assert_err(e, 404, "InvalidL3Agent");
    // The L3 entry switched off: no new routers on its host.
    t.app
        .update_agent(&admin(), &l3, json!({"agent": {"admin_state_up": false}}))
        .await
        .unwrap();
    let e = t
        .app
        .add_router_to_l3_agent(&admin(), &l3, json!({"router_id": r2}))
        .await;
    assert_err(e, 404, "InvalidL3Agent");
}

/// A router with one interface: the scheduler places it on an L3 host.
async fn router_with_interface(t: &Env, cidr: &str) -> String {
    let r = id(&t.ok(&tenant(), "routers", json!({"name": "r"})).await);
    let (_, sub) = t.net(&tenant(), json!({"name": "n"}), cidr).await;
    t.action(
        &tenant(),
        &r,
        "add_router_interface",
        json!({"subnet_id": sub}),
    )
    .await
    .unwrap();
    r
}

async fn hosts_of(t: &Env, router: &str) -> Vec<String> {
    let out = t
        .app
        .l3_agents_hosting_router(&admin(), router)
        .await
        .unwrap();
    agent_hosts(&out)
}

#[tokio::test]
async fn an_l3_entry_switched_off_takes_its_host_out_of_scheduling() {
    let t = env().await;
    register(&t, "h1", json!({"tunnel_ip": "198.18.0.1"})).await;
    let before = router_with_interface(&t, "10.1.0.0/24").await;
    assert_eq!(hosts_of(&t, &before).await, ["h1"]);
    let l3 = id(&agents(&t, &[("agent_type", "L3 agent")]).await[0]);
    t.app
        .update_agent(&admin(), &l3, json!({"agent": {"admin_state_up": false}}))
        .await
        .unwrap();
    let after = router_with_interface(&t, "10.2.0.0/24").await;
    assert!(hosts_of(&t, &after).await.is_empty(), "not scheduled on h1");
    // The DHCP entry switched off does not stop routers.
    t.app
        .update_agent(&admin(), &l3, json!({"agent": {"admin_state_up": true}}))
        .await
        .unwrap();
    let dhcp = id(&agents(&t, &[("agent_type", "DHCP agent")]).await[0]);
    t.app
        .update_agent(&admin(), &dhcp, json!({"agent": {"admin_state_up": false}}))
        .await
        .unwrap();
    let third = router_with_interface(&t, "10.3.0.0/24").await;
    assert_eq!(hosts_of(&t, &third).await, ["h1"]);
}
