//! Subnet pools: prefixes (stored merged and sorted), prefix-length bounds, per-project quota
//! counted in addresses (IPv4) or /64s (IPv6), one default pool per IP version, address-scope
//! membership without overlap, and the prefix operations. Subnets allocated from a pool are
//! claims in the `pool:<id>` scope, so two servers can never hand out overlapping prefixes;
//! allocation also locks the pool row so concurrent requests serialise per pool.

use ipnet::IpNet;
use neutrino_ipam as ipam;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use async_trait::async_trait;
use neutrino_types::resources as spec;

use super::kind::{apply_changes, Kind};
use super::scopes::{network_cidr_scope, prefix_key, rbac_key};
use super::{bump, s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/subnetpools`.
pub(super) static COLLECTION: Collection =
    Collection::new("subnetpools", "subnetpool", spec::SUBNETPOOL, &SubnetPools)
        .shared_through_rbac();

/// Subnet pools, shared through RBAC policies; prefixes change through actions.
struct SubnetPools;

#[async_trait]
impl Kind for SubnetPools {
    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_subnetpool(tx, ctx, body).await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        app.update_subnetpool(tx, ctx, rec, changes).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_subnetpool(tx, ctx, rec).await
    }

    fn actions(&self) -> &'static [&'static str] {
        &["add_prefixes", "remove_prefixes", "onboard_network_subnets"]
    }

    async fn action(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        app.subnetpool_action(tx, ctx, rec, action, body).await
    }
}

fn prefix_from_key(key: &str, v6: bool) -> Option<IpNet> {
    let (addr, len) = key.split_once('/')?;
    let addr = ipam::ip_from_key(addr, v6).ok()?;
    IpNet::new(addr, len.parse().ok()?).ok()
}

pub(super) fn pool_scope(pool: &str) -> String {
    format!("pool:{pool}")
}

fn parse_prefixes(v: &Value) -> ApiResult<Vec<IpNet>> {
    let list = v
        .as_array()
        .ok_or_else(|| ApiError::bad_request("Invalid input for prefixes. Reason: not a list."))?;
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let text = p.as_str().unwrap_or_default();
        let net = ipam::parse_cidr(text).map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid input for prefixes. Reason: '{p}' is not a valid IP subnet."
            ))
        })?;
        out.push(net);
    }
    Ok(out)
}

fn prefixes_of(pool: &Value) -> Vec<IpNet> {
    pool.get("prefixes")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|p| p.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn prefixes_json(list: &[IpNet]) -> Value {
    json!(list.iter().map(|p| p.to_string()).collect::<Vec<_>>())
}

/// An integer attribute; prefix lengths keep the JSON type the client sent (upstream
/// echoes `"24"` as given), so strings holding integers count too.
fn int(pool: &Value, key: &str) -> Option<i64> {
    match pool.get(key)? {
        Value::String(t) => t.trim().parse().ok(),
        v => v.as_i64(),
    }
}

/// Checks the prefix-length attributes of a body: non-negative integers (or their strings).
fn check_prefixlens(body: &Value) -> ApiResult<()> {
    for key in ["min_prefixlen", "max_prefixlen", "default_prefixlen"] {
        if let Some(v) = body.get(key) {
            if int(body, key).is_none_or(|n| n < 0) {
                return Err(ApiError::bad_request(format!(
                    "Invalid input for {key}. Reason: '{v}' is not a non-negative integer."
                )));
            }
        }
    }
    Ok(())
}

/// Checks `min <= default <= max <= 32/128` and returns the three values.
fn check_bounds(version: u8, min: i64, default: i64, max: i64) -> ApiResult<()> {
    let top = if version == 6 { 128 } else { 32 };
    if max > top {
        return Err(ApiError::bad(
            "IllegalSubnetPoolPrefixBounds",
            format!("Illegal prefix bounds: max_prefixlen={max}, max_prefixlen={top}."),
        ));
    }
    if min > max {
        return Err(ApiError::bad(
            "IllegalSubnetPoolPrefixBounds",
            format!("Illegal prefix bounds: min_prefixlen={min}, max_prefixlen={max}."),
        ));
    }
    if default < min || default > max {
        let (name, bound, value) = if default < min {
            ("min_prefixlen", min, default)
        } else {
            ("max_prefixlen", max, default)
        };
        return Err(ApiError::bad(
            "IllegalSubnetPoolPrefixBounds",
            format!("Illegal prefix bounds: default_prefixlen={value}, {name}={bound}."),
        ));
    }
    Ok(())
}

impl App {
    /// Prefixes already allocated from a pool.
    pub(super) async fn pool_allocations(
        &self,
        tx: &mut Tx,
        pool: &str,
        v6: bool,
    ) -> ApiResult<Vec<IpNet>> {
        let keys = tx
            .claimed_keys(&pool_scope(pool), "", None, i64::MAX)
            .await
            .map_err(db)?;
        Ok(keys.iter().filter_map(|k| prefix_from_key(k, v6)).collect())
    }

    /// Checks that a pool's prefixes overlap no other pool of the address scope.
    async fn check_scope_overlap(
        &self,
        tx: &mut Tx,
        scope: &str,
        pool_id: &str,
        prefixes: &[IpNet],
    ) -> ApiResult<()> {
        for other in self.scope_pools(tx, scope).await? {
            if other.id == pool_id {
                continue;
            }
            if let Some((a, b)) = ipam::any_overlap(prefixes, &prefixes_of(&other.body)) {
                return Err(ApiError::conflict(
                    "AddressScopePrefixConflict",
                    format!("Illegal subnetpool association: subnetpool {pool_id} cannot be associated with address scope {scope}: prefix {a} overlaps {b} of subnetpool {}.", other.id),
                ));
            }
        }
        Ok(())
    }

    /// Validates a pool joining address scope `scope` (visible to the caller, same version).
    async fn check_scope_association(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        scope: &str,
        version: u8,
        pool_id: &str,
        prefixes: &[IpNet],
    ) -> ApiResult<()> {
        let view = View::load(tx, "address_scope").await?;
        let rec = tx.get("address_scope", scope).await.map_err(db)?;
        let Some(rec) = rec.filter(|r| {
            ctx.owns(&r.project_id) || view.granted(&r.id, "access_as_shared", &ctx.project_id)
        }) else {
            return Err(ApiError::not_found("address_scope", scope));
        };
        if int(&rec.body, "ip_version") != Some(i64::from(version)) {
            return Err(ApiError::bad(
                "IllegalSubnetPoolIpVersionAssociationToAddressScope",
                format!("Illegal subnetpool association: subnetpool {pool_id} cannot associate with address scope {scope} because subnetpool ip_version is not {}.", int(&rec.body, "ip_version").unwrap_or(0)),
            ));
        }
        self.check_scope_overlap(tx, scope, pool_id, prefixes).await
    }

    async fn claim_default(&self, tx: &mut Tx, version: u8, pool: &str) -> ApiResult<()> {
        if !tx
            .claim("default-subnetpool", &version.to_string(), pool)
            .await
            .map_err(db)?
        {
            let owner = tx
                .claim_owner("default-subnetpool", &version.to_string())
                .await
                .map_err(db)?;
            if owner.as_deref() != Some(pool) {
                return Err(ApiError::invalid_input("A default subnetpool for this IP family has already been set. Only one default may exist per IP family"));
            }
        }
        Ok(())
    }

    pub(super) async fn create_subnetpool(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let doc = json!(body);
        let id = s(&doc, "id").to_string();
        let project = s(&doc, "project_id").to_string();
        if s(&doc, "name").is_empty() {
            return Err(ApiError::bad_request(
                "Invalid input for name. Reason: '' Blank strings are not permitted.",
            ));
        }
        let prefixes = parse_prefixes(&doc["prefixes"])?;
        if prefixes.is_empty() {
            return Err(ApiError::bad(
                "EmptySubnetPoolPrefixList",
                "Empty subnet pool prefix list.",
            ));
        }
        let version = ipam::same_version(&prefixes).ok_or_else(|| {
            ApiError::bad(
                "PrefixVersionMismatch",
                "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
            )
        })?;
        let prefixes = ipam::normalize_prefixes(&prefixes);
        let (dmin, dmax) = if version == 6 { (64, 128) } else { (8, 32) };
        check_prefixlens(&doc)?;
        let min = int(&doc, "min_prefixlen").unwrap_or(dmin);
        let max = int(&doc, "max_prefixlen").unwrap_or(dmax);
        let default = int(&doc, "default_prefixlen").unwrap_or(min);
        check_bounds(version, min, default, max)?;
        let shared = body
            .remove("shared")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let is_default = doc["is_default"].as_bool() == Some(true);
        if shared {
            self.check_rule(ctx, "create_subnetpool:shared", body)?;
        }
        if is_default {
            self.check_rule(ctx, "create_subnetpool:is_default", body)?;
        }
        if let Some(scope) = doc.get("address_scope_id").and_then(Value::as_str) {
            self.check_scope_association(tx, ctx, scope, version, &id, &prefixes)
                .await?;
        }
        if is_default {
            self.claim_default(tx, version, &id).await?;
        }
        if shared {
            self.insert_rbac(tx, &project, "subnetpool", &id, "access_as_shared", "*")
                .await?;
        }
        body.insert("prefixes".into(), prefixes_json(&prefixes));
        body.insert("ip_version".into(), json!(version));
        let keep = |key: &str, n: i64| doc.get(key).cloned().unwrap_or(json!(n));
        body.insert("min_prefixlen".into(), keep("min_prefixlen", min));
        body.insert("max_prefixlen".into(), keep("max_prefixlen", max));
        let default_value = match doc.get("default_prefixlen") {
            Some(v) => v.clone(),
            None => keep("min_prefixlen", min),
        };
        body.insert("default_prefixlen".into(), default_value);
        Ok(None)
    }

    pub(super) async fn update_subnetpool(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        let version = int(&rec.body, "ip_version").unwrap_or(4) as u8;
        let scope_now = s(&rec.body, "address_scope_id").to_string();
        if !ctx.is_admin() && !scope_now.is_empty() && changes.contains_key("prefixes") {
            let owner = tx
                .get("address_scope", &scope_now)
                .await
                .map_err(db)?
                .map(|r| r.project_id);
            if owner.as_deref() != Some(ctx.project_id.as_str()) {
                return Err(ApiError::bad(
                    "IllegalSubnetPoolUpdate",
                    format!("Illegal update to subnet pool {}: prefixes of a pool in a shared address scope owned by another project cannot be changed", rec.id),
                ));
            }
        }
        let mut prefixes = prefixes_of(&rec.body);
        if let Some(v) = changes.get("prefixes") {
            let new = parse_prefixes(v)?;
            if new.is_empty() {
                return Err(ApiError::bad(
                    "EmptySubnetPoolPrefixList",
                    "Empty subnet pool prefix list.",
                ));
            }
            if ipam::same_version(&new) != Some(version) {
                return Err(ApiError::bad(
                    "PrefixVersionMismatch",
                    "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
                ));
            }
            let new = ipam::normalize_prefixes(&new);
            if !ipam::contains_all(&new, &prefixes) {
                return Err(ApiError::bad(
                    "IllegalSubnetPoolPrefixUpdate",
                    "Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes",
                ));
            }
            prefixes = new;
        }
        check_prefixlens(&json!(changes))?;
        let changed = json!(changes);
        let get = |k: &str| int(&changed, k).or_else(|| int(&rec.body, k)).unwrap_or(0);
        check_bounds(
            version,
            get("min_prefixlen"),
            get("default_prefixlen"),
            get("max_prefixlen"),
        )?;
        let scope = match changes.get("address_scope_id") {
            Some(v) => v.as_str().map(str::to_string),
            None => rec
                .body
                .get("address_scope_id")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        if let Some(scope) = &scope {
            if changes.contains_key("address_scope_id") {
                self.check_scope_association(tx, ctx, scope, version, &rec.id, &prefixes)
                    .await?;
            } else if changes.contains_key("prefixes") {
                self.check_scope_overlap(tx, scope, &rec.id, &prefixes)
                    .await?;
            }
        }
        if let Some(d) = changes.get("is_default") {
            self.check_rule(
                ctx,
                "update_subnetpool:is_default",
                super::authz::body_of(rec),
            )?;
            if d.as_bool() == Some(true) {
                self.claim_default(tx, version, &rec.id).await?;
            } else if rec.body["is_default"] == true {
                tx.release("default-subnetpool", &version.to_string())
                    .await
                    .map_err(db)?;
            }
        }
        let scope_changed = changes.contains_key("address_scope_id")
            && changes.get("address_scope_id") != rec.body.get("address_scope_id");
        apply_changes(rec, changes);
        rec.body["prefixes"] = prefixes_json(&prefixes);
        if scope_changed {
            self.refresh_pool_networks(tx, &rec.id).await?;
        }
        Ok(())
    }

    pub(super) async fn delete_subnetpool(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        if tx.count_claims(&pool_scope(&rec.id)).await.map_err(db)? > 0 {
            return Err(ApiError::bad(
                "SubnetPoolDeleteError",
                "Unable to delete subnet pool: Subnet pool has existing allocations.",
            ));
        }
        if rec.body["is_default"] == true {
            let version = int(&rec.body, "ip_version").unwrap_or(4);
            tx.release("default-subnetpool", &version.to_string())
                .await
                .map_err(db)?;
        }
        let sel = Selector {
            parent_ids: Some(vec![rec.id.clone()]),
            ..Default::default()
        };
        for p in tx.list("rbac_policy", &sel).await.map_err(db)? {
            tx.release("rbac", &rbac_key(&p.body)).await.map_err(db)?;
            tx.delete("rbac_policy", &p.id).await.map_err(db)?;
        }
        Ok(())
    }

    pub(super) async fn subnetpool_action(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        let version = int(&rec.body, "ip_version").unwrap_or(4) as u8;
        let current = prefixes_of(&rec.body);
        let out = match action {
            "add_prefixes" | "remove_prefixes" => {
                let given = parse_prefixes(body.get("prefixes").unwrap_or(&json!([])))?;
                if !given.is_empty() && ipam::same_version(&given) != Some(version) {
                    return Err(ApiError::bad(
                        "PrefixVersionMismatch",
                        "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
                    ));
                }
                let new = if action == "add_prefixes" {
                    let mut all = current.clone();
                    all.extend(given);
                    ipam::normalize_prefixes(&all)
                } else {
                    let allocated = self.pool_allocations(tx, &rec.id, version == 6).await?;
                    if allocated
                        .iter()
                        .any(|a| given.iter().any(|g| ipam::overlaps(*a, *g)))
                    {
                        return Err(ApiError::bad(
                            "IllegalSubnetPoolPrefixUpdate",
                            "Illegal update to prefixes: One or more the prefixes to be removed is in use by a subnet.",
                        ));
                    }
                    ipam::remove_prefixes(&current, &given)
                };
                if let Some(scope) = rec
                    .body
                    .get("address_scope_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                {
                    self.check_scope_overlap(tx, &scope, &rec.id, &new).await?;
                }
                rec.body["prefixes"] = prefixes_json(&new);
                json!({"prefixes": prefixes_json(&new)})
            }
            _ => {
                let network = body
                    .get("network_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::bad_request("Failed to parse request. Required attribute 'network_id' not specified"))?
                    .to_string();
                self.onboard_network(tx, ctx, rec, &network, version)
                    .await?
            }
        };
        bump(&mut rec.body);
        tx.update("subnetpool", &rec.id, &rec.body)
            .await
            .map_err(db)?;
        Ok(out)
    }

    /// `onboard_network_subnets`: moves a network's subnets of the pool's version into it.
    async fn onboard_network(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        network: &str,
        version: u8,
    ) -> ApiResult<Value> {
        let view = View::load(tx, "subnet").await?;
        let net = tx.get("network", network).await.map_err(db)?;
        let Some(net) = net.filter(|n| view.network_visible(ctx, n)) else {
            return Err(ApiError::not_found("network", network));
        };
        if !ctx.owns(&net.project_id) {
            return Err(ApiError::forbidden("onboard_network_subnets"));
        }
        let allocated = self.pool_allocations(tx, &rec.id, version == 6).await?;
        let mut moved = Vec::new();
        let mut prefixes = prefixes_of(&rec.body);
        for mut sn in self.network_subnets(tx, network).await? {
            if int(&sn.body, "ip_version") != Some(i64::from(version))
                || s(&sn.body, "subnetpool_id") == rec.id
            {
                continue;
            }
            let cidr: IpNet = s(&sn.body, "cidr")
                .parse()
                .map_err(|_| ApiError::internal())?;
            if allocated.iter().any(|a| ipam::overlaps(*a, cidr)) {
                return Err(ApiError::bad(
                    "IllegalSubnetPoolUpdate",
                    format!("Illegal update to subnet pool: subnet {cidr} overlaps an allocation of the pool."),
                ));
            }
            tx.claim(&pool_scope(&rec.id), &prefix_key(cidr), &sn.id)
                .await
                .map_err(db)?;
            prefixes.push(cidr);
            sn.body["subnetpool_id"] = json!(rec.id);
            let scope = network_cidr_scope(network, i64::from(version));
            tx.release(&scope, &prefix_key(cidr)).await.map_err(db)?;
            tx.claim(&scope, &prefix_key(cidr), &format!("{}|{}", sn.id, rec.id))
                .await
                .map_err(db)?;
            bump(&mut sn.body);
            tx.update("subnet", &sn.id, &sn.body).await.map_err(db)?;
            moved.push(json!({"id": sn.id, "cidr": cidr.to_string()}));
        }
        let prefixes = ipam::normalize_prefixes(&prefixes);
        if let Some(scope) = rec
            .body
            .get("address_scope_id")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            self.check_scope_overlap(tx, &scope, &rec.id, &prefixes)
                .await?;
        }
        rec.body["prefixes"] = prefixes_json(&prefixes);
        self.refresh_network_scopes(tx, network).await?;
        Ok(json!(moved))
    }

    /// Recomputes `ipv4_address_scope` / `ipv6_address_scope` of a network from the pools of
    /// its subnets.
    pub(super) async fn refresh_network_scopes(&self, tx: &mut Tx, network: &str) -> ApiResult<()> {
        let Some(mut net) = tx.get("network", network).await.map_err(db)? else {
            return Ok(());
        };
        // All subnets of one version on a network come from one pool (or none).
        let mut scopes = [Value::Null, Value::Null];
        for (slot, version) in [(0, 4), (1, 6)] {
            let pool = self
                .network_pool(tx, network, version)
                .await?
                .unwrap_or_default();
            if pool.is_empty() {
                continue;
            }
            if let Some(p) = tx.get("subnetpool", &pool).await.map_err(db)? {
                scopes[slot] = p
                    .body
                    .get("address_scope_id")
                    .cloned()
                    .unwrap_or(Value::Null);
            }
        }
        let [v4, v6] = scopes;
        if net.body["ipv4_address_scope"] != v4 || net.body["ipv6_address_scope"] != v6 {
            net.body["ipv4_address_scope"] = v4;
            net.body["ipv6_address_scope"] = v6;
            tx.update("network", network, &net.body).await.map_err(db)?;
        }
        Ok(())
    }

    /// After a pool changed scope: refresh every network with a subnet from it.
    async fn refresh_pool_networks(&self, tx: &mut Tx, pool: &str) -> ApiResult<()> {
        let mut networks: Vec<String> = tx
            .list("subnet", &Selector::default())
            .await
            .map_err(db)?
            .into_iter()
            .filter(|sn| s(&sn.body, "subnetpool_id") == pool)
            .filter_map(|sn| sn.parent_id)
            .collect();
        networks.sort();
        networks.dedup();
        // The pool row is written by the caller after this; make the new scope visible now.
        for n in networks {
            self.refresh_network_scopes(tx, &n).await?;
        }
        Ok(())
    }

    /// Chooses (and claims) the CIDR of a subnet allocated from a pool.
    ///
    /// `requested`: the explicit CIDR, or None for "any" of `prefixlen` (pool default when
    /// None). Locks the pool row first, so allocations in one pool are serialised.
    pub(super) async fn allocate_from_pool(
        &self,
        tx: &mut Tx,
        pool: &Record,
        project: &str,
        subnet_id: &str,
        requested: Option<IpNet>,
        prefixlen: Option<i64>,
    ) -> ApiResult<IpNet> {
        tx.lock("subnetpool", &pool.id).await.map_err(db)?;
        let v6 = int(&pool.body, "ip_version") == Some(6);
        let min = int(&pool.body, "min_prefixlen").unwrap_or(0);
        let max = int(&pool.body, "max_prefixlen").unwrap_or(128);
        let len = requested
            .map(|c| i64::from(c.prefix_len()))
            .or(prefixlen)
            .unwrap_or_else(|| int(&pool.body, "default_prefixlen").unwrap_or(min));
        if len > max {
            return Err(ApiError::bad(
                "MaxPrefixSubnetAllocationError",
                format!("Unable to allocate subnet with prefix length {len}, maximum allowed prefix is {max}."),
            ));
        }
        if len < min {
            return Err(ApiError::bad(
                "MinPrefixSubnetAllocationError",
                format!("Unable to allocate subnet with prefix length {len}, minimum allowed prefix is {min}."),
            ));
        }
        let prefixes = prefixes_of(&pool.body);
        let allocated = self.pool_allocations(tx, &pool.id, v6).await?;
        let cidr = match requested {
            Some(c) => {
                if !ipam::prefix_is_free(&prefixes, &allocated, c) {
                    return Err(ApiError::conflict(
                        "SubnetAllocationError",
                        "Failed to allocate subnet: Cannot allocate requested subnet from the available set of prefixes.",
                    ));
                }
                c
            }
            None => ipam::lowest_free_prefix(&prefixes, &allocated, len as u8).ok_or_else(|| {
                ApiError::conflict(
                    "SubnetAllocationError",
                    format!("Failed to allocate subnet: Insufficient prefix space to allocate subnet size /{len}."),
                )
            })?,
        };
        if let Some(quota) = int(&pool.body, "default_quota").filter(|q| *q > 0) {
            let mut used: u128 = 0;
            let mine = Selector {
                project_ids: Some(vec![project.to_string()]),
                ..Default::default()
            };
            for sn in tx.list("subnet", &mine).await.map_err(db)? {
                if s(&sn.body, "subnetpool_id") == pool.id {
                    if let Ok(c) = s(&sn.body, "cidr").parse::<IpNet>() {
                        used += ipam::prefix_quota_units(c);
                    }
                }
            }
            if used + ipam::prefix_quota_units(cidr) > quota as u128 {
                return Err(ApiError::conflict(
                    "SubnetPoolQuotaExceeded",
                    "Per-tenant subnet pool prefix quota exceeded.",
                ));
            }
        }
        if !tx
            .claim(&pool_scope(&pool.id), &prefix_key(cidr), subnet_id)
            .await
            .map_err(db)?
        {
            return Err(ApiError::conflict(
                "SubnetAllocationError",
                "Failed to allocate subnet: Cannot allocate requested subnet from the available set of prefixes.",
            ));
        }
        Ok(cidr)
    }

    /// Returns a subnet's prefix to its pool (no-op for subnets not from a pool).
    pub(super) async fn release_pool_prefix(&self, tx: &mut Tx, subnet: &Record) -> ApiResult<()> {
        let pool = s(&subnet.body, "subnetpool_id");
        if let (false, Ok(cidr)) = (pool.is_empty(), s(&subnet.body, "cidr").parse::<IpNet>()) {
            tx.release(&pool_scope(pool), &prefix_key(cidr))
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    /// The default pool of an IP version visible to the caller.
    pub(super) async fn default_pool(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        version: u8,
    ) -> ApiResult<Option<Record>> {
        let Some(id) = tx
            .claim_owner("default-subnetpool", &version.to_string())
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let view = View::load(tx, "subnetpool").await?;
        Ok(tx.get("subnetpool", &id).await.map_err(db)?.filter(|p| {
            ctx.owns(&p.project_id) || view.granted(&p.id, "access_as_shared", &ctx.project_id)
        }))
    }
}
