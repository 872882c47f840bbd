//! L3 metering through the public application API: labels and rules, upstream's validation
//! and errors (prefix forms, overlaps, missing label), the admin-only policy, no updates,
//! and a label's delete taking its rules along.

use crate::common::*;
use serde_json::{json, Value};

const LABELS: &str = "metering/metering-labels";
const RULES: &str = "metering/metering-label-rules";

async fn label(t: &Env, body: Value) -> String {
    id(&t.ok(&admin(), LABELS, body).await)
}

async fn rule(t: &Env, body: Value) -> Result<Value, ApiError> {
    t.create(&admin(), RULES, body).await
}

#[tokio::test]
async fn label_crud_and_shape() {
    let t = env().await;
    let l = t
        .ok(
            &admin(),
            LABELS,
            json!({"name": "web", "description": "d", "project_id": "project-a"}),
        )
        .await;
    assert_eq!(
        l,
        json!({"id": l["id"], "name": "web", "description": "d", "shared": false,
               "project_id": "project-a", "tenant_id": "project-a"})
    );
    let lid = id(&l);
    assert_eq!(t.show(&admin(), LABELS, &lid).await.unwrap(), l);
    assert_eq!(t.list(&admin(), LABELS, &[("name", "web")]).await, vec![l]);
    let e = t.update(&admin(), LABELS, &lid, json!({"name": "x"})).await;
    assert_err(e, 405, "HTTPMethodNotAllowed");
    t.delete(&admin(), LABELS, &lid).await.unwrap();
    assert_err(
        t.show(&admin(), LABELS, &lid).await,
        404,
        "MeteringLabelNotFound",
    );
}

#[tokio::test]
async fn admin_only_policy() {
    let t = env().await;
    let e = t.create(&tenant(), LABELS, json!({"name": "mine"})).await;
    assert_err(e, 403, "PolicyNotAuthorized");
    let lid = label(&t, json!({"project_id": "project-a", "shared": true})).await;
    assert!(t.list(&tenant(), LABELS, &[]).await.is_empty());
    assert_err(
        t.show(&tenant(), LABELS, &lid).await,
        404,
        "MeteringLabelNotFound",
    );
    let e = t
        .create(
            &tenant(),
            RULES,
            json!({"metering_label_id": lid, "remote_ip_prefix": "10.0.0.0/24"}),
        )
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
    assert_err(
        t.delete(&tenant(), LABELS, &lid).await,
        404,
        "MeteringLabelNotFound",
    );
}

#[tokio::test]
async fn rule_shape_and_defaults() {
    let t = env().await;
    let lid = label(&t, json!({})).await;
    let r = rule(
        &t,
        json!({"metering_label_id": lid, "remote_ip_prefix": "10.0.0.0/24"}),
    )
    .await
    .unwrap();
    assert_eq!(r["direction"], "ingress");
    assert_eq!(r["excluded"], false);
    assert_eq!(r["remote_ip_prefix"], "10.0.0.0/24");
    assert_eq!(r["source_ip_prefix"], Value::Null);
    assert_eq!(r["destination_ip_prefix"], Value::Null);
    assert_eq!(r["metering_label_id"], json!(lid));
    let rid = id(&r);
    assert_eq!(t.show(&admin(), RULES, &rid).await.unwrap(), r);
    let listed = t
        .list(&admin(), RULES, &[("metering_label_id", &lid)])
        .await;
    assert_eq!(listed, vec![r]);
    let e = t
        .update(&admin(), RULES, &rid, json!({"excluded": true}))
        .await;
    assert_err(e, 405, "HTTPMethodNotAllowed");
    let sd = rule(
        &t,
        json!({"metering_label_id": lid, "direction": "egress", "excluded": true,
               "source_ip_prefix": "192.0.2.0/24", "destination_ip_prefix": "2001:db8::/64"}),
    )
    .await
    .unwrap();
    assert_eq!(sd["remote_ip_prefix"], Value::Null);
    assert_eq!(sd["direction"], "egress");
    t.delete(&admin(), RULES, &id(&sd)).await.unwrap();
    assert_err(
        t.show(&admin(), RULES, &id(&sd)).await,
        404,
        "MeteringLabelRuleNotFound",
    );
}

#[tokio::test]
async fn rule_validation() {
    let t = env().await;
    let lid = label(&t, json!({})).await;
    let bad = |body: Value| {
        let t = &t;
        async move { rule(t, body).await }
    };
    let both = json!({"metering_label_id": lid, "remote_ip_prefix": "10.0.0.0/24",
                      "source_ip_prefix": "10.1.0.0/24"});
    assert_err(bad(both).await, 400, "Invalid");
    assert_err(bad(json!({"metering_label_id": lid})).await, 400, "Invalid");
    let e = bad(json!({"metering_label_id": lid, "remote_ip_prefix": "10.0.0.1"})).await;
    assert_err(e, 400, "HTTPBadRequest");
    let e = bad(json!({"metering_label_id": lid, "direction": "up",
                       "remote_ip_prefix": "10.0.0.0/24"}))
    .await;
    assert_err(e, 400, "HTTPBadRequest");
    assert_err(
        bad(json!({"remote_ip_prefix": "10.0.0.0/24"})).await,
        400,
        "HTTPBadRequest",
    );
    let missing = "8b0e0bfe-5f0a-4b5c-9a5e-3a1f0c6d9e11";
    let e = bad(json!({"metering_label_id": missing, "remote_ip_prefix": "10.0.0.0/24"})).await;
    assert_err(e, 404, "MeteringLabelNotFound");
}

