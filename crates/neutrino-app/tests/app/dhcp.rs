//! DHCP ports: created only while an agent is alive, scheduled when the first agent
//! registers, addresses following the DHCP-enabled subnets, recreated when deleted, gone
//! with the last DHCP-enabled subnet, and no obstacle to deleting the network.

use crate::common::*;
use serde_json::{json, Value};

async fn dhcp_ports(t: &Env, network: &str) -> Vec<Value> {
    let filters = [("network_id", network), ("device_owner", "network:dhcp")];
    t.list(&admin(), "ports", &filters).await
}

fn subnets_of(port: &Value) -> Vec<String> {
    let mut out: Vec<String> = port["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["subnet_id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

async fn subnet(t: &Env, network: &str, cidr: &str, dhcp: bool) -> String {
    let body = json!({"network_id": network, "cidr": cidr, "ip_version": 4, "enable_dhcp": dhcp});
    id(&t.ok(&tenant(), "subnets", body).await)
}

#[tokio::test]
async fn dhcp_port_follows_agents_and_subnets() {
    let t = env().await;
    let app = &t.app;
    let net = id(&t.ok(&tenant(), "networks", json!({"name": "n"})).await);
    let s1 = subnet(&t, &net, "10.1.0.0/24", true).await;
    // No agent alive: no DHCP port (API-only deployments behave as before).
    assert!(dhcp_ports(&t, &net).await.is_empty());

    // The first agent gets the networks created before it.
    let agent = json!({"agent": {"host": "h1", "configurations": {}}});
    let agent = app.report_agent(&admin(), agent).await.unwrap();
    let agent_id = agent["agent"]["id"].as_str().unwrap().to_string();
    let ports = dhcp_ports(&t, &net).await;
    assert_eq!(ports.len(), 1);
    let port = &ports[0];
    assert_eq!(port["binding:host_id"], "h1");
    assert_eq!(port["device_id"], json!(format!("dhcp{agent_id}-{net}")));
    assert_eq!(port["project_id"], "project-a");
    assert_eq!(subnets_of(port), vec![s1.clone()]);

    // Addresses follow the DHCP-enabled subnets.
    let s2 = subnet(&t, &net, "10.2.0.0/24", true).await;
    let _s3 = subnet(&t, &net, "10.3.0.0/24", false).await;
    let mut both = vec![s1.clone(), s2.clone()];
    both.sort();
    let ports = dhcp_ports(&t, &net).await;
    assert_eq!(ports.len(), 1);
    assert_eq!(subnets_of(&ports[0]), both);
    t.update(&admin(), "subnets", &s2, json!({"enable_dhcp": false}))
        .await
        .unwrap();
    assert_eq!(subnets_of(&dhcp_ports(&t, &net).await[0]), vec![s1.clone()]);

    // Deleting the port brings a new one (the upstream agent recreates it).
    let old = dhcp_ports(&t, &net).await[0]["id"].clone();
    app.delete(&tenant(), coll("ports"), old.as_str().unwrap(), None)
        .await
        .unwrap();
    let ports = dhcp_ports(&t, &net).await;
    assert_eq!(ports.len(), 1);
    assert_ne!(ports[0]["id"], old);

    // The last DHCP-enabled subnet going takes the port with it.
    t.update(&admin(), "subnets", &s1, json!({"enable_dhcp": false}))
        .await
        .unwrap();
    assert!(dhcp_ports(&t, &net).await.is_empty());
    t.update(&admin(), "subnets", &s1, json!({"enable_dhcp": true}))
        .await
        .unwrap();
    assert_eq!(dhcp_ports(&t, &net).await.len(), 1);
    app.delete(&tenant(), coll("subnets"), &s1, None)
        .await
        .unwrap();
    assert!(dhcp_ports(&t, &net).await.is_empty());

    // With a DHCP port in place the network still deletes.
    subnet(&t, &net, "10.4.0.0/24", true).await;
    assert_eq!(dhcp_ports(&t, &net).await.len(), 1);
    app.delete(&tenant(), coll("networks"), &net, None)
        .await
        .unwrap();
    assert!(dhcp_ports(&t, &net).await.is_empty());
}

async fn subnet6(t: &Env, network: &str, cidr: &str, mode: Option<&str>) -> String {
    let mut body = json!({"network_id": network, "cidr": cidr, "ip_version": 6});
    if let Some(mode) = mode {
        body["ipv6_ra_mode"] = json!(mode);
        body["ipv6_address_mode"] = json!(mode);
    }
    id(&t.ok(&tenant(), "subnets", body).await)
}

#[tokio::test]
async fn dhcpv6_subnets_get_the_dhcp_port_slaac_does_not() {
    let t = env().await;
    let agent = json!({"agent": {"host": "h1", "configurations": {}}});
    t.app.report_agent(&admin(), agent).await.unwrap();
    let net = id(&t.ok(&tenant(), "networks", json!({"name": "n6"})).await);
    // SLAAC alone needs no DHCP server.
    let slaac = subnet6(&t, &net, "2001:db8:1::/64", Some("slaac")).await;
    assert!(dhcp_ports(&t, &net).await.is_empty());
    // Stateless: the port comes, with its automatic addresses (SLAAC's too).
    let stateless = subnet6(&t, &net, "2001:db8:2::/64", Some("dhcpv6-stateless")).await;
    let ports = dhcp_ports(&t, &net).await;
    assert_eq!(ports.len(), 1);
    let mut want = vec![slaac.clone(), stateless.clone()];
    want.sort();
    assert_eq!(subnets_of(&ports[0]), want);
    // Stateful: an allocated address is added; the automatic ones stay as they were.
    let stateful = subnet6(&t, &net, "2001:db8:3::/64", Some("dhcpv6-stateful")).await;
    let port = dhcp_ports(&t, &net).await.remove(0);
    want.push(stateful.clone());
    want.sort();
    assert_eq!(subnets_of(&port), want);
    let address_on = |port: &Value, subnet: &str| {
        port["fixed_ips"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ip| ip["subnet_id"] == subnet)
            .map(|ip| ip["ip_address"].as_str().unwrap().to_string())
    };
    let auto = address_on(&port, &stateless);
    assert!(address_on(&port, &slaac)
        .unwrap()
        .starts_with("2001:db8:1:"));
    // Neither IPv6 mode set: served as stateful (Neutron's default for DHCP-enabled v6).
    let legacy = subnet6(&t, &net, "2001:db8:4::/64", None).await;
    let port = dhcp_ports(&t, &net).await.remove(0);
    assert!(address_on(&port, &legacy).is_some());
    assert_eq!(
        address_on(&port, &stateless),
        auto,
        "automatic address kept"
    );
    // The stateful subnet going removes its address, nothing else.
    t.delete(&tenant(), "subnets", &stateful).await.unwrap();
    t.delete(&tenant(), "subnets", &legacy).await.unwrap();
    let port = dhcp_ports(&t, &net).await.remove(0);
    assert!(address_on(&port, &stateful).is_none());
    assert_eq!(address_on(&port, &stateless), auto);
    // Without the stateless subnet nothing is served: the port goes.
    t.delete(&tenant(), "subnets", &stateless).await.unwrap();
    assert!(dhcp_ports(&t, &net).await.is_empty());
}

/// The per-port fixed IP limit (5) is for ports users create; the DHCP port the network's
/// agent keeps holds an address on every DHCP-enabled subnet, so a sixth subnet works.
#[tokio::test]
async fn sixth_dhcp_subnet_with_an_agent_running() {
    let t = env().await;
    let agent = json!({"agent": {"host": "h1", "configurations": {}}});
    t.app.report_agent(&admin(), agent).await.unwrap();
    let net = id(&t.ok(&tenant(), "networks", json!({"name": "many"})).await);
    let mut subnets = Vec::new();
    for n in 1..=7 {
        subnets.push(subnet(&t, &net, &format!("10.50.{n}.0/28"), true).await);
    }
    subnets.sort();
    let ports = dhcp_ports(&t, &net).await;
    assert_eq!(ports.len(), 1);
    assert_eq!(subnets_of(&ports[0]), subnets);

    // An agent's own update of its DHCP port (as the upstream agent does) is not limited
    // either, while a user's port still is.
    let dhcp = id(&ports[0]);
    let all: Vec<Value> = subnets.iter().map(|s| json!({"subnet_id": s})).collect();
    let port = t
        .update(&admin(), "ports", &dhcp, json!({"fixed_ips": all}))
        .await
        .unwrap();
    assert_eq!(port["fixed_ips"].as_array().unwrap().len(), 7);
    let six: Vec<Value> = subnets[..6]
        .iter()
        .map(|s| json!({"subnet_id": s}))
        .collect();
    let body = json!({"network_id": net, "fixed_ips": six});
    let e = assert_err(
        t.create(&tenant(), "ports", body).await,
        400,
        "HTTPBadRequest",
    );
    assert_eq!(e.message, "Exceeded maximum amount of fixed ips per port.");
    let body = json!({"network_id": net, "fixed_ips": six, "device_owner": "compute:nova"});
    assert_err(
        t.create(&admin(), "ports", body).await,
        400,
        "HTTPBadRequest",
    );
}

/// The "DHCP agent" entry of host `host` (registered first).
async fn dhcp_agent_of(t: &Env, host: &str) -> String {
    t.app
        .report_agent(
            &admin(),
            json!({"agent": {"host": host, "configurations": {}}}),
        )
        .await
        .unwrap();
    let agents = t
        .app
        .list_agents(
            &admin(),
            &query(&[("agent_type", "DHCP Agent"), ("host", host)]),
        )
        .await
        .unwrap();
    assert_eq!(
        agents.items.len(),
        1,
        "one DHCP agent entry per host, found case-blind"
    );
    agents.items[0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn networks_are_scheduled_to_dhcp_agents_by_hand() {
    let t = env().await;
    let (a1, a2) = (dhcp_agent_of(&t, "h1").await, dhcp_agent_of(&t, "h2").await);
    let net = id(&t.ok(&tenant(), "networks", json!({"name": "n"})).await);
    subnet(&t, &net, "10.1.0.0/24", true).await;
    let hosting = |out: Value| -> Vec<String> {
        let mut h: Vec<String> = out["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["host"].as_str().unwrap().to_string())
            .collect();
        h.sort();
        h
    };
    let auto = hosting(
        t.app
            .dhcp_agents_hosting_network(&admin(), &net)
            .await
            .unwrap(),
    );
    assert_eq!(auto.len(), 1);
    // Add the other host: two DHCP ports, one per host.
    let (first, other) = if auto[0] == "h1" {
        (&a1, &a2)
    } else {
        (&a2, &a1)
    };
    t.app
        .add_network_to_dhcp_agent(&admin(), other, json!({"network_id": net}))
        .await
        .unwrap();
    let e = t
        .app
        .add_network_to_dhcp_agent(&admin(), other, json!({"network_id": net}))
        .await;
    assert_err(e, 409, "NetworkHostedByDHCPAgent");
    let mut hosts: Vec<String> = dhcp_ports(&t, &net)
        .await
        .iter()
        .map(|p| p["binding:host_id"].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["h1", "h2"]);
    let listed = t.app.dhcp_agent_networks(&admin(), other).await.unwrap();
    assert_eq!(listed["networks"][0]["id"], json!(net));
    assert!(listed["networks"][0].get("neutrino:dhcp_hosts").is_none());
    // Remove both: no DHCP port, and it stays so (no automatic rescheduling).
    for agent in [first, other] {
        t.app
            .remove_network_from_dhcp_agent(&admin(), agent, &net)
            .await
            .unwrap();
    }
    let e = t
        .app
        .remove_network_from_dhcp_agent(&admin(), first, &net)
        .await;
    assert_err(e, 409, "NetworkNotHostedByDhcpAgent");
    subnet(&t, &net, "10.2.0.0/24", true).await;
    assert!(dhcp_ports(&t, &net).await.is_empty());
    assert!(hosting(
        t.app
            .dhcp_agents_hosting_network(&admin(), &net)
            .await
            .unwrap()
    )
    .is_empty());
    // Members may not schedule.
    let e = t
        .app
        .add_network_to_dhcp_agent(&tenant(), first, json!({"network_id": net}))
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
}
