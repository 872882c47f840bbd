//! Policy enforcement for the generic flow: the targets Neutron builds (the resource plus its
//! parent's owner and sharing), which attributes a request explicitly sets, and the mapping
//! of a refusal to Neutron's 403.

use neutrino_policy::Overlay;
use neutrino_store::Record;
use neutrino_types::attrs::Attr;
use neutrino_types::{ApiError, ApiResult};
use serde_json::Value;

use super::view::View;
use super::{Collection, Doc};
use crate::{App, Context};

/// What a kind adds to a record for the policy: keys such as `network:tenant_id` or `shared`.
pub(crate) type Extras = Vec<(&'static str, Value)>;

/// The `network:*` keys Neutron puts in the targets of a network's children, and its `shared`
/// and `router:external` as the caller sees them; nothing when the caller cannot see the
/// network.
pub(super) fn network_parent(view: &View, ctx: &Context, rec: &Record) -> Extras {
    let Some(net) = rec
        .parent_id
        .as_deref()
        .and_then(|n| view.networks.get(n))
        .filter(|net| view.network_visible(ctx, net))
    else {
        return Vec::new();
    };
    vec![
        ("network:tenant_id", Value::from(net.project_id.as_str())),
        ("network:project_id", Value::from(net.project_id.as_str())),
        (
            "shared",
            Value::Bool(view.granted(&net.id, "access_as_shared", &ctx.project_id)),
        ),
        ("router:external", Value::Bool(view.is_external(net))),
    ]
}

/// The owner of a nested record's loaded parent as Neutron's `ext_parent:*` keys (a QoS
/// rule's policy, a port forwarding's floating IP, a conntrack helper's router); nothing when
/// the parent is not loaded.
pub(super) fn parent_owner(view: &View, rec: &Record) -> Extras {
    view.parent_of(rec).map_or_else(Vec::new, |p| {
        vec![
            ("ext_parent:project_id", Value::from(p.project_id.as_str())),
            ("ext_parent:tenant_id", Value::from(p.project_id.as_str())),
        ]
    })
}

/// `shared` as the caller sees a resource shared through RBAC policies.
pub(super) fn shared(view: &View, ctx: &Context, rec: &Record) -> Extras {
    vec![(
        "shared",
        Value::Bool(view.granted(&rec.id, "access_as_shared", &ctx.project_id)),
    )]
}

/// The attributes a create explicitly sets: those in the request whose value is not the
/// attribute's default (Neutron ignores `"shared": false`) and not null.
pub(super) fn set_on_create(spec: &[Attr], request: &Doc, validated: &Doc) -> Doc {
    request
        .keys()
        .filter_map(|k| {
            let value = validated.get(k)?;
            let default = spec
                .iter()
                .find(|a| a.name == k)
                .and_then(Attr::default_value);
            let set = !value.is_null() && default.as_ref() != Some(value);
            set.then(|| (k.clone(), value.clone()))
        })
        .collect()
}

impl App {
    /// Checks a write against the policy: the action's rule on `target` with the kind's
    /// extras, and the attribute rules of what `set` sets.
    pub(super) fn authorize(
        &self,
        ctx: &Context,
        action: &str,
        target: &Doc,
        extras: Extras,
        set: &Doc,
    ) -> ApiResult<()> {
        if !ctx.may_use_rule(action) {
            return Err(ApiError::forbidden(action));
        }
        let mut overlay = Overlay::new(target);
        for (k, v) in extras {
            overlay = overlay.with(k, v);
        }
        self.config()
            .policy
            .authorize(action, &overlay, set, &ctx.credentials())
            .map_err(|denied| ApiError::forbidden(&format!("rule:{}", denied.rule)))
    }

    /// Whether the policy lets the caller read a rendered record.
    pub(super) fn may_read(
        &self,
        ctx: &Context,
        coll: &Collection,
        doc: &Doc,
        extras: Extras,
    ) -> bool {
        let rule = format!("get_{}", coll.resource);
        if !ctx.may_use_rule(&rule) {
            return false;
        }
        let mut overlay = Overlay::new(doc);
        for (k, v) in extras {
            overlay = overlay.with(k, v);
        }
        self.config()
            .policy
            .enforce(&rule, &overlay, &ctx.credentials())
    }

    /// Whether the rule named `rule` lets the caller act on `target`: for calls outside the
    /// collections (quotas, agents, scheduling, the agents' own endpoints) and for the
    /// attribute rules a kind checks itself.
    /// A host agent's caller is only ever granted the agent rules.
    pub(crate) fn permits(&self, ctx: &Context, rule: &str, target: &Doc) -> bool {
        ctx.may_use_rule(rule)
            && self
                .config()
                .policy
                .enforce(rule, &Overlay::new(target), &ctx.credentials())
    }

    /// [`App::permits`], refused with Neutron's 403 naming the rule.
    pub fn check_rule(&self, ctx: &Context, rule: &str, target: &Doc) -> ApiResult<()> {
        if self.permits(ctx, rule, target) {
            Ok(())
        } else {
            Err(ApiError::forbidden(&format!("rule:{rule}")))
        }
    }

    /// Removes what the policy hides from the caller (`get_port:binding:host_id`, ...).
    pub(crate) fn strip_hidden(&self, coll: &Collection, ctx: &Context, mut doc: Doc) -> Doc {
        let action = format!("get_{}", coll.resource);
        let hidden: Vec<String> = self
            .config()
            .policy
            .hidden_attributes(&action, &doc, &ctx.credentials())
            .into_iter()
            .map(str::to_string)
            .collect();
        for key in hidden {
            doc.remove(&key);
        }
        doc
    }
}

/// The target of an action on a whole project (quotas, auto-allocated topologies, pools).
pub(crate) fn project_target(project: &str) -> Doc {
    let mut doc = Doc::new();
    doc.insert("project_id".into(), Value::from(project));
    doc.insert("tenant_id".into(), Value::from(project));
    doc
}

/// Lets a record's stored body serve as a policy target.
pub(super) fn body_of(rec: &Record) -> &Doc {
    static EMPTY: std::sync::OnceLock<Doc> = std::sync::OnceLock::new();
    rec.body
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Doc::new))
}
