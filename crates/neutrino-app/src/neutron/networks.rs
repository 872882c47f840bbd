//! Networks: segment allocation (VXLAN ids from the configured range, VLAN ids per physical
//! network, flat networks once per physical network), MTU, `shared` and `router:external`
//! through RBAC policies, and delete rules.

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use async_trait::async_trait;
use neutrino_types::resources as spec;

use super::authz::Extras;
use super::kind::Kind;
use super::owners::FLOATINGIP_OWNER;
use super::scopes::{network_cidr_scope, rbac_key};
use super::view::{narrow, own_ids, Need, View};
use super::{s, Collection, Doc};
use crate::{db, new_id, App, Context};

/// `/v2.0/networks`.
pub(super) static COLLECTION: Collection =
    Collection::new("networks", "network", spec::NETWORK, &Networks)
        .reread()
        .shared_through_rbac();

/// Networks, shared and external through RBAC policies.
struct Networks;

#[async_trait]
impl Kind for Networks {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        _need: Need,
    ) -> ApiResult<()> {
        view.load_subnet_ids(tx, narrow(own_ids(records))).await?;
        view.load_zones(tx, "network", records).await
    }

    fn visible_to_others(&self, view: &View, ctx: &Context, rec: &Record) -> bool {
        view.network_visible(ctx, rec)
    }

    fn policy_extras(&self, view: &View, _ctx: &Context, rec: &Record) -> Extras {
        vec![("router:external", Value::Bool(view.is_external(rec)))]
    }

    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        match body.get("dns_domain").and_then(Value::as_str) {
            Some(domain) => neutrino_types::dns::check_dns_domain(domain),
            None => Ok(()),
        }
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        doc.entry("dns_domain").or_insert(json!(""));
        let subnets = view.subnet_ids.get(&rec.id).cloned().unwrap_or_default();
        doc.insert("subnets".into(), json!(subnets));
        doc.insert("availability_zones".into(), view.zones_of(&rec.id));
        doc.remove(super::owners::DHCP_HOSTS);
        if doc.get("router:external") == Some(&Value::Bool(true)) {
            let is_default = doc.get("is_default") == Some(&Value::Bool(true));
            doc.insert("is_default".into(), json!(is_default));
        } else {
            doc.remove("is_default");
        }
    }

    async fn before_create(&self, app: &App, tx: &mut Tx, ctx: &Context) -> ApiResult<()> {
        // Like Neutron: a project's first network brings its default security group.
        app.ensure_default_group(tx, &ctx.project_id).await?;
        Ok(())
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        super::qos::bind_on_create(tx, ctx, "network", body).await?;
        app.create_network(tx, ctx, body).await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        if let Some(new) = changes.get("qos_policy_id") {
            let old = rec.body.get("qos_policy_id").and_then(Value::as_str);
            super::qos::rebind(
                tx,
                ctx,
                "network",
                &rec.id,
                &rec.project_id,
                old,
                new.as_str(),
            )
            .await?;
        }
        app.update_network(tx, ctx, rec, changes).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_network(tx, ctx, rec).await
    }

    async fn after_delete(&self, _app: &App, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        super::qos::unbind(tx, "network", rec).await
    }
}

/// VXLAN header overhead subtracted from the underlay MTU.
const VXLAN_OVERHEAD: u32 = 50;
const NETWORK_TYPES: &[&str] = &["vxlan", "vlan", "flat", "local"];
/// Claim keys are zero-padded so that text order is numeric order.
pub(super) fn seg_key(id: u32) -> String {
    format!("{id:010}")
}

pub(super) fn seg_scope(network_type: &str, physnet: Option<&str>) -> String {
    match physnet {
        Some(p) => format!("segment:{network_type}:{p}"),
        None => format!("segment:{network_type}"),
    }
}

/// Neutron's `NoNetworkAvailable`.
pub(super) fn no_network_available() -> ApiError {
    ApiError::new(
        503,
        "NoNetworkAvailable",
        "Unable to create the network. No tenant network is available for allocation.",
    )
}

impl App {
    fn max_mtu(&self, network_type: &str) -> u32 {
        match network_type {
            "vxlan" => self.config().global_mtu - VXLAN_OVERHEAD,
            _ => self.config().global_mtu,
        }
    }

