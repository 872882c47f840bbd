//! What a rule is evaluated against: the caller's credentials and the target document.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// Who is asking: what oslo.policy calls the credentials.
///
/// `roles` must be lower-case and already include the implied roles (Keystone's defaults:
/// `admin` ⇒ `manager` ⇒ `member` ⇒ `reader`), as Keystone's token validation returns them.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub user_id: &'a str,
    /// The token's project; the credential attribute `tenant_id` is an alias of it.
    pub project_id: &'a str,
    pub roles: &'a [String],
}

impl Credentials<'_> {
    /// Whether the caller holds `role` (compared case-insensitively, as oslo.policy does).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles
            .iter()
            .any(|held| held.eq_ignore_ascii_case(role))
    }
}

/// The object of an action, looked up by key. Keys may contain colons: Neutron puts the parent
/// network's owner under `network:tenant_id` / `network:project_id`, a security group rule's
/// under `security_group:tenant_id`, and `ext_parent:project_id` for other parents.
pub trait Target {
    fn get(&self, key: &str) -> Option<&Value>;
}

impl Target for Map<String, Value> {
    fn get(&self, key: &str) -> Option<&Value> {
        Map::get(self, key)
    }
}

impl Target for HashMap<String, Value> {
    fn get(&self, key: &str) -> Option<&Value> {
        HashMap::get(self, key)
    }
}

/// A JSON value is a target when it is an object; anything else has no keys.
impl Target for Value {
    fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|object| object.get(key))
    }
}

/// A list of pairs, handy for small hand-made targets; the first matching key wins.
impl Target for [(&str, Value)] {
    fn get(&self, key: &str) -> Option<&Value> {
        self.iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }
}

impl<const N: usize> Target for [(&str, Value); N] {
    fn get(&self, key: &str) -> Option<&Value> {
        Target::get(self.as_slice(), key)
    }
}

/// A target that needs no document: every key is missing.
impl Target for () {
    fn get(&self, _key: &str) -> Option<&Value> {
        None
    }
}

/// A borrowed document with a few extra keys on top, so callers need not clone a resource to
/// add `network:tenant_id`, `network:project_id`, `shared`, `router:external` and the like.
/// The extra keys win over the document's.
///
/// ```
/// use neutrino_policy::{Overlay, Target};
/// use serde_json::json;
/// let port = json!({"project_id": "p1", "network_id": "n1"});
/// let target = Overlay::new(&port).with("network:project_id", json!("p2"));
/// assert_eq!(target.get("network:project_id"), Some(&json!("p2")));
/// assert_eq!(target.get("project_id"), Some(&json!("p1")));
/// ```
pub struct Overlay<'a, T: Target + ?Sized> {
    base: &'a T,
    extra: Vec<(&'a str, Value)>,
}

impl<'a, T: Target + ?Sized> Overlay<'a, T> {
    pub fn new(base: &'a T) -> Self {
        Overlay {
            base,
            extra: Vec::new(),
        }
    }

    /// Adds (or shadows) one key.
    #[must_use]
    pub fn with(mut self, key: &'a str, value: Value) -> Self {
        self.extra.push((key, value));
        self
    }
}

impl<T: Target + ?Sized> Target for Overlay<'_, T> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.extra
            .iter()
            .rev()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
            .or_else(|| self.base.get(key))
    }
}
