//! Security group rule templates (`default-security-group-rules`) and the rules new groups get.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn groups_get_their_rules_from_the_templates() {
    let t = env().await;
    let app = t.app.clone();
    let admin = Context::new("admin", "p-admin", &["admin".into()]);
    let member = Context::new("alice", "p-alice", &["member".into()]);
    let templates = Collection::by_path("default-security-group-rules").unwrap();
    let groups = Collection::by_path("security-groups").unwrap();

    let legacy = app.list(&member, templates, &[]).await.unwrap().items;
    assert_eq!(
        legacy.len(),
        4,
        "the legacy templates exist and everyone may read them"
    );

    let tcp22 = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22, "used_in_default_sg": false, "used_in_non_default_sg": true});
    let e = app
        .create(&member, templates, vec![doc(tcp22.clone())])
        .await
        .unwrap_err();
    assert_eq!(e.status, 403);
    app.create(&admin, templates, vec![doc(tcp22.clone())])
        .await
        .unwrap();
    let mut dup = tcp22.clone();
    dup["used_in_default_sg"] = json!(true);
    let e = app
        .create(&admin, templates, vec![doc(dup)])
        .await
        .unwrap_err();
    assert_eq!((e.status, e.kind.as_str()), (409, "DuplicateDefaultSgRule"));

    let sg = app
        .create(&member, groups, vec![doc(json!({"name": "web"}))])
        .await
        .unwrap()
        .remove(0);
    let rules = sg["security_group_rules"].as_array().unwrap();
    assert_eq!(
        rules.len(),
        3,
        "two egress rules and the tcp/22 template: {rules:?}"
    );
    assert!(rules
        .iter()
        .any(|r| r["protocol"] == "tcp" && r["port_range_min"] == 22));

    let all = app
        .list(&member, groups, &[("name".into(), "default".into())])
        .await
        .unwrap()
        .items;
    let default = &all[0];
    let rules = default["security_group_rules"].as_array().unwrap();
    assert_eq!(
        rules.len(),
        4,
        "the default group: legacy ingress + egress only"
    );
    assert!(
        rules
            .iter()
            .filter(|r| r["direction"] == "ingress")
            .all(|r| r["remote_group_id"] == default["id"]),
        "PARENT becomes the group itself"
    );
}

#[tokio::test]
async fn a_group_needs_room_for_its_default_rules() {
    let t = env().await;
    let app = t.app.clone();
    let admin = Context::new("admin", "p-admin", &["admin".into()]);
    let member = Context::new("alice", "p-alice", &["member".into()]);
    let groups = Collection::by_path("security-groups").unwrap();
    app.list(&member, groups, &[]).await.unwrap();
    app.quota_update(
        &admin,
        "p-alice",
        &json!({"quota": {"security_group_rule": 0, "force": true}}),
    )
    .await
    .unwrap();
    let e = app
        .create(&member, groups, vec![doc(json!({"name": "web"}))])
        .await
        .unwrap_err();
    assert_eq!((e.status, e.kind.as_str()), (409, "OverQuota"), "{e}");
}

/// Fuzz finding: a template naming an address group that does not exist (or no longer does)
/// gave every new group a rule pointing at nothing, with a claim owned by nothing.
#[tokio::test]
async fn templates_never_give_rules_naming_a_missing_address_group() {
    let t = env().await;
    let admin = Context::new("admin", "p-admin", &["admin".into()]);
    let templates = Collection::by_path("default-security-group-rules").unwrap();
    let groups = Collection::by_path("security-groups").unwrap();
    let tmpl = |ag: &str| {
        json!({"direction": "ingress", "ethertype": "IPv4", "remote_address_group_id": ag,
               "used_in_default_sg": false, "used_in_non_default_sg": true})
    };
    let e = t
        .app
        .create(
            &admin,
            templates,
            vec![doc(tmpl("0b6f9c1e-1111-4111-8111-111111111111"))],
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 404, "{e}");

    // A template naming a group that is deleted afterwards.
    let ag = t
        .ok(
            &admin,
            "address-groups",
            json!({"addresses": ["10.1.0.0/24"]}),
        )
        .await;
    let ag = id(&ag);
    t.app
        .create(&admin, templates, vec![doc(tmpl(&ag))])
        .await
        .unwrap();
    t.delete(&admin, "address-groups", &ag).await.unwrap();
    let sg = t
        .app
        .create(&admin, groups, vec![doc(json!({"name": "g"}))])
        .await
        .unwrap();
    let rules = sg[0]["security_group_rules"].as_array().unwrap();
    assert!(
        rules.iter().all(|r| r["remote_address_group_id"].is_null()),
        "{rules:?}"
    );
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert_eq!(problems, Vec::<String>::new());
}
