//! The loaded policy: every rule compiled once, `rule:` references resolved to indices, cycles
//! and dangling references rejected, and each action's attribute rules listed up front.

use crate::check::Check;
use crate::defaults::DEFAULT_RULES;
use crate::error::PolicyError;
use crate::file::read_rules;
use crate::parse::parse_rule;
use crate::target::{Credentials, Target};
use std::collections::HashMap;

/// What the built-in table is called in error messages.
const DEFAULTS_ORIGIN: &str = "built-in defaults";

/// oslo's default rule: what applies to an action no rule names.
const DEFAULT_RULE: &str = "default";

/// A rule's position in a [`Policy`], for callers that look a name up once and enforce often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(usize);

/// An attribute-level rule such as `create_port:binding:host_id` (attribute `binding:host_id`)
/// or `create_port:fixed_ips:ip_address` (attribute `fixed_ips`, sub-attribute `ip_address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeRule {
    /// The full policy name.
    pub name: Box<str>,
    /// The resource attribute, which may contain colons (`provider:network_type`).
    pub attribute: Box<str>,
    /// For a sub-attribute rule, the key inside the attribute's object (or list of objects).
    pub sub_attribute: Option<Box<str>>,
    id: RuleId,
}

impl AttributeRule {
    pub fn id(&self) -> RuleId {
        self.id
    }

    /// Whether this rule applies to a request carrying `document`: the document has the
    /// attribute and, for a sub-attribute rule, the attribute's object (or some object of its
    /// list) has the sub-attribute's key.
    pub fn applies_to(&self, document: &(impl Target + ?Sized)) -> bool {
        let Some(value) = document.get(&self.attribute) else {
            return false;
        };
        let Some(sub_attribute) = self.sub_attribute.as_deref() else {
            return true;
        };
        match value {
            serde_json::Value::Object(object) => object.contains_key(sub_attribute),
            serde_json::Value::Array(items) => items.iter().any(|item| {
                item.as_object()
                    .is_some_and(|o| o.contains_key(sub_attribute))
            }),
            _ => false,
        }
    }
}

/// A refusal: the name of the first rule that failed (`default` when the action has no rule of
/// its own), what Neutron reports as `rule:NAME is disallowed by policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied<'p> {
    pub rule: &'p str,
}

/// Neutron's policy: the defaults, possibly overridden by an operator's file.
#[derive(Debug)]
pub struct Policy {
    names: Vec<Box<str>>,
    checks: Vec<Check>,
    by_name: HashMap<Box<str>, RuleId>,
    default_rule: RuleId,
    attribute_rules: HashMap<Box<str>, Vec<AttributeRule>>,
}

/// Where a rule's text came from, for error messages.
#[derive(Clone, Copy)]
struct Source<'s> {
    origin: &'s str,
    line: usize,
}

/// Rules under construction: names interned to indices as they are defined or referred to.
#[derive(Default)]
struct Builder<'s> {
    names: Vec<Box<str>>,
    by_name: HashMap<Box<str>, usize>,
    definitions: Vec<Option<(Check, Source<'s>)>>,
}

impl<'s> Builder<'s> {
    fn index_of(&mut self, name: &str) -> usize {
        if let Some(&index) = self.by_name.get(name) {
            return index;
        }
        let index = self.names.len();
        self.names.push(name.into());
        self.by_name.insert(name.into(), index);
        self.definitions.push(None);
        index
    }

    /// Parses and (re)defines one rule; a later definition replaces an earlier one.
    fn define(&mut self, name: &str, text: &str, source: Source<'s>) -> Result<(), PolicyError> {
        let check =
            parse_rule(text, &mut |referred| self.index_of(referred)).map_err(|reason| {
                PolicyError::Parse {
                    origin: source.origin.to_owned(),
                    line: source.line,
                    name: name.to_owned(),
                    rule: text.to_owned(),
                    reason,
                }
            })?;
        let index = self.index_of(name);
        self.definitions[index] = Some((check, source));
        Ok(())
    }

