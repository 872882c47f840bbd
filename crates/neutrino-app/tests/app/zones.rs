//! Availability zones: listed from the agents' zones, hints validated against them, and
//! networks and routers scheduled to hosts of their hinted zones and rendered with the
//! zones that serve them.

use crate::common::*;
use serde_json::{json, Value};

async fn register(t: &Env, host: &str, zone: &str) -> Value {
    let body = json!({"agent": {"host": host, "availability_zone": zone,
                                "configurations": {"tunnel_ip": "192.0.2.1"}}});
    t.app.report_agent(&admin(), body).await.unwrap()
}

async fn zones(t: &Env, filters: &[(&str, &str)]) -> Vec<Value> {
    let mut out: Vec<Value> = t
        .app
        .availability_zones(&tenant(), &query(filters))
        .await
        .unwrap()
        .into_iter()
        .map(Value::Object)
        .collect();
    out.sort_by_key(|z| (z["name"].to_string(), z["resource"].to_string()));
    out
}

#[tokio::test]
async fn zones_come_from_the_agents_and_steer_scheduling() {
    let t = env().await;
    assert!(zones(&t, &[]).await.is_empty(), "no agent, no zone");
    register(&t, "h1", "az1").await;
    register(&t, "h2", "az2").await;
    assert_eq!(
        zones(&t, &[]).await,
        vec![
            json!({"name": "az1", "resource": "network", "state": "available"}),
            json!({"name": "az1", "resource": "router", "state": "available"}),
            json!({"name": "az2", "resource": "network", "state": "available"}),
            json!({"name": "az2", "resource": "router", "state": "available"}),
        ]
    );
    assert_eq!(
        zones(&t, &[("resource", "router"), ("name", "az2")])
            .await
            .len(),
        1
    );
    // The role entries carry the host's zone.
    let agents = t
        .app
        .list_agents(&admin(), &query(&[("host", "h2")]))
        .await
        .unwrap();
    assert!(
        agents.items.iter().all(|a| a["availability_zone"] == "az2"),
        "{:?}",
        agents.items
    );

    // Unknown zones are refused; known ones steer the DHCP server and the router.
    let r = t
        .create(
            &tenant(),
            "networks",
            json!({"availability_zone_hints": ["nowhere"]}),
        )
        .await;
    assert_err(r, 404, "AvailabilityZoneNotFound");
    let r = t
        .create(
            &tenant(),
            "routers",
            json!({"availability_zone_hints": ["az1", "x"]}),
        )
        .await;
    assert_err(r, 404, "AvailabilityZoneNotFound");
    for zone in ["az1", "az2"] {
        let (net, sub) = t
            .net(
                &tenant(),
                json!({"availability_zone_hints": [zone]}),
                "10.7.0.0/24",
            )
            .await;
        let shown = t.show(&tenant(), "networks", &net).await.unwrap();
        assert_eq!(shown["availability_zone_hints"], json!([zone]));
        assert_eq!(
            shown["availability_zones"],
            json!([zone]),
            "DHCP host of {zone}"
        );
        let router = t
            .ok(
                &tenant(),
                "routers",
                json!({"availability_zone_hints": [zone]}),
            )
            .await;
        let rid = router["id"].as_str().unwrap().to_string();
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub}),
        )
        .await
        .unwrap();
        let shown = t.show(&tenant(), "routers", &rid).await.unwrap();
        assert_eq!(
            shown["availability_zones"],
            json!([zone]),
            "router host of {zone}"
        );
    }

    // A zone whose only agent is switched off is unavailable.
    let l3 = agents
        .items
        .iter()
        .find(|a| a["agent_type"] == "L3 agent")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.app
        .update_agent(&admin(), &l3, json!({"agent": {"admin_state_up": false}}))
        .await
        .unwrap();
    let az2 = zones(&t, &[("name", "az2"), ("resource", "router")]).await;
    assert_eq!(az2[0]["state"], "unavailable");
}
