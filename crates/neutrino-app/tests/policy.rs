//! The policy in the request flow: Neutron's defaults decide as the hard-coded checks did
//! before, and an operator's rules change exactly the outcomes they name.

mod common;

use std::sync::Arc;

use common::*;
use neutrino_policy::Policy;
use serde_json::json;

fn reader() -> Context {
    Context::new("rita", "project-a", &["reader".into()])
}

async fn with_policy(text: &str) -> Env {
    let (policy, unknown) = Policy::with_overrides(text, "policy.yaml").unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    env_with(Config {
        policy: Arc::new(policy),
        ..Config::default()
    })
    .await
}

#[tokio::test]
async fn defaults_refuse_what_neutron_refuses() {
    let t = env().await;
    let e = assert_err(
        t.create(&tenant(), "networks", json!({"shared": true}))
            .await,
        403,
        "PolicyNotAuthorized",
    );
    assert!(e.message.contains("create_network:shared"), "{}", e.message);
    // `shared: false` is the default: not an attempt to share.
    t.ok(&tenant(), "networks", json!({"shared": false})).await;
    assert_err(
        t.create(
            &tenant(),
            "networks",
            json!({"provider:network_type": "vxlan", "provider:segmentation_id": 77}),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        t.create(&reader(), "networks", json!({})).await,
        403,
        "PolicyNotAuthorized",
    );
    // Another project's port on my network: I may read and delete it, not update it.
    let (net, _) = t
        .net(&tenant(), json!({"name": "mine"}), "10.9.0.0/24")
        .await;
    let port = t
        .ok(
            &admin(),
            "ports",
            json!({"network_id": net, "project_id": "project-b", "binding:host_id": "h7"}),
        )
        .await;
    let seen = t.show(&tenant(), "ports", &id(&port)).await.unwrap();
    assert!(seen.get("binding:host_id").is_none(), "{seen}");
    assert_eq!(
        t.show(&admin(), "ports", &id(&port)).await.unwrap()["binding:host_id"],
        "h7"
    );
    assert_err(
        t.update(&tenant(), "ports", &id(&port), json!({"name": "x"}))
            .await,
        403,
        "PolicyNotAuthorized",
    );
    t.delete(&tenant(), "ports", &id(&port)).await.unwrap();
}

#[tokio::test]
async fn an_operator_file_changes_exactly_its_rules() {
    let t = with_policy(
        r#"
"create_network:shared": "rule:admin_only or role:member"
"get_port:binding:host_id": "rule:admin_only or role:member"
"delete_port": "!"
"#,
    )
    .await;
    let net = t.ok(&tenant(), "networks", json!({"shared": true})).await;
    assert_eq!(net["shared"], true);
    let port = t
        .ok(
            &admin(),
            "ports",
            json!({"network_id": id(&net), "project_id": "project-a", "binding:host_id": "h7"}),
        )
        .await;
    assert_eq!(
        t.show(&tenant(), "ports", &id(&port)).await.unwrap()["binding:host_id"],
        "h7"
    );
    let read = t.show(&reader(), "ports", &id(&port)).await.unwrap();
    assert!(read.get("binding:host_id").is_none(), "{read}");
    for ctx in [tenant(), admin()] {
        let e = assert_err(
            t.delete(&ctx, "ports", &id(&port)).await,
            403,
            "PolicyNotAuthorized",
        );
        assert!(e.message.contains("delete_port"), "{}", e.message);
    }
    // Unnamed rules keep their defaults.
    assert_err(
        t.create(&tenant(), "routers", json!({"distributed": true}))
            .await,
        403,
        "PolicyNotAuthorized",
    );
    t.update(&tenant(), "ports", &id(&port), json!({"name": "renamed"}))
        .await
        .unwrap();
}

#[tokio::test]
async fn hidden_records_are_not_found_and_not_listed() {
    let t = with_policy(r#""get_network": "rule:admin_only""#).await;
    let net = t.ok(&tenant(), "networks", json!({"name": "n"})).await;
    assert_err(
        t.show(&tenant(), "networks", &id(&net)).await,
        404,
        "NetworkNotFound",
    );
    assert!(t.list(&tenant(), "networks", &[]).await.is_empty());
    assert_eq!(t.list(&admin(), "networks", &[]).await.len(), 1);
}