    fn finish(self) -> Result<Policy, PolicyError> {
        let mut checks = Vec::with_capacity(self.definitions.len());
        let mut sources = Vec::with_capacity(self.definitions.len());
        for (index, definition) in self.definitions.iter().enumerate() {
            if let Some((check, source)) = definition {
                let mut missing = None;
                check.for_each_reference(&mut |referred| {
                    if missing.is_none() && self.definitions[referred].is_none() {
                        missing = Some(referred);
                    }
                });
                if let Some(referred) = missing {
                    return Err(PolicyError::UndefinedRule {
                        origin: source.origin.to_owned(),
                        line: source.line,
                        name: self.names[index].to_string(),
                        missing: self.names[referred].to_string(),
                    });
                }
            }
        }
        // Every index with a reference is defined; undefined ones can only be unreferenced.
        let defined: Vec<bool> = self.definitions.iter().map(Option::is_some).collect();
        for definition in self.definitions {
            let (check, source) = definition.unwrap_or((
                Check::Never,
                Source {
                    origin: DEFAULTS_ORIGIN,
                    line: 0,
                },
            ));
            checks.push(check);
            sources.push(source);
        }
        find_cycle(&checks, &self.names, &sources)?;
        // A name only referred to by a definition that a later one replaced stays unnamed.
        let by_name = self
            .by_name
            .into_iter()
            .filter(|(_, index)| defined[*index])
            .map(|(name, index)| (name, RuleId(index)))
            .collect::<HashMap<_, _>>();
        let default_rule = by_name[DEFAULT_RULE];
        let attribute_rules = attribute_rules_of_defaults(&by_name);
        Ok(Policy {
            names: self.names,
            checks,
            by_name,
            default_rule,
            attribute_rules,
        })
    }
}

