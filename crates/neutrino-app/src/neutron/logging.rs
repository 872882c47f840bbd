//! Security-group logging, wire-compatible with Neutron's `log` service plugin:
//! `/v2.0/log/logs` and `GET /v2.0/log/loggable-resources` (extensions `logging` and
//! `network-log`). Admin-only by default policy, as upstream. Only `name`, `description` and
//! `enabled` change after create.
//!
//! A log names a security group (`resource_id`), a port (`target_id`), both (the port must
//! be a member of the group) or neither (every port of the log's project). As upstream, a
//! named port must exist and be bound to a host (whose agent logs); the security group and
//! the port are checked under a row lock. The agents realise enabled logs as rate-limited
//! nftables `log` statements in the security-group chains ([`neutrino_firewall`]'s compile).

use async_trait::async_trait;
use neutrino_store::Tx;
use neutrino_types::logging::{
    self as spec, check_log, invalid_constraint, resource_not_found, target_not_found,
    type_not_supported,
};
use neutrino_types::ApiResult;
use serde_json::{json, Value};

use super::kind::Kind;
use super::{lock_existing, s, Collection, Doc};
use crate::{App, Context};

/// `/v2.0/log/logs`.
pub(crate) static LOGS: Collection =
    Collection::new("log/logs", "log", spec::LOG, &Logs).untagged();

/// Log objects.
struct Logs;

#[async_trait]
impl Kind for Logs {
    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        if body.contains_key("resource_type") {
            check_log(body)?;
        }
        Ok(())
    }

    async fn create(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let doc = Value::Object(body.clone());
        let (group, port) = (s(&doc, "resource_id"), s(&doc, "target_id"));
        if !group.is_empty() {
            lock_existing(tx, "security_group", group, || resource_not_found(group)).await?;
        }
        if !port.is_empty() {
            let p = lock_existing(tx, "port", port, || target_not_found(port)).await?;
            if s(&p.body, "binding:host_id").is_empty() {
                return Err(type_not_supported(s(&doc, "resource_type"), port));
            }
            let member = p.body["security_groups"]
                .as_array()
                .is_some_and(|l| l.iter().any(|g| g.as_str() == Some(group)));
            if !group.is_empty() && !member {
                return Err(invalid_constraint(group, port));
            }
        }
        Ok(None)
    }
}

impl App {
    /// Deletes the logs naming `id` as their security group or port, which is going away
    /// (as upstream, a log goes with its resource). Meant for the deletes of both.
    pub(super) async fn delete_logs_naming(&self, tx: &mut Tx, id: &str) -> ApiResult<()> {
        let logs = tx
            .list("log", &neutrino_store::Selector::default())
            .await
            .map_err(crate::db)?;
        for log in logs {
            if s(&log.body, "resource_id") == id || s(&log.body, "target_id") == id {
                tx.delete("log", &log.id).await.map_err(crate::db)?;
            }
        }
        Ok(())
    }

    /// `GET /v2.0/log/loggable-resources`.
    pub async fn loggable_resources(&self, ctx: &Context) -> ApiResult<Value> {
        self.check_rule(ctx, "get_loggable_resource", &Doc::new())?;
        let types: Vec<Value> = spec::LOGGABLE_TYPES
            .iter()
            .map(|t| json!({ "type": t }))
            .collect();
        Ok(json!({ "loggable_resources": types }))
    }
}