    /// The lowest unclaimed id in `[from, to]` of a scope, read in batches.
    async fn first_free_segment(
        &self,
        tx: &mut Tx,
        scope: &str,
        from: u32,
        to: u32,
    ) -> ApiResult<Option<u32>> {
        const BATCH: usize = 256;
        let mut cursor = from;
        while cursor <= to {
            let upper = seg_key(to.saturating_add(1));
            let taken = tx
                .claimed_keys(scope, &seg_key(cursor), Some(&upper), BATCH as i64)
                .await
                .map_err(db)?;
            let taken: Vec<u32> = taken.iter().filter_map(|k| k.parse().ok()).collect();
            let mut candidate = cursor;
            for &n in &taken {
                if n == candidate {
                    candidate += 1;
                } else if n > candidate {
                    break;
                }
            }
            if candidate <= to && (taken.len() < BATCH || taken.iter().any(|&n| n > candidate)) {
                return Ok(Some(candidate));
            }
            if taken.len() < BATCH {
                return Ok(None);
            }
            cursor = candidate;
        }
        Ok(None)
    }

    /// Claims the lowest free id in `[lo, hi]`; after a lost race (another server claimed it
    /// first), retries from a random point, wrapping around.
    async fn allocate_segment(
        &self,
        tx: &mut Tx,
        scope: &str,
        lo: u32,
        hi: u32,
        owner: &str,
    ) -> ApiResult<u32> {
        self.try_allocate_segment(tx, scope, lo, hi, owner)
            .await?
            .ok_or_else(no_network_available)
    }

