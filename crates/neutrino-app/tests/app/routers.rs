//! Routers and floating IPs through the public application API: gateways, interfaces (by
//! subnet and by port), extra routes, floating IP allocation and association, and the
//! in-use rules between them.

use crate::common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn router_gateway_lifecycle() {
    let t = env().await;
    let (ext, ext_sub) = t.external().await;
    let (private, _) = t
        .net(&tenant(), json!({"name": "private"}), "10.0.0.0/24")
        .await;
    let (hidden, _) = t
        .net(&other_tenant(), json!({"name": "b-net"}), "10.9.0.0/24")
        .await;

    // Plain router.
    let r = t.ok(&tenant(), "routers", json!({"name": "r0"})).await;
    assert_eq!(r["status"], "ACTIVE");
    assert_eq!(r["external_gateway_info"], Value::Null);
    assert_eq!(r["routes"], json!([]));
    assert_eq!(r["project_id"], "project-a");
    assert_eq!(r["admin_state_up"], true);
    assert_eq!(r["tags"], json!([]));

    // Creation refusals.
    let e = assert_err(
        t.create(&tenant(), "routers", json!({"routes": []})).await,
        400,
        "HTTPBadRequest",
    );
    assert_eq!(e.message, "Attribute 'routes' not allowed in POST");
    assert_err(
        t.create(
            &tenant(),
            "routers",
            json!({"external_gateway_info": {"network_id": ext, "enable_snat": false}}),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        t.create(
            &tenant(),
            "routers",
            json!({"external_gateway_info": {"network_id": ext, "external_fixed_ips": [{"subnet_id": ext_sub}]}}),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    let e = assert_err(
        t.create(
            &tenant(),
            "routers",
            json!({"external_gateway_info": {"network_id": private}}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        format!("Bad router request: Network {private} is not an external network.")
    );
    assert_err(
        t.create(
            &tenant(),
            "routers",
            json!({"external_gateway_info": {"network_id": hidden}}),
        )
        .await,
        404,
        "NetworkNotFound",
    );
    assert_err(
        t.create(
            &tenant(),
            "routers",
            json!({"external_gateway_info": {"enable_snat": true}}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );

    // Admin: specific address, SNAT off.
    let r2 = t
        .ok(
            &admin(),
            "routers",
            json!({"external_gateway_info": {"network_id": ext, "enable_snat": false,
                   "external_fixed_ips": [{"ip_address": "172.24.4.100"}]}}),
        )
        .await;
    assert_eq!(r2["external_gateway_info"]["enable_snat"], false);
    assert_eq!(
        r2["external_gateway_info"]["external_fixed_ips"],
        json!([{"subnet_id": ext_sub, "ip_address": "172.24.4.100"}])
    );
    // The subnet's gateway address cannot be the router's.
    let e = assert_err(
        t.create(
            &admin(),
            "routers",
            json!({"external_gateway_info": {"network_id": ext, "external_fixed_ips": [{"ip_address": "172.24.4.1"}]}}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(e.message.contains("is the same as the gateway IP"), "{e}");
    // Re-addressing keeps the port.
    let r2b = t
        .update(
            &admin(),
            "routers",
            &id(&r2),
            json!({"external_gateway_info": {"network_id": ext, "external_fixed_ips": [{"ip_address": "172.24.4.101"}]}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r2b["external_gateway_info"]["external_fixed_ips"][0]["ip_address"],
        "172.24.4.101"
    );
    assert_eq!(r2b["external_gateway_info"]["enable_snat"], true);
    assert_eq!(r2b["revision_number"], 2);

    // Router with a gateway.
    let r = t
        .ok(
            &tenant(),
            "routers",
            json!({"name": "r1", "external_gateway_info": {"network_id": ext}}),
        )
        .await;
    let rid = id(&r);
    let gw = &r["external_gateway_info"];
    assert_eq!(gw["network_id"], ext.as_str());
    assert_eq!(gw["enable_snat"], true);
    let ips = gw["external_fixed_ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1);
    assert_eq!(ips[0]["subnet_id"], ext_sub.as_str());
    let gw_ip = ips[0]["ip_address"].as_str().unwrap().to_string();
    assert!(in_cidr(&gw_ip, "172.24.4.0/24"));
    let gw_ports = t
        .ports(&[
            ("device_id", &rid),
            ("device_owner", "network:router_gateway"),
        ])
        .await;
    assert_eq!(gw_ports.len(), 1);
    assert_eq!(gw_ports[0]["project_id"], "");
    assert_eq!(gw_ports[0]["fixed_ips"][0]["ip_address"], gw_ip.as_str());
    // The gateway port is not the tenant's.
    assert_err(
        t.show(&tenant(), "ports", gw_ports[0]["id"].as_str().unwrap())
            .await,
        404,
        "PortNotFound",
    );
    assert_eq!(t.show(&tenant(), "routers", &rid).await.unwrap(), r);
    assert_err(
        t.show(&other_tenant(), "routers", &rid).await,
        404,
        "RouterNotFound",
    );

    // Clearing and setting again.
    let cleared = t
        .update(
            &tenant(),
            "routers",
            &rid,
            json!({"external_gateway_info": {}}),
        )
        .await
        .unwrap();
    assert_eq!(cleared["external_gateway_info"], Value::Null);
    assert!(t.ports(&[("device_id", &rid)]).await.is_empty());
    let set = t
        .update(
            &tenant(),
            "routers",
            &rid,
            json!({"external_gateway_info": {"network_id": ext}, "name": "renamed"}),
        )
        .await
        .unwrap();
    assert_eq!(set["name"], "renamed");
    assert_eq!(set["external_gateway_info"]["network_id"], ext.as_str());
    assert_err(
        t.update(
            &tenant(),
            "routers",
            &rid,
            json!({"external_gateway_info": {"network_id": ext, "enable_snat": true}}),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    let cleared = t
        .update(
            &tenant(),
            "routers",
            &rid,
            json!({"external_gateway_info": null}),
        )
        .await
        .unwrap();
    assert_eq!(cleared["external_gateway_info"], Value::Null);

    // Deleting a router removes its gateway port.
    t.delete(&admin(), "routers", &id(&r2)).await.unwrap();
    assert!(t.ports(&[("device_id", &id(&r2))]).await.is_empty());
    assert_err(
        t.show(&admin(), "routers", &id(&r2)).await,
        404,
        "RouterNotFound",
    );
}

#[tokio::test]
async fn router_interfaces() {
    let t = env().await;
    let (ext, _) = t.external().await;
    let (net_a, sub_a) = t.net(&tenant(), json!({"name": "a"}), "10.0.0.0/24").await;
    let (net_b, sub_b) = t.net(&tenant(), json!({"name": "b"}), "10.1.0.0/24").await;
    let (_, sub_overlap) = t.net(&tenant(), json!({"name": "c"}), "10.0.0.0/16").await;
    let (_, sub_foreign) = t
        .net(&other_tenant(), json!({"name": "x"}), "10.5.0.0/24")
        .await;
    let r = t
        .ok(
            &tenant(),
            "routers",
            json!({"name": "r", "external_gateway_info": {"network_id": ext}}),
        )
        .await;
    let rid = id(&r);

    // Request shape.
    let e = assert_err(
        t.action(&tenant(), &rid, "add_router_interface", json!({}))
            .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        "Bad router request: Either subnet_id or port_id must be specified."
    );
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub_a, "port_id": sub_a}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        "Bad router request: Cannot specify both subnet-id and port-id."
    );
    assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": "nope"}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub_foreign}),
        )
        .await,
        404,
        "SubnetNotFound",
    );
    assert_err(
        t.action(
            &other_tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub_foreign}),
        )
        .await,
        404,
        "RouterNotFound",
    );

    // By subnet: a port with the subnet's gateway address.
    let info = t
        .action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub_a}),
        )
        .await
        .unwrap();
    assert_eq!(info["id"], rid.as_str());
    assert_eq!(info["subnet_id"], sub_a.as_str());
    assert_eq!(info["subnet_ids"], json!([sub_a]));
    assert_eq!(info["network_id"], net_a.as_str());
    assert_eq!(info["project_id"], "project-a");
    assert_eq!(info["tenant_id"], "project-a");
    let port_a = info["port_id"].as_str().unwrap().to_string();
    let p = t.show(&tenant(), "ports", &port_a).await.unwrap();
    assert_eq!(p["device_owner"], "network:router_interface");
    assert_eq!(p["device_id"], rid.as_str());
    assert_eq!(
        p["fixed_ips"],
        json!([{"subnet_id": sub_a, "ip_address": "10.0.0.1"}])
    );
    assert_eq!(p["security_groups"], json!([]));
    // The router's revision moved.
    assert_eq!(
        t.show(&tenant(), "routers", &rid).await.unwrap()["revision_number"],
        2
    );
    // Interface ports are not deleted through the port API by their owner.
    assert_err(
        t.delete(&tenant(), "ports", &port_a).await,
        409,
        "ServicePortInUse",
    );

    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub_a}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        format!("Bad router request: Router already has a port on subnet {sub_a}.")
    );
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub_overlap}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        format!("Bad router request: Cidr 10.0.0.0/16 of subnet {sub_overlap} overlaps with cidr 10.0.0.0/24 of subnet {sub_a}.")
    );
    // Overlap with the gateway network counts too.
    let (_, sub_ext_overlap) = t
        .net(&tenant(), json!({"name": "d"}), "172.24.0.0/16")
        .await;
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub_ext_overlap}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(
        e.message.contains("overlaps with cidr 172.24.4.0/24"),
        "{e}"
    );

    // A subnet without a gateway.
    let (net_e, _) = t.net(&tenant(), json!({"name": "e"}), "10.7.0.0/24").await;
    let no_gw = t
        .ok(
            &tenant(),
            "subnets",
            json!({"network_id": net_e, "ip_version": 4, "cidr": "10.8.0.0/24", "gateway_ip": null}),
        )
        .await;
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": id(&no_gw)}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        "Bad router request: Subnet for router interface must have a gateway IP."
    );

    // By port.
    let port_b = t
        .ok(&tenant(), "ports", json!({"network_id": net_b, "fixed_ips": [{"subnet_id": sub_b, "ip_address": "10.1.0.254"}]}))
        .await;
    let info = t
        .action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"port_id": id(&port_b)}),
        )
        .await
        .unwrap();
    assert_eq!(info["port_id"], id(&port_b).as_str());
    assert_eq!(info["subnet_id"], sub_b.as_str());
    assert_eq!(info["network_id"], net_b.as_str());
    let p = t.show(&tenant(), "ports", &id(&port_b)).await.unwrap();
    assert_eq!(p["device_owner"], "network:router_interface");
    assert_eq!(p["device_id"], rid.as_str());
    assert_eq!(p["revision_number"], 2);
    // The same port again: it has a device now.
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"port_id": id(&port_b)}),
        )
        .await,
        409,
        "PortInUse",
    );
    assert!(
        e.message.contains("Port already has an attached device"),
        "{e}"
    );
    // A port overlapping an attached subnet.
    let (net_f, _) = t.net(&tenant(), json!({"name": "f"}), "10.0.0.0/23").await;
    let port_f = t.ok(&tenant(), "ports", json!({"network_id": net_f})).await;
    assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"port_id": id(&port_f)}),
        )
        .await,
        400,
        "BadRequest",
    );
    // A port without addresses.
    let bare = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": net_e, "fixed_ips": []}),
        )
        .await;
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"port_id": id(&bare)}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        "Bad router request: Router port must have at least one fixed IP."
    );
    let foreign_port = t.ok(&other_tenant(), "ports", json!({"network_id": t.show(&other_tenant(), "subnets", &sub_foreign).await.unwrap()["network_id"]})).await;
    assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"port_id": id(&foreign_port)}),
        )
        .await,
        404,
        "PortNotFound",
    );

    // The router cannot go while it has interfaces.
    let e = assert_err(
        t.delete(&tenant(), "routers", &rid).await,
        409,
        "RouterInUse",
    );
    assert!(
        e.message
            .starts_with(&format!("Router {rid} has ports still attached: ")),
        "{e}"
    );

    // Removal.
    assert_err(
        t.action(&tenant(), &rid, "remove_router_interface", json!({}))
            .await,
        400,
        "BadRequest",
    );
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "remove_router_interface",
            json!({"subnet_id": sub_overlap}),
        )
        .await,
        404,
        "RouterInterfaceNotFoundForSubnet",
    );
    assert_eq!(
        e.message,
        format!("Router {rid} has no interface on subnet {sub_overlap}")
    );
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "remove_router_interface",
            json!({"port_id": id(&port_f)}),
        )
        .await,
        404,
        "RouterInterfaceNotFound",
    );
    assert_eq!(
        e.message,
        format!(
            "Router {rid} does not have an interface with id {}",
            id(&port_f)
        )
    );
    assert_err(
        t.action(
            &tenant(),
            &rid,
            "remove_router_interface",
            json!({"port_id": id(&port_b), "subnet_id": sub_a}),
        )
        .await,
        400,
        "SubnetMismatchForPort",
    );
    let info = t
        .action(
            &tenant(),
            &rid,
            "remove_router_interface",
            json!({"port_id": id(&port_b), "subnet_id": sub_b}),
        )
        .await
        .unwrap();
    assert_eq!(info["port_id"], id(&port_b).as_str());
    assert_eq!(info["subnet_ids"], json!([sub_b]));
    assert_err(
        t.show(&tenant(), "ports", &id(&port_b)).await,
        404,
        "PortNotFound",
    );
    let info = t
        .action(
            &tenant(),
            &rid,
            "remove_router_interface",
            json!({"subnet_id": sub_a}),
        )
        .await
        .unwrap();
    assert_eq!(info["port_id"], port_a.as_str());
    assert_eq!(info["subnet_id"], sub_a.as_str());
    assert_err(
        t.show(&tenant(), "ports", &port_a).await,
        404,
        "PortNotFound",
    );
    // The gateway address is free again: attach once more and it comes back.
    let info = t
        .action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub_a}),
        )
        .await
        .unwrap();
    let p = t
        .show(&tenant(), "ports", info["port_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(p["fixed_ips"][0]["ip_address"], "10.0.0.1");
    t.action(
        &tenant(),
        &rid,
        "remove_router_interface",
        json!({"subnet_id": sub_a}),
    )
    .await
    .unwrap();

    t.delete(&tenant(), "routers", &rid).await.unwrap();
    assert!(t.ports(&[("device_id", &rid)]).await.is_empty());
}

#[tokio::test]
async fn interface_gateway_address_taken() {
    let t = env().await;
    let net = t.ok(&tenant(), "networks", json!({})).await;
    let sub = t
        .ok(
            &tenant(),
            "subnets",
            json!({"network_id": id(&net), "ip_version": 4, "cidr": "10.3.0.0/24"}),
        )
        .await;
    // Someone holds the gateway address already.
    t.ok(
        &tenant(),
        "ports",
        json!({"network_id": id(&net), "fixed_ips": [{"subnet_id": id(&sub), "ip_address": "10.3.0.1"}]}),
    )
    .await;
    let r = t.ok(&tenant(), "routers", json!({})).await;
    assert_err(
        t.action(
            &tenant(),
            &id(&r),
            "add_router_interface",
            json!({"subnet_id": id(&sub)}),
        )
        .await,
        409,
        "IpAddressInUse",
    );
}

#[tokio::test]
async fn extra_routes() {
    let t = env().await;
    let (ext, _) = t.external().await;
    let (_, sub_a) = t.net(&tenant(), json!({"name": "a"}), "10.0.0.0/24").await;
    let rid = t.router_between(&ext, &sub_a).await;

    let route = json!({"destination": "192.168.0.0/24", "nexthop": "10.0.0.5"});
    let up = t
        .update(&tenant(), "routers", &rid, json!({"routes": [route]}))
        .await
        .unwrap();
    assert_eq!(up["routes"], json!([route]));
    // Through the gateway subnet too; IPv6 destinations are shown canonical.
    let up = t
        .update(
            &tenant(),
            "routers",
            &rid,
            json!({"routes": [route, {"destination": "2001:DB8::/32", "nexthop": "172.24.4.20"}]}),
        )
        .await
        .unwrap();
    assert_eq!(up["routes"][1]["destination"], "2001:db8::/32");

    let e = assert_err(
        t.update(
            &tenant(),
            "routers",
            &rid,
            json!({"routes": [{"destination": "192.168.0.0/24", "nexthop": "8.8.8.8"}]}),
        )
        .await,
        400,
        "InvalidRoutes",
    );
    assert_eq!(
        e.message,
        "Invalid format for routes: [{'destination': '192.168.0.0/24', 'nexthop': '8.8.8.8'}], the nexthop is not connected with router"
    );
    let e = assert_err(
        t.update(
            &tenant(),
            "routers",
            &rid,
            json!({"routes": [{"destination": "192.168.0.0/24", "nexthop": "10.0.0.1"}]}),
        )
        .await,
        400,
        "InvalidRoutes",
    );
    assert!(e.message.ends_with("the nexthop is used by router"), "{e}");
    assert_err(
        t.update(
            &tenant(),
            "routers",
            &rid,
            json!({"routes": [{"destination": "192.168.0.1/24", "nexthop": "10.0.0.5"}]}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    assert_err(
        t.update(
            &tenant(),
            "routers",
            &rid,
            json!({"routes": [route, route]}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    assert_err(
        t.update(
            &tenant(),
            "routers",
            &rid,
            json!({"routes": [{"destination": "192.168.0.0/24"}]}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    let many: Vec<Value> = (0..31)
        .map(|i| json!({"destination": format!("192.168.{i}.0/24"), "nexthop": "10.0.0.5"}))
        .collect();
    let e = assert_err(
        t.update(&tenant(), "routers", &rid, json!({"routes": many[..31]}))
            .await,
        409,
        "OverQuota",
    );
    assert_eq!(e.message, "Quota exceeded for resources: ['router_route'].");
    t.update(&tenant(), "routers", &rid, json!({"routes": many[..30]}))
        .await
        .unwrap();
    t.update(&tenant(), "routers", &rid, json!({"routes": null}))
        .await
        .unwrap();

    // Atomic add / remove: set operations, answered with the whole router.
    let out = t
        .action(
            &tenant(),
            &rid,
            "add_extraroutes",
            json!({"router": {"routes": [route, route]}}),
        )
        .await
        .unwrap();
    assert_eq!(out["router"]["id"], rid.as_str());
    assert_eq!(out["router"]["routes"], json!([route]));
    let second = json!({"destination": "192.168.1.0/24", "nexthop": "10.0.0.6"});
    let out = t
        .action(
            &tenant(),
            &rid,
            "add_extraroutes",
            json!({"router": {"routes": [route, second]}}),
        )
        .await
        .unwrap();
    assert_eq!(out["router"]["routes"], json!([route, second]));
    assert_eq!(
        out["router"]["external_gateway_info"]["network_id"],
        ext.as_str()
    );
    assert_eq!(
        t.show(&tenant(), "routers", &rid).await.unwrap(),
        out["router"]
    );
    assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_extraroutes",
            json!({"router": {"routes": [{"destination": "10.9.0.0/24", "nexthop": "9.9.9.9"}]}}),
        )
        .await,
        400,
        "InvalidRoutes",
    );
    assert_err(
        t.action(&tenant(), &rid, "add_extraroutes", json!({"routes": []}))
            .await,
        400,
        "HTTPBadRequest",
    );

    // An interface a route goes through stays.
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "remove_router_interface",
            json!({"subnet_id": sub_a}),
        )
        .await,
        409,
        "RouterInterfaceInUseByRoute",
    );
    assert_eq!(
        e.message,
        format!("Router interface for subnet {sub_a} on router {rid} cannot be deleted, as it is required by one or more routes.")
    );
    let out = t
        .action(&tenant(), &rid, "remove_extraroutes", json!({"router": {"routes": [route, second, {"destination": "10.10.0.0/16", "nexthop": "10.0.0.9"}]}}))
        .await
        .unwrap();
    assert_eq!(out["router"]["routes"], json!([]));
    t.action(
        &tenant(),
        &rid,
        "remove_router_interface",
        json!({"subnet_id": sub_a}),
    )
    .await
    .unwrap();

    // Routes through the gateway keep the gateway.
    t.update(
        &tenant(),
        "routers",
        &rid,
        json!({"routes": [{"destination": "10.20.0.0/16", "nexthop": "172.24.4.30"}]}),
    )
    .await
    .unwrap();
    assert_err(
        t.update(
            &tenant(),
            "routers",
            &rid,
            json!({"external_gateway_info": null}),
        )
        .await,
        400,
        "InvalidRoutes",
    );
}

#[tokio::test]
async fn floating_ips() {
    let t = env().await;
    let (ext, ext_sub) = t.external().await;
    let (net_a, sub_a) = t.net(&tenant(), json!({"name": "a"}), "10.0.0.0/24").await;
    let (net_far, _) = t
        .net(&tenant(), json!({"name": "far"}), "10.50.0.0/24")
        .await;
    let (hidden, _) = t.net(&other_tenant(), json!({}), "10.9.0.0/24").await;
    let rid = t.router_between(&ext, &sub_a).await;
    let vm = t.ok(&tenant(), "ports", json!({"network_id": net_a})).await;
    let vm_ip = vm["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();

    // Allocation refusals.
    let e = assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": net_a}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        format!("Bad floatingip request: Network {net_a} is not a valid external network.")
    );
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": hidden}),
        )
        .await,
        404,
        "NetworkNotFound",
    );
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "floating_ip_address": "172.24.4.50"}),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        t.create(&tenant(), "floatingips", json!({})).await,
        400,
        "HTTPBadRequest",
    );

    // A free floating IP.
    let f = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "description": "d"}),
        )
        .await;
    let fid = id(&f);
    assert!(in_cidr(
        f["floating_ip_address"].as_str().unwrap(),
        "172.24.4.0/24"
    ));
    assert_eq!(f["floating_network_id"], ext.as_str());
    assert_eq!(f["port_id"], Value::Null);
    assert_eq!(f["fixed_ip_address"], Value::Null);
    assert_eq!(f["router_id"], Value::Null);
    assert_eq!(f["status"], "DOWN");
    assert_eq!(f["description"], "d");
    assert_eq!(f["project_id"], "project-a");
    assert!(f.get("subnet_id").is_none());
    let fip_ports = t
        .ports(&[("device_id", &fid), ("device_owner", "network:floatingip")])
        .await;
    assert_eq!(fip_ports.len(), 1);
    assert_eq!(fip_ports[0]["project_id"], "");
    assert_eq!(
        fip_ports[0]["fixed_ips"][0]["ip_address"],
        f["floating_ip_address"]
    );

    // Association.
    let up = t
        .update(&tenant(), "floatingips", &fid, json!({"port_id": id(&vm)}))
        .await
        .unwrap();
    assert_eq!(up["port_id"], id(&vm).as_str());
    assert_eq!(up["fixed_ip_address"], vm_ip.as_str());
    assert_eq!(up["router_id"], rid.as_str());
    assert_eq!(up["revision_number"], 2);
    // Idempotent.
    t.update(
        &tenant(),
        "floatingips",
        &fid,
        json!({"port_id": id(&vm), "description": "again"}),
    )
    .await
    .unwrap();
    // One floating IP per fixed IP and external network.
    let e = assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&vm)}),
        )
        .await,
        409,
        "FloatingIPPortAlreadyAssociated",
    );
    assert!(
        e.message.contains(&format!("using fixed IP {vm_ip}")),
        "{e}"
    );
    let e = assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&vm), "fixed_ip_address": "10.0.1.77"}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        format!(
            "Bad floatingip request: Port {} does not have fixed ip 10.0.1.77.",
            id(&vm)
        )
    );
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "fixed_ip_address": vm_ip}),
        )
        .await,
        400,
        "BadRequest",
    );
    // Unreachable and invisible ports.
    let far = t
        .ok(&tenant(), "ports", json!({"network_id": net_far}))
        .await;
    let e = assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&far)}),
        )
        .await,
        404,
        "ExternalGatewayForFloatingIPNotFound",
    );
    assert!(
        e.message.starts_with(&format!(
            "External network {ext} is not reachable from subnet "
        )),
        "{e}"
    );
    let foreign = t
        .ok(&other_tenant(), "ports", json!({"network_id": hidden}))
        .await;
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&foreign)}),
        )
        .await,
        404,
        "PortNotFound",
    );
    // A port with two IPv4 addresses needs fixed_ip_address.
    let two = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": net_a, "fixed_ips": [{"subnet_id": sub_a}, {"subnet_id": sub_a}]}),
        )
        .await;
    let e = assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&two)}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(
        e.message.contains("has multiple fixed IPv4 addresses"),
        "{e}"
    );
    let second_ip = two["fixed_ips"][1]["ip_address"].as_str().unwrap();
    let f2 = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&two), "fixed_ip_address": second_ip}),
        )
        .await;
    assert_eq!(f2["fixed_ip_address"], second_ip);
    assert_eq!(f2["router_id"], rid.as_str());
    // Only the owner sees and changes floating IPs.
    assert_eq!(
        t.show(&other_tenant(), "floatingips", &fid)
            .await
            .unwrap_err()
            .status,
        404
    );

    // What the association holds in place.
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "remove_router_interface",
            json!({"subnet_id": sub_a}),
        )
        .await,
        409,
        "RouterInterfaceInUseByFloatingIP",
    );
    assert_eq!(
        e.message,
        format!("Router interface for subnet {sub_a} on router {rid} cannot be deleted, as it is required by one or more floating IPs.")
    );
    assert_err(
        t.update(
            &tenant(),
            "routers",
            &rid,
            json!({"external_gateway_info": null}),
        )
        .await,
        409,
        "RouterExternalGatewayInUseByFloatingIp",
    );

    // Disassociation.
    let up = t
        .update(&tenant(), "floatingips", &fid, json!({"port_id": null}))
        .await
        .unwrap();
    assert_eq!(up["port_id"], Value::Null);
    assert_eq!(up["fixed_ip_address"], Value::Null);
    assert_eq!(up["router_id"], Value::Null);
    assert_eq!(up["description"], "again");
    // The fixed IP is free for another floating IP now.
    let f3 = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&vm)}),
        )
        .await;
    assert_eq!(f3["router_id"], rid.as_str());
    t.update(&tenant(), "floatingips", &id(&f3), json!({"port_id": null}))
        .await
        .unwrap();
    t.update(&tenant(), "floatingips", &id(&f2), json!({"port_id": null}))
        .await
        .unwrap();
    assert_err(
        t.update(
            &tenant(),
            "floatingips",
            &fid,
            json!({"floating_network_id": ext}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );

    // Specific addresses (admin). The floating IPs above took random addresses of the
    // external subnet: ask for one none of them has.
    let wanted = t
        .free_address(&["172.24.4.50", "172.24.4.51", "172.24.4.52", "172.24.4.53"])
        .await;
    let fa = t
        .ok(
            &admin(),
            "floatingips",
            json!({"floating_network_id": ext, "floating_ip_address": wanted, "project_id": "project-a"}),
        )
        .await;
    assert_eq!(fa["floating_ip_address"], wanted.as_str());
    assert_eq!(fa["project_id"], "project-a");
    assert_err(
        t.create(
            &admin(),
            "floatingips",
            json!({"floating_network_id": ext, "floating_ip_address": wanted}),
        )
        .await,
        409,
        "IpAddressInUse",
    );
    let fs = t
        .ok(
            &admin(),
            "floatingips",
            json!({"floating_network_id": ext, "subnet_id": ext_sub}),
        )
        .await;
    assert!(in_cidr(
        fs["floating_ip_address"].as_str().unwrap(),
        "172.24.4.0/24"
    ));
    assert_err(
        t.create(
            &admin(),
            "floatingips",
            json!({"floating_network_id": ext, "subnet_id": sub_a}),
        )
        .await,
        400,
        "InvalidInput",
    );

    // Deleting returns the address.
    let address = f["floating_ip_address"].as_str().unwrap().to_string();
    t.delete(&tenant(), "floatingips", &fid).await.unwrap();
    assert!(t.ports(&[("device_id", &fid)]).await.is_empty());
    assert_eq!(
        t.show(&tenant(), "floatingips", &fid)
            .await
            .unwrap_err()
            .status,
        404
    );
    let again = t
        .ok(
            &admin(),
            "floatingips",
            json!({"floating_network_id": ext, "floating_ip_address": address}),
        )
        .await;
    assert_eq!(again["floating_ip_address"], address.as_str());

    // With every floating IP gone from the router, its interface and gateway can go.
    t.action(
        &tenant(),
        &rid,
        "remove_router_interface",
        json!({"subnet_id": sub_a}),
    )
    .await
    .unwrap();
    t.delete(&tenant(), "routers", &rid).await.unwrap();
}

#[tokio::test]
async fn floating_ip_exhaustion() {
    let t = env().await;
    let net = t
        .ok(&admin(), "networks", json!({"router:external": true}))
        .await;
    let v6 = t
        .ok(&admin(), "networks", json!({"router:external": true}))
        .await;
    t.ok(
        &admin(),
        "subnets",
        json!({"network_id": id(&v6), "ip_version": 6, "cidr": "2001:db8::/64"}),
    )
    .await;
    let e = assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": id(&v6)}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(
        e.message.ends_with("does not contain any IPv4 subnet."),
        "{e}"
    );
    // Two addresses in the pool.
    t.ok(
        &admin(),
        "subnets",
        json!({"network_id": id(&net), "ip_version": 4, "cidr": "192.0.2.0/29",
               "allocation_pools": [{"start": "192.0.2.2", "end": "192.0.2.3"}]}),
    )
    .await;
    // A second subnet takes over when the first is full.
    t.ok(
        &admin(),
        "subnets",
        json!({"network_id": id(&net), "ip_version": 4, "cidr": "192.0.2.8/29",
               "allocation_pools": [{"start": "192.0.2.10", "end": "192.0.2.10"}]}),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = t
            .ok(
                &tenant(),
                "floatingips",
                json!({"floating_network_id": id(&net)}),
            )
            .await;
        got.push(f["floating_ip_address"].as_str().unwrap().to_string());
    }
    got.sort();
    assert_eq!(got, ["192.0.2.10", "192.0.2.2", "192.0.2.3"]);
    assert_err(
        t.create(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": id(&net)}),
        )
        .await,
        409,
        "IpAddressGenerationFailure",
    );
}

