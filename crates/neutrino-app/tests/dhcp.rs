//! DHCP ports: created only while an agent is alive, scheduled when the first agent
//! registers, addresses following the DHCP-enabled subnets, recreated when deleted, gone
//! with the last DHCP-enabled subnet, and no obstacle to deleting the network.

use neutrino_app::{App, Collection, Config, Context};
use neutrino_store::Store;
use serde_json::{json, Value};

fn admin() -> Context {
    Context::new("admin", "admin-project", &["admin".into()])
}

fn tenant() -> Context {
    Context::new("alice", "project-a", &["member".into()])
}

fn coll(path: &str) -> &'static Collection {
    Collection::by_path(path).unwrap()
}

async fn create(app: &App, ctx: &Context, path: &str, body: Value) -> Value {
    let mut out = app
        .create(ctx, coll(path), vec![body.as_object().unwrap().clone()])
        .await
        .unwrap();
    Value::Object(out.remove(0))
}

async fn update(app: &App, path: &str, id: &str, body: Value) {
    app.update(
        &admin(),
        coll(path),
        id,
        body.as_object().unwrap().clone(),
        None,
    )
    .await
    .unwrap();
}

async fn dhcp_ports(app: &App, network: &str) -> Vec<Value> {
    let pairs = vec![
        ("network_id".to_string(), network.to_string()),
        ("device_owner".to_string(), "network:dhcp".to_string()),
    ];
    app.list(&admin(), coll("ports"), &pairs)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(Value::Object)
        .collect()
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

async fn subnet(app: &App, network: &str, cidr: &str, dhcp: bool) -> String {
    let body = json!({"network_id": network, "cidr": cidr, "ip_version": 4, "enable_dhcp": dhcp});
    create(app, &tenant(), "subnets", body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn dhcp_port_follows_agents_and_subnets() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let app = App::new(Store::open(&url).await.unwrap(), Config::default())
        .await
        .unwrap();
    let net = create(&app, &tenant(), "networks", json!({"name": "n"})).await;
    let net = net["id"].as_str().unwrap().to_string();
    let s1 = subnet(&app, &net, "10.1.0.0/24", true).await;
    // No agent alive: no DHCP port (API-only deployments behave as before).
    assert!(dhcp_ports(&app, &net).await.is_empty());

    // The first agent gets the networks created before it.
    let agent = json!({"agent": {"host": "h1", "configurations": {}}});
    let agent = app.report_agent(&admin(), agent).await.unwrap();
    let agent_id = agent["agent"]["id"].as_str().unwrap().to_string();
    let ports = dhcp_ports(&app, &net).await;
    assert_eq!(ports.len(), 1);
    let port = &ports[0];
    assert_eq!(port["binding:host_id"], "h1");
    assert_eq!(port["device_id"], json!(format!("dhcp{agent_id}-{net}")));
    assert_eq!(port["project_id"], "project-a");
    assert_eq!(subnets_of(port), vec![s1.clone()]);

    // Addresses follow the DHCP-enabled subnets.
    let s2 = subnet(&app, &net, "10.2.0.0/24", true).await;
    let _s3 = subnet(&app, &net, "10.3.0.0/24", false).await;
    let mut both = vec![s1.clone(), s2.clone()];
    both.sort();
    let ports = dhcp_ports(&app, &net).await;
    assert_eq!(ports.len(), 1);
    assert_eq!(subnets_of(&ports[0]), both);
    update(&app, "subnets", &s2, json!({"enable_dhcp": false})).await;
    assert_eq!(
        subnets_of(&dhcp_ports(&app, &net).await[0]),
        vec![s1.clone()]
    );

    // Deleting the port brings a new one (the upstream agent recreates it).
    let old = dhcp_ports(&app, &net).await[0]["id"].clone();
    app.delete(&tenant(), coll("ports"), old.as_str().unwrap(), None)
        .await
        .unwrap();
    let ports = dhcp_ports(&app, &net).await;
    assert_eq!(ports.len(), 1);
    assert_ne!(ports[0]["id"], old);

    // The last DHCP-enabled subnet going takes the port with it.
    update(&app, "subnets", &s1, json!({"enable_dhcp": false})).await;
    assert!(dhcp_ports(&app, &net).await.is_empty());
    update(&app, "subnets", &s1, json!({"enable_dhcp": true})).await;
    assert_eq!(dhcp_ports(&app, &net).await.len(), 1);
    app.delete(&tenant(), coll("subnets"), &s1, None)
        .await
        .unwrap();
    assert!(dhcp_ports(&app, &net).await.is_empty());

    // With a DHCP port in place the network still deletes.
    subnet(&app, &net, "10.4.0.0/24", true).await;
    assert_eq!(dhcp_ports(&app, &net).await.len(), 1);
    app.delete(&tenant(), coll("networks"), &net, None)
        .await
        .unwrap();
    assert!(dhcp_ports(&app, &net).await.is_empty());
}
