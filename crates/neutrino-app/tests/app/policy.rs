//! The policy in the request flow: Neutron's defaults decide as the hard-coded checks did
//! before, and an operator's rules change exactly the outcomes they name.

use std::sync::Arc;

use crate::common::*;
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

/// Checks that used to be hard-coded for admins (router flavours, quotas, agents, IP
/// availability, wildcard RBAC, subnet pool defaults) now ask the policy: a loosening file
/// opens exactly them to members, and the defaults keep them closed.
#[tokio::test]
async fn loosening_overrides_reach_the_formerly_hard_coded_checks() {
    let loose = r#"
"create_router:ha": "role:member"
"create_router:distributed": "role:member"
"get_quota": "role:member"
"update_quota": "role:member and project_id:%(project_id)s"
"get_network_ip_availability": "role:member"
"create_rbac_policy:target_tenant": "role:member"
"create_subnetpool:is_default": "role:member"
"#;
    for (label, t, open) in [
        ("defaults", env().await, false),
        ("loose", with_policy(loose).await, true),
    ] {
        let me = tenant();
        let outcome = |ok: bool, what: &str| assert_eq!(ok, open, "{label}: {what}");
        let ha = t.create(&me, "routers", json!({"ha": true})).await;
        outcome(ha.is_ok(), "member creates an HA router");
        let dvr = t
            .create(&me, "routers", json!({"distributed": false}))
            .await;
        outcome(dvr.is_ok(), "member names a router flavour");
        let quotas = t.app.quota_list(&me).await;
        outcome(quotas.is_ok(), "member lists quotas");
        let update = t
            .app
            .quota_update(&me, &me.project_id, &json!({"quota": {"network": 7}}))
            .await;
        outcome(update.is_ok(), "member sets its own quota");
        let other = t
            .app
            .quota_update(&me, "project-b", &json!({"quota": {"network": 7}}))
            .await;
        assert!(
            other.is_err(),
            "{label}: another project's quota stays closed"
        );
        let availability = t.app.ip_availabilities(&me, &[]).await;
        outcome(availability.is_ok(), "member reads IP availability");
        let (net, _) = t
            .net(&me, json!({"name": format!("rbac-{label}")}), "10.8.0.0/24")
            .await;
        let wildcard = t
            .create(
                &me,
                "rbac-policies",
                json!({"object_type": "network", "object_id": net,
                       "action": "access_as_shared", "target_tenant": "*"}),
            )
            .await;
        outcome(wildcard.is_ok(), "member shares a network with everyone");
        let pool = t
            .create(
                &me,
                "subnetpools",
                json!({"name": format!("default-{label}"), "prefixes": ["10.200.0.0/16"],
                       "is_default": true}),
            )
            .await;
        outcome(pool.is_ok(), "member makes a default subnet pool");
        if let Err(e) = ha {
            assert_eq!((e.status, e.kind.as_str()), (403, "PolicyNotAuthorized"));
        }
    }
}
