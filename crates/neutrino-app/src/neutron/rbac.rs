//! RBAC policies: share a network or security group with one project or all (`*`), or make a
//! network usable as external; removing a grant that a project still depends on is refused.

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::owners::{FLOATINGIP_OWNER, GATEWAY_OWNER};
use super::scopes::rbac_key;
use async_trait::async_trait;
use neutrino_types::resources as spec;

use super::kind::Kind;
use super::{bump, s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/rbac-policies`.
pub(super) static COLLECTION: Collection = Collection::new(
    "rbac-policies",
    "rbac_policy",
    spec::RBAC_POLICY,
    &RbacPolicies,
)
.untagged()
.unrevised()
.single()
.reread();

/// RBAC policies: who else may use a network, group, pool, scope or address group.
struct RbacPolicies;

#[async_trait]
impl Kind for RbacPolicies {
    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_rbac(tx, ctx, body).await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        app.update_rbac(tx, ctx, rec, changes).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_rbac(tx, ctx, rec).await
    }
}

/// Object types and the actions each accepts.
const OBJECT_ACTIONS: &[(&str, &[&str])] = &[
    ("network", &["access_as_shared", "access_as_external"]),
    ("security_group", &["access_as_shared"]),
    ("address_scope", &["access_as_shared"]),
    ("subnetpool", &["access_as_shared"]),
    ("address_group", &["access_as_shared"]),
    ("qos_policy", &["access_as_shared"]),
];

/// The storage kind of an RBAC object type (QoS policies are stored as `policy`).
pub(super) fn object_kind(object_type: &str) -> &str {
    match object_type {
        "qos_policy" => super::qos::POLICY_KIND,
        other => other,
    }
}

fn in_use(object: &str) -> ApiError {
    ApiError::conflict(
        "RbacPolicyInUse",
        format!(
            "RBAC policy on object {object} cannot be removed because other objects depend on it."
        ),
    )
}

impl App {
    pub(super) async fn create_rbac(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let object_type = s(&json!(body), "object_type").to_ascii_lowercase();
        let action = s(&json!(body), "action").to_string();
        let object = s(&json!(body), "object_id").to_string();
        let target = s(&json!(body), "target_tenant").to_string();
        let actions = OBJECT_ACTIONS
            .iter()
            .find(|(t, _)| *t == object_type)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid input for object_type. Reason: '{object_type}' is not in {:?}.",
                    OBJECT_ACTIONS.iter().map(|(t, _)| *t).collect::<Vec<_>>()
                ))
            })?;
        if !actions.contains(&action.as_str()) {
            return Err(ApiError::invalid_input(format!(
                "Invalid action '{action}' for object type '{object_type}'. Valid actions: {actions:?}"
            )));
        }
        if target == "*" {
            self.check_rule(ctx, "create_rbac_policy:target_tenant", body)?;
        }
        let view = View::load(tx, &object_type).await?;
        let rec = tx
            .get(object_kind(&object_type), &object)
            .await
            .map_err(db)?;
        let visible = |r: &Record| match object_type.as_str() {
            "network" => view.network_visible(ctx, r),
            "address_scope" | "subnetpool" => {
                ctx.owns(&r.project_id) || view.granted(&r.id, "access_as_shared", &ctx.project_id)
            }
            _ => {
                ctx.owns(&r.project_id) || view.granted(&r.id, "access_as_shared", &ctx.project_id)
            }
        };
        let Some(mut rec) = rec.filter(visible) else {
            return Err(ApiError::not_found(object_kind(&object_type), &object));
        };
        if !ctx.owns(&rec.project_id) {
            return Err(ApiError::invalid_input(format!(
                "Only admins can manipulate policies on {object_type}s they do not own"
            )));
        }
        if object_type == "subnetpool" {
            // Sharing a pool needs the target to reach the pool's address scope as well.
            let scope = s(&rec.body, "address_scope_id").to_string();
            if !scope.is_empty() {
                let scope_owner = tx
                    .get("address_scope", &scope)
                    .await
                    .map_err(db)?
                    .map(|r| r.project_id)
                    .unwrap_or_default();
                let reachable = if target == "*" {
                    view.wildcard(&scope, "access_as_shared")
                } else {
                    scope_owner == target || view.granted(&scope, "access_as_shared", &target)
                };
                if !reachable {
                    return Err(ApiError::invalid_input(format!(
                        "Subnet pool {object} is associated with address scope {scope}, which project {target} cannot access"
                    )));
                }
            }
        }
        body.insert("object_type".into(), json!(object_type));
        let id = s(&json!(body), "id").to_string();
        let key = rbac_key(&json!(body));
        if !tx.claim("rbac", &key, &id).await.map_err(db)? {
            return Err(ApiError::conflict(
                "DuplicateRbacPolicy",
                "An RBAC policy already exists with those values.",
            ));
        }
        for k in [
            "created_at",
            "updated_at",
            "revision_number",
            "target_project",
        ] {
            body.remove(k);
        }
        if object_type == "network" && action == "access_as_external" {
            rec.body["router:external"] = json!(true);
        }
        // A policy change is a change of the object (its `shared` and visibility).
        bump(&mut rec.body);
        tx.update(object_kind(&object_type), &rec.id, &rec.body)
            .await
            .map_err(db)?;
        Ok(Some(object))
    }

    /// Refuses to withdraw `target`'s access to a network while its ports use it (and no
    /// other policy keeps the access). `except` is the policy being removed.
    pub(super) async fn check_shared_unused(
        &self,
        tx: &mut Tx,
        network: &str,
        owner: &str,
        target: &str,
        except: Option<&str>,
    ) -> ApiResult<()> {
        let users: Vec<String> = self
            .network_ports(tx, network)
            .await?
            .into_iter()
            .map(|p| p.project_id)
            .collect();
        let except = except.unwrap_or("-");
        self.check_users_keep_access(
            tx,
            network,
            owner,
            target,
            except,
            &users,
            Some("access_as_shared"),
        )
        .await
    }

    async fn check_group_unused(
        &self,
        tx: &mut Tx,
        group: &Record,
        target: &str,
        except: &str,
    ) -> ApiResult<()> {
        let view = View::load(tx, "security_group").await?;
        let others_grant = |project: &str| {
            view.rbac.get(&group.id).is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.get("id").and_then(Value::as_str) != Some(except)
                        && matches!(p.get("target_tenant").and_then(Value::as_str), Some(t) if t == "*" || t == project)
                })
            })
        };
        let users = tx
            .claimed_keys(&format!("sgport:{}", group.id), "", None, i64::MAX)
            .await
            .map_err(db)?;
        for port_id in users {
            if let Some(port) = tx.get("port", &port_id).await.map_err(db)? {
                let p = port.project_id.as_str();
                if p != group.project_id && (target == "*" || target == p) && !others_grant(p) {
                    return Err(in_use(&group.id));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn check_rbac_unused(&self, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        let object_type = s(&rec.body, "object_type").to_string();
        let object = s(&rec.body, "object_id").to_string();
        let target = s(&rec.body, "target_tenant").to_string();
        if object_type == "address_group" {
            // Ordered against rules being created that name the group (they lock it too).
            tx.lock("address_group", &object).await.map_err(db)?;
        }
        let Some(found) = tx
            .get(object_kind(&object_type), &object)
            .await
            .map_err(db)?
        else {
            return Ok(());
        };
        let owner = found.project_id.clone();
        let (users, action): (Vec<String>, _) = match (object_type.as_str(), s(&rec.body, "action"))
        {
            ("network", "access_as_shared") => {
                return self
                    .check_shared_unused(tx, &object, &owner, &target, Some(&rec.id))
                    .await
            }
            ("network", "access_as_external") => {
                if target == "*" && found.body["is_default"] == true {
                    return Err(ApiError::conflict(
                        "RbacPolicyInUse",
                        format!("RBAC policy on object {object} cannot be removed because other objects depend on it.\nDetails: Default external networks must be shared to everyone."),
                    ));
                }
                let users = self.external_network_users(tx, &object).await?;
                (users, Some("access_as_external"))
            }
            ("security_group", _) => {
                return self.check_group_unused(tx, &found, &target, &rec.id).await
            }
            ("address_scope", _) => {
                let pools = self.scope_pools(tx, &object).await?;
                (pools.into_iter().map(|p| p.project_id).collect(), None)
            }
            ("address_group", _) => {
                let users = super::address_groups::rule_projects(tx, &object).await?;
                (users, None)
            }
            ("qos_policy", _) => {
                // Ordered against networks and ports taking the policy (they lock it too).
                tx.lock(super::qos::POLICY_KIND, &object)
                    .await
                    .map_err(db)?;
                // Upstream counts the policy owner's own networks and ports too: a policy
                // its owner uses stays shared as it is.
                let users = super::qos::policy_users(tx, &object).await?;
                return self
                    .check_users_keep_access(tx, &object, "", &target, &rec.id, &users, None)
                    .await;
            }
            ("subnetpool", _) => {
                let users = tx
                    .list("subnet", &Selector::default())
                    .await
                    .map_err(db)?
                    .into_iter()
                    .filter(|sn| s(&sn.body, "subnetpool_id") == object)
                    .map(|sn| sn.project_id)
                    .collect();
                (users, None)
            }
            _ => return Ok(()),
        };
        self.check_users_keep_access(tx, &object, &owner, &target, &rec.id, &users, action)
            .await
    }

    /// Refuses to withdraw `target`'s access to `object` while projects in `users` (other
    /// than the owner) depend on it and no other policy keeps their access.
    #[allow(clippy::too_many_arguments)]
    async fn check_users_keep_access(
        &self,
        tx: &mut Tx,
        object: &str,
        owner: &str,
        target: &str,
        except: &str,
        users: &[String],
        action: Option<&str>,
    ) -> ApiResult<()> {
        let sel = Selector {
            parent_ids: Some(vec![object.to_string()]),
            ..Default::default()
        };
        let others: Vec<Record> = tx
            .list("rbac_policy", &sel)
            .await
            .map_err(db)?
            .into_iter()
            .filter(|p| p.id != except && action.is_none_or(|a| s(&p.body, "action") == a))
            .collect();
        for user in users {
            if user == owner || !(target == "*" || target == user) {
                continue;
            }
            let kept = others.iter().any(|p| {
                matches!(s(&p.body, "target_tenant"), "*") || s(&p.body, "target_tenant") == user
            });
            if !kept {
                return Err(in_use(object));
            }
        }
        Ok(())
    }

    pub(super) async fn update_rbac(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        for (k, v) in changes {
            if k != "target_tenant" {
                return Err(ApiError::bad_request(format!(
                    "Cannot update read-only attribute {k}"
                )));
            }
            let new = v.as_str().unwrap_or_default().to_string();
            if new == "*" {
                let mut target = super::authz::body_of(rec).clone();
                target.insert("target_tenant".into(), json!(new));
                target.insert("target_project".into(), json!(new));
                self.check_rule(ctx, "update_rbac_policy:target_tenant", &target)?;
            }
            if new != s(&rec.body, "target_tenant") {
                // As upstream: for networks the updated policy keeps the access it still
                // grants; for the other objects (upstream's versioned objects) the old target
                // is withdrawn as by a delete, the updated policy not counting.
                let network = s(&rec.body, "object_type") == "network";
                if !network {
                    self.check_rbac_unused(tx, rec).await?;
                }
                let before = rec.clone();
                tx.release("rbac", &rbac_key(&rec.body)).await.map_err(db)?;
                rec.body["target_tenant"] = json!(new);
                if !tx
                    .claim("rbac", &rbac_key(&rec.body), &rec.id)
                    .await
                    .map_err(db)?
                {
                    return Err(ApiError::conflict(
                        "DuplicateRbacPolicy",
                        "An RBAC policy already exists with those values.",
                    ));
                }
                tx.update("rbac_policy", &rec.id, &rec.body)
                    .await
                    .map_err(db)?;
                if network {
                    let withdrawn = Record {
                        id: String::from("-"),
                        ..before
                    };
                    self.check_rbac_unused(tx, &withdrawn).await?;
                }
            }
        }
        Ok(())
    }

    /// Projects using a network as external: owners of routers with a gateway on it and of
    /// floating IPs from it.
    async fn external_network_users(&self, tx: &mut Tx, network: &str) -> ApiResult<Vec<String>> {
        let mut users = Vec::new();
        for port in self.network_ports(tx, network).await? {
            let device = s(&port.body, "device_id").to_string();
            let kind = match s(&port.body, "device_owner") {
                GATEWAY_OWNER => "router",
                FLOATINGIP_OWNER => "floatingip",
                _ => continue,
            };
            if let Some(owner) = tx.get(kind, &device).await.map_err(db)? {
                users.push(owner.project_id);
            }
        }
        Ok(users)
    }

    /// Deletes every RBAC policy on `object` (which is going away).
    pub(super) async fn delete_object_policies(&self, tx: &mut Tx, object: &str) -> ApiResult<()> {
        let sel = Selector {
            parent_ids: Some(vec![object.to_string()]),
            ..Default::default()
        };
        for p in tx.list("rbac_policy", &sel).await.map_err(db)? {
            tx.release("rbac", &rbac_key(&p.body)).await.map_err(db)?;
            tx.delete("rbac_policy", &p.id).await.map_err(db)?;
        }
        Ok(())
    }

    pub(super) async fn delete_rbac(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        self.check_rbac_unused(tx, rec).await?;
        tx.release("rbac", &rbac_key(&rec.body)).await.map_err(db)?;
        let kind = object_kind(s(&rec.body, "object_type")).to_string();
        let object_id = s(&rec.body, "object_id").to_string();
        if let Some(mut object) = tx.get(&kind, &object_id).await.map_err(db)? {
            if kind == "network" && s(&rec.body, "action") == "access_as_external" {
                // External as long as any access_as_external policy remains.
                let sel = Selector {
                    parent_ids: Some(vec![object_id.clone()]),
                    ..Default::default()
                };
                let remaining = tx
                    .list("rbac_policy", &sel)
                    .await
                    .map_err(db)?
                    .iter()
                    .any(|p| p.id != rec.id && s(&p.body, "action") == "access_as_external");
                object.body["router:external"] = json!(remaining);
                if !remaining {
                    super::networks::release_default_external(tx, &object_id).await?;
                    if let Some(doc) = object.body.as_object_mut() {
                        doc.remove("is_default");
                    }
                }
            }
            bump(&mut object.body);
            tx.update(&kind, &object_id, &object.body)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}
