//! Distributed routers (`dvr`): who may set `distributed`, conversions while the router is
//! down, and the port layout (distributed interfaces unbound, one SNAT port per interface
//! subnet bound with the gateway to the router's SNAT host).

use crate::common::*;
use serde_json::{json, Value};

async fn owners(t: &Env, router: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = t
        .ports(&[("device_id", router)])
        .await
        .iter()
        .map(|p| {
            (
                p["device_owner"].as_str().unwrap().to_string(),
                p["binding:host_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn snat_subnets(ports: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = ports
        .iter()
        .filter(|p| p["device_owner"] == "network:router_centralized_snat")
        .map(|p| p["fixed_ips"][0]["subnet_id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn distributed_is_admin_only_and_hidden_from_projects() {
    let t = env().await;
    // Projects may not set it, whatever the value.
    for v in [json!(true), json!(false)] {
        let e = assert_err(
            t.create(&tenant(), "routers", json!({"distributed": v}))
                .await,
            403,
            "PolicyNotAuthorized",
        );
        assert!(e.message.contains("create_router:distributed"), "{e}");
    }
    let r = t.ok(&tenant(), "routers", json!({"name": "r"})).await;
    assert!(r.get("distributed").is_none());
    let rid = id(&r);
    assert_eq!(
        t.show(&admin(), "routers", &rid).await.unwrap()["distributed"],
        false
    );
    assert_err(
        t.update(&tenant(), "routers", &rid, json!({"distributed": true}))
            .await,
        403,
        "PolicyNotAuthorized",
    );
    let d = t
        .ok(
            &admin(),
            "routers",
            json!({"distributed": "True", "project_id": "project-a"}),
        )
        .await;
    assert_eq!(d["distributed"], true);
    assert!(t
        .show(&tenant(), "routers", &id(&d))
        .await
        .unwrap()
        .get("distributed")
        .is_none());
    let e = assert_err(
        t.create(&admin(), "routers", json!({"distributed": "maybe"}))
            .await,
        400,
        "HTTPBadRequest",
    );
    assert!(e.message.contains("cannot be converted to boolean"), "{e}");
    // Admins filter on it.
    let list = t
        .app
        .list(
            &admin(),
            coll("routers"),
            &[("distributed".into(), "true".into())],
        )
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn conversion_needs_the_router_down_in_both_directions() {
    let t = env().await;
    let r = t
        .ok(&admin(), "routers", json!({"project_id": "project-a"}))
        .await;
    let rid = id(&r);
    let e = assert_err(
        t.update(&admin(), "routers", &rid, json!({"distributed": true}))
            .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        "Bad router request: Cannot change the 'distributed' attribute of active routers. Please set router admin_state_up to False prior to upgrade."
    );
    // Taking it down in the same request is not enough (the state before counts too).
    assert_err(
        t.update(
            &admin(),
            "routers",
            &rid,
            json!({"distributed": true, "admin_state_up": false}),
        )
        .await,
        400,
        "BadRequest",
    );
    // Setting the current value is no change.
    t.update(&admin(), "routers", &rid, json!({"distributed": false}))
        .await
        .unwrap();
    t.update(&admin(), "routers", &rid, json!({"admin_state_up": false}))
        .await
        .unwrap();
    let up = t
        .update(&admin(), "routers", &rid, json!({"distributed": true}))
        .await
        .unwrap();
    assert_eq!(up["distributed"], true);
    // Bringing it up in the same request as the change is refused.
    assert_err(
        t.update(
            &admin(),
            "routers",
            &rid,
            json!({"distributed": false, "admin_state_up": true}),
        )
        .await,
        400,
        "BadRequest",
    );
    let back = t
        .update(&admin(), "routers", &rid, json!({"distributed": false}))
        .await
        .unwrap();
    assert_eq!(back["distributed"], false);
}

#[tokio::test]
async fn distributed_port_layout_and_conversions() {
    let t = env().await;
    let agent = json!({"agent": {"host": "h1", "configurations": {}}});
    t.app.report_agent(&admin(), agent).await.unwrap();
    let (ext, _) = t.external().await;
    let (net_a, sub_a) = t.net(&tenant(), json!({"name": "a"}), "10.0.1.0/24").await;
    let (_, sub_b) = t.net(&tenant(), json!({"name": "b"}), "10.0.2.0/24").await;
    let r = t
        .ok(
            &admin(),
            "routers",
            json!({"project_id": "project-a", "distributed": true}),
        )
        .await;
    let rid = id(&r);
    // Interfaces without a gateway: distributed, unbound, no SNAT ports.
    t.action(
        &tenant(),
        &rid,
        "add_router_interface",
        json!({"subnet_id": sub_a}),
    )
    .await
    .unwrap();
    assert_eq!(
        owners(&t, &rid).await,
        vec![("network:router_interface_distributed".into(), "".into())]
    );
    // A port added by id becomes a distributed interface too. (Any address of the pool: the
    // DHCP port of h1's agent took a random one already, so a fixed one could be taken.)
    let port = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": net_a, "fixed_ips": [{"subnet_id": sub_a}]}),
        )
        .await;
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"port_id": id(&port)}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(e.message.contains("already has a port on subnet"), "{e}");
    t.action(
        &tenant(),
        &rid,
        "add_router_interface",
        json!({"subnet_id": sub_b}),
    )
    .await
    .unwrap();

    // The gateway brings one SNAT port per interface subnet, bound with it to the SNAT host.
    t.update(
        &admin(),
        "routers",
        &rid,
        json!({"external_gateway_info": {"network_id": ext}}),
    )
    .await
    .unwrap();
    assert_eq!(
        owners(&t, &rid).await,
        vec![
            ("network:router_centralized_snat".into(), "h1".into()),
            ("network:router_centralized_snat".into(), "h1".into()),
            ("network:router_gateway".into(), "h1".into()),
            ("network:router_interface_distributed".into(), "".into()),
            ("network:router_interface_distributed".into(), "".into()),
        ]
    );
    let ports = t.ports(&[("device_id", &rid)]).await;
    let mut want = vec![sub_a.clone(), sub_b.clone()];
    want.sort();
    assert_eq!(snat_subnets(&ports), want);
    let snat = ports
        .iter()
        .find(|p| p["device_owner"] == "network:router_centralized_snat")
        .unwrap();
    assert_eq!(snat["project_id"], "");
    // SNAT addresses are not the gateway addresses.
    assert_ne!(snat["fixed_ips"][0]["ip_address"], "10.0.1.1");
    assert_ne!(snat["fixed_ips"][0]["ip_address"], "10.0.2.1");
    // Nobody deletes a SNAT port through the port API.
    assert_err(
        t.delete(&admin(), "ports", &id(snat)).await,
        409,
        "ServicePortInUse",
    );

    // Removing an interface removes its SNAT port.
    t.action(
        &tenant(),
        &rid,
        "remove_router_interface",
        json!({"subnet_id": sub_b}),
    )
    .await
    .unwrap();
    let ports = t.ports(&[("device_id", &rid)]).await;
    assert_eq!(snat_subnets(&ports), vec![sub_a.clone()]);
    t.action(
        &tenant(),
        &rid,
        "add_router_interface",
        json!({"subnet_id": sub_b}),
    )
    .await
    .unwrap();
    assert_eq!(snat_subnets(&t.ports(&[("device_id", &rid)]).await), want);

    // Converting back: centralized interfaces bound to the router host, no SNAT ports.
    t.update(&admin(), "routers", &rid, json!({"admin_state_up": false}))
        .await
        .unwrap();
    t.update(&admin(), "routers", &rid, json!({"distributed": false}))
        .await
        .unwrap();
    assert_eq!(
        owners(&t, &rid).await,
        vec![
            ("network:router_gateway".into(), "h1".into()),
            ("network:router_interface".into(), "h1".into()),
            ("network:router_interface".into(), "h1".into()),
        ]
    );
    // And distributed again: the SNAT ports come back.
    t.update(&admin(), "routers", &rid, json!({"distributed": true}))
        .await
        .unwrap();
    assert_eq!(snat_subnets(&t.ports(&[("device_id", &rid)]).await), want);

    // Removing the gateway removes the SNAT ports; the interfaces stay distributed.
    t.update(
        &admin(),
        "routers",
        &rid,
        json!({"external_gateway_info": {}}),
    )
    .await
    .unwrap();
    assert_eq!(
        owners(&t, &rid).await,
        vec![
            ("network:router_interface_distributed".into(), "".into()),
            ("network:router_interface_distributed".into(), "".into()),
        ]
    );
    // The interfaces keep the router in use; once removed, the router goes.
    assert_err(
        t.delete(&tenant(), "routers", &rid).await,
        409,
        "RouterInUse",
    );
    for sub in [&sub_a, &sub_b] {
        t.action(
            &tenant(),
            &rid,
            "remove_router_interface",
            json!({"subnet_id": sub}),
        )
        .await
        .unwrap();
    }
    t.delete(&tenant(), "routers", &rid).await.unwrap();
    assert!(t.ports(&[("device_id", &rid)]).await.is_empty());
}

#[tokio::test]
async fn a_router_is_not_both_distributed_and_ha() {
    let t = env().await;
    let both = json!({"name": "r", "distributed": true, "ha": true});
    assert_err(
        t.create(&admin(), "routers", both).await,
        400,
        "DistributedHARouterNotSupported",
    );
    // Nothing was left behind by the refused create.
    assert!(t.list(&admin(), "routers", &[]).await.is_empty());
    let r = id(&t
        .ok(
            &admin(),
            "routers",
            json!({"name": "r", "distributed": true}),
        )
        .await);
    t.update(&admin(), "routers", &r, json!({"admin_state_up": false}))
        .await
        .unwrap();
    assert_err(
        t.update(&admin(), "routers", &r, json!({"ha": true})).await,
        400,
        "DistributedHARouterNotSupported",
    );
    let shown = t.show(&admin(), "routers", &r).await.unwrap();
    assert_eq!(
        (shown["distributed"].clone(), shown["ha"].clone()),
        (json!(true), json!(false))
    );
}
