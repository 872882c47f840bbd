//! Floating IP extensions through the application API: `fip-port-details`,
//! `floatingip-pools`, `router-interface-fip` and `floating-ip-router-writable`.

use crate::common::*;
use serde_json::{json, Value};

async fn pools(t: &Env, ctx: &Context, pairs: &[(&str, &str)]) -> Result<Vec<Value>, ApiError> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(t.app
        .floatingip_pools(ctx, &pairs)
        .await?
        .into_iter()
        .map(Value::Object)
        .collect())
}

fn details_of(port: &Value) -> Value {
    json!({
        "name": port["name"], "network_id": port["network_id"],
        "mac_address": port["mac_address"], "admin_state_up": port["admin_state_up"],
        "status": port["status"], "device_id": port["device_id"],
        "device_owner": port["device_owner"],
    })
}

#[tokio::test]
async fn port_details_follow_the_association() {
    let t = env().await;
    let (ext, _) = t.external().await;
    let (net, sub) = t.net(&tenant(), json!({}), "10.0.0.0/24").await;
    t.router_between(&ext, &sub).await;
    let vm = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": net, "name": "vm", "device_id": "d1", "device_owner": "compute:nova"}),
        )
        .await;

    let f = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&vm)}),
        )
        .await;
    assert_eq!(f["port_details"], details_of(&vm));
    let fid = id(&f);
    assert_eq!(
        t.show(&tenant(), "floatingips", &fid).await.unwrap()["port_details"],
        details_of(&vm)
    );
    let up = t
        .update(&tenant(), "floatingips", &fid, json!({"description": "d2"}))
        .await
        .unwrap();
    assert_eq!(up["port_details"], details_of(&vm));
    // The details are the port's current ones.
    let renamed = t
        .update(
            &tenant(),
            "ports",
            &id(&vm),
            json!({"name": "renamed", "admin_state_up": false}),
        )
        .await
        .unwrap();
    let shown = t.show(&tenant(), "floatingips", &fid).await.unwrap();
    assert_eq!(shown["port_details"], details_of(&renamed));
    assert_eq!(shown["port_details"]["name"], "renamed");
    // `fields` can ask for it alone.
    let only = t
        .list(&tenant(), "floatingips", &[("fields", "port_details")])
        .await;
    assert_eq!(only, vec![json!({"port_details": details_of(&renamed)})]);
    // Not a filter or sort key (like upstream).
    assert_err(
        t.app
            .list(
                &tenant(),
                coll("floatingips"),
                &[("port_details".into(), "x".into())],
            )
            .await,
        400,
        "HTTPBadRequest",
    );
    // Not writable.
    assert_err(
        t.update(&tenant(), "floatingips", &fid, json!({"port_details": {}}))
            .await,
        400,
        "HTTPBadRequest",
    );

    let down = t
        .update(&tenant(), "floatingips", &fid, json!({"port_id": null}))
        .await
        .unwrap();
    assert!(down.as_object().unwrap().contains_key("port_details"));
    assert_eq!(down["port_details"], Value::Null);
    let free = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext}),
        )
        .await;
    assert_eq!(free["port_details"], Value::Null);
}

#[tokio::test]
async fn port_details_on_a_long_listing() {
    let t = env().await;
    let (ext, _) = t.external().await;
    let (net, sub) = t.net(&tenant(), json!({}), "10.0.0.0/24").await;
    t.router_between(&ext, &sub).await;
    let mut want = std::collections::HashMap::new();
    for i in 0..40 {
        let vm = t
            .ok(
                &tenant(),
                "ports",
                json!({"network_id": net, "name": format!("vm{i}")}),
            )
            .await;
        let f = t
            .ok(
                &tenant(),
                "floatingips",
                json!({"floating_network_id": ext, "port_id": id(&vm)}),
            )
            .await;
        want.insert(id(&f), details_of(&vm));
    }
    for _ in 0..5 {
        t.ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext}),
        )
        .await;
    }
    let all = t.list(&tenant(), "floatingips", &[]).await;
    assert_eq!(all.len(), 45);
    for f in &all {
        let expected = want.get(&id(f)).cloned().unwrap_or(Value::Null);
        assert_eq!(f["port_details"], expected);
    }
}