    /// [`App::allocate_segment`], `None` when `[lo, hi]` has no free id.
    pub(super) async fn try_allocate_segment(
        &self,
        tx: &mut Tx,
        scope: &str,
        lo: u32,
        hi: u32,
        owner: &str,
    ) -> ApiResult<Option<u32>> {
        let span = u64::from(hi - lo) + 1;
        for attempt in 0..16 {
            // The lowest free id first; after a lost race, from a random point.
            let start = if attempt == 0 {
                lo
            } else {
                lo + (rand::random::<u64>() % span) as u32
            };
            let mut found = self.first_free_segment(tx, scope, start, hi).await?;
            if found.is_none() && start > lo {
                found = self.first_free_segment(tx, scope, lo, start - 1).await?;
            }
            let Some(id) = found else { break };
            if tx.claim(scope, &seg_key(id), owner).await.map_err(db)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    pub(super) async fn create_network(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let id = s(&json!(body), "id").to_string();
        // Who may set `shared`, `router:external`, `is_default` and `provider:*` is the
        // policy's (`create_network:<attribute>`), checked before this runs.
        let requested_type = body
            .get("provider:network_type")
            .and_then(Value::as_str)
            .map(str::to_string);
        let physnet = body
            .get("provider:physical_network")
            .and_then(Value::as_str)
            .map(str::to_string);
        let seg_id = body.get("provider:segmentation_id").and_then(Value::as_i64);
        let network_type = requested_type
            .clone()
            .unwrap_or_else(|| "vxlan".to_string());
        if !NETWORK_TYPES.contains(&network_type.as_str()) {
            return Err(ApiError::invalid_input(format!(
                "network_type value '{network_type}' not supported"
            )));
        }
        let (physnet, seg) = match network_type.as_str() {
            "vxlan" => {
                if physnet.is_some() {
                    return Err(ApiError::invalid_input(
                        "provider:physical_network specified for vxlan network",
                    ));
                }
                let (lo, hi) = self.config().vni_range;
                let scope = seg_scope("vxlan", None);
                let vni = match seg_id {
                    Some(v) => {
                        if !(1..=16_777_215).contains(&v) {
                            return Err(ApiError::invalid_input(
                                "segmentation_id out of range (1 through 16777215)",
                            ));
                        }
                        if !tx
                            .claim(&scope, &seg_key(v as u32), &id)
                            .await
                            .map_err(db)?
                        {
                            return Err(ApiError::conflict(
                                "TunnelIdInUse",
                                format!(
                                    "Unable to create the network. The tunnel ID {v} is in use."
                                ),
                            ));
                        }
                        v as u32
                    }
                    None => {
                        let project = s(&json!(body), "project_id").to_string();
                        match self.allocate_tenant_vni(tx, &scope, &project, &id).await? {
                            Some(vni) => vni,
                            None => self.allocate_segment(tx, &scope, lo, hi, &id).await?,
                        }
                    }
                };
                (None, Some(vni))
            }
            "vlan" => {
                let physnet = physnet.ok_or_else(|| {
                    ApiError::invalid_input("physical_network required for VLAN provider network")
                })?;
                if !self.config().physical_networks.contains(&physnet) {
                    return Err(ApiError::invalid_input(format!(
                        "physical_network '{physnet}' unknown for VLAN provider network"
                    )));
                }
                let scope = seg_scope("vlan", Some(&physnet));
                let vlan = match seg_id {
                    Some(v) => {
                        if !(1..=4094).contains(&v) {
                            return Err(ApiError::invalid_input(
                                "segmentation_id out of range (1 through 4094)",
                            ));
                        }
                        if !tx
                            .claim(&scope, &seg_key(v as u32), &id)
                            .await
                            .map_err(db)?
                        {
                            return Err(ApiError::conflict("VlanIdInUse", format!("Unable to create the network. The VLAN {v} on physical network {physnet} is in use.")));
                        }
                        v as u32
                    }
                    None => self.allocate_segment(tx, &scope, 1, 4094, &id).await?,
                };
                (Some(physnet), Some(vlan))
            }
            "flat" => {
                let physnet = physnet.ok_or_else(|| {
                    ApiError::invalid_input("physical_network required for flat provider network")
                })?;
                if seg_id.is_some() {
                    return Err(ApiError::invalid_input(
                        "segmentation_id specified for flat network",
                    ));
                }
                if !self.config().physical_networks.contains(&physnet) {
                    return Err(ApiError::invalid_input(format!(
                        "physical_network '{physnet}' unknown for flat provider network"
                    )));
                }
                if !tx
                    .claim(&seg_scope("flat", None), &physnet, &id)
                    .await
                    .map_err(db)?
                {
                    return Err(ApiError::conflict("FlatNetworkInUse", format!("Unable to create the flat network. Physical network {physnet} is in use.")));
                }
                (Some(physnet), None)
            }
            _ => (None, None),
        };
        let max = self.max_mtu(&network_type);
        let mtu = match body.get("mtu").and_then(Value::as_u64) {
            Some(m) if m as u32 > max => {
                return Err(ApiError::invalid_input(format!(
                    "Requested MTU is too big, maximum is {max}"
                )))
            }
            Some(m) => m as u32,
            None => max,
        };
        body.insert("mtu".into(), json!(mtu));
        body.insert("provider:network_type".into(), json!(network_type));
        body.insert("provider:physical_network".into(), json!(physnet));
        body.insert("provider:segmentation_id".into(), json!(seg));
        body.insert("status".into(), json!("ACTIVE"));
        self.check_zone_hints(tx, "network", &json!(body)).await?;
        body.insert("availability_zones".into(), json!([]));
        body.insert("ipv4_address_scope".into(), Value::Null);
        body.insert("ipv6_address_scope".into(), Value::Null);
        let shared = body
            .remove("shared")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let project = s(&json!(body), "project_id").to_string();
        if shared {
            self.insert_rbac(tx, &project, "network", &id, "access_as_shared", "*")
                .await?;
        }
        let is_default = body.remove("is_default").and_then(|v| v.as_bool());
        if body.get("router:external").and_then(Value::as_bool) == Some(true) {
            self.insert_rbac(tx, &project, "network", &id, "access_as_external", "*")
                .await?;
            let is_default = is_default == Some(true);
            if is_default {
                claim_default_external(tx, &id).await?;
            }
            body.insert("is_default".into(), json!(is_default));
        }
        Ok(None)
    }

    pub(super) async fn update_network(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        for key in [
            "provider:network_type",
            "provider:physical_network",
            "provider:segmentation_id",
        ] {
            if let Some(v) = changes.get(key) {
                if rec.body.get(key) != Some(v) {
                    return Err(ApiError::invalid_input(
                        "Plugin does not support updating provider attributes",
                    ));
                }
            }
        }
        let mut changes = changes;
        // `update_network:<attribute>` rules decided who may change what.
        let is_default = changes.remove("is_default");
        for (key, value) in changes {
            match key.as_str() {
                "shared" => {
                    self.set_wildcard(tx, rec, "access_as_shared", value.as_bool() == Some(true))
                        .await?;
                }
                "router:external" => {
                    let on = value.as_bool() == Some(true);
                    self.set_wildcard(tx, rec, "access_as_external", on).await?;
                    rec.body[key.as_str()] = json!(on);
                    if !on {
                        release_default_external(tx, &rec.id).await?;
                        if let Some(doc) = rec.body.as_object_mut() {
                            doc.remove("is_default");
                        }
                    }
                }
                "mtu" => {
                    let max = self.max_mtu(s(&rec.body, "provider:network_type"));
                    let mtu = value.as_u64().unwrap_or(0) as u32;
                    if mtu > max {
                        return Err(ApiError::invalid_input(format!(
                            "Requested MTU is too big, maximum is {max}"
                        )));
                    }
                    for sn in self.network_subnets(tx, &rec.id).await? {
                        let v6 = sn.body.get("ip_version").and_then(Value::as_i64) == Some(6);
                        check_mtu_fits(mtu, v6, &rec.id)?;
                    }
                    rec.body["mtu"] = json!(mtu);
                }
                _ => {
                    rec.body[key.as_str()] = value;
                }
            }
        }
        // `is_default` only means something on an external network.
        if let Some(on) = is_default.and_then(|v| v.as_bool()) {
            if rec.body["router:external"] == true {
                if on {
                    claim_default_external(tx, &rec.id).await?;
                } else {
                    release_default_external(tx, &rec.id).await?;
                }
                rec.body["is_default"] = json!(on);
            }
        }
        Ok(())
    }

    /// Adds or removes the wildcard RBAC policy behind `shared` / `router:external`.
    async fn set_wildcard(
        &self,
        tx: &mut Tx,
        rec: &Record,
        action: &str,
        on: bool,
    ) -> ApiResult<()> {
        let sel = Selector {
            parent_ids: Some(vec![rec.id.clone()]),
            ..Default::default()
        };
        let existing: Vec<Record> = tx
            .list("rbac_policy", &sel)
            .await
            .map_err(db)?
            .into_iter()
            .filter(|p| s(&p.body, "action") == action && s(&p.body, "target_tenant") == "*")
            .collect();
        if on && existing.is_empty() {
            self.insert_rbac(tx, &rec.project_id, "network", &rec.id, action, "*")
                .await?;
        }
        if !on {
            for p in existing {
                if action == "access_as_shared" {
                    self.check_shared_unused(tx, &rec.id, &rec.project_id, "*", Some(&p.id)).await.map_err(|_| {
                        ApiError::conflict(
                            "InvalidSharedSetting",
                            format!("Unable to reconfigure sharing settings for network {}. Multiple tenants are using it.", rec.id),
                        )
                    })?;
                }
                tx.release("rbac", &rbac_key(&p.body)).await.map_err(db)?;
                tx.delete("rbac_policy", &p.id).await.map_err(db)?;
            }
        }
        Ok(())
    }

    pub(super) async fn network_subnets(
        &self,
        tx: &mut Tx,
        network: &str,
    ) -> ApiResult<Vec<Record>> {
        let sel = Selector {
            parent_ids: Some(vec![network.to_string()]),
            ..Default::default()
        };
        tx.list("subnet", &sel).await.map_err(db)
    }

    pub(super) async fn delete_network(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        let sel = Selector {
            parent_ids: Some(vec![rec.id.clone()]),
            ..Default::default()
        };
        let ports = tx.list("port", &sel).await.map_err(db)?;
        // DHCP ports and unassociated floating IPs go with the network; anything else keeps it.
        let mut unused_fips = Vec::new();
        let mut in_use = false;
        for p in &ports {
            match s(&p.body, "device_owner") {
                o if o.starts_with("network:dhcp") => {}
                FLOATINGIP_OWNER => {
                    let fip = tx
                        .get("floatingip", s(&p.body, "device_id"))
                        .await
                        .map_err(db)?;
                    match fip {
                        Some(f) if f.body.get("port_id").is_none_or(Value::is_null) => {
                            unused_fips.push(f.id)
                        }
                        _ => in_use = true,
                    }
                }
                _ => in_use = true,
            }
        }
        if in_use {
            return Err(ApiError::conflict(
                "NetworkInUse",
                format!("Unable to complete operation on network {}. There are one or more ports still in use on the network.", rec.id),
            ));
        }
        self.drop_l2gw_of_network(tx, &rec.id).await?;
        self.drop_bgp_of_network(tx, &rec.id).await?;
        for fip in unused_fips {
            tx.release_owned("fip:", &fip).await.map_err(db)?;
            tx.delete("floatingip", &fip).await.map_err(db)?;
        }
        for p in ports {
            self.release_port(tx, &p).await?;
            tx.delete("port", &p.id).await.map_err(db)?;
        }
        tx.release_scope(&network_cidr_scope(&rec.id, 4))
            .await
            .map_err(db)?;
        tx.release_scope(&network_cidr_scope(&rec.id, 6))
            .await
            .map_err(db)?;
        for sn in self.network_subnets(tx, &rec.id).await? {
            self.release_pool_prefix(tx, &sn).await?;
            tx.delete("subnet", &sn.id).await.map_err(db)?;
        }
        self.delete_object_policies(tx, &rec.id).await?;
        tx.release_owned("segment:", &rec.id).await.map_err(db)?;
        release_default_external(tx, &rec.id).await?;
        self.forget_auto_topology(tx, &rec.id).await?;
        Ok(())
    }

    /// Inserts an RBAC policy row (uniqueness through the `rbac` claim scope).
    pub(super) async fn insert_rbac(
        &self,
        tx: &mut Tx,
        project: &str,
        object_type: &str,
        object: &str,
        action: &str,
        target: &str,
    ) -> ApiResult<String> {
        let id = new_id();
        let body = json!({"id": id, "project_id": project, "tenant_id": project, "object_type": object_type,
                          "object_id": object, "action": action, "target_tenant": target});
        if !tx.claim("rbac", &rbac_key(&body), &id).await.map_err(db)? {
            return Err(ApiError::conflict(
                "DuplicateRbacPolicy",
                "An RBAC policy already exists with those values.",
            ));
        }
        tx.insert(&Record {
            kind: "rbac_policy".into(),
            id: id.clone(),
            project_id: project.to_string(),
            parent_id: Some(object.to_string()),
            body,
        })
        .await
        .map_err(db)?;
        Ok(id)
    }
}

/// The claim naming the one default external network.
const DEFAULT_EXTERNAL: (&str, &str) = ("default-external", "network");

/// The default external network, if one is set.
pub(super) async fn default_external(tx: &mut Tx) -> ApiResult<Option<String>> {
    tx.claim_owner(DEFAULT_EXTERNAL.0, DEFAULT_EXTERNAL.1)
        .await
        .map_err(db)
}

/// Makes `network` the default external network: 409 `DefaultExternalNetworkExists` if
/// another one is.
async fn claim_default_external(tx: &mut Tx, network: &str) -> ApiResult<()> {
    let (scope, key) = DEFAULT_EXTERNAL;
    if tx.claim(scope, key, network).await.map_err(db)? {
        return Ok(());
    }
    match default_external(tx).await? {
        Some(other) if other != network => Err(ApiError::conflict(
            "DefaultExternalNetworkExists",
            format!("A default external network already exists: {other}."),
        )),
        _ => Ok(()),
    }
}

pub(super) async fn release_default_external(tx: &mut Tx, network: &str) -> ApiResult<()> {
    if default_external(tx).await?.as_deref() == Some(network) {
        tx.release(DEFAULT_EXTERNAL.0, DEFAULT_EXTERNAL.1)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// IPv4 needs an MTU of at least 68, IPv6 of at least 1280.
pub(super) fn check_mtu_fits(mtu: u32, v6: bool, network: &str) -> ApiResult<()> {
    let min = if v6 { 1280 } else { 68 };
    if mtu < min {
        return Err(ApiError::conflict(
            "NetworkMTUSubnetConflict",
            format!("MTU of {network} is not compatible with subnets."),
        ));
    }
    Ok(())
}
