//! The rule language: parsing, precedence and each kind of check.

mod common;

use common::{creds, policy_with, roles};
use neutrino_policy::{Overlay, Policy};
use serde_json::json;

/// Evaluates one check string against a target for a member of project p1 (user user-1).
fn decide(rule: &str, target: serde_json::Value) -> bool {
    let policy = policy_with(&[("under_test", rule)]);
    let member = roles("member");
    policy.enforce("under_test", &target, &creds("p1", &member))
}

#[test]
fn constants_and_empty_rule() {
    assert!(decide("@", json!({})));
    assert!(!decide("!", json!({})));
    assert!(decide("", json!({})));
}

#[test]
fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
    assert!(decide("@ or @ and !", json!({})), "or(@, and(@, !))");
    assert!(!decide("! and @ or !", json!({})), "or(and(!, @), !)");
    assert!(decide("not @ or @", json!({})), "(not @) or @");
    assert!(!decide("not @ and @", json!({})), "(not @) and @");
    assert!(decide("@ and not !", json!({})));
    assert!(decide("not not @", json!({})));
    assert!(decide("! or ! or @", json!({})));
}

#[test]
fn parentheses_group() {
    assert!(!decide("(@ or @) and !", json!({})));
    assert!(decide("not (@ and !)", json!({})));
    assert!(decide("((@))", json!({})));
    assert!(decide(
        "(role:member and (project_id:%(project_id)s))",
        json!({"project_id": "p1"})
    ));
}

#[test]
fn keywords_are_case_insensitive() {
    assert!(decide("! OR @", json!({})));
    assert!(!decide("@ And NOT @", json!({})));
}

#[test]
fn role_checks_ignore_case() {
    assert!(decide("role:member", json!({})));
    assert!(decide("role:Member", json!({})));
    assert!(decide("role:reader", json!({})));
    assert!(!decide("role:admin", json!({})));
    assert!(decide("role:%(wanted)s", json!({"wanted": "MEMBER"})));
    assert!(!decide("role:%(wanted)s", json!({})));
}

#[test]
fn generic_checks_substitute_from_the_target() {
    assert!(decide(
        "project_id:%(project_id)s",
        json!({"project_id": "p1"})
    ));
    assert!(!decide(
        "project_id:%(project_id)s",
        json!({"project_id": "p2"})
    ));
    assert!(
        !decide("project_id:%(project_id)s", json!({})),
        "missing key is false"
    );
    assert!(decide(
        "tenant_id:%(tenant_id)s",
        json!({"tenant_id": "p1"})
    ));
    assert!(decide("user_id:%(user_id)s", json!({"user_id": "user-1"})));
    assert!(decide("user_id:user-1", json!({})), "literal right side");
    assert!(
        decide("roles:member", json!({})),
        "roles is a list: any element"
    );
    assert!(
        !decide("domain_id:%(domain_id)s", json!({"domain_id": "d"})),
        "unknown credential"
    );
}

#[test]
fn target_keys_may_contain_colons_and_owner_keys_have_both_spellings() {
    let net_owned = json!({"project_id": "p2", "network:tenant_id": "p1"});
    assert!(decide("tenant_id:%(network:tenant_id)s", net_owned.clone()));
    assert!(
        decide("project_id:%(network:project_id)s", net_owned),
        "tenant_id alias"
    );
    assert!(decide(
        "project_id:%(network:tenant_id)s",
        json!({"network:project_id": "p1"})
    ));
}

#[test]
fn templates_with_text_around_substitutions() {
    assert!(decide("user_id:user-%(n)s", json!({"n": 1})));
    assert!(decide(
        "user_id:%(a)s-%(b)s",
        json!({"a": "user", "b": "1"})
    ));
    assert!(!decide("user_id:%(a)s-%(b)s", json!({"a": "user"})));
}

