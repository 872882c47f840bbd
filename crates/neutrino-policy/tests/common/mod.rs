//! Helpers shared by the integration tests.
#![allow(dead_code)]

use neutrino_policy::{Credentials, Policy};

/// Roles as Keystone hands them over: lower-case, implied roles included.
pub fn roles(role: &str) -> Vec<String> {
    let implied: &[&str] = match role {
        "admin" => &["admin", "manager", "member", "reader"],
        "manager" => &["manager", "member", "reader"],
        "member" => &["member", "reader"],
        "reader" => &["reader"],
        other => return vec![other.to_owned()],
    };
    implied.iter().map(|role| role.to_string()).collect()
}

pub fn creds<'a>(project_id: &'a str, roles: &'a [String]) -> Credentials<'a> {
    Credentials {
        user_id: "user-1",
        project_id,
        roles,
    }
}

/// A policy whose file defines the given rules (names need not be Neutron's).
pub fn policy_with(rules: &[(&str, &str)]) -> Policy {
    let text = serde_json::Value::Object(
        rules
            .iter()
            .map(|(name, check)| (name.to_string(), serde_json::Value::from(*check)))
            .collect(),
    )
    .to_string();
    Policy::with_overrides(&text, "test.json")
        .unwrap_or_else(|error| panic!("{error}"))
        .0
}
