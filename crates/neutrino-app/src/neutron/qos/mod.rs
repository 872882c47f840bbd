//! Neutron QoS: policies (`/v2.0/qos/policies`, shared through RBAC as object type
//! `qos_policy`, one default per project), their rules as nested collections
//! (`/v2.0/qos/policies/{policy_id}/{type}_rules`), the rule aliases
//! (`/v2.0/qos/alias_{type}_rules/{id}`) and `qos_policy_id` on networks and ports
//! ([`binding`]). Policies are stored as kind `policy`, rules as their type's resource with
//! the policy as parent. Specifications and the pure rule checks: `neutrino_types::qos`.

mod binding;
mod policies;
mod rules;

use neutrino_types::qos as spec;

use super::Collection;

pub(super) use binding::{bind_on_create, policy_users, rebind, unbind, POLICY_KIND};

/// The path of the policies' collection, parent of the rule collections.
const POLICIES_PATH: &str = "qos/policies";
/// The attribute (and parent id) naming a rule's policy.
const POLICY_ATTR: &str = "qos_policy_id";

/// `/v2.0/qos/policies`.
pub(super) static POLICIES: Collection = Collection::new(
    POLICIES_PATH,
    POLICY_KIND,
    spec::POLICY,
    &policies::Policies,
)
.shared_through_rbac();

static BW_KIND: rules::Rules =
    rules::Rules::new("bandwidth_limit_rule", spec::BANDWIDTH_LIMIT_RULE);
static DSCP_KIND: rules::Rules = rules::Rules::new("dscp_marking_rule", spec::DSCP_MARKING_RULE);
static MIN_BW_KIND: rules::Rules =
    rules::Rules::new("minimum_bandwidth_rule", spec::MINIMUM_BANDWIDTH_RULE);
static MIN_PPS_KIND: rules::Rules =
    rules::Rules::new("minimum_packet_rate_rule", spec::MINIMUM_PACKET_RATE_RULE);

/// A nested rule collection of one type.
const fn nested(path: &'static str, kind: &'static rules::Rules) -> Collection {
    Collection::new(path, kind.resource, kind.spec, kind)
        .untagged()
        .unrevised()
        .nested(POLICIES_PATH, POLICY_ATTR)
}

/// The alias of a rule collection: the same records by id alone.
const fn alias(path: &'static str, key: &'static str, kind: &'static rules::Rules) -> Collection {
    Collection::new(path, kind.resource, kind.spec, kind)
        .untagged()
        .unrevised()
        .parent(POLICY_ATTR)
        .keyed(key)
}

/// `/v2.0/qos/policies/{id}/bandwidth_limit_rules`.
pub(super) static BANDWIDTH_LIMIT_RULES: Collection = nested("bandwidth_limit_rules", &BW_KIND);
/// `/v2.0/qos/policies/{id}/dscp_marking_rules`.
pub(super) static DSCP_MARKING_RULES: Collection = nested("dscp_marking_rules", &DSCP_KIND);
/// `/v2.0/qos/policies/{id}/minimum_bandwidth_rules`.
pub(super) static MINIMUM_BANDWIDTH_RULES: Collection =
    nested("minimum_bandwidth_rules", &MIN_BW_KIND);
/// `/v2.0/qos/policies/{id}/minimum_packet_rate_rules`.
pub(super) static MINIMUM_PACKET_RATE_RULES: Collection =
    nested("minimum_packet_rate_rules", &MIN_PPS_KIND);
/// `/v2.0/qos/alias_bandwidth_limit_rules/{id}`.
pub(super) static ALIAS_BANDWIDTH_LIMIT_RULES: Collection = alias(
    "qos/alias_bandwidth_limit_rules",
    "alias_bandwidth_limit_rule",
    &BW_KIND,
);
/// `/v2.0/qos/alias_dscp_marking_rules/{id}`.
pub(super) static ALIAS_DSCP_MARKING_RULES: Collection = alias(
    "qos/alias_dscp_marking_rules",
    "alias_dscp_marking_rule",
    &DSCP_KIND,
);
/// `/v2.0/qos/alias_minimum_bandwidth_rules/{id}`.
pub(super) static ALIAS_MINIMUM_BANDWIDTH_RULES: Collection = alias(
    "qos/alias_minimum_bandwidth_rules",
    "alias_minimum_bandwidth_rule",
    &MIN_BW_KIND,
);
/// `/v2.0/qos/alias_minimum_packet_rate_rules/{id}`.
pub(super) static ALIAS_MINIMUM_PACKET_RATE_RULES: Collection = alias(
    "qos/alias_minimum_packet_rate_rules",
    "alias_minimum_packet_rate_rule",
    &MIN_PPS_KIND,
);

impl crate::App {
    /// `GET /v2.0/qos/rule-types`.
    pub fn qos_rule_types(&self, _ctx: &crate::Context) -> serde_json::Value {
        spec::rule_types()
    }

    /// `GET /v2.0/qos/rule-types/{type}` (admin by default policy, `get_rule_type`).
    pub fn qos_rule_type(
        &self,
        ctx: &crate::Context,
        name: &str,
    ) -> neutrino_types::ApiResult<serde_json::Value> {
        self.check_rule(ctx, "get_rule_type", &super::Doc::new())?;
        spec::rule_type_details(name).ok_or_else(|| {
            neutrino_types::ApiError::new(
                404,
                "QosRuleTypeNotFound",
                format!("QoS rule type {name} could not be found."),
            )
        })
    }
}