#[tokio::test]
async fn overlapping_rules_conflict() {
    let t = env().await;
    let lid = label(&t, json!({})).await;
    let r = |p: &str, d: &str, x: bool| json!({"metering_label_id": lid, "remote_ip_prefix": p, "direction": d, "excluded": x});
    rule(&t, r("10.0.0.0/16", "ingress", false)).await.unwrap();
    let e = rule(&t, r("10.0.1.0/24", "ingress", false)).await;
    assert_err(e, 409, "MeteringLabelRuleOverlaps");
    rule(&t, r("10.0.1.0/24", "egress", false)).await.unwrap();
    rule(&t, r("10.0.1.0/24", "ingress", true)).await.unwrap();
    // Another label may name the same prefix.
    let other = label(&t, json!({})).await;
    let mut again = r("10.0.0.0/16", "ingress", false);
    again["metering_label_id"] = json!(other);
    rule(&t, again).await.unwrap();
}

#[tokio::test]
async fn deleting_a_label_deletes_its_rules() {
    let t = env().await;
    let lid = label(&t, json!({})).await;
    let keep = label(&t, json!({})).await;
    let r1 = id(&rule(
        &t,
        json!({"metering_label_id": lid, "remote_ip_prefix": "10.0.0.0/24"}),
    )
    .await
    .unwrap());
    rule(
        &t,
        json!({"metering_label_id": keep, "remote_ip_prefix": "10.0.0.0/24"}),
    )
    .await
    .unwrap();
    t.delete(&admin(), LABELS, &lid).await.unwrap();
    assert_err(
        t.show(&admin(), RULES, &r1).await,
        404,
        "MeteringLabelRuleNotFound",
    );
    assert_eq!(t.list(&admin(), RULES, &[]).await.len(), 1);
}

#[tokio::test]
async fn extensions_are_listed() {
    for alias in ["metering", "metering_source_and_destination_fields"] {
        assert!(neutrino_app::extensions::has(alias), "{alias}");
    }
}

async fn statistics(t: &Env, ctx: &Context, label: &str) -> Result<Value, ApiError> {
    t.app
        .get_action(ctx, coll(LABELS), label, "statistics")
        .await
}

#[tokio::test]
async fn agents_report_counters_and_statistics_sum_them() {
    let t = env().await;
    let lid = label(&t, json!({})).await;
    let rid = id(&rule(
        &t,
        json!({"metering_label_id": lid, "remote_ip_prefix": "10.0.0.0/24"}),
    )
    .await
    .unwrap());
    let empty = statistics(&t, &admin(), &lid).await.unwrap();
    assert_eq!(empty["statistics"]["bytes"], 0);
    assert_eq!(empty["statistics"]["updated_at"], Value::Null);
    for (host, packets, bytes) in [("h1", 2, 168), ("h2", 1, 84), ("h1", 3, 252)] {
        let body = json!({"host": host, "labels": [
            {"id": lid, "rules": [{"id": rid, "packets": packets, "bytes": bytes}]},
            {"id": "gone", "rules": []}]});
        let out = t
            .app
            .report_metering_counters(&admin(), body)
            .await
            .unwrap();
        assert_eq!(out, json!({"labels": 1}));
    }
    // The latest report of each host counts.
    let s = &statistics(&t, &admin(), &lid).await.unwrap()["statistics"];
    assert_eq!(
        (s["packets"].as_u64(), s["bytes"].as_u64()),
        (Some(4), Some(336))
    );
    assert_eq!(
        s["rules"],
        json!([{"metering_label_rule_id": rid, "packets": 4, "bytes": 336}])
    );
    assert!(s["updated_at"].is_string());
    // Admin-only, as the label.
    assert_err(
        statistics(&t, &tenant(), &lid).await,
        404,
        "MeteringLabelNotFound",
    );
    let e = t
        .app
        .report_metering_counters(&tenant(), json!({"host": "h1", "labels": []}))
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
    let e = t
        .app
        .report_metering_counters(&admin(), json!({"labels": 5}))
        .await;
    assert_err(e, 400, "HTTPBadRequest");
    // A deleted label's counters go with it.
    t.delete(&admin(), LABELS, &lid).await.unwrap();
    let again = label(&t, json!({})).await;
    assert_eq!(
        statistics(&t, &admin(), &again).await.unwrap()["statistics"]["bytes"],
        0
    );
}
