//! Quotas: per-project limits with defaults, usage counted from the store inside the request's
//! transaction (so a bulk create counts its own items), and the `/v2.0/quotas` API.

use neutrino_store::Tx;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Map, Value};

use super::authz::project_target;
use crate::{db, App, Context};

/// Quota resources and their built-in default limits (-1 = unlimited); the server's
/// `--default-quota RESOURCE=N` replaces a default (Neutron's `[quotas] quota_<resource>`).
pub const QUOTA_RESOURCES: &[(&str, i64)] = &[
    ("network", 100),
    ("subnet", 100),
    ("subnetpool", -1),
    ("port", 500),
    ("router", 10),
    ("floatingip", 50),
    ("security_group", 10),
    ("security_group_rule", 100),
    ("rbac_policy", 10),
    ("router_route", 30),
    ("flow_classifier", 100),
    ("port_pair", 100),
    ("port_pair_group", 10),
    ("port_chain", 10),
    // Upstream registers `quota_service_graphs` for the resource `service_graph`, so the
    // configured 10 never applies and Neutron's default (unlimited) does.
    ("service_graph", -1),
    ("trunk", -1),
];

/// Whether `resource` has a quota.
pub fn is_quota_resource(resource: &str) -> bool {
    QUOTA_RESOURCES.iter().any(|(r, _)| *r == resource)
}

impl App {
    /// The default limits: the built-in ones with the configured replacements.
    fn default_limits(&self) -> Vec<(&'static str, i64)> {
        let configured = &self.config().default_quotas;
        QUOTA_RESOURCES
            .iter()
            .map(|(name, builtin)| (*name, configured.get(*name).copied().unwrap_or(*builtin)))
            .collect()
    }

    /// A project's limits: its own where set, else the defaults.
    async fn limits(&self, tx: &mut Tx, project: &str) -> ApiResult<Vec<(&'static str, i64)>> {
        let explicit = tx.quotas(project).await.map_err(db)?;
        Ok(self
            .default_limits()
            .into_iter()
            .map(|(name, default)| {
                let limit = explicit
                    .iter()
                    .find(|(r, _)| r == name)
                    .map(|(_, l)| *l)
                    .unwrap_or(default);
                (name, limit)
            })
            .collect())
    }

    /// Refuses a create that would take `project` over its limit for `resource`.
    pub(super) async fn check_quota(
        &self,
        tx: &mut Tx,
        project: &str,
        resource: &str,
        adding: i64,
    ) -> ApiResult<()> {
        let Some((_, default)) = self
            .default_limits()
            .into_iter()
            .find(|(r, _)| *r == resource)
        else {
            return Ok(());
        };
        check(tx, project, resource, default, adding).await
    }
}

async fn check(
    tx: &mut Tx,
    project: &str,
    resource: &str,
    default: i64,
    adding: i64,
) -> ApiResult<()> {
    let explicit = tx.quotas(project).await.map_err(db)?;
    let limit = explicit
        .iter()
        .find(|(r, _)| r == resource)
        .map(|(_, l)| *l)
        .unwrap_or(default);
    if limit < 0 {
        return Ok(());
    }
    let used = tx.count_owned(resource, project).await.map_err(db)?;
    if used + adding > limit {
        return Err(ApiError::conflict(
            "OverQuota",
            format!("Quota exceeded for resources: ['{resource}']."),
        ));
    }
    Ok(())
}

fn as_object(limits: &[(&str, i64)]) -> Map<String, Value> {
    limits
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

impl App {
    /// `GET /v2.0/quotas`: projects with non-default limits (admin).
    pub async fn quota_list(&self, ctx: &Context) -> ApiResult<Value> {
        // Neutron's target here is empty: only rules that need no project pass.
        self.check_rule(ctx, "get_quota", &Map::new())?;
        let mut tx = self.read().await?;
        let mut out = Vec::new();
        for project in tx.quota_projects().await.map_err(db)? {
            let mut q = as_object(&self.limits(&mut tx, &project).await?);
            q.insert("project_id".into(), json!(project));
            q.insert("tenant_id".into(), json!(project));
            out.push(Value::Object(q));
        }
        Ok(json!({"quotas": out}))
    }

    /// `GET /v2.0/quotas/{project}`.
    pub async fn quota_show(&self, ctx: &Context, project: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_quota", &project_target(project))?;
        let mut tx = self.read().await?;
        Ok(json!({"quota": as_object(&self.limits(&mut tx, project).await?)}))
    }

    /// `GET /v2.0/quotas/{project}/default`.
    pub async fn quota_defaults(&self, ctx: &Context, project: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_quota", &project_target(project))?;
        let defaults = self.default_limits();
        Ok(json!({"quota": as_object(&defaults)}))
    }

    /// `GET /v2.0/quotas/{project}/details`: limit, used and reserved per resource.
    pub async fn quota_details(&self, ctx: &Context, project: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_quota", &project_target(project))?;
        let mut tx = self.read().await?;
        let mut out = Map::new();
        for (name, limit) in self.limits(&mut tx, project).await? {
            let used = tx.count_owned(name, project).await.map_err(db)?;
            out.insert(
                name.to_string(),
                json!({"limit": limit, "used": used, "reserved": 0}),
            );
        }
        Ok(json!({"quota": out}))
    }

    /// `PUT /v2.0/quotas/{project}` (admin): set limits; lowering below usage needs `force`.
    pub async fn quota_update(
        &self,
        ctx: &Context,
        project: &str,
        body: &Value,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "update_quota", &project_target(project))?;
        let quota = body
            .get("quota")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_request("Unable to find 'quota' in request body"))?;
        let flag = |k: &str| {
            quota
                .get(k)
                .map(|v| neutrino_types::attrs::to_bool(v).unwrap_or(false))
        };
        // `force: true` or `check_limit: false` skips the usage check (the CLI sends check_limit).
        let force = flag("force").unwrap_or(false) || flag("check_limit") == Some(false);
        let mut tx = self.write().await?;
        for (name, value) in quota {
            if name == "force" || name == "check_limit" {
                continue;
            }
            if !is_quota_resource(name) {
                return Err(ApiError::bad_request(format!(
                    "Unrecognized attribute(s) '{name}'"
                )));
            }
            let limit = value
                .as_i64()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .filter(|l| (-1..=i64::from(i32::MAX)).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid input for {name}. Reason: '{value}' is not an integer or is out of range [-1, {}].",
                        i32::MAX
                    ))
                })?;
            if !force && limit >= 0 {
                let used = tx.count_owned(name, project).await.map_err(db)?;
                if limit < used {
                    return Err(ApiError::bad_request(format!(
                        "Quota limit {limit} for {name} must be greater than or equal to already used {used}"
                    )));
                }
            }
            tx.set_quota(project, name, limit).await.map_err(db)?;
        }
        let out = as_object(&self.limits(&mut tx, project).await?);
        tx.commit().await.map_err(db)?;
        Ok(json!({"quota": out}))
    }

    /// `DELETE /v2.0/quotas/{project}` (admin): back to defaults.
    pub async fn quota_delete(&self, ctx: &Context, project: &str) -> ApiResult<()> {
        self.check_rule(ctx, "delete_quota", &project_target(project))?;
        let mut tx = self.write().await?;
        tx.delete_quotas(project).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }
}
