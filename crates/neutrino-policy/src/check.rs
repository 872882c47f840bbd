//! The compiled form of a check string and its evaluation. Everything that can be decided when
//! a rule is loaded (rule references as indices, lower-cased roles, `%(key)s` templates split
//! into parts, regular expressions, typed field values) is decided then, so evaluation walks the
//! tree without parsing, and allocates only for rare multi-part templates.

use crate::target::{Credentials, Target};
use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;

/// One node of a compiled rule.
#[derive(Debug)]
pub(crate) enum Check {
    /// `@` or the empty rule.
    Always,
    /// `!`.
    Never,
    /// `rule:NAME`, resolved to the rule's index in the policy.
    Rule(usize),
    /// `role:NAME` with a literal, lower-cased name.
    Role(Box<str>),
    /// `role:%(key)s…`: the role's name comes from the target.
    RoleFromTarget(Template),
    /// Neutron's `field:RESOURCE:ATTR=VALUE`.
    Field(FieldCheck),
    /// oslo's generic `KEY:MATCH`: a credential attribute (or a literal) against a template.
    Generic {
        credential: Credential,
        expected: Template,
    },
    Not(Box<Check>),
    And(Vec<Check>),
    Or(Vec<Check>),
}

/// The left side of a generic check.
#[derive(Debug)]
pub(crate) enum Credential {
    UserId,
    /// `project_id`, or its old name `tenant_id`.
    ProjectId,
    /// True when any of the caller's roles equals the right side.
    Roles,
    /// A quoted string or a Python literal (`True`, `42`): compared as text.
    Literal(Box<str>),
    /// A credential attribute Neutrino does not carry: never matches.
    Unknown,
}

/// A match string with `%(key)s` substitutions from the target.
#[derive(Debug)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(Box<str>),
    Key(TargetKey),
}

/// A target key and, for owner keys, its other spelling (`…tenant_id` ⇄ `…project_id`), tried
/// when the first is missing.
#[derive(Debug)]
pub(crate) struct TargetKey {
    key: Box<str>,
    alias: Option<Box<str>>,
}

/// Neutron's FieldCheck: the target's attribute against a value or a regular expression.
#[derive(Debug)]
pub(crate) struct FieldCheck {
    attribute: Box<str>,
    expected: FieldValue,
}

#[derive(Debug)]
enum FieldValue {
    /// `~REGEX`, anchored at the start like Python's `re.match`.
    Pattern(Regex),
    Literal {
        text: Box<str>,
        boolean: Option<bool>,
        number: Option<f64>,
    },
}

impl Check {
    /// Evaluates this node; `rules` is the policy's table that `Rule` indices point into.
    pub(crate) fn evaluate(
        &self,
        rules: &[Check],
        target: &dyn Target,
        creds: &Credentials<'_>,
    ) -> bool {
        match self {
            Check::Always => true,
            Check::Never => false,
            Check::Rule(index) => rules[*index].evaluate(rules, target, creds),
            Check::Role(role) => creds.has_role(role),
            Check::RoleFromTarget(template) => template
                .render(target)
                .is_some_and(|role| creds.has_role(&role)),
            Check::Field(field) => field.evaluate(target),
            Check::Generic {
                credential,
                expected,
            } => {
                let Some(expected) = expected.render(target) else {
                    return false;
                };
                match credential {
                    Credential::UserId => creds.user_id == expected,
                    Credential::ProjectId => creds.project_id == expected,
                    Credential::Roles => creds.roles.iter().any(|role| *role == expected),
                    Credential::Literal(literal) => **literal == *expected,
                    Credential::Unknown => false,
                }
            }
            Check::Not(inner) => !inner.evaluate(rules, target, creds),
            Check::And(all) => all.iter().all(|check| check.evaluate(rules, target, creds)),
            Check::Or(any) => any.iter().any(|check| check.evaluate(rules, target, creds)),
        }
    }

    /// Calls `visit` with the index of every `rule:` reference in this tree.
    pub(crate) fn for_each_reference(&self, visit: &mut impl FnMut(usize)) {
        match self {
            Check::Rule(index) => visit(*index),
            Check::Not(inner) => inner.for_each_reference(visit),
            Check::And(checks) | Check::Or(checks) => {
                for check in checks {
                    check.for_each_reference(visit);
                }
            }
            _ => {}
        }
    }
}

impl Credential {
    /// The left side of `KEY:MATCH`, as oslo's GenericCheck reads it.
    pub(crate) fn parse(kind: &str) -> Credential {
        match kind {
            "user_id" => Credential::UserId,
            "project_id" | "tenant_id" => Credential::ProjectId,
            "roles" => Credential::Roles,
            "True" | "False" | "None" => Credential::Literal(kind.into()),
            _ => {
                let quoted = kind.len() >= 2
                    && (kind.starts_with('\'') && kind.ends_with('\'')
                        || kind.starts_with('"') && kind.ends_with('"'));
                if quoted {
                    Credential::Literal(kind[1..kind.len() - 1].into())
                } else if let Ok(number) = kind.parse::<i64>() {
                    Credential::Literal(number.to_string().into())
                } else {
                    Credential::Unknown
                }
            }
        }
    }
}

