//! `qos_policy_id` on networks and ports: the policy must exist and be visible to the
//! object's project (404 `QosPolicyNotFound`); every object naming a policy holds a claim in
//! `qospol:<policy>` (key `<kind>:<id>`), so deleting a policy in use is one lookup (409
//! `QosPolicyInUse`). A claim whose object is gone or names another policy is stale and is
//! dropped when found. A network created without `qos_policy_id` gets its project's default
//! policy (`qos-default`). Taking a policy off needs access to it, as upstream: a project may
//! not detach a policy an admin attached that is not its own or shared with it (403).

use neutrino_store::{Record, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::policies::default_of;
use crate::neutron::view::View;
use crate::neutron::{s, Doc};
use crate::{db, Context};

/// The storage kind (and resource key) of QoS policies.
pub(in crate::neutron) const POLICY_KIND: &str = "policy";
/// The RBAC object type of QoS policies.
pub(in crate::neutron) const RBAC_TYPE: &str = "qos_policy";

fn scope(policy: &str) -> String {
    format!("qospol:{policy}")
}

/// Checks that `project` may use `policy` (it exists, and the caller is admin, or the project
/// owns it or has it shared) and locks its row until the request commits.
async fn check_usable(tx: &mut Tx, ctx: &Context, project: &str, policy: &str) -> ApiResult<()> {
    let missing = || ApiError::not_found(POLICY_KIND, policy);
    if !neutrino_types::attrs::is_uuid(policy) || !tx.lock(POLICY_KIND, policy).await.map_err(db)? {
        return Err(missing());
    }
    let rec = tx
        .get(POLICY_KIND, policy)
        .await
        .map_err(db)?
        .ok_or_else(missing)?;
    if ctx.is_admin() || rec.project_id == project {
        return Ok(());
    }
    let mut view = View::default();
    view.load_rbac(tx, Some(vec![policy.to_string()])).await?;
    if view.granted(policy, "access_as_shared", project) {
        Ok(())
    } else {
        Err(missing())
    }
}

/// Checks that the caller may take `policy` off a network or port: it is admin, its project
/// owns the policy, or the policy is shared with it (upstream's
/// `PolicyRemoveAuthorizationError`, 403). A policy that is gone is no obstacle.
async fn check_removable(tx: &mut Tx, ctx: &Context, policy: &str) -> ApiResult<()> {
    if ctx.is_admin() {
        return Ok(());
    }
    let Some(rec) = tx.get(POLICY_KIND, policy).await.map_err(db)? else {
        return Ok(());
    };
    if rec.project_id == ctx.project_id {
        return Ok(());
    }
    let mut view = View::default();
    view.load_rbac(tx, Some(vec![policy.to_string()])).await?;
    if view.granted(policy, "access_as_shared", &ctx.project_id) {
        return Ok(());
    }
    Err(ApiError::new(
        403,
        "PolicyRemoveAuthorizationError",
        format!("Failed to remove provided policy {policy} because you are not authorized."),
    ))
}

async fn claim(tx: &mut Tx, policy: &str, kind: &str, id: &str) -> ApiResult<()> {
    tx.claim(&scope(policy), &format!("{kind}:{id}"), id)
        .await
        .map_err(db)?;
    Ok(())
}

/// A new network or port (`kind`, its complete body with `id` and `project_id`): checks and
/// claims its `qos_policy_id`; a network without one gets the project's default policy.
pub(in crate::neutron) async fn bind_on_create(
    tx: &mut Tx,
    ctx: &Context,
    kind: &str,
    body: &mut Doc,
) -> ApiResult<()> {
    let id = s(&json!(body), "id").to_string();
    let project = s(&json!(body), "project_id").to_string();
    let policy = match body.get("qos_policy_id") {
        Some(Value::String(p)) => Some(p.clone()),
        Some(_) => None,
        None if kind == "network" => default_of(tx, &project).await?,
        None => None,
    };
    if let Some(p) = &policy {
        check_usable(tx, ctx, &project, p).await?;
        claim(tx, p, kind, &id).await?;
    }
    body.insert("qos_policy_id".into(), json!(policy));
    Ok(())
}

/// A network or port changing its `qos_policy_id` from `old` to `new`.
pub(in crate::neutron) async fn rebind(
    tx: &mut Tx,
    ctx: &Context,
    kind: &str,
    id: &str,
    project: &str,
    old: Option<&str>,
    new: Option<&str>,
) -> ApiResult<()> {
    if old == new {
        return Ok(());
    }
    if let Some(p) = old {
        check_removable(tx, ctx, p).await?;
    }
    if let Some(p) = new {
        check_usable(tx, ctx, project, p).await?;
        claim(tx, p, kind, id).await?;
    }
    if let Some(p) = old {
        tx.release(&scope(p), &format!("{kind}:{id}"))
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// 409 `QosPolicyInUse` when a network or port still names `policy`; stale claims go.
pub(super) async fn check_unused(tx: &mut Tx, policy: &str) -> ApiResult<()> {
    let keys = tx
        .claimed_keys(&scope(policy), "", None, i64::MAX)
        .await
        .map_err(db)?;
    for key in keys {
        let Some((kind, id)) = key.split_once(':') else {
            continue;
        };
        let live = tx.get(kind, id).await.map_err(db)?;
        if live.is_some_and(|r| s(&r.body, "qos_policy_id") == policy) {
            return Err(ApiError::conflict(
                "QosPolicyInUse",
                format!("QoS Policy {policy} is used by {kind} {id}."),
            ));
        }
        tx.release(&scope(policy), &key).await.map_err(db)?;
    }
    Ok(())
}

/// A network or port going away releases its policy's claim.
pub(in crate::neutron) async fn unbind(tx: &mut Tx, kind: &str, rec: &Record) -> ApiResult<()> {
    if let Some(p) = rec.body.get("qos_policy_id").and_then(Value::as_str) {
        tx.release(&scope(p), &format!("{kind}:{}", rec.id))
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// The projects of the networks and ports naming `policy` (one entry per object).
pub(in crate::neutron) async fn policy_users(tx: &mut Tx, policy: &str) -> ApiResult<Vec<String>> {
    let keys = tx
        .claimed_keys(&scope(policy), "", None, i64::MAX)
        .await
        .map_err(db)?;
    let mut out = Vec::new();
    for key in keys {
        if let Some((kind, id)) = key.split_once(':') {
            if let Some(r) = tx.get(kind, id).await.map_err(db)? {
                if s(&r.body, "qos_policy_id") == policy {
                    out.push(r.project_id);
                }
            }
        }
    }
    Ok(out)
}
