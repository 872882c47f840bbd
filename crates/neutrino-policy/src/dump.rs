//! The defaults as a policy file, in the manner of `oslopolicy-sample-generator`: each rule with
//! its description and the operations it guards as comments. Unlike the generator's sample, the
//! rules are not commented out, so the output loads as an override file as it is; an operator
//! keeps the lines they change.

use crate::defaults::DEFAULT_RULES;
use std::fmt::Write;

/// Every default rule as YAML (`"name": "check"`, both JSON-quoted), commented.
pub fn dump_defaults_yaml() -> String {
    let mut yaml = String::from(
        "# Neutrino policy defaults (Neutron's policy-in-code, new defaults).\n\
         # Keep only the rules you change; every other rule keeps its default.\n",
    );
    for rule in DEFAULT_RULES {
        yaml.push('\n');
        if !rule.description.is_empty() {
            let _ = writeln!(yaml, "# {}", rule.description);
        }
        for (method, path) in rule.operations {
            let _ = writeln!(yaml, "# {method:<8}{path}");
        }
        let _ = writeln!(yaml, "{}: {}", quote(rule.name), quote(rule.check));
    }
    yaml
}

/// A YAML double-quoted scalar (JSON's escapes are YAML's).
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
