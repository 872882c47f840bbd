//! QoS policies: sharing (a wildcard `access_as_shared` RBAC policy behind `shared`), the
//! project's default policy (a `qos-default` claim keyed by project, `qos-default`), the
//! rendered `rules` list, and deletion (409 `QosPolicyInUse` while a network or port names
//! the policy; its rules and RBAC policies go with it).

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::qos::RULE_TYPES;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::binding::{check_unused, POLICY_KIND, RBAC_TYPE};
use crate::neutron::kind::{apply_changes, Kind};
use crate::neutron::scopes::rbac_key;
use crate::neutron::view::{narrow, own_ids, Need, View};
use crate::neutron::{s, Doc};
use crate::{db, App, Context};

/// The claim scope of projects' default policies.
const DEFAULT_SCOPE: &str = "qos-default";

/// QoS policies.
pub(super) struct Policies;

/// A rule as a policy's `rules` list shows it: its parameters, `id`, `qos_policy_id` and
/// `type`.
pub(super) fn rule_entry(rec: &Record) -> Value {
    let mut doc = rec.body.as_object().cloned().unwrap_or_default();
    let t = neutrino_types::qos::rule_type_of(&rec.kind).map_or("", |t| t.name);
    doc.insert("type".into(), json!(t));
    for k in ["project_id", "tenant_id"] {
        doc.remove(k);
    }
    Value::Object(doc)
}

/// Loads the rules of `policies` (`None`: all) into `view.children`.
pub(super) async fn load_rules(
    tx: &mut Tx,
    view: &mut View,
    policies: Option<Vec<String>>,
) -> ApiResult<()> {
    for t in RULE_TYPES {
        let sel = Selector {
            parent_ids: policies.clone(),
            ..Default::default()
        };
        for r in tx.list(t.resource, &sel).await.map_err(db)? {
            let parent = r.parent_id.clone().unwrap_or_default();
            view.children.entry(parent).or_default().push(r);
        }
    }
    Ok(())
}

#[async_trait]
impl Kind for Policies {
    fn ignores_unknown_marker(&self) -> bool {
        true
    }

    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        need: Need,
    ) -> ApiResult<()> {
        if need != Need::Created {
            load_rules(tx, view, narrow(own_ids(records))).await?;
        }
        Ok(())
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        let rules: Vec<Value> = view
            .children
            .get(&rec.id)
            .map(|rs| rs.iter().map(rule_entry).collect())
            .unwrap_or_default();
        doc.insert("rules".into(), Value::Array(rules));
        if !doc.contains_key("is_default") {
            doc.insert("is_default".into(), json!(false));
        }
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let id = s(&json!(body), "id").to_string();
        let project = s(&json!(body), "project_id").to_string();
        let shared = body.remove("shared").and_then(|v| v.as_bool()) == Some(true);
        if shared {
            app.insert_rbac(tx, &project, RBAC_TYPE, &id, "access_as_shared", "*")
                .await?;
        }
        if body.get("is_default").and_then(Value::as_bool) == Some(true) {
            claim_default(tx, &project, &id).await?;
        }
        body.remove("rules");
        Ok(None)
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        mut changes: Doc,
    ) -> ApiResult<()> {
        if let Some(shared) = changes.remove("shared").and_then(|v| v.as_bool()) {
            set_shared(app, tx, rec, shared).await?;
        }
        if let Some(on) = changes.get("is_default").and_then(Value::as_bool) {
            let was = rec.body.get("is_default").and_then(Value::as_bool) == Some(true);
            if on && !was {
                claim_default(tx, &rec.project_id, &rec.id).await?;
            } else if !on && was {
                tx.release(DEFAULT_SCOPE, &rec.project_id)
                    .await
                    .map_err(db)?;
            }
        }
        apply_changes(rec, changes);
        Ok(())
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        tx.lock(POLICY_KIND, &rec.id).await.map_err(db)?;
        check_unused(tx, &rec.id).await?;
        for t in RULE_TYPES {
            let sel = Selector {
                parent_ids: Some(vec![rec.id.clone()]),
                ..Default::default()
            };
            for r in tx.list(t.resource, &sel).await.map_err(db)? {
                tx.delete(t.resource, &r.id).await.map_err(db)?;
            }
        }
        if rec.body.get("is_default").and_then(Value::as_bool) == Some(true) {
            tx.release(DEFAULT_SCOPE, &rec.project_id)
                .await
                .map_err(db)?;
        }
        app.delete_object_policies(tx, &rec.id).await
    }
}

/// Makes `policy` the default of `project`: 409 `QoSPolicyDefaultAlreadyExists` when it has
/// one.
async fn claim_default(tx: &mut Tx, project: &str, policy: &str) -> ApiResult<()> {
    if tx.claim(DEFAULT_SCOPE, project, policy).await.map_err(db)? {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "QoSPolicyDefaultAlreadyExists",
            format!("A default QoS policy exists for project {project}."),
        ))
    }
}

/// The default policy of `project`, if it has one.
pub(super) async fn default_of(tx: &mut Tx, project: &str) -> ApiResult<Option<String>> {
    tx.claim_owner(DEFAULT_SCOPE, project).await.map_err(db)
}

/// Adds or removes the wildcard sharing policy of a QoS policy.
async fn set_shared(app: &App, tx: &mut Tx, rec: &Record, on: bool) -> ApiResult<()> {
    let sel = Selector {
        parent_ids: Some(vec![rec.id.clone()]),
        ..Default::default()
    };
    let wildcard: Vec<Record> = tx
        .list("rbac_policy", &sel)
        .await
        .map_err(db)?
        .into_iter()
        .filter(|p| {
            s(&p.body, "action") == "access_as_shared" && s(&p.body, "target_tenant") == "*"
        })
        .collect();
    if on && wildcard.is_empty() {
        app.insert_rbac(
            tx,
            &rec.project_id,
            RBAC_TYPE,
            &rec.id,
            "access_as_shared",
            "*",
        )
        .await?;
    }
    if !on {
        for p in wildcard {
            // Not while another project's network or port depends on it.
            app.check_rbac_unused(tx, &p).await.map_err(|_| {
                ApiError::conflict(
                    "QosPolicyInUse",
                    format!(
                        "QoS Policy {} is used by other projects: it cannot stop being shared.",
                        rec.id
                    ),
                )
            })?;
            tx.release("rbac", &rbac_key(&p.body)).await.map_err(db)?;
            tx.delete("rbac_policy", &p.id).await.map_err(db)?;
        }
    }
    Ok(())
}