#[tokio::test]
async fn pools_list_ipv4_subnets_of_visible_external_networks() {
    let t = env().await;
    let (ext, ext_sub) = t.external().await;
    let sub2 = t
        .ok(
            &admin(),
            "subnets",
            json!({"network_id": ext, "ip_version": 4, "cidr": "172.24.5.0/24", "name": "second"}),
        )
        .await;
    t.ok(
        &admin(),
        "subnets",
        json!({"network_id": ext, "ip_version": 6, "cidr": "2001:db8::/64"}),
    )
    .await;
    // Private networks are no pools, whoever owns them.
    t.net(&tenant(), json!({}), "10.0.0.0/24").await;
    // An external network shared with project-b only.
    let (hidden, _) = t
        .net(&admin(), json!({"name": "b-only"}), "198.51.100.0/24")
        .await;
    t.ok(
        &admin(),
        "rbac-policies",
        json!({"object_type": "network", "object_id": hidden, "action": "access_as_external",
               "target_tenant": "project-b"}),
    )
    .await;

    let mut got = pools(&t, &tenant(), &[]).await.unwrap();
    got.sort_by_key(|p| p["cidr"].as_str().unwrap().to_string());
    assert_eq!(
        got,
        vec![
            json!({"subnet_id": ext_sub, "subnet_name": "", "network_id": ext,
                   "project_id": "project-a", "cidr": "172.24.4.0/24"}),
            json!({"subnet_id": id(&sub2), "subnet_name": "second", "network_id": ext,
                   "project_id": "project-a", "cidr": "172.24.5.0/24"}),
        ]
    );
    let b = pools(&t, &other_tenant(), &[]).await.unwrap();
    assert_eq!(b.len(), 3, "{b:?}");
    assert!(b.iter().all(|p| p["project_id"] == "project-b"));
    assert_eq!(pools(&t, &admin(), &[]).await.unwrap().len(), 3);

    // Filters, sorting and fields as for any collection.
    let only = pools(
        &t,
        &tenant(),
        &[("subnet_id", &id(&sub2)), ("fields", "cidr")],
    )
    .await
    .unwrap();
    assert_eq!(only, vec![json!({"cidr": "172.24.5.0/24"})]);
    let sorted = pools(
        &t,
        &tenant(),
        &[
            ("sort_key", "cidr"),
            ("sort_dir", "desc"),
            ("fields", "cidr"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        sorted,
        vec![
            json!({"cidr": "172.24.5.0/24"}),
            json!({"cidr": "172.24.4.0/24"})
        ]
    );
    assert_err(
        pools(&t, &tenant(), &[("ip_version", "4")]).await,
        400,
        "HTTPBadRequest",
    );

    // A floating IP from a chosen pool takes its address there.
    for (subnet, cidr) in [(&ext_sub, "172.24.4.0/24"), (&id(&sub2), "172.24.5.0/24")] {
        let f = t
            .ok(
                &tenant(),
                "floatingips",
                json!({"floating_network_id": ext, "subnet_id": subnet}),
            )
            .await;
        assert!(
            in_cidr(f["floating_ip_address"].as_str().unwrap(), cidr),
            "{f}"
        );
        let shown = t.show(&tenant(), "floatingips", &id(&f)).await.unwrap();
        assert_eq!(shown["floating_ip_address"], f["floating_ip_address"]);
    }
}

/// router1 with interfaces on a private subnet (192.2.1.0/24) and on a second external
/// network's subnet (192.2.2.0/24): (router, private subnet, external net, external subnet,
/// a port on the private network).
async fn interface_topology(t: &Env) -> (String, String, String, String, Value) {
    let r = t.ok(&tenant(), "routers", json!({"name": "router1"})).await;
    let (net1, sub1) = t.net(&tenant(), json!({}), "192.2.1.0/24").await;
    t.action(
        &tenant(),
        &id(&r),
        "add_router_interface",
        json!({"subnet_id": sub1}),
    )
    .await
    .unwrap();
    let net2 = t
        .ok(
            &admin(),
            "networks",
            json!({"project_id": "project-a", "router:external": true}),
        )
        .await;
    let sub2 = t
        .ok(
            &tenant(),
            "subnets",
            json!({"network_id": id(&net2), "ip_version": 4, "cidr": "192.2.2.0/24"}),
        )
        .await;
    t.action(
        &tenant(),
        &id(&r),
        "add_router_interface",
        json!({"subnet_id": id(&sub2)}),
    )
    .await
    .unwrap();
    let port = t.ok(&tenant(), "ports", json!({"network_id": net1})).await;
    (id(&r), sub1, id(&net2), id(&sub2), port)
}

#[tokio::test]
async fn floating_ip_through_a_router_interface() {
    let t = env().await;
    let (router, sub1, net2, sub2, port) = interface_topology(&t).await;
    let f = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": net2}),
        )
        .await;
    assert!(in_cidr(
        f["floating_ip_address"].as_str().unwrap(),
        "192.2.2.0/24"
    ));
    let up = t
        .update(
            &tenant(),
            "floatingips",
            &id(&f),
            json!({"port_id": id(&port)}),
        )
        .await
        .unwrap();
    assert_eq!(up["router_id"], router.as_str());
    assert_eq!(up["port_id"], id(&port).as_str());
    assert_eq!(up["floating_network_id"], net2.as_str());
    assert!(up["revision_number"].as_i64() > f["revision_number"].as_i64());

    // The router's rules put the NAT on that interface.
    let rules = t.app.router_rules(&tenant(), &router).await.unwrap();
    let rule = &rules.floating[0];
    assert_eq!(rule.via.as_deref(), Some(sub2.as_str()));
    assert!(rule.via_interface);
    assert_eq!(
        rule.fixed_ip.to_string(),
        port["fixed_ips"][0]["ip_address"].as_str().unwrap()
    );

    // Neither interface can go while the floating IP uses them.
    let e = assert_err(
        t.action(
            &tenant(),
            &router,
            "remove_router_interface",
            json!({"subnet_id": sub2}),
        )
        .await,
        409,
        "RouterInterfaceInUseAsGatewayByFloatingIP",
    );
    assert!(e.message.contains("as a gateway"), "{e}");
    assert_err(
        t.action(
            &tenant(),
            &router,
            "remove_router_interface",
            json!({"subnet_id": sub1}),
        )
        .await,
        409,
        "RouterInterfaceInUseByFloatingIP",
    );
    // A gateway on another network is not what the floating IP needs.
    let (public, _) = t.external().await;
    t.update(
        &tenant(),
        "routers",
        &router,
        json!({"external_gateway_info": {"network_id": public}}),
    )
    .await
    .unwrap();
    t.update(
        &tenant(),
        "routers",
        &router,
        json!({"external_gateway_info": null}),
    )
    .await
    .unwrap();

    let down = t
        .update(&tenant(), "floatingips", &id(&f), json!({"port_id": null}))
        .await
        .unwrap();
    assert_eq!(down["router_id"], Value::Null);
    assert_eq!(down["port_id"], Value::Null);
    assert_eq!(down["floating_ip_address"], f["floating_ip_address"]);
    for sub in [&sub2, &sub1] {
        t.action(
            &tenant(),
            &router,
            "remove_router_interface",
            json!({"subnet_id": sub}),
        )
        .await
        .unwrap();
    }
}

/// Two routers and a transit network: the port's subnet is on `inner` only; `outer` has its
/// gateway on `gateway_net` (if any). Returns (port, inner, outer).
async fn indirect_topology(t: &Env, gateway_net: Option<&str>) -> (Value, String, String) {
    let (project_net, project_sub) = t.net(&tenant(), json!({}), "10.10.250.0/24").await;
    let (transit, _) = t.net(&tenant(), json!({}), "10.10.230.0/24").await;
    let inner = t.ok(&tenant(), "routers", json!({"name": "inner"})).await;
    let outer = match gateway_net {
        Some(net) => {
            t.ok(
                &tenant(),
                "routers",
                json!({"name": "outer", "external_gateway_info": {"network_id": net}}),
            )
            .await
        }
        None => t.ok(&tenant(), "routers", json!({"name": "outer"})).await,
    };
    t.action(
        &tenant(),
        &id(&inner),
        "add_router_interface",
        json!({"subnet_id": project_sub}),
    )
    .await
    .unwrap();
    for r in [&inner, &outer] {
        let p = t
            .ok(&tenant(), "ports", json!({"network_id": transit}))
            .await;
        t.action(
            &tenant(),
            &id(r),
            "add_router_interface",
            json!({"port_id": id(&p)}),
        )
        .await
        .unwrap();
    }
    let port = t
        .ok(&tenant(), "ports", json!({"network_id": project_net}))
        .await;
    (port, id(&inner), id(&outer))
}

#[tokio::test]
async fn writable_router_hosts_an_indirect_floating_ip() {
    let t = env().await;
    let (public, _) = t.external().await;
    let (port, inner, outer) = indirect_topology(&t, Some(&public)).await;

    // Without naming the router, no router connects the port's subnet to `public`.
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public, "port_id": id(&port)}),
        )
        .await,
        404,
        "ExternalGatewayForFloatingIPNotFound",
    );
    // A router without a gateway there cannot host it.
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public, "port_id": id(&port), "router_id": inner}),
        )
        .await,
        409,
        "FloatingIPRouterNotOnNetwork",
    );
    // Another project's router or no router at all: not found.
    let foreign = t.ok(&other_tenant(), "routers", json!({})).await;
    for r in [
        id(&foreign),
        "2d3f9f2c-25ee-4d1a-b24f-42728bc8ec5e".to_string(),
    ] {
        assert_err(
            t.create(
                &tenant(),
                "floatingips",
                json!({"floating_network_id": public, "port_id": id(&port), "router_id": r}),
            )
            .await,
            404,
            "RouterNotFound",
        );
    }
    // A router needs a port to host something for.
    let e = assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public, "router_id": outer}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(
        e.message
            .contains("router_id cannot be specified without a port_id"),
        "{e}"
    );
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public, "port_id": id(&port), "router_id": "x"}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );

    let f = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public, "port_id": id(&port), "router_id": outer}),
        )
        .await;
    assert_eq!(f["router_id"], outer.as_str());
    assert_eq!(f["port_id"], id(&port).as_str());
    let fid = id(&f);
    // The outer router's rules map it (its routes reach the fixed IP).
    let rules = t.app.router_rules(&tenant(), &outer).await.unwrap();
    assert_eq!(rules.floating.len(), 1);
    assert!(!rules.floating[0].via_interface);
    // Its gateway cannot go while it hosts the floating IP.
    assert_err(
        t.update(
            &tenant(),
            "routers",
            &outer,
            json!({"external_gateway_info": null}),
        )
        .await,
        409,
        "RouterExternalGatewayInUseByFloatingIp",
    );
    // Other updates keep the named router.
    let up = t
        .update(&tenant(), "floatingips", &fid, json!({"description": "d"}))
        .await
        .unwrap();
    assert_eq!(up["router_id"], outer.as_str());
    // A router_id alone moves an association; without a port there is nothing to move.
    assert_err(
        t.update(&tenant(), "floatingips", &fid, json!({"router_id": inner}))
            .await,
        409,
        "FloatingIPRouterNotOnNetwork",
    );
    let free = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public}),
        )
        .await;
    assert_err(
        t.update(
            &tenant(),
            "floatingips",
            &id(&free),
            json!({"router_id": outer}),
        )
        .await,
        400,
        "BadRequest",
    );
    // Re-associating without naming the router falls back to the direct rule.
    assert_err(
        t.update(
            &tenant(),
            "floatingips",
            &fid,
            json!({"port_id": id(&port)}),
        )
        .await,
        404,
        "ExternalGatewayForFloatingIPNotFound",
    );
    let up = t
        .update(&tenant(), "floatingips", &fid, json!({"port_id": null}))
        .await
        .unwrap();
    assert_eq!(up["router_id"], Value::Null);
    let up = t
        .update(
            &tenant(),
            "floatingips",
            &fid,
            json!({"port_id": id(&port), "router_id": outer}),
        )
        .await
        .unwrap();
    assert_eq!(up["router_id"], outer.as_str());
}

