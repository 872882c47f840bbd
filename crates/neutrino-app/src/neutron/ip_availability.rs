//! Network IP availability (`/v2.0/network-ip-availabilities`, admin only): per network and
//! subnet, how many addresses the allocation pools hold and how many are in use.

use neutrino_ipam as ipam;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::s;
use super::subnets::SubnetInfo;
use crate::{db, App, Context};

impl App {
    async fn availability(&self, tx: &mut Tx, net: &Record) -> ApiResult<Value> {
        let mut subnets = Vec::new();
        let (mut total, mut used) = (0u128, 0i64);
        for sn in self.network_subnets(tx, &net.id).await? {
            let Some(info) = SubnetInfo::from_record(&sn) else {
                continue;
            };
            let size = ipam::pools_size(&info.pools);
            let in_use = tx
                .count_claims(&format!("ip:{}", sn.id))
                .await
                .map_err(db)?;
            total = total.saturating_add(size);
            used += in_use;
            subnets.push(json!({
                "subnet_id": sn.id, "subnet_name": s(&sn.body, "name"), "cidr": s(&sn.body, "cidr"),
                "ip_version": sn.body["ip_version"], "total_ips": size.min(u128::from(u64::MAX)) as u64,
                "used_ips": in_use,
            }));
        }
        Ok(json!({
            "network_id": net.id, "network_name": s(&net.body, "name"),
            "project_id": net.project_id, "tenant_id": net.project_id,
            "total_ips": total.min(u128::from(u64::MAX)) as u64, "used_ips": used,
            "subnet_ip_availability": subnets,
        }))
    }

    /// `GET /v2.0/network-ip-availabilities` with `network_id`, `network_name`, `project_id`
    /// / `tenant_id` and `ip_version` filters.
    pub async fn ip_availabilities(
        &self,
        ctx: &Context,
        filters: &[(String, String)],
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "get_network_ip_availability", &Default::default())?;
        let wanted = |k: &str| -> Vec<&str> {
            filters
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let mut tx = self.read().await?;
        let ids = wanted("network_id");
        let sel = Selector {
            ids: (!ids.is_empty()).then(|| ids.iter().map(|i| i.to_string()).collect()),
            ..Default::default()
        };
        let names = wanted("network_name");
        let mut projects = wanted("project_id");
        projects.extend(wanted("tenant_id"));
        let versions = wanted("ip_version");
        let mut out = Vec::new();
        for net in tx.list("network", &sel).await.map_err(db)? {
            if !names.is_empty() && !names.contains(&s(&net.body, "name")) {
                continue;
            }
            if !projects.is_empty() && !projects.contains(&net.project_id.as_str()) {
                continue;
            }
            let mut item = self.availability(&mut tx, &net).await?;
            if !versions.is_empty() {
                let subnets = item["subnet_ip_availability"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let keep: Vec<Value> = subnets
                    .into_iter()
                    .filter(|sn| versions.contains(&sn["ip_version"].to_string().as_str()))
                    .collect();
                if keep.is_empty() {
                    continue;
                }
                item["subnet_ip_availability"] = json!(keep);
            }
            out.push(item);
        }
        Ok(json!({"network_ip_availabilities": out}))
    }

    /// `GET /v2.0/network-ip-availabilities/{network_id}`.
    pub async fn ip_availability(&self, ctx: &Context, network: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_network_ip_availability", &Default::default())?;
        let mut tx = self.read().await?;
        let net = tx
            .get("network", network)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("network", network))?;
        Ok(json!({"network_ip_availability": self.availability(&mut tx, &net).await?}))
    }
}