/// Rejects `rule:` references that loop, naming the loop.
fn find_cycle(
    checks: &[Check],
    names: &[Box<str>],
    sources: &[Source<'_>],
) -> Result<(), PolicyError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; checks.len()];
    for start in 0..checks.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Depth-first, with an explicit stack of (rule, its references, next reference).
        let references_of = |index: usize| {
            let mut references = Vec::new();
            checks[index].for_each_reference(&mut |referred| references.push(referred));
            references
        };
        let mut path = vec![(start, references_of(start), 0)];
        marks[start] = Mark::OnPath;
        while let Some((rule, references, next)) = path.last_mut() {
            let Some(&referred) = references.get(*next) else {
                marks[*rule] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            match marks[referred] {
                Mark::Done => {}
                Mark::New => {
                    marks[referred] = Mark::OnPath;
                    path.push((referred, references_of(referred), 0));
                }
                Mark::OnPath => {
                    let from = path
                        .iter()
                        .position(|(rule, ..)| *rule == referred)
                        .unwrap_or(0);
                    let mut members: Vec<usize> =
                        path[from..].iter().map(|(rule, ..)| *rule).collect();
                    // Report the cycle from its first rule in the operator's file, if any.
                    let reported = members
                        .iter()
                        .copied()
                        .filter(|&rule| sources[rule].origin != DEFAULTS_ORIGIN)
                        .min_by_key(|&rule| sources[rule].line)
                        .unwrap_or(referred);
                    let first = members
                        .iter()
                        .position(|&rule| rule == reported)
                        .unwrap_or(0);
                    members.rotate_left(first);
                    members.push(members[0]);
                    let cycle: Vec<&str> = members.iter().map(|&rule| &*names[rule]).collect();
                    return Err(PolicyError::Cycle {
                        origin: sources[reported].origin.to_owned(),
                        line: sources[reported].line,
                        name: names[reported].to_string(),
                        cycle: cycle.join(" -> "),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Each action's attribute rules, from the defaults' names only: Neutron checks attribute rules
/// for the attributes its API marks `enforce_policy`, and the defaults name exactly those. A name
/// `ACTION:REST` is an attribute rule when ACTION is itself a default rule; REST is a
/// sub-attribute rule `ATTR:SUB` when `ACTION:ATTR` is also a default, else the attribute REST
/// (which keeps `binding:host_id` and `router:external` whole).
fn attribute_rules_of_defaults(
    by_name: &HashMap<Box<str>, RuleId>,
) -> HashMap<Box<str>, Vec<AttributeRule>> {
    let is_default = |name: &str| DEFAULT_RULES.iter().any(|rule| rule.name == name);
    let mut rules: HashMap<Box<str>, Vec<AttributeRule>> = HashMap::new();
    for default in DEFAULT_RULES {
        let Some((action, rest)) = default.name.split_once(':') else {
            continue;
        };
        if !is_default(action) {
            continue;
        }
        let parent = rest
            .rmatch_indices(':')
            .map(|(colon, _)| (&rest[..colon], &rest[colon + 1..]))
            .find(|(attribute, _)| is_default(&format!("{action}:{attribute}")));
        let (attribute, sub_attribute) = match parent {
            Some((attribute, sub)) => (attribute, Some(sub.into())),
            None => (rest, None),
        };
        rules.entry(action.into()).or_default().push(AttributeRule {
            name: default.name.into(),
            attribute: attribute.into(),
            sub_attribute,
            id: by_name[default.name],
        });
    }
    rules
}

impl Policy {
    /// Neutron's defaults, as listed in [`crate::defaults::DEFAULT_RULES`].
    pub fn defaults() -> Policy {
        Self::build(&[]).expect("the built-in defaults load")
    }

    /// The defaults with an operator's file on top. `text` is YAML or JSON mapping policy names
    /// to check strings; `origin` names the file in errors. Returns the policy and the file's
    /// names that no default defines (in file order), which the caller should log: they are
    /// loaded and may be referred to, but Neutrino never enforces them by itself.
    pub fn with_overrides(text: &str, origin: &str) -> Result<(Policy, Vec<String>), PolicyError> {
        let file_rules = read_rules(text, origin)?;
        let policy = Self::build(
            &file_rules
                .iter()
                .map(|rule| {
                    (
                        rule.name.as_str(),
                        rule.check.as_str(),
                        Source {
                            origin,
                            line: rule.line,
                        },
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        let mut unknown: Vec<String> = Vec::new();
        for rule in &file_rules {
            let known = DEFAULT_RULES
                .iter()
                .any(|default| default.name == rule.name);
            if !known && !unknown.contains(&rule.name) {
                unknown.push(rule.name.clone());
            }
        }
        Ok((policy, unknown))
    }

    fn build(overrides: &[(&str, &str, Source<'_>)]) -> Result<Policy, PolicyError> {
        let mut builder = Builder::default();
        for (number, default) in DEFAULT_RULES.iter().enumerate() {
            let source = Source {
                origin: DEFAULTS_ORIGIN,
                line: number + 1,
            };
            builder.define(default.name, default.check, source)?;
        }
        for &(name, text, source) in overrides {
            builder.define(name, text, source)?;
        }
        builder.finish()
    }

    /// Whether a rule of this name is loaded (a default or one from the operator's file).
    pub fn has_rule(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The id of a loaded rule, to enforce it later without looking the name up again.
    pub fn rule_id(&self, name: &str) -> Option<RuleId> {
        self.by_name.get(name).copied()
    }

    /// The id that [`enforce`](Self::enforce) uses for `action`: its own rule, else `default`.
    pub fn action_id(&self, action: &str) -> RuleId {
        self.rule_id(action).unwrap_or(self.default_rule)
    }

    /// The name of a rule id.
    pub fn rule_name(&self, id: RuleId) -> &str {
        &self.names[id.0]
    }

    /// Whether `creds` may perform `action` on `target`, by the action's own rule only (no
    /// attribute rules); an action without a rule falls to oslo's `default` rule.
    pub fn enforce(
        &self,
        action: &str,
        target: &(impl Target + ?Sized),
        creds: &Credentials<'_>,
    ) -> bool {
        self.enforce_id(self.action_id(action), target, creds)
    }

    /// [`enforce`](Self::enforce) by id.
    pub fn enforce_id(
        &self,
        id: RuleId,
        target: &(impl Target + ?Sized),
        creds: &Credentials<'_>,
    ) -> bool {
        self.checks[id.0].evaluate(&self.checks, &as_dyn(target), creds)
    }

    /// The attribute rules of an action, e.g. for `create_port`: `create_port:device_id`,
    /// `create_port:mac_address`, `create_port:fixed_ips`, `create_port:fixed_ips:ip_address`, …
    /// in the defaults' order. Empty for actions without any.
    pub fn attribute_rules(&self, action: &str) -> &[AttributeRule] {
        self.attribute_rules.get(action).map_or(&[], Vec::as_slice)
    }

    /// The attribute rules of `action` that `document` triggers (see
    /// [`AttributeRule::applies_to`]).
    pub fn applicable_attribute_rules<'p, 'd, D: Target + ?Sized>(
        &'p self,
        action: &str,
        document: &'d D,
    ) -> impl Iterator<Item = &'p AttributeRule> + use<'p, 'd, D> {
        self.attribute_rules(action)
            .iter()
            .filter(move |rule| rule.applies_to(document))
    }

    /// Neutron's check of a write (create/update/other non-read action): the action's rule and
    /// then every attribute rule that `set_attributes` triggers must pass, all evaluated against
    /// `target`. `get_*` and `delete_*` actions check only the action's rule, as Neutron does.
    ///
    /// `set_attributes` holds the attributes the request *explicitly sets*: for a create, the
    /// request body without the values equal to the attribute's default (Neutron ignores
    /// `"shared": false` on create); for an update, the keys of the update body. That filtering
    /// is the caller's, since only it knows the defaults; `target` is the full resource (the
    /// request merged onto defaults, or the stored resource merged with the update) plus parent
    /// keys such as `network:tenant_id`.
    pub fn authorize(
        &self,
        action: &str,
        target: &(impl Target + ?Sized),
        set_attributes: &(impl Target + ?Sized),
        creds: &Credentials<'_>,
    ) -> Result<(), Denied<'_>> {
        let target = as_dyn(target);
        let action_id = self.action_id(action);
        if !self.checks[action_id.0].evaluate(&self.checks, &target, creds) {
            return Err(Denied {
                rule: self.rule_name(action_id),
            });
        }
        if action.starts_with("get_") || action.starts_with("delete_") {
            return Ok(());
        }
        for rule in self.applicable_attribute_rules(action, set_attributes) {
            if !self.checks[rule.id.0].evaluate(&self.checks, &target, creds) {
                return Err(Denied { rule: &rule.name });
            }
        }
        Ok(())
    }

    /// For a read (`get_network`, …): the attributes of `document` the caller may not see, which
    /// Neutron removes from the response (e.g. `binding:host_id` for a non-admin). Only plain
    /// attribute rules take part; the document is also the target.
    pub fn hidden_attributes<'p>(
        &'p self,
        action: &str,
        document: &(impl Target + ?Sized),
        creds: &Credentials<'_>,
    ) -> Vec<&'p str> {
        let target = as_dyn(document);
        self.attribute_rules(action)
            .iter()
            .filter(|rule| rule.sub_attribute.is_none() && document.get(&rule.attribute).is_some())
            .filter(|rule| !self.checks[rule.id.0].evaluate(&self.checks, &target, creds))
            .map(|rule| &*rule.attribute)
            .collect()
    }
}

/// Adapts any target, sized or not, to the `&dyn Target` the evaluator takes.
fn as_dyn<T: Target + ?Sized>(target: &T) -> DynTarget<'_, T> {
    DynTarget(target)
}

struct DynTarget<'a, T: ?Sized>(&'a T);

impl<T: Target + ?Sized> Target for DynTarget<'_, T> {
    fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }
}