#[tokio::test]
async fn isolated_ports_get_no_floating_ip() {
    let t = env().await;
    let (public, _) = t.external().await;
    let (port, _, _) = indirect_topology(&t, None).await;
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public, "port_id": id(&port)}),
        )
        .await,
        404,
        "ExternalGatewayForFloatingIPNotFound",
    );
    let (net, _) = t.net(&tenant(), json!({}), "10.20.0.0/24").await;
    let lone = t.ok(&tenant(), "ports", json!({"network_id": net})).await;
    let f = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public}),
        )
        .await;
    assert_err(
        t.update(
            &tenant(),
            "floatingips",
            &id(&f),
            json!({"port_id": id(&lone)}),
        )
        .await,
        404,
        "ExternalGatewayForFloatingIPNotFound",
    );
}

#[tokio::test]
async fn floating_ip_of_a_floating_ip_only_subnet_lives_on_the_gateway() {
    // A subnet of the external network that only floating IPs use: the router's gateway
    // has no address there, the floating IP still lives on the gateway (announced to the
    // physical routers as a BGP host route).
    let t = env().await;
    let (public, public_sub) = t.external().await;
    let fip_sub = t
        .ok(
            &admin(),
            "subnets",
            json!({"network_id": public, "ip_version": 4, "cidr": "198.51.100.0/24",
                   "gateway_ip": null, "service_types": ["network:floatingip"]}),
        )
        .await;
    let r = t
        .ok(
            &tenant(),
            "routers",
            json!({"external_gateway_info": {"network_id": public}}),
        )
        .await;
    let (net, sub) = t.net(&tenant(), json!({}), "10.9.0.0/24").await;
    t.action(
        &tenant(),
        &id(&r),
        "add_router_interface",
        json!({"subnet_id": sub}),
    )
    .await
    .unwrap();
    let port = t.ok(&tenant(), "ports", json!({"network_id": net})).await;
    let f = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": public, "subnet_id": id(&fip_sub),
                   "port_id": id(&port)}),
        )
        .await;
    assert!(in_cidr(
        f["floating_ip_address"].as_str().unwrap(),
        "198.51.100.0/24"
    ));
    let rules = t.app.router_rules(&tenant(), &id(&r)).await.unwrap();
    let rule = &rules.floating[0];
    assert_eq!(rule.via.as_deref(), Some(public_sub.as_str()));
    assert!(!rule.via_interface);
}
