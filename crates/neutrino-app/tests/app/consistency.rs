//! The store consistency check passes on what the app writes and fails on a corrupted store.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn check_passes_then_fails_when_a_network_row_goes_missing() {
    let env = env().await;
    let ctx = admin();
    let net = env
        .create(&ctx, "networks", json!({"name": "n"}))
        .await
        .unwrap();
    let net_id = id(&net);
    env.create(
        &ctx,
        "subnets",
        json!({"network_id": net_id, "cidr": "10.9.0.0/24", "ip_version": 4}),
    )
    .await
    .unwrap();
    env.create(&ctx, "ports", json!({"network_id": net_id}))
        .await
        .unwrap();
    let problems = neutrino_app::consistency::check_store(&env.store)
        .await
        .unwrap();
    assert_eq!(problems, Vec::<String>::new());

    // Corrupt: the network row goes, its subnet, port and claims stay.
    let mut tx = env.store.begin().await.unwrap();
    assert!(tx.delete("network", &net_id).await.unwrap());
    tx.commit().await.unwrap();
    let problems = neutrino_app::consistency::check_store(&env.store)
        .await
        .unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("subnet ") && p.contains(&net_id)),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("claim ")),
        "{problems:?}"
    );
}