#[tokio::test]
async fn ipv6_prefixes_share_one_interface() {
    let t = env().await;
    let net = t.ok(&tenant(), "networks", json!({})).await;
    let v6 = |cidr: &str| {
        json!({"network_id": id(&net), "ip_version": 6, "cidr": cidr,
               "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})
    };
    let s1 = id(&t.ok(&tenant(), "subnets", v6("2001:db8:1::/64")).await);
    let s2 = id(&t.ok(&tenant(), "subnets", v6("2001:db8:2::/64")).await);
    let external_ra = t
        .ok(
            &tenant(),
            "subnets",
            json!({"network_id": id(&net), "ip_version": 6, "cidr": "2001:db8:3::/64",
                   "ipv6_address_mode": "slaac"}),
        )
        .await;
    let rid = id(&t.ok(&tenant(), "routers", json!({})).await);

    let a = t
        .action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": s1}),
        )
        .await
        .unwrap();
    let b = t
        .action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": s2}),
        )
        .await
        .unwrap();
    assert_eq!(a["port_id"], b["port_id"]);
    assert_eq!(b["subnet_ids"], json!([s2]));
    let port = a["port_id"].as_str().unwrap().to_string();
    let p = t.show(&tenant(), "ports", &port).await.unwrap();
    assert_eq!(
        p["fixed_ips"],
        json!([{"subnet_id": s1, "ip_address": "2001:db8:1::1"},
               {"subnet_id": s2, "ip_address": "2001:db8:2::1"}])
    );
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": id(&external_ra)}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(
        e.message
            .contains("configured to receive RAs from an external router"),
        "{e}"
    );

    // Removing one prefix keeps the port.
    t.action(
        &tenant(),
        &rid,
        "remove_router_interface",
        json!({"subnet_id": s1}),
    )
    .await
    .unwrap();
    let p = t.show(&tenant(), "ports", &port).await.unwrap();
    assert_eq!(
        p["fixed_ips"],
        json!([{"subnet_id": s2, "ip_address": "2001:db8:2::1"}])
    );
    t.action(
        &tenant(),
        &rid,
        "remove_router_interface",
        json!({"subnet_id": s2}),
    )
    .await
    .unwrap();
    assert_err(t.show(&tenant(), "ports", &port).await, 404, "PortNotFound");
    t.delete(&tenant(), "routers", &rid).await.unwrap();
}

