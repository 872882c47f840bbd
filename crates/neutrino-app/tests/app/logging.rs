//! Security-group logging through the public application API: log objects and their
//! upstream validation (loggable type, resource and target existence, a bound port, the
//! port a member of the group), the admin-only policy, updatable attributes, and the
//! loggable resources.

use crate::common::*;
use serde_json::{json, Value};

const LOGS: &str = "log/logs";

/// A security group and a port in it (bound to `host` when given).
async fn group_and_port(t: &Env, host: &str) -> (String, String) {
    let sg = id(&t
        .ok(&admin(), "security-groups", json!({"name": "logged"}))
        .await);
    let (net, _) = t.net(&admin(), json!({"name": "n"}), "10.9.0.0/24").await;
    let mut body = json!({"network_id": net, "security_groups": [sg]});
    if !host.is_empty() {
        body["binding:host_id"] = json!(host);
    }
    let port = id(&t.ok(&admin(), "ports", body).await);
    (sg, port)
}

#[tokio::test]
async fn log_crud_and_shape() {
    let t = env().await;
    let (sg, port) = group_and_port(&t, "h1").await;
    let log = t
        .ok(
            &admin(),
            LOGS,
            json!({"name": "l", "resource_type": "security_group", "resource_id": sg,
                   "target_id": port, "event": "DROP"}),
        )
        .await;
    for (k, v) in [
        ("name", json!("l")),
        ("description", json!("")),
        ("resource_type", json!("security_group")),
        ("resource_id", json!(sg)),
        ("target_id", json!(port)),
        ("event", json!("DROP")),
        ("enabled", json!(true)),
        ("revision_number", json!(1)),
    ] {
        assert_eq!(log[k], v, "{k}");
    }
    let lid = id(&log);
    let off = t
        .update(&admin(), LOGS, &lid, json!({"enabled": false, "name": "m"}))
        .await
        .unwrap();
    assert_eq!(
        (off["enabled"].clone(), off["name"].clone()),
        (json!(false), json!("m"))
    );
    let e = t
        .update(&admin(), LOGS, &lid, json!({"event": "ALL"}))
        .await;
    assert_eq!(e.unwrap_err().status, 400);
    // Defaults: every event, every port of the project.
    let all = t
        .ok(&admin(), LOGS, json!({"resource_type": "security_group"}))
        .await;
    assert_eq!(
        (
            all["event"].clone(),
            all["resource_id"].clone(),
            all["target_id"].clone()
        ),
        (json!("ALL"), Value::Null, Value::Null)
    );
    t.delete(&admin(), LOGS, &lid).await.unwrap();
    assert_err(t.show(&admin(), LOGS, &lid).await, 404, "LogNotFound");
}

#[tokio::test]
async fn logs_go_with_their_group_or_port() {
    let t = env().await;
    let (sg, port) = group_and_port(&t, "h1").await;
    let by_group = id(&t
        .ok(
            &admin(),
            LOGS,
            json!({"resource_type": "security_group", "resource_id": sg}),
        )
        .await);
    let by_port = id(&t
        .ok(
            &admin(),
            LOGS,
            json!({"resource_type": "security_group", "target_id": port}),
        )
        .await);
    let project_wide = id(&t
        .ok(&admin(), LOGS, json!({"resource_type": "security_group"}))
        .await);
    t.delete(&admin(), "ports", &port).await.unwrap();
    assert_eq!(
        t.show(&admin(), LOGS, &by_port).await.unwrap_err().status,
        404
    );
    t.delete(&admin(), "security-groups", &sg).await.unwrap();
    assert_eq!(
        t.show(&admin(), LOGS, &by_group).await.unwrap_err().status,
        404
    );
    assert!(t.show(&admin(), LOGS, &project_wide).await.is_ok());
}

#[tokio::test]
async fn log_validation() {
    let t = env().await;
    let (sg, port) = group_and_port(&t, "h1").await;
    let bad = |body: Value| {
        let t = &t;
        async move { t.create(&admin(), LOGS, body).await }
    };
    let e = bad(json!({"resource_type": "firewall_group"})).await;
    assert_err(e, 400, "InvalidLogResourceType");
    let e = bad(json!({"resource_type": "security_group", "event": "SOME"})).await;
    assert_err(e, 400, "HTTPBadRequest");
    assert_err(bad(json!({})).await, 400, "HTTPBadRequest");
    let missing = "8b0e0bfe-5f0a-4b5c-9a5e-3a1f0c6d9e11";
    let e = bad(json!({"resource_type": "security_group", "resource_id": missing})).await;
    assert_err(e, 404, "ResourceNotFound");
    let e = bad(json!({"resource_type": "security_group", "target_id": missing})).await;
    assert_err(e, 404, "TargetResourceNotFound");
    // A port bound nowhere cannot be logged.
    let (_, unbound) = group_and_port(&t, "").await;
    let e = bad(json!({"resource_type": "security_group", "target_id": unbound})).await;
    assert_err(e, 400, "LoggingTypeNotSupported");
    // The port must be a member of the group.
    let other = id(&t
        .ok(&admin(), "security-groups", json!({"name": "other"}))
        .await);
    let e = bad(
        json!({"resource_type": "security_group", "resource_id": other,
                       "target_id": port}),
    )
    .await;
    assert_err(e, 400, "InvalidResourceConstraint");
    bad(json!({"resource_type": "security_group", "resource_id": sg, "target_id": port}))
        .await
        .unwrap();
}

#[tokio::test]
async fn admin_only_and_loggable_resources() {
    let t = env().await;
    let e = t
        .create(&tenant(), LOGS, json!({"resource_type": "security_group"}))
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
    assert_eq!(
        t.app.loggable_resources(&admin()).await.unwrap(),
        json!({"loggable_resources": [{"type": "security_group"}]})
    );
    assert_err(
        t.app.loggable_resources(&tenant()).await,
        403,
        "PolicyNotAuthorized",
    );
    for alias in ["logging", "network-log"] {
        assert!(neutrino_app::extensions::has(alias), "{alias}");
    }
}