impl Template {
    /// Splits `text` into literal parts and `%(key)s` substitutions (`%%` is a literal `%`).
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(percent) = rest.find('%') {
            literal.push_str(&rest[..percent]);
            let after = &rest[percent + 1..];
            if let Some(after_percent) = after.strip_prefix('%') {
                literal.push('%');
                rest = after_percent;
                continue;
            }
            let Some(inner) = after.strip_prefix('(') else {
                return Err(format!(
                    "a '%' in {text:?} must start '%(key)s' or be doubled"
                ));
            };
            let Some(close) = inner.find(")s") else {
                return Err(format!("unterminated '%(' in {text:?}: write '%(key)s'"));
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal).into()));
            }
            parts.push(Part::Key(TargetKey::new(&inner[..close])));
            rest = &inner[close + 2..];
        }
        literal.push_str(rest);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Text(literal.into()));
        }
        Ok(Template { parts })
    }

    /// The text with the target's values substituted, or `None` when a key is missing
    /// (oslo's KeyError, which makes the check false). Borrows when there is one part.
    fn render<'a>(&'a self, target: &'a dyn Target) -> Option<Cow<'a, str>> {
        match self.parts.as_slice() {
            [Part::Text(text)] => Some(Cow::Borrowed(text)),
            [Part::Key(key)] => key.lookup(target).map(python_str),
            parts => {
                let mut rendered = String::new();
                for part in parts {
                    match part {
                        Part::Text(text) => rendered.push_str(text),
                        Part::Key(key) => rendered.push_str(&python_str(key.lookup(target)?)),
                    }
                }
                Some(Cow::Owned(rendered))
            }
        }
    }
}

impl TargetKey {
    fn new(key: &str) -> TargetKey {
        let alias = if let Some(stem) = key.strip_suffix("tenant_id") {
            Some(format!("{stem}project_id").into())
        } else {
            key.strip_suffix("project_id")
                .map(|stem| format!("{stem}tenant_id").into())
        };
        TargetKey {
            key: key.into(),
            alias,
        }
    }

    fn lookup<'a>(&self, target: &'a dyn Target) -> Option<&'a Value> {
        target
            .get(&self.key)
            .or_else(|| self.alias.as_deref().and_then(|alias| target.get(alias)))
    }
}

/// How Python's `str()` prints a JSON-decoded value, which is what oslo compares.
fn python_str(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(text) => Cow::Borrowed(text),
        Value::Bool(true) => Cow::Borrowed("True"),
        Value::Bool(false) => Cow::Borrowed("False"),
        Value::Null => Cow::Borrowed("None"),
        other => Cow::Owned(other.to_string()),
    }
}

impl FieldCheck {
    /// Parses the part after `field:`, i.e. `RESOURCE:ATTR=VALUE`.
    pub(crate) fn parse(spec: &str) -> Result<FieldCheck, String> {
        let (_resource, attribute_and_value) = spec
            .split_once(':')
            .ok_or_else(|| format!("field check {spec:?} must read RESOURCE:ATTR=VALUE"))?;
        let (attribute, value) = attribute_and_value
            .split_once('=')
            .ok_or_else(|| format!("field check {spec:?} must read RESOURCE:ATTR=VALUE"))?;
        let expected = if let Some(pattern) = value.strip_prefix('~') {
            let anchored = Regex::new(&format!("^(?:{pattern})"))
                .map_err(|error| format!("bad regular expression {pattern:?}: {error}"))?;
            FieldValue::Pattern(anchored)
        } else {
            let boolean = match value.to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            };
            FieldValue::Literal {
                text: value.into(),
                boolean,
                number: value.parse().ok(),
            }
        };
        Ok(FieldCheck {
            attribute: attribute.into(),
            expected,
        })
    }

    fn evaluate(&self, target: &dyn Target) -> bool {
        let Some(actual) = target.get(&self.attribute) else {
            return false;
        };
        match (&self.expected, actual) {
            (_, Value::Null) => false,
            (FieldValue::Pattern(pattern), Value::String(text)) => pattern.is_match(text),
            (FieldValue::Pattern(_), _) => false,
            (FieldValue::Literal { boolean, .. }, Value::Bool(flag)) => *boolean == Some(*flag),
            (FieldValue::Literal { number, .. }, Value::Number(actual)) => {
                number.is_some() && actual.as_f64() == *number
            }
            (FieldValue::Literal { text, .. }, Value::String(actual)) => **text == **actual,
            (FieldValue::Literal { .. }, _) => false,
        }
    }
}