#[tokio::test]
async fn shared_network_subnets() {
    let t = env().await;
    let (_, shared_sub) = t
        .net(
            &admin(),
            json!({"name": "shared", "shared": true}),
            "10.60.0.0/24",
        )
        .await;
    let rid = id(&t.ok(&tenant(), "routers", json!({})).await);
    // Visible, but a globally shared subnet of another project cannot be attached.
    let e = assert_err(
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": shared_sub}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        e.message,
        format!("Bad router request: Cannot add interface to router because subnet {shared_sub} is not owned by project making the request.")
    );
    // The admin may; the port belongs to the router's project.
    let info = t
        .action(
            &admin(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": shared_sub}),
        )
        .await
        .unwrap();
    assert_eq!(info["project_id"], "project-a");
    let p = t
        .show(&tenant(), "ports", info["port_id"].as_str().unwrap())
        .await;
    assert_eq!(p.unwrap()["project_id"], "project-a");
}

/// The server's address-scope rules for a router: subnets from pools of one scope route to
/// each other and to a same-scope external network without NAT; other subnets are blocked
/// from them and SNATed outward.
#[tokio::test]
async fn router_rules_follow_address_scopes() {
    let env = env().await;
    let a = admin();
    let scope = env
        .ok(
            &a,
            "address-scopes",
            json!({"name": "s", "ip_version": 4, "shared": true}),
        )
        .await;
    let pool = env
        .ok(&a, "subnetpools", json!({"name": "p", "prefixes": ["10.100.0.0/16"], "address_scope_id": id(&scope), "shared": true}))
        .await;
    let ext_pool = env
        .ok(
            &a,
            "subnetpools",
            json!({"name": "e", "prefixes": ["172.30.0.0/16"], "address_scope_id": id(&scope)}),
        )
        .await;
    let ext = env
        .ok(
            &a,
            "networks",
            json!({"name": "ext", "router:external": true}),
        )
        .await;
    env.ok(&a, "subnets", json!({"network_id": id(&ext), "ip_version": 4, "subnetpool_id": id(&ext_pool), "prefixlen": 24}))
        .await;
    let mut subnets = Vec::new();
    for (name, from_pool) in [("in1", true), ("in2", true), ("plain", false)] {
        let net = env.ok(&a, "networks", json!({"name": name})).await;
        let body = if from_pool {
            json!({"network_id": id(&net), "ip_version": 4, "subnetpool_id": id(&pool), "prefixlen": 24})
        } else {
            json!({"network_id": id(&net), "ip_version": 4, "cidr": "192.168.50.0/24"})
        };
        subnets.push(id(&env.ok(&a, "subnets", body).await));
    }
    let router = env
        .ok(
            &a,
            "routers",
            json!({"name": "r", "external_gateway_info": {"network_id": id(&ext)}}),
        )
        .await;
    for sn in &subnets {
        env.app
            .action(
                &a,
                coll("routers"),
                &id(&router),
                "add_router_interface",
                json!({"subnet_id": sn}),
            )
            .await
            .unwrap();
    }
    let rules = env.app.router_rules(&a, &id(&router)).await.unwrap();
    let between = |f: &str, t: &str| {
        rules
            .internal
            .iter()
            .find(|r| r.from == f && r.to == t)
            .unwrap()
            .between
            .clone()
    };
    assert_eq!(
        between(&subnets[0], &subnets[1]),
        neutrino_l3::Between::Route
    );
    assert_eq!(
        between(&subnets[0], &subnets[2]),
        neutrino_l3::Between::Block
    );
    let out = |f: &str| {
        rules
            .external
            .iter()
            .find(|r| r.from == f)
            .unwrap()
            .outbound
            .clone()
    };
    assert_eq!(out(&subnets[0]), neutrino_l3::Outbound::Route);
    assert!(matches!(
        out(&subnets[2]),
        neutrino_l3::Outbound::Snat { .. }
    ));
    // Another project cannot read the rules of a router it cannot see.
    assert_err(
        env.app.router_rules(&tenant(), &id(&router)).await,
        404,
        "RouterNotFound",
    );
}

#[tokio::test]
async fn configured_default_quotas_replace_the_built_in_ones() {
    let config = Config {
        default_quotas: [("router".to_string(), 2), ("network".to_string(), -1)].into(),
        ..Config::default()
    };
    let t = env_with(config).await;
    for _ in 0..2 {
        t.ok(&tenant(), "routers", json!({})).await;
    }
    assert_err(
        t.create(&tenant(), "routers", json!({})).await,
        409,
        "OverQuota",
    );
    let defaults = t.app.quota_defaults(&admin(), "project-a").await.unwrap();
    assert_eq!(defaults["quota"]["router"], 2);
    assert_eq!(defaults["quota"]["network"], -1);
    assert_eq!(defaults["quota"]["port"], 500);
    // A project's own limit still wins.
    t.app
        .quota_update(&admin(), "project-a", &json!({"quota": {"router": 3}}))
        .await
        .unwrap();
    t.ok(&tenant(), "routers", json!({})).await;
}

#[tokio::test]
async fn a_port_trusted_flag_lives_in_its_binding_profile() {
    let t = env().await;
    let (net, _) = t.net(&tenant(), json!({}), "10.0.0.0/24").await;
    let p = t
        .ok(
            &admin(),
            "ports",
            json!({"network_id": net, "trusted": true}),
        )
        .await;
    assert_eq!(
        (
            p["trusted"].clone(),
            p["binding:profile"]["trusted"].clone()
        ),
        (json!(true), json!(true))
    );
    let plain = t.ok(&admin(), "ports", json!({"network_id": net})).await;
    assert_eq!(plain["trusted"], Value::Null);
    let up = t
        .update(&admin(), "ports", &id(&plain), json!({"trusted": false}))
        .await
        .unwrap();
    assert_eq!(up["binding:profile"]["trusted"], false);
    // Members may neither set nor see it.
    let e = t
        .create(
            &tenant(),
            "ports",
            json!({"network_id": net, "trusted": true}),
        )
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
    let mine = t.show(&tenant(), "ports", &id(&p)).await;
    assert!(mine.is_err() || mine.unwrap().get("trusted").is_none());
}

#[tokio::test]
async fn dns_names_and_assignments_follow_the_port() {
    let config = Config {
        dns_domain: "example.test".to_string(),
        ..Config::default()
    };
    let t = env_with(config).await;
    let net = t
        .ok(&tenant(), "networks", json!({"dns_domain": "net.example."}))
        .await;
    assert_eq!(net["dns_domain"], "net.example.");
    t.ok(
        &tenant(),
        "subnets",
        json!({"network_id": id(&net), "ip_version": 4, "cidr": "10.0.0.0/24"}),
    )
    .await;
    let p = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": id(&net), "dns_name": "web"}),
        )
        .await;
    let a = &p["dns_assignment"][0];
    assert_eq!(a["hostname"], "web");
    assert_eq!(a["fqdn"], "web.example.test.");
    assert_eq!(a["ip_address"], p["fixed_ips"][0]["ip_address"]);
    let up = t
        .update(&tenant(), "ports", &id(&p), json!({"dns_name": ""}))
        .await
        .unwrap();
    let ip = p["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .replace('.', "-");
    assert_eq!(
        up["dns_assignment"][0]["hostname"],
        json!(format!("host-{ip}"))
    );
    for bad in ["-web", "a_b", "a.123"] {
        let e = t
            .create(
                &tenant(),
                "ports",
                json!({"network_id": id(&net), "dns_name": bad}),
            )
            .await;
        assert_err(e, 400, "HTTPBadRequest");
    }
    let e = t
        .update(
            &tenant(),
            "networks",
            &id(&net),
            json!({"dns_domain": "no spaces"}),
        )
        .await;
    assert_err(e, 400, "HTTPBadRequest");
}
