//! QoS rules, one kind per rule type, each record a child of its policy. A rule is visible to
//! whoever sees its policy; the policy target carries the policy's owner as
//! `ext_parent:project_id`. A new or changed rule is checked against the policy's other rules
//! of its type (`neutrino_types::qos::check_rule_conflict`) with the policy's row locked, and
//! bumps the policy's revision, as upstream does.

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::Attr;
use neutrino_types::qos::{
    check_dscp_mark, check_parameter_conflict, check_rule_conflict, counterpart,
};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::binding::POLICY_KIND;
use crate::neutron::authz::{parent_owner, Extras};
use crate::neutron::kind::{apply_changes, Kind};
use crate::neutron::view::{narrow, parent_ids, Need, View};
use crate::neutron::{bump, s, Doc};
use crate::{db, App, Context};

/// The rules of one type.
pub(super) struct Rules {
    /// Resource key and storage kind, e.g. `bandwidth_limit_rule`.
    pub(super) resource: &'static str,
    /// Attribute specification.
    pub(super) spec: &'static [Attr],
}

impl Rules {
    pub(super) const fn new(resource: &'static str, spec: &'static [Attr]) -> Rules {
        Rules { resource, spec }
    }

    /// Checks `rule` (complete, id `id`) against its policy's other rules of this type and
    /// records the change on the policy; the policy's row stays locked.
    async fn check_in_policy(
        &self,
        tx: &mut Tx,
        policy: &str,
        id: &str,
        rule: &Value,
    ) -> ApiResult<()> {
        tx.lock(POLICY_KIND, policy).await.map_err(db)?;
        let Some(mut parent) = tx.get(POLICY_KIND, policy).await.map_err(db)? else {
            return Err(ApiError::not_found(POLICY_KIND, policy));
        };
        let siblings = rules_of(tx, self.resource, policy).await?;
        check_rule_conflict(self.resource, policy, id, rule, &siblings)?;
        if let Some(other) = counterpart(self.resource) {
            let others = rules_of(tx, other, policy).await?;
            check_parameter_conflict(self.resource, policy, rule, &others)?;
        }
        bump(&mut parent.body);
        tx.update(POLICY_KIND, policy, &parent.body)
            .await
            .map_err(db)?;
        Ok(())
    }
}

/// The `(id, body)` of the `resource` rules of `policy`.
async fn rules_of(tx: &mut Tx, resource: &str, policy: &str) -> ApiResult<Vec<(String, Value)>> {
    let sel = Selector {
        parent_ids: Some(vec![policy.to_string()]),
        ..Default::default()
    };
    Ok(tx
        .list(resource, &sel)
        .await
        .map_err(db)?
        .into_iter()
        .map(|r| (r.id, r.body))
        .collect())
}

#[async_trait]
impl Kind for Rules {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        need: Need,
    ) -> ApiResult<()> {
        if need == Need::Check {
            view.load_rbac(tx, narrow(parent_ids(records))).await?;
            view.load_parents(tx, POLICY_KIND, records).await?;
        }
        Ok(())
    }

    fn visible_to_others(&self, view: &View, ctx: &Context, rec: &Record) -> bool {
        view.parent_of(rec).is_some_and(|p| {
            ctx.owns(&p.project_id) || view.granted(&p.id, "access_as_shared", &ctx.project_id)
        })
    }

    fn policy_extras(&self, view: &View, _ctx: &Context, rec: &Record) -> Extras {
        parent_owner(view, rec)
    }

    fn render(&self, _view: &View, _ctx: &Context, _rec: &Record, doc: &mut Doc) {
        for k in ["project_id", "tenant_id"] {
            doc.remove(k);
        }
    }

    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        match body.get("dscp_mark").and_then(Value::as_i64) {
            Some(mark) => check_dscp_mark(mark),
            None => Ok(()),
        }
    }

    fn not_found(&self, parent: Option<&str>, id: &str) -> Option<ApiError> {
        let text = match parent {
            Some(p) => format!("QoS rule {id} for policy {p} could not be found."),
            None => format!("QoS rule {id} could not be found."),
        };
        Some(ApiError::new(404, "QosRuleNotFound", text))
    }

    async fn create(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let policy = s(&json!(body), "qos_policy_id").to_string();
        if policy.is_empty() {
            // Rules are created under a policy only (the aliases have no POST).
            return Err(ApiError::no_such_url());
        }
        if self.resource == "bandwidth_limit_rule" && !body.contains_key("max_burst_kbps") {
            body.insert("max_burst_kbps".into(), json!(0));
        }
        let id = s(&json!(body), "id").to_string();
        self.check_in_policy(tx, &policy, &id, &Value::Object(body.clone()))
            .await?;
        for k in ["created_at", "updated_at", "revision_number"] {
            body.remove(k);
        }
        Ok(Some(policy))
    }

    async fn update(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        apply_changes(rec, changes);
        let policy = rec.parent_id.clone().unwrap_or_default();
        self.check_in_policy(tx, &policy, &rec.id.clone(), &rec.body)
            .await
    }

    async fn delete(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        let policy = rec.parent_id.clone().unwrap_or_default();
        tx.lock(POLICY_KIND, &policy).await.map_err(db)?;
        if let Some(mut parent) = tx.get(POLICY_KIND, &policy).await.map_err(db)? {
            bump(&mut parent.body);
            tx.update(POLICY_KIND, &policy, &parent.body)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}
