//! Concurrent port creates (grouped into shared commits on SQLite): every address and MAC
//! is handed out once, and creates that fail (the subnet is full) leave nothing behind.

use std::collections::HashSet;

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_port_creates_never_share_an_address() {
    let t = env().await;
    let app = t.app.clone();
    let admin = Context::new("admin", "p-admin", &["admin".into()]);
    let networks = Collection::by_path("networks").unwrap();
    let subnets = Collection::by_path("subnets").unwrap();
    let ports = Collection::by_path("ports").unwrap();
    let net = app
        .create(&admin, networks, vec![doc(json!({"name": "n"}))])
        .await
        .unwrap()
        .remove(0);
    // A /27 with 29 usable addresses (the gateway takes one) for 8 × 6 = 48 attempts.
    let net_id = net["id"].as_str().unwrap().to_string();
    app.create(
        &admin,
        subnets,
        vec![doc(
            json!({"network_id": net_id, "cidr": "10.9.0.0/27", "ip_version": 4}),
        )],
    )
    .await
    .unwrap();

    let mut tasks = Vec::new();
    for t in 0..8 {
        let (app, admin, net_id) = (app.clone(), admin.clone(), net_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..6 {
                let body = doc(json!({"network_id": net_id, "name": format!("p{t}-{i}")}));
                out.push(app.create(&admin, ports, vec![body]).await);
            }
            out
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        for result in task.await.unwrap() {
            match result {
                Ok(mut docs) => created.push(docs.remove(0)),
                Err(e) => assert_eq!(e.kind, "IpAddressGenerationFailure", "{e:?}"),
            }
        }
    }
    assert_eq!(created.len(), 29, "every free address was handed out");
    let ips: HashSet<&str> = created
        .iter()
        .map(|p| p["fixed_ips"][0]["ip_address"].as_str().unwrap())
        .collect();
    let macs: HashSet<&str> = created
        .iter()
        .map(|p| p["mac_address"].as_str().unwrap())
        .collect();
    assert_eq!((ips.len(), macs.len()), (29, 29), "no address or MAC twice");

    let listed = app
        .list(&admin, ports, &[("network_id".into(), net_id.clone())])
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 29, "failed creates left no port behind");
    let listed: HashSet<&str> = listed.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert!(created
        .iter()
        .all(|p| listed.contains(p["id"].as_str().unwrap())));
}
