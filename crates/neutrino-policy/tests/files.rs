//! Operator files: YAML and JSON, errors naming the line, undefined references, cycles, unknown
//! names.

use neutrino_policy::{Policy, PolicyError};

fn load_error(text: &str, origin: &str) -> PolicyError {
    match Policy::with_overrides(text, origin) {
        Ok(_) => panic!("{origin} should not load"),
        Err(error) => error,
    }
}

#[test]
fn unparsable_rule_in_yaml_names_the_line() {
    let text = "# comment\n\"create_network\": \"role:admin\"\n\n\"delete_network\": \"role:admin and (\"\n";
    let error = load_error(text, "policy.yaml");
    let message = error.to_string();
    assert!(
        message.starts_with("policy.yaml line 4: cannot parse rule \"role:admin and (\""),
        "{message}"
    );
    assert!(matches!(error, PolicyError::Parse { line: 4, .. }));
}

#[test]
fn unparsable_rule_in_json_names_the_line() {
    let text = "{\n  \"create_network\": \"@\",\n  \"get_network\": \"role:admin or\"\n}\n";
    let error = load_error(text, "policy.json");
    assert!(
        matches!(error, PolicyError::Parse { line: 3, .. }),
        "{error}"
    );
    assert!(
        error.to_string().starts_with("policy.json line 3:"),
        "{error}"
    );
}

#[test]
fn other_parse_errors() {
    for bad in [
        "role:admin)",
        "(role:admin",
        "role:admin role:member",
        "and",
        "not",
        "'quoted'",
        "nonsense",
        "field:networks:shared",
        "field:port:device_owner=~(",
        "project_id:%(project_id",
        "project_id:%(project_id)d",
        "http://example.com/check",
        "   ",
    ] {
        let text = format!("a: {}\n", serde_json::Value::from(bad));
        let error = load_error(&text, "policy.yaml");
        assert!(
            matches!(error, PolicyError::Parse { line: 1, .. }),
            "{bad}: {error}"
        );
    }
}

#[test]
fn undefined_rule_reference_names_rule_and_line() {
    let text = "create_network: \"@\"\nget_network: \"rule:admin_only or rule:no_such_rule\"\n";
    let error = load_error(text, "policy.yaml");
    assert_eq!(
        error.to_string(),
        "policy.yaml line 2: rule \"get_network\" refers to undefined rule \"no_such_rule\""
    );
}

#[test]
fn reference_to_a_rule_defined_later_in_the_file_is_fine() {
    let text = "get_network: \"rule:my_readers\"\nmy_readers: \"role:reader\"\n";
    let (policy, unknown) = Policy::with_overrides(text, "policy.yaml").unwrap();
    assert!(policy.has_rule("my_readers"));
    assert_eq!(unknown, ["my_readers"]);
}

#[test]
fn cycles_are_rejected() {
    let text = "a: \"rule:b\"\nb: \"role:x or rule:c\"\nc: \"rule:a\"\n";
    let error = load_error(text, "policy.yaml");
    let PolicyError::Cycle { cycle, line, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(cycle, "a -> b -> c -> a");
    assert_eq!(*line, 1);
    let self_loop = load_error(
        "admin_only: \"rule:context_is_admin or rule:admin_only\"\n",
        "p",
    );
    assert!(
        matches!(self_loop, PolicyError::Cycle { .. }),
        "{self_loop}"
    );
    // A loop through a default: context_is_admin -> admin_only -> context_is_admin.
    let through_default = load_error("context_is_admin: \"rule:admin_only\"\n", "p");
    assert!(
        through_default.to_string().starts_with("p line 1:"),
        "{through_default}"
    );
}

#[test]
fn unknown_names_are_reported_in_file_order_once() {
    let text = "create_qos_policy: \"!\"\ncreate_network: \"@\"\nget_bgpvpn: \"@\"\ncreate_qos_policy: \"@\"\n";
    let (policy, unknown) = Policy::with_overrides(text, "policy.yaml").unwrap();
    assert_eq!(unknown, ["create_qos_policy", "get_bgpvpn"]);
    assert!(policy.has_rule("create_qos_policy"));
}

#[test]
fn empty_and_comment_only_files_change_nothing() {
    for text in ["", "# nothing here\n", "{}", "---\n"] {
        let (_, unknown) = Policy::with_overrides(text, "policy.yaml").unwrap();
        assert!(unknown.is_empty());
    }
}

#[test]
fn file_structure_errors_name_the_line() {
    let error = load_error("a: \"@\"\nb: [\"role:admin\"]\n", "policy.yaml");
    assert!(
        matches!(error, PolicyError::File { line: 2, .. }),
        "{error}"
    );
    let error = load_error("a: \"@\"\nb:\n", "policy.yaml");
    assert!(
        matches!(error, PolicyError::File { line: 2, .. }),
        "{error}"
    );
    let error = load_error("- role:admin\n", "policy.yaml");
    assert!(
        matches!(error, PolicyError::File { line: 1, .. }),
        "{error}"
    );
    let error = load_error("a: \"@\"\nb: \"unterminated\n", "policy.yaml");
    assert!(matches!(error, PolicyError::File { .. }), "{error}");
    let error = load_error("{\"a\": \"@\",\n \"b\" \"@\"}", "policy.json");
    assert!(
        error.to_string().starts_with("policy.json line 2:"),
        "{error}"
    );
}

#[test]
fn plain_yaml_scalars_are_check_strings() {
    let text = "create_network: role:admin or role:member\nget_network: '@'\n";
    let (policy, unknown) = Policy::with_overrides(text, "policy.yaml").unwrap();
    assert!(unknown.is_empty());
    assert!(policy.has_rule("create_network"));
}