#[test]
fn quoted_and_python_literal_left_sides() {
    assert!(decide(
        "'member':%(role.name)s",
        json!({"role.name": "member"})
    ));
    assert!(decide(
        "\"member\":%(role.name)s",
        json!({"role.name": "member"})
    ));
    assert!(!decide(
        "'member':%(role.name)s",
        json!({"role.name": "admin"})
    ));
    assert!(decide("True:%(enabled)s", json!({"enabled": true})));
    assert!(!decide("True:%(enabled)s", json!({"enabled": false})));
    assert!(decide("42:%(n)s", json!({"n": 42})));
}

#[test]
fn field_checks_compare_booleans_numbers_and_strings() {
    assert!(decide(
        "field:networks:shared=True",
        json!({"shared": true})
    ));
    assert!(!decide(
        "field:networks:shared=True",
        json!({"shared": false})
    ));
    assert!(decide(
        "field:networks:shared=False",
        json!({"shared": false})
    ));
    assert!(!decide(
        "field:networks:shared=True",
        json!({"shared": "yes"})
    ));
    assert!(
        !decide("field:networks:shared=True", json!({})),
        "missing is false"
    );
    assert!(!decide(
        "field:networks:shared=True",
        json!({"shared": null})
    ));
    assert!(decide(
        "field:networks:router:external=True",
        json!({"router:external": true})
    ));
    assert!(decide("field:networks:mtu=1500", json!({"mtu": 1500})));
    assert!(!decide("field:networks:mtu=1500", json!({"mtu": 1450})));
    assert!(decide(
        "field:rbac_policy:target_project=*",
        json!({"target_project": "*"})
    ));
    assert!(!decide(
        "field:rbac_policy:target_project=*",
        json!({"target_project": "p3"})
    ));
}

#[test]
fn field_regular_expressions_match_at_the_start() {
    let rule = "field:port:device_owner=~^network:";
    assert!(decide(rule, json!({"device_owner": "network:dhcp"})));
    assert!(!decide(rule, json!({"device_owner": "compute:nova"})));
    assert!(!decide(
        "field:port:device_owner=~dhcp",
        json!({"device_owner": "network:dhcp"})
    ));
    assert!(decide(
        "field:port:device_owner=~network",
        json!({"device_owner": "network:dhcp"})
    ));
    assert!(!decide(rule, json!({"device_owner": 5})));
}

#[test]
fn rule_references_follow_overrides() {
    let policy = policy_with(&[("a", "rule:b and role:member"), ("b", "rule:c"), ("c", "@")]);
    let member = roles("member");
    assert!(policy.enforce("a", &json!({}), &creds("p1", &member)));
    let policy = policy_with(&[("a", "rule:b"), ("b", "!")]);
    assert!(!policy.enforce("a", &json!({}), &creds("p1", &member)));
}

#[test]
fn unknown_actions_fall_to_the_default_rule() {
    let policy = Policy::defaults();
    let member = roles("member");
    let own = json!({"project_id": "p1"});
    let foreign = json!({"project_id": "p2"});
    assert!(!policy.has_rule("frobnicate_widget"));
    assert!(policy.enforce("frobnicate_widget", &own, &creds("p1", &member)));
    assert!(!policy.enforce("frobnicate_widget", &foreign, &creds("p1", &member)));
    let changed = policy_with(&[("default", "!")]);
    let admin = roles("admin");
    assert!(!changed.enforce("frobnicate_widget", &own, &creds("p1", &admin)));
}

#[test]
fn overlay_adds_keys_without_cloning() {
    let policy = Policy::defaults();
    let port = json!({"project_id": "p2", "network_id": "n1"});
    let member = roles("member");
    let caller = creds("p1", &member);
    assert!(!policy.enforce("delete_port", &port, &caller));
    let with_owner = Overlay::new(&port).with("network:tenant_id", json!("p1"));
    assert!(policy.enforce("delete_port", &with_owner, &caller));
}
