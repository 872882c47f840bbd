//! NDP proxies and a router's `enable_ndp_proxy` through the application API: which gateways
//! allow it, the rules a proxy's port and address must meet, and what a proxy holds.

use crate::common::*;
use serde_json::{json, Value};

struct Lab {
    t: Env,
    router: String,
    net: String,
    subnet: String,
}

/// An external network with an IPv6 subnet of a scoped pool, a project network with a subnet
/// of the same pool, and a router between them with NDP proxying on.
async fn lab() -> Lab {
    let t = env().await;
    let scope = t
        .ok(
            &admin(),
            "address-scopes",
            json!({"name": "s6", "ip_version": 6, "shared": true}),
        )
        .await;
    let pool = t
        .ok(
            &admin(),
            "subnetpools",
            json!({"name": "p6", "prefixes": ["2001:db8::/96"], "default_prefixlen": 112,
                   "address_scope_id": id(&scope), "shared": true}),
        )
        .await;
    let ext = t
        .ok(
            &admin(),
            "networks",
            json!({"name": "pub", "router:external": true}),
        )
        .await;
    t.ok(
        &admin(),
        "subnets",
        json!({"network_id": id(&ext), "ip_version": 6, "subnetpool_id": id(&pool),
               "cidr": "2001:db8::1:0/112"}),
    )
    .await;
    let net = t.ok(&tenant(), "networks", json!({})).await;
    let sub = t
        .ok(
            &tenant(),
            "subnets",
            json!({"network_id": id(&net), "ip_version": 6, "subnetpool_id": id(&pool),
                   "cidr": "2001:db8::2:0/112"}),
        )
        .await;
    let router = t
        .ok(
            &tenant(),
            "routers",
            json!({"external_gateway_info": {"network_id": id(&ext)}, "enable_ndp_proxy": true}),
        )
        .await;
    assert_eq!(router["enable_ndp_proxy"], true);
    t.action(
        &tenant(),
        &id(&router),
        "add_router_interface",
        json!({"subnet_id": id(&sub)}),
    )
    .await
    .unwrap();
    Lab {
        router: id(&router),
        net: id(&net),
        subnet: id(&sub),
        t,
    }
}

#[tokio::test]
async fn a_proxy_takes_the_port_address_and_holds_gateway_interface_and_port() {
    let l = lab().await;
    let port =
        l.t.ok(&tenant(), "ports", json!({"network_id": l.net}))
            .await;
    let proxy =
        l.t.ok(
            &tenant(),
            "ndp_proxies",
            json!({"router_id": l.router, "port_id": id(&port), "name": "np"}),
        )
        .await;
    assert_eq!(proxy["ip_address"], port["fixed_ips"][0]["ip_address"]);
    // The same address again: refused.
    let again =
        l.t.create(
            &tenant(),
            "ndp_proxies",
            json!({"router_id": l.router, "port_id": id(&port)}),
        )
        .await;
    assert_err(again, 409, "NDPProxyInUse");
    // An address not the port's (its own is random: take one no port has).
    let not_its_ip =
        l.t.free_address(&["2001:db8::2:99", "2001:db8::2:9a"])
            .await;
    let wrong = json!({"router_id": l.router, "port_id": id(&port), "ip_address": not_its_ip});
    assert_err(
        l.t.create(&tenant(), "ndp_proxies", wrong).await,
        400,
        "InvalidAddress",
    );
    // Gateway and interface stay while the proxy exists; proxying cannot be turned off.
    assert_err(
        l.t.update(
            &tenant(),
            "routers",
            &l.router,
            json!({"external_gateway_info": {}}),
        )
        .await,
        409,
        "RouterGatewayInUseByNDPProxy",
    );
    assert_err(
        l.t.action(
            &tenant(),
            &l.router,
            "remove_router_interface",
            json!({"subnet_id": l.subnet}),
        )
        .await,
        409,
        "RouterInterfaceInUseByNDPProxy",
    );
    // Renamed; then it goes with its port, and the gateway can go.
    let up =
        l.t.update(&tenant(), "ndp_proxies", &id(&proxy), json!({"name": "n2"}))
            .await
            .unwrap();
    assert_eq!(up["name"], "n2");
    l.t.delete(&tenant(), "ports", &id(&port)).await.unwrap();
    assert_err(
        l.t.show(&tenant(), "ndp_proxies", &id(&proxy)).await,
        404,
        "NDPProxyNotFound",
    );
    let r =
        l.t.update(
            &tenant(),
            "routers",
            &l.router,
            json!({"external_gateway_info": {}}),
        )
        .await
        .unwrap();
    assert_eq!(r["enable_ndp_proxy"], false);
    let problems = neutrino_app::consistency::check_store(&l.t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn proxying_needs_an_ipv6_gateway_in_a_scope_and_a_reachable_port() {
    let l = lab().await;
    // A router without a gateway cannot turn it on.
    let bare = l.t.ok(&tenant(), "routers", json!({})).await;
    assert_eq!(bare["enable_ndp_proxy"], false);
    assert_err(
        l.t.update(
            &tenant(),
            "routers",
            &id(&bare),
            json!({"enable_ndp_proxy": true}),
        )
        .await,
        409,
        "RouterGatewayNotValid",
    );
    // An external network without an IPv6 address scope cannot carry it.
    let plain =
        l.t.ok(
            &admin(),
            "networks",
            json!({"name": "p2", "router:external": true}),
        )
        .await;
    l.t.ok(
        &admin(),
        "subnets",
        json!({"network_id": id(&plain), "ip_version": 6, "cidr": "2001:db9::/64"}),
    )
    .await;
    let body =
        json!({"external_gateway_info": {"network_id": id(&plain)}, "enable_ndp_proxy": true});
    assert_err(
        l.t.create(&tenant(), "routers", body).await,
        409,
        "RouterGatewayNotValid",
    );
    // A port on a network the router is not attached to.
    let (other, _) = l.t.net(&tenant(), json!({}), "10.0.0.0/24").await;
    let port =
        l.t.ok(&tenant(), "ports", json!({"network_id": other}))
            .await;
    let body = json!({"router_id": l.router, "port_id": id(&port)});
    assert_err(
        l.t.create(&tenant(), "ndp_proxies", body).await,
        409,
        "PortUnreachableRouter",
    );
    // Another project sees none of it.
    let port =
        l.t.ok(&tenant(), "ports", json!({"network_id": l.net}))
            .await;
    let proxy =
        l.t.ok(
            &tenant(),
            "ndp_proxies",
            json!({"router_id": l.router, "port_id": id(&port)}),
        )
        .await;
    assert!(l
        .t
        .list(&other_tenant(), "ndp_proxies", &[])
        .await
        .is_empty());
    assert_eq!(
        l.t.list(&tenant(), "ndp_proxies", &[("router_id", &l.router)])
            .await
            .len(),
        1
    );
    let _: Value = proxy;
}
