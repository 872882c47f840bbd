//! The topology view: it holds what the caller's own lists hold and nothing else, its entity
//! tag follows its content, and a wait for a change ends on changes the caller can see only.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

fn ids_in(view: &Value, part: &str) -> Vec<String> {
    view["topology"][part]
        .as_array()
        .unwrap_or_else(|| panic!("no part {part}: {view}"))
        .iter()
        .map(id)
        .collect()
}

#[tokio::test]
async fn the_view_holds_only_what_the_caller_may_list() {
    let t = env().await;
    let (mine, my_subnet) = t.net(&tenant(), json!({}), "10.70.0.0/24").await;
    let (theirs, _) = t.net(&other_tenant(), json!({}), "10.71.0.0/24").await;
    let port = t.ok(&tenant(), "ports", json!({"network_id": mine})).await;
    let router = t.ok(&tenant(), "routers", json!({})).await;

    let view = t.app.topology(&tenant()).await.unwrap().document;
    assert_eq!(ids_in(&view, "networks"), vec![mine.clone()]);
    assert_eq!(ids_in(&view, "subnets"), vec![my_subnet]);
    assert_eq!(ids_in(&view, "ports"), vec![id(&port)]);
    assert_eq!(ids_in(&view, "routers"), vec![id(&router)]);
    for part in [
        "floatingips",
        "trunks",
        "flow_classifiers",
        "port_pairs",
        "port_pair_groups",
        "port_chains",
        "port_chain_statistics",
        // Admin-only upstream: an empty part for a member, not an error.
        "l2_gateway_connections",
    ] {
        assert_eq!(ids_in(&view, part), Vec::<String>::new(), "{part}");
    }

    let everything = t.app.topology(&admin()).await.unwrap().document;
    let networks = ids_in(&everything, "networks");
    assert!(networks.contains(&mine) && networks.contains(&theirs));
}

#[tokio::test]
async fn the_tag_changes_with_what_the_caller_sees() {
    let t = env().await;
    let me = tenant();
    let (net, _) = t.net(&me, json!({}), "10.72.0.0/24").await;
    let first = t.app.topology(&me).await.unwrap();
    assert_eq!(first.etag, t.app.topology(&me).await.unwrap().etag);

    // Nothing changes: the wait runs out.
    let quiet = t
        .app
        .topology_change(&me, &first.etag, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(quiet.is_none());

    // Another project's change is a commit, but not one this caller sees.
    let app = t.app.clone();
    let theirs = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.create(&other_tenant(), coll("networks"), vec![doc(json!({}))])
            .await
            .unwrap();
    });
    let unseen = t
        .app
        .topology_change(&me, &first.etag, Duration::from_millis(800))
        .await
        .unwrap();
    theirs.await.unwrap();
    assert!(unseen.is_none());

    // A port on the caller's network ends the wait with the new view.
    let app = t.app.clone();
    let net_id = net.clone();
    let mine = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let made = app
            .create(
                &tenant(),
                coll("ports"),
                vec![doc(json!({"network_id": net_id}))],
            )
            .await
            .unwrap();
        Value::Object(made.into_iter().next().unwrap())
    });
    let seen = t
        .app
        .topology_change(&me, &first.etag, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the caller's own change ends the wait");
    let port = mine.await.unwrap();
    assert_ne!(seen.etag, first.etag);
    assert_eq!(ids_in(&seen.document, "ports"), vec![id(&port)]);
}
